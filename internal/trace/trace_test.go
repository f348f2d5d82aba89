package trace_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	oteltrace "go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/trace"
	"github.com/stratus-run/stratus/internal/trace/otlptest"
)

const (
	callerTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpanID  = "00f067aa0ba902b7"
	traceparent   = "00-" + callerTraceID + "-" + callerSpanID + "-01"
)

func mustNew(t testing.TB, c trace.Config) *trace.Provider {
	t.Helper()
	p, err := trace.New(context.Background(), c)
	if err != nil {
		t.Fatalf("New(%+v): %v", c, err)
	}
	t.Cleanup(func() { p.Shutdown(context.Background()) })
	return p
}

func callerContext() context.Context {
	h := http.Header{}
	h.Set("Traceparent", traceparent)
	h.Set("Tracestate", "vendor=opaque")
	return trace.Extract(context.Background(), h)
}

func TestExtractInjectRoundTrip(t *testing.T) {
	ctx := callerContext()
	sc := oteltrace.SpanContextFromContext(ctx)
	if !sc.IsRemote() || sc.TraceID().String() != callerTraceID || sc.SpanID().String() != callerSpanID || !sc.IsSampled() {
		t.Fatalf("Extract: %v", sc)
	}
	out := http.Header{}
	trace.Inject(ctx, out)
	if got := out.Get("Traceparent"); got != traceparent {
		t.Errorf("traceparent %q, want %q", got, traceparent)
	}
	if got := out.Get("Tracestate"); got != "vendor=opaque" {
		t.Errorf("tracestate %q, want vendor=opaque", got)
	}
	if back := oteltrace.SpanContextFromContext(trace.Extract(context.Background(), out)); !back.Equal(sc) {
		t.Errorf("extracted again: %v, want %v", back, sc)
	}
}

func TestExtractLambdaHeader(t *testing.T) {
	h := http.Header{}
	h.Set("X-Amzn-Trace-Id", awsExample)
	sc := oteltrace.SpanContextFromContext(trace.Extract(context.Background(), h))
	if sc.TraceID().String() != "5759e988bd862e3fe1be46a994272793" || sc.SpanID().String() != "53995c3f42cd8ad8" || !sc.IsRemote() {
		t.Errorf("from X-Amzn-Trace-Id: %v", sc)
	}
	// traceparent wins over X-Amzn-Trace-Id.
	h.Set("Traceparent", traceparent)
	if sc := oteltrace.SpanContextFromContext(trace.Extract(context.Background(), h)); sc.TraceID().String() != callerTraceID {
		t.Errorf("with both headers: %v, want the traceparent's trace", sc)
	}
	// Nothing usable: no span context.
	h = http.Header{"X-Amzn-Trace-Id": {"Root=1-5759e988-bd862e3fe1be46a994272793"}}
	if sc := oteltrace.SpanContextFromContext(trace.Extract(context.Background(), h)); sc.IsValid() {
		t.Errorf("root without parent: %v, want none", sc)
	}
}

// A function invoked for a caller sees a span of Stratus as its parent,
// in the caller's trace, with and without an endpoint.
func TestLambdaHeaderContinuesCallerTrace(t *testing.T) {
	r := otlptest.Start(t)
	for name, c := range map[string]trace.Config{"no endpoint": {}, "endpoint": {Endpoint: r.HTTPURL()}} {
		t.Run(name, func(t *testing.T) {
			ctx, span := mustNew(t, c).Tracer("pool").Start(callerContext(), "invoke")
			defer span.End()
			sc, ok := trace.FromLambdaHeader(trace.LambdaHeader(ctx))
			if !ok {
				t.Fatalf("LambdaHeader %q does not parse", trace.LambdaHeader(ctx))
			}
			if sc.TraceID().String() != callerTraceID || !sc.IsSampled() {
				t.Errorf("trace %v sampled %v, want the caller's %s, sampled", sc.TraceID(), sc.IsSampled(), callerTraceID)
			}
			if sc.SpanID().String() == callerSpanID || sc.SpanID() != span.SpanContext().SpanID() {
				t.Errorf("parent %v, want Stratus's span %v", sc.SpanID(), span.SpanContext().SpanID())
			}
		})
	}
}

func TestNoEndpoint(t *testing.T) {
	var nilProvider *trace.Provider
	for name, p := range map[string]*trace.Provider{"Config{}": mustNew(t, trace.Config{Region: "local"}), "nil": nilProvider} {
		t.Run(name, func(t *testing.T) {
			tr := p.Tracer("gateway")
			ctx, parent := tr.Start(context.Background(), "root")
			psc := parent.SpanContext()
			if !psc.IsValid() || psc.IsSampled() || parent.IsRecording() {
				t.Fatalf("root span: %v, recording %v; want a valid, unsampled span that records nothing", psc, parent.IsRecording())
			}
			// X-Ray's trace IDs start with their time in Unix seconds.
			tid := psc.TraceID()
			at := time.Unix(int64(uint32(tid[0])<<24|uint32(tid[1])<<16|uint32(tid[2])<<8|uint32(tid[3])), 0)
			if d := time.Since(at); d < -time.Minute || d > time.Minute {
				t.Errorf("trace ID %v starts with time %v, not now", tid, at)
			}
			_, child := tr.Start(ctx, "child")
			csc := child.SpanContext()
			if csc.TraceID() != psc.TraceID() || csc.SpanID() == psc.SpanID() {
				t.Errorf("child %v of %v: want the same trace, a new span", csc, psc)
			}
			_, root := tr.Start(ctx, "new root", oteltrace.WithNewRoot())
			if root.SpanContext().TraceID() == psc.TraceID() {
				t.Errorf("WithNewRoot kept the trace %v", psc.TraceID())
			}
			// An unsampled caller stays unsampled, with its tracestate.
			h := http.Header{"Traceparent": {"00-" + callerTraceID + "-" + callerSpanID + "-00"}, "Tracestate": {"a=b"}}
			_, s := tr.Start(trace.Extract(context.Background(), h), "unsampled")
			if sc := s.SpanContext(); sc.IsSampled() || sc.TraceState().String() != "a=b" || sc.TraceID().String() != callerTraceID {
				t.Errorf("child of an unsampled caller: %v", sc)
			}
			if s.TracerProvider().Tracer("x") == nil {
				t.Error("no tracer from the span's provider")
			}
			child.End()
			parent.End()
			if err := p.Shutdown(context.Background()); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		})
	}
}

func TestParseEndpoint(t *testing.T) {
	for _, s := range []string{
		"",
		"http://127.0.0.1:4318",
		"http://collector:4318/",
		"http://collector:4318/custom/traces",
		"https://otlp.example.com",
		"https://[::1]:4318/v1/traces",
		"grpc://127.0.0.1:4317",
		"grpcs://collector.example.com:4317",
		"grpc://collector:4317/",
	} {
		if err := trace.ParseEndpoint(s); err != nil {
			t.Errorf("ParseEndpoint(%q): %v", s, err)
		}
	}
	for _, s := range []string{
		"127.0.0.1:4317",
		"localhost:4318",
		"collector",
		"udp://127.0.0.1:4317",
		"grpc://collector",
		"grpc://collector:4317/v1/traces",
		"http://",
		"http://:4318",
		"http://user:secret@collector:4318",
		"http://collector:4318/v1/traces?x=1",
		"http://collector:4318#frag",
		"http://collector:port",
		"http://coll ector:4318",
		"://x",
	} {
		err := trace.ParseEndpoint(s)
		if !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("ParseEndpoint(%q) = %v, want ErrInvalid", s, err)
			continue
		}
		if _, err := trace.New(context.Background(), trace.Config{Endpoint: s}); !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("New with %q: %v, want ErrInvalid", s, err)
		}
	}
	err := trace.ParseEndpoint("localhost:4318")
	if want := `"localhost:4318": unknown scheme localhost; want http://host:port[/path], https://host:port[/path], grpc://host:port or grpcs://host:port: invalid`; err.Error() != want {
		t.Errorf("error %q\nwant %q", err, want)
	}
}

func TestExport(t *testing.T) {
	r := otlptest.Start(t)
	for name, endpoint := range map[string]string{"http": r.HTTPURL(), "http path": r.HTTPURL() + "/v1/traces", "grpc": r.GRPCURL()} {
		t.Run(name, func(t *testing.T) {
			p, err := trace.New(context.Background(), trace.Config{Endpoint: endpoint, Region: "eu-west-9", Version: "v1.2.3"})
			if err != nil {
				t.Fatal(err)
			}
			tr := p.Tracer("gateway")
			ctx, server := tr.Start(callerContext(), "POST /fn/{name}", oteltrace.WithSpanKind(oteltrace.SpanKindServer))
			_, child := tr.Start(ctx, "invoke "+name, oteltrace.WithAttributes(
				attribute.String(trace.AttrInvocationID, "req-1"),
				attribute.Bool(trace.AttrColdStart, true),
				attribute.Int("attempt", 2),
			))
			child.End()
			server.End()
			if err := p.Shutdown(context.Background()); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			if err := p.Shutdown(context.Background()); err != nil {
				t.Errorf("second Shutdown: %v", err)
			}
			got := r.WaitSpan(t, 10*time.Second, func(s otlptest.Span) bool { return s.Name == "invoke "+name })
			want := otlptest.Span{
				Name:         "invoke " + name,
				TraceID:      callerTraceID,
				SpanID:       child.SpanContext().SpanID().String(),
				ParentSpanID: server.SpanContext().SpanID().String(),
				Kind:         "internal",
				Status:       "unset",
				Scope:        "github.com/stratus-run/stratus/internal/gateway",
				Attrs:        map[string]string{"faas.invocation_id": "req-1", "faas.coldstart": "true", "attempt": "2"},
				Resource: map[string]string{
					"service.name":           "stratus",
					"service.version":        "v1.2.3",
					"cloud.region":           "eu-west-9",
					"telemetry.sdk.name":     "opentelemetry",
					"telemetry.sdk.language": "go",
				},
			}
			delete(got.Resource, "telemetry.sdk.version")
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("child span (-want +got):\n%s", diff)
			}
			srv := r.WaitSpan(t, 10*time.Second, func(s otlptest.Span) bool { return s.SpanID == want.ParentSpanID })
			if srv.ParentSpanID != callerSpanID || srv.Kind != "server" || srv.TraceID != callerTraceID {
				t.Errorf("server span: %+v, want a server span child of the caller's %s", srv, callerSpanID)
			}
		})
	}
}

// A failed export is logged; the span's owner and Shutdown never see it.
func TestExportErrorIsLogged(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	var log bytes.Buffer
	p := mustNew(t, trace.Config{Endpoint: closed, Log: slog.New(slog.NewTextHandler(&log, nil))})
	_, s := p.Tracer("gateway").Start(context.Background(), "lost")
	s.End()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if !strings.Contains(log.String(), `level=WARN msg="export spans" endpoint=`+closed) {
		t.Errorf("log %q, want the export error", log.String())
	}
}

// BenchmarkSpan is what a component pays per span: start a child span,
// set 4 attributes, end it. Besides Stratus's tracers (no endpoint, OTLP/HTTP
// and OTLP/gRPC to an in-process receiver) it runs the floor, the API's
// no-op tracer, and the alternative not taken for the no-endpoint case: the
// SDK with no span processor, whose spans still record.
func BenchmarkSpan(b *testing.B) {
	r := otlptest.Start(b)
	attrs := []attribute.KeyValue{
		attribute.String(trace.AttrInvocationID, "8f4c1a2e-6b1d-4e8a-9a57-0d1f1c2b3a4d"),
		attribute.String(trace.AttrFaaSName, "hello"),
		attribute.Bool(trace.AttrColdStart, false),
		attribute.String(trace.AttrTrigger, "http"),
	}
	run := func(b *testing.B, tr oteltrace.Tracer) {
		ctx := callerContext()
		b.ReportAllocs()
		for b.Loop() {
			_, s := tr.Start(ctx, "invoke")
			s.SetAttributes(attrs...)
			s.End()
		}
	}
	b.Run("floor=noop", func(b *testing.B) { run(b, noop.NewTracerProvider().Tracer("")) })
	b.Run("alt=sdk-without-processor", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
		run(b, tp.Tracer("bench"))
	})
	for _, bc := range []struct{ name, endpoint string }{
		{"endpoint=none", ""},
		{"endpoint=http", r.HTTPURL()},
		{"endpoint=grpc", r.GRPCURL()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p, err := trace.New(context.Background(), trace.Config{Endpoint: bc.endpoint, Region: "local"})
			if err != nil {
				b.Fatal(err)
			}
			run(b, p.Tracer("bench"))
			b.StopTimer()
			p.Shutdown(context.Background())
		})
	}
}
