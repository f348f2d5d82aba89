package trace_test

import (
	"context"
	"strings"
	"testing"

	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/stratus-run/stratus/internal/trace"
)

const awsExample = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"

func spanContext(t testing.TB, traceID, spanID string, sampled bool) oteltrace.SpanContext {
	t.Helper()
	tid, err := oteltrace.TraceIDFromHex(traceID)
	if err != nil {
		t.Fatal(err)
	}
	sid, err := oteltrace.SpanIDFromHex(spanID)
	if err != nil {
		t.Fatal(err)
	}
	cfg := oteltrace.SpanContextConfig{TraceID: tid, SpanID: sid, Remote: true}
	if sampled {
		cfg.TraceFlags = oteltrace.FlagsSampled
	}
	return oteltrace.NewSpanContext(cfg)
}

func TestFromLambdaHeader(t *testing.T) {
	const (
		tid = "5759e988bd862e3fe1be46a994272793"
		sid = "53995c3f42cd8ad8"
	)
	root := "Root=1-5759e988-bd862e3fe1be46a994272793"
	parent := "Parent=53995c3f42cd8ad8"
	for _, tc := range []struct {
		name, in string
		sampled  bool
		ok       bool
	}{
		{"aws example", awsExample, true, true},
		{"not sampled", root + ";" + parent + ";Sampled=0", false, true},
		{"decision requested", root + ";" + parent + ";Sampled=?", false, true},
		{"no sampled field", root + ";" + parent, false, true},
		{"any order", "Sampled=1;" + parent + ";" + root, true, true},
		{"lambda lineage", awsExample + ";Lineage=a87bd80c:1|68fd508a:5", true, true},
		{"self and custom fields", "Self=1-67891234-12456789abcdef012345678;" + awsExample + ";CalledFrom=app", true, true},
		{"spaces", " Root=1-5759e988-bd862e3fe1be46a994272793 ; Parent = 53995c3f42cd8ad8 ;Sampled=1 ", true, true},
		{"trailing semicolon", awsExample + ";", true, true},
		{"uppercase hex", "Root=1-5759E988-BD862E3FE1BE46A994272793;Parent=53995C3F42CD8AD8;Sampled=1", true, true},

		{"empty", "", false, false},
		{"root only (no parent span)", root + ";Sampled=1", false, false},
		{"parent only", parent + ";Sampled=1", false, false},
		{"traceparent value", "00-" + tid + "-" + sid + "-01", false, false},
		{"lowercase keys", "root=1-5759e988-bd862e3fe1be46a994272793;parent=53995c3f42cd8ad8;sampled=1", false, false},
		{"version 2", "Root=2-5759e988-bd862e3fe1be46a994272793;" + parent, false, false},
		{"short epoch", "Root=1-759e988-bd862e3fe1be46a994272793;" + parent, false, false},
		{"long unique", "Root=1-5759e988-bd862e3fe1be46a9942727930;" + parent, false, false},
		{"wrong dash", "Root=1-5759e988bd862e3fe1be46a994272793-;" + parent, false, false},
		{"non-hex root", "Root=1-5759e988-bd862e3fe1be46a99427279z;" + parent, false, false},
		{"zero trace", "Root=1-00000000-000000000000000000000000;" + parent, false, false},
		{"zero parent", root + ";Parent=0000000000000000", false, false},
		{"short parent", root + ";Parent=53995c3f42cd8ad", false, false},
		{"non-hex parent", root + ";Parent=53995c3f42cd8adg", false, false},
		{"bad sampled", root + ";" + parent + ";Sampled=yes", false, false},
		{"repeated root", root + ";" + awsExample, false, false},
		{"repeated parent", awsExample + ";Parent=1111111111111111", false, false},
		{"repeated sampled", awsExample + ";Sampled=0", false, false},
		{"field without =", awsExample + ";garbage", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc, ok := trace.FromLambdaHeader(tc.in)
			if ok != tc.ok {
				t.Fatalf("FromLambdaHeader(%q) ok = %v, want %v (%v)", tc.in, ok, tc.ok, sc)
			}
			if !ok {
				if sc.IsValid() {
					t.Errorf("invalid header gave a valid span context %v", sc)
				}
				return
			}
			if want := spanContext(t, tid, sid, tc.sampled); !sc.Equal(want) {
				t.Errorf("FromLambdaHeader(%q) = %v, want %v", tc.in, sc, want)
			}
		})
	}
}

func TestLambdaHeader(t *testing.T) {
	if got := trace.LambdaHeader(context.Background()); got != "" {
		t.Errorf("no span: %q, want \"\"", got)
	}
	invalid := oteltrace.ContextWithSpanContext(context.Background(), oteltrace.SpanContext{})
	if got := trace.LambdaHeader(invalid); got != "" {
		t.Errorf("invalid span: %q, want \"\"", got)
	}
	for _, tc := range []struct {
		sampled bool
		want    string
	}{
		{true, awsExample},
		{false, strings.TrimSuffix(awsExample, "1") + "0"},
	} {
		sc := spanContext(t, "5759e988bd862e3fe1be46a994272793", "53995c3f42cd8ad8", tc.sampled)
		if got := trace.LambdaHeader(oteltrace.ContextWithSpanContext(context.Background(), sc)); got != tc.want {
			t.Errorf("sampled %v: %q, want %q", tc.sampled, got, tc.want)
		}
	}
}

func TestLambdaHeaderRoundTrip(t *testing.T) {
	tp := mustNew(t, trace.Config{})
	for i := range 100 {
		ctx, span := tp.Tracer("test").Start(context.Background(), "root")
		sc := span.SpanContext()
		h := trace.LambdaHeader(ctx)
		got, ok := trace.FromLambdaHeader(h)
		if !ok || got.TraceID() != sc.TraceID() || got.SpanID() != sc.SpanID() || got.TraceFlags() != sc.TraceFlags() || !got.IsRemote() {
			t.Fatalf("round %d: %q parsed to %v (%v), want the IDs and flags of %v", i, h, got, ok, sc)
		}
	}
}

func FuzzFromLambdaHeader(f *testing.F) {
	for _, s := range []string{
		awsExample,
		awsExample + ";Lineage=a87bd80c:1|68fd508a:5",
		"Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
		"Sampled=?;Parent=53995c3f42cd8ad8;Root=1-5759e988-bd862e3fe1be46a994272793",
		" Root = 1-5759E988-bd862e3fe1be46a994272793 ;Parent=53995c3f42cd8ad8;;",
		"Root=1-00000000-000000000000000000000000;Parent=0000000000000000",
		"Root=;Parent=;Sampled=",
		"=;=;=",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sc, ok := trace.FromLambdaHeader(s)
		if !ok {
			if sc.IsValid() {
				t.Fatalf("%q: not ok but valid %v", s, sc)
			}
			return
		}
		if !sc.IsValid() || !sc.IsRemote() {
			t.Fatalf("%q: ok but %v (valid %v, remote %v)", s, sc, sc.IsValid(), sc.IsRemote())
		}
		h := trace.LambdaHeader(oteltrace.ContextWithRemoteSpanContext(context.Background(), sc))
		again, ok := trace.FromLambdaHeader(h)
		if !ok || !again.Equal(sc) {
			t.Fatalf("%q → %v → %q → %v (%v)", s, sc, h, again, ok)
		}
		if h2 := trace.LambdaHeader(oteltrace.ContextWithRemoteSpanContext(context.Background(), again)); h2 != h {
			t.Fatalf("header not canonical: %q then %q", h, h2)
		}
	})
}
