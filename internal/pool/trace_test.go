package pool

import (
	"context"
	"errors"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/stratus-run/stratus"
)

// tracing is an env whose Manager traces into memory.
func tracing(t *testing.T, o opts) (*env, *tracetest.InMemoryExporter) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	o.tracer = tp.Tracer("pool")
	return newEnv(t, o), exp
}

// spansOf returns the spans of trace tid by name; a name seen twice fails
// the test.
func spansOf(t *testing.T, exp *tracetest.InMemoryExporter, tid oteltrace.TraceID) map[string]tracetest.SpanStub {
	t.Helper()
	out := map[string]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		if s.SpanContext.TraceID() != tid {
			continue
		}
		if _, ok := out[s.Name]; ok {
			t.Fatalf("two spans %q in trace %s", s.Name, tid)
		}
		out[s.Name] = s
	}
	return out
}

func attrs(s tracetest.SpanStub) map[string]any {
	m := map[string]any{}
	for _, kv := range s.Attributes {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

func TestInvocationSpans(t *testing.T) {
	e, exp := tracing(t, opts{})
	e.deploy("fn", 1, nil)

	// A cold start in a caller's trace.
	resp, err := e.invokeReq(callerCtx(), "fn", map[string]any{"op": "echo"}, stratus.TriggerHTTP)
	if err != nil {
		t.Fatal(err)
	}
	ec := e.success(resp)
	r := resp.Record
	tid, _ := oteltrace.TraceIDFromHex(callerTrace)
	if r.TraceID != callerTrace {
		t.Errorf("record's trace ID %q, want the caller's %s", r.TraceID, callerTrace)
	}
	spans := spansOf(t, exp, tid)
	inv, ok := spans["invoke fn"]
	if !ok {
		t.Fatalf("no span \"invoke fn\" in the caller's trace; spans: %v", names(exp))
	}
	if got := inv.Parent.SpanID().String(); got != callerParent || inv.SpanKind != oteltrace.SpanKindServer {
		t.Errorf("invoke span: parent %s, kind %v; want the caller's %s, server", got, inv.SpanKind, callerParent)
	}
	want := map[string]any{
		"faas.invocation_id": r.RequestID, "faas.trigger": "http", "stratus.trigger": "http",
		"faas.coldstart": true, "faas.name": "fn", "faas.version": "1", "cloud.region": "local",
		"faas.instance": r.Instance,
	}
	if diff := gocmp.Diff(want, attrs(inv)); diff != "" {
		t.Errorf("invoke span attributes (-want +got):\n%s", diff)
	}
	if inv.Status.Code != codes.Unset {
		t.Errorf("invoke span status %+v, want unset", inv.Status)
	}
	// The function's parent is the invocation's span.
	wantHeader := "Root=1-" + callerTrace[:8] + "-" + callerTrace[8:] + ";Parent=" + inv.SpanContext.SpanID().String() + ";Sampled=1"
	if ec.Trace != wantHeader {
		t.Errorf("Lambda-Runtime-Trace-Id %q, want %q", ec.Trace, wantHeader)
	}
	for child, parent := range map[string]string{
		"queue wait": "invoke fn", "cold start": "invoke fn",
		"sandbox start": "cold start", "runtime init": "cold start",
	} {
		c, ok := spans[child]
		if !ok {
			t.Errorf("no span %q", child)
			continue
		}
		if p := spans[parent]; c.Parent.SpanID() != p.SpanContext.SpanID() {
			t.Errorf("span %q: parent %s, want %q (%s)", child, c.Parent.SpanID(), parent, p.SpanContext.SpanID())
		}
		if c.EndTime.Before(c.StartTime) {
			t.Errorf("span %q ends before it starts: %s, %s", child, c.StartTime, c.EndTime)
		}
	}
	cold, sb, ri := spans["cold start"], spans["sandbox start"], spans["runtime init"]
	if sb.StartTime.Before(cold.StartTime) || ri.StartTime.Before(sb.EndTime) || cold.EndTime.Before(ri.EndTime) || inv.EndTime.Before(cold.EndTime) {
		t.Errorf("cold start %s–%s, sandbox start %s–%s, runtime init %s–%s, invoke ends %s: want them in that order",
			cold.StartTime, cold.EndTime, sb.StartTime, sb.EndTime, ri.StartTime, ri.EndTime, inv.EndTime)
	}
	if got := attrs(cold)["stratus.prepared"]; got != false {
		t.Errorf("cold start's stratus.prepared = %v, want false", got)
	}

	// A warm invocation of a topic's message, in a trace of its own: a
	// consumer span with no children.
	exp.Reset()
	warm, err := e.invokeReq(context.Background(), "fn", map[string]any{"op": "echo"}, stratus.TriggerTopic)
	if err != nil {
		t.Fatal(err)
	}
	e.success(warm)
	tid, _ = oteltrace.TraceIDFromHex(warm.Record.TraceID)
	spans = spansOf(t, exp, tid)
	if len(spans) != 1 {
		t.Errorf("spans of a warm invocation %v, want only its own", names(exp))
	}
	inv = spans["invoke fn"]
	if a := attrs(inv); inv.SpanKind != oteltrace.SpanKindConsumer || a["faas.trigger"] != "pubsub" || a["stratus.trigger"] != "topic" || a["faas.coldstart"] != false || inv.Parent.IsValid() {
		t.Errorf("warm invoke span: kind %v, parent %v, attributes %v; want a root consumer span, pubsub, topic, not cold", inv.SpanKind, inv.Parent, a)
	}

	// Function errors, crashes, timeouts and Go errors set the error
	// status.
	for _, tc := range []struct {
		name, fn string
		ev       map[string]any
		trigger  string
		want     string // faas.trigger
	}{
		{"function error", "fn", map[string]any{"op": "error", "text": "bad"}, stratus.TriggerSchedule, "timer"},
		{"crash", "fn", map[string]any{"op": "exit", "code": 3}, stratus.TriggerAsync, "other"},
		{"unknown function", "nope", map[string]any{"op": "echo"}, "", "other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exp.Reset()
			_, _ = e.invokeReq(context.Background(), tc.fn, tc.ev, tc.trigger)
			ss := exp.GetSpans()
			var inv *tracetest.SpanStub
			for i := range ss {
				if ss[i].Name == "invoke "+tc.fn {
					inv = &ss[i]
				}
			}
			if inv == nil {
				t.Fatalf("no span \"invoke %s\": %v", tc.fn, names(exp))
			}
			if inv.Status.Code != codes.Error || attrs(*inv)["faas.trigger"] != tc.want {
				t.Errorf("span status %+v, faas.trigger %v; want an error, %s", inv.Status, attrs(*inv)["faas.trigger"], tc.want)
			}
		})
	}
}

// TestColdStartSpansPrepared: a cold start on a prepared sandbox says so.
func TestColdStartSpansPrepared(t *testing.T) {
	e, exp := tracing(t, opts{maxPrepared: 1})
	e.deploy("fn", 1, nil)
	e.waitPrepared("fn")
	resp := e.mustInvoke("fn", map[string]any{"op": "echo"})
	tid, err := oteltrace.TraceIDFromHex(resp.Record.TraceID)
	if err != nil {
		t.Fatalf("record's trace ID %q: %v", resp.Record.TraceID, err)
	}
	spans := spansOf(t, exp, tid)
	if got := attrs(spans["cold start"])["stratus.prepared"]; got != true {
		t.Errorf("cold start's stratus.prepared = %v, want true (spans %v)", got, names(exp))
	}
}

// TestNoTracer: without a tracer an invocation makes no span, yet keeps
// the trace ID of its caller's context.
func TestNoTracer(t *testing.T) {
	e := newEnv(t, opts{})
	if e.m.traced {
		t.Fatal("traced without Config.Tracer")
	}
	e.deploy("fn", 1, nil)
	resp, err := e.invokeReq(callerCtx(), "fn", map[string]any{"op": "echo"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Record.TraceID != callerTrace {
		t.Errorf("trace ID %q, want %s", resp.Record.TraceID, callerTrace)
	}
	if _, err := e.invokeReq(context.Background(), "nope", nil, ""); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("unknown function: %v", err)
	}
}

func names(exp *tracetest.InMemoryExporter) []string {
	var out []string
	for _, s := range exp.GetSpans() {
		out = append(out, s.Name+" "+s.SpanContext.TraceID().String())
	}
	return out
}
