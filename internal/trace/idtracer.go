package trace

import (
	"context"
	"math/rand/v2"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	oteltrace "go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// idTracer is the tracer of a Provider without an endpoint. Its spans
// record nothing; each has a fresh span ID, in the trace of its parent when
// ctx holds one (keeping the parent's sampled flag and tracestate), else in
// a new sampled trace, as a parent-based always-on sampler would decide. It
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
		cfg.TraceFlags = oteltrace.FlagsSampled
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

func newTraceID() (id oteltrace.TraceID) {
	for !id.IsValid() {
		putUint64(id[:8], rand.Uint64())
		putUint64(id[8:], rand.Uint64())
	}
	return id
}

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
