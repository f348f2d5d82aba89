package trace

import (
	"context"
	"math/rand/v2"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	oteltrace "go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// idTracer is the tracer of a Provider without an endpoint. Its spans
// record nothing; each has a fresh span ID, in the trace of its parent when
// ctx holds one (keeping the parent's sampled flag and tracestate), else in
// a new trace that is not sampled: nothing records it, so a function's own
// tracer is not asked to (Lambda's Sampled=0 without active tracing). It
// costs one span allocation and a context, a fraction of what the SDK
// spends on a recording span that no processor would read.
type idTracer struct{ embedded.Tracer }

var _ oteltrace.Tracer = idTracer{}

func (idTracer) Start(ctx context.Context, _ string, opts ...oteltrace.SpanStartOption) (context.Context, oteltrace.Span) {
	var parent oteltrace.SpanContext
	if len(opts) == 0 || !newRoot(opts) {
		parent = oteltrace.SpanContextFromContext(ctx)
	}
	cfg := oteltrace.SpanContextConfig{SpanID: newSpanID()}
	if parent.TraceID().IsValid() {
		cfg.TraceID = parent.TraceID()
		cfg.TraceFlags = parent.TraceFlags()
		cfg.TraceState = parent.TraceState()
	} else {
		cfg.TraceID = newTraceID()
	}
	s := &idSpan{sc: oteltrace.NewSpanContext(cfg)}
	return oteltrace.ContextWithSpan(ctx, s), s
}

// newSpanID and newTraceID draw from math/rand/v2's per-thread ChaCha8
// generator, which needs no lock; an ID is unique, not secret.
func newSpanID() (id oteltrace.SpanID) {
	for !id.IsValid() {
		putUint64(id[:], rand.Uint64())
	}
	return id
}

// newTraceID starts with the time in Unix seconds, as X-Ray's trace IDs
// do (its Root=1-<time>-<unique>), so that the Lambda header made from it
// carries a true time; the other 12 bytes are random.
func newTraceID() (id oteltrace.TraceID) {
	now := uint32(time.Now().Unix())
	id[0], id[1], id[2], id[3] = byte(now>>24), byte(now>>16), byte(now>>8), byte(now)
	putUint64(id[4:12], rand.Uint64())
	r := rand.Uint32()
	id[12], id[13], id[14], id[15] = byte(r>>24), byte(r>>16), byte(r>>8), byte(r)
	return id
}

// xrayIDs is the SDK's ID generator with newTraceID's time-first trace
// IDs.
type xrayIDs struct{}

func (xrayIDs) NewIDs(context.Context) (oteltrace.TraceID, oteltrace.SpanID) {
	return newTraceID(), newSpanID()
}

func (xrayIDs) NewSpanID(context.Context, oteltrace.TraceID) oteltrace.SpanID { return newSpanID() }

func putUint64(b []byte, v uint64) {
	_ = b[7]
	for i := range 8 {
		b[i] = byte(v >> (56 - 8*i))
	}
}

// idSpan is a span of idTracer: a span context and nothing else.
type idSpan struct {
	embedded.Span
	sc oteltrace.SpanContext
}

func (s *idSpan) SpanContext() oteltrace.SpanContext        { return s.sc }
func (*idSpan) IsRecording() bool                           { return false }
func (*idSpan) End(...oteltrace.SpanEndOption)              {}
func (*idSpan) AddEvent(string, ...oteltrace.EventOption)   {}
func (*idSpan) AddLink(oteltrace.Link)                      {}
func (*idSpan) RecordError(error, ...oteltrace.EventOption) {}
func (*idSpan) SetStatus(codes.Code, string)                {}
func (*idSpan) SetName(string)                              {}
func (*idSpan) SetAttributes(...attribute.KeyValue)         {}
func (*idSpan) TracerProvider() oteltrace.TracerProvider    { return idProvider{} }

// idProvider hands out idTracer, for code that asks a span for its provider.
type idProvider struct{ embedded.TracerProvider }

func (idProvider) Tracer(string, ...oteltrace.TracerOption) oteltrace.Tracer { return idTracer{} }

func newRoot(opts []oteltrace.SpanStartOption) bool {
	c := oteltrace.NewSpanStartConfig(opts...)
	return c.NewRoot()
}
