package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/trace/otlptest"
)

// TestTraceContinuedIntoReceiver sends a caller's W3C traceparent through
// a function and a service of a server that exports to an OTLP receiver
// started here: the function sees the trace as Lambda shows it
// (_X_AMZN_TRACE_ID), the service gets a traceparent of the same trace,
// and the receiver gets the gateway's, the invocation's and the cold
// start's spans with the FaaS conventions' attributes.
func TestTraceContinuedIntoReceiver(t *testing.T) {
	rcv := otlptest.Start(t)
	s := startServicesServer(t, "--otlp-endpoint", rcv.HTTPURL(), "--region", "eu-test-1")
	s.mustCLI("deploy", "tr", "--runtime", "provided.al2023", fixture("goecho"))

	const (
		traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		parent  = "00f067aa0ba902b7"
	)
	resp, body := s.do("POST", "/fn/tr", []byte(`{}`), true, "traceparent", "00-"+traceID+"-"+parent+"-01")
	if resp.StatusCode != 200 {
		t.Fatalf("POST /fn/tr: %d %s", resp.StatusCode, body)
	}
	reqID := resp.Header.Get("X-Amzn-Requestid")
	a := decode[struct {
		Env map[string]string `json:"env"`
	}](t, body)
	xray := a.Env["_X_AMZN_TRACE_ID"]
	if !strings.Contains(xray, "Root=1-"+traceID[:8]+"-"+traceID[8:]) || !strings.Contains(xray, "Sampled=1") {
		t.Errorf("the function saw _X_AMZN_TRACE_ID %q, want the caller's trace %s", xray, traceID)
	}
	if strings.Contains(xray, "Parent="+parent) {
		t.Errorf("the function's parent is the caller's span, not Stratus's: %q", xray)
	}

	inv := rcv.WaitSpan(t, 30*time.Second, func(sp otlptest.Span) bool {
		return sp.TraceID == traceID && sp.Attrs["faas.invocation_id"] == reqID
	})
	for k, want := range map[string]string{
		"faas.coldstart": "true", "faas.trigger": "http", "faas.name": "tr", "cloud.region": "eu-test-1",
	} {
		if inv.Attrs[k] != want {
			t.Errorf("invocation span %q: %s = %q, want %q (attrs %v)", inv.Name, k, inv.Attrs[k], want, inv.Attrs)
		}
	}
	if !strings.Contains(xray, "Parent="+inv.SpanID) {
		t.Errorf("the function's X-Ray parent %q is not the invocation span %s", xray, inv.SpanID)
	}
	gw := rcv.WaitSpan(t, 10*time.Second, func(sp otlptest.Span) bool { return sp.SpanID == inv.ParentSpanID })
	if gw.ParentSpanID != parent || gw.TraceID != traceID || gw.Kind != "server" {
		t.Errorf("gateway span %+v: want a server span, child of the caller's %s", gw, parent)
	}
	cold := rcv.WaitSpan(t, 10*time.Second, func(sp otlptest.Span) bool {
		return sp.TraceID == traceID && sp.Name == "cold start" && sp.ParentSpanID == inv.SpanID
	})
	for _, name := range []string{"sandbox start", "runtime init"} {
		rcv.WaitSpan(t, 10*time.Second, func(sp otlptest.Span) bool {
			return sp.Name == name && sp.ParentSpanID == cold.SpanID
		})
	}
	if inv.Resource["service.name"] != "stratus" {
		t.Errorf("resource %v: want service.name stratus", inv.Resource)
	}

	// A service receives the trace with Stratus's span as its parent.
	s.mustCLI("service", "deploy", "web", "--image", "gosvc:v1", "--min", "1")
	code, out := s.get("/svc/web/path", "traceparent", "00-"+traceID+"-"+parent+"-01")
	if code != 200 {
		t.Fatalf("GET /svc/web/path: %d %s", code, out)
	}
	echo := decode[struct {
		Headers map[string][]string `json:"headers"`
	}](t, []byte(out))
	tp := strings.Join(echo.Headers["Traceparent"], ",")
	if !strings.HasPrefix(tp, "00-"+traceID+"-") || strings.Contains(tp, parent) {
		t.Errorf("the service saw traceparent %q; want trace %s with Stratus's span as parent", tp, traceID)
	}
	rcv.WaitSpan(t, 10*time.Second, func(sp otlptest.Span) bool {
		return sp.TraceID == traceID && sp.Name == "/svc/{name}" && strings.Contains(tp, sp.SpanID)
	})
}

// TestNoTraceWithoutEndpoint: without --otlp-endpoint a function still
// sees its caller's trace continued, and no span is sent anywhere (there
// is nowhere to send it: this only checks the continuation).
func TestTraceWithoutEndpoint(t *testing.T) {
	s := startServer(t)
	s.mustCLI("deploy", "tr", "--runtime", "provided.al2023", fixture("goecho"))
	const traceID = "0af7651916cd43dd8448eb211c80319c"
	resp, body := s.do("POST", "/fn/tr", []byte(`{}`), true, "traceparent", "00-"+traceID+"-b7ad6b7169203331-01")
	if resp.StatusCode != 200 {
		t.Fatalf("POST /fn/tr: %d %s", resp.StatusCode, body)
	}
	env := decode[struct {
		Env map[string]string `json:"env"`
	}](t, body).Env
	if x := env["_X_AMZN_TRACE_ID"]; !strings.Contains(x, "Root=1-"+traceID[:8]+"-"+traceID[8:]) {
		t.Errorf("_X_AMZN_TRACE_ID = %q, want trace %s", x, traceID)
	}
	// No caller trace: a new one, in X-Ray's form.
	resp, body = s.do("POST", "/fn/tr", []byte(`{}`), true)
	env = decode[struct {
		Env map[string]string `json:"env"`
	}](t, body).Env
	if x := env["_X_AMZN_TRACE_ID"]; resp.StatusCode != 200 || !strings.HasPrefix(x, "Root=1-") || strings.Contains(x, traceID) {
		t.Errorf("without a caller's trace: %d _X_AMZN_TRACE_ID = %q", resp.StatusCode, x)
	}
}
