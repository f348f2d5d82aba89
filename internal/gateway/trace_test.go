package gateway

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/services"
	"github.com/stratus-run/stratus/internal/trace"
)

// A client's trace context.
const (
	clientTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientSpanID  = "00f067aa0ba902b7"
	clientParent  = "00-" + clientTraceID + "-" + clientSpanID + "-01"
)

func newRecorder(t *testing.T) (*tracetest.SpanRecorder, oteltrace.Tracer) {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return sr, tp.Tracer("gateway")
}

func attrsOf(s sdktrace.ReadOnlySpan) map[string]string {
	m := make(map[string]string)
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value.String()
	}
	return m
}

// invoked is a function "f" (auth none) that records the requests it is
// invoked with and their contexts' spans.
type invoked struct {
	mu    sync.Mutex
	reqs  []stratus.Request
	spans []oteltrace.SpanContext
}

func (f *invoked) Head(name string) (*stratus.Version, bool) {
	if name != "f" {
		return nil, false
	}
	return &stratus.Version{Function: name, Version: 1, Config: stratus.FunctionConfig{Auth: stratus.AuthNone}}, true
}

func (f *invoked) Invoke(ctx context.Context, name string, req stratus.Request) (*stratus.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, req)
	f.spans = append(f.spans, oteltrace.SpanContextFromContext(ctx))
	return &stratus.Response{Body: []byte(`{"statusCode":200,"body":"ok"}`)}, nil
}

// functionRoutes serves the invoke and function routes of g, as the API
// server does.
func functionRoutes(g *Gateway) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/functions/{name}/invoke", g.ServeInvoke)
	mux.HandleFunc("/fn/{name}", g.ServeFunctionURL)
	mux.HandleFunc("/fn/{name}/{path...}", g.ServeFunctionURL)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	return mux
}

// TestTraceFunctionRoutes: the gateway's span is a child of the client's
// traceparent, named after the route, and the invocation runs in it; the
// function route's trigger is http, the invoke endpoint's sync.
func TestTraceFunctionRoutes(t *testing.T) {
	sr, tracer := newRecorder(t)
	fn := &invoked{}
	g := New(Config{Invoker: fn, Queue: noQueue{}, Heads: fn})
	h := Trace(tracer, "eu-1")(functionRoutes(g))

	for _, tc := range []struct {
		method, path, body string
		span, trigger      string
	}{
		{"GET", "/fn/f/a/b?x=1", "", "GET /fn/{name}", stratus.TriggerHTTP},
		{"POST", "/v1/functions/f/invoke", "{}", "POST /v1/functions/{name}/invoke", stratus.TriggerSync},
	} {
		before, calls := len(sr.Ended()), len(fn.reqs)
		r := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
		r.Header.Set("traceparent", clientParent)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			t.Fatalf("%s %s: %d %s", tc.method, tc.path, w.Code, w.Body)
		}
		spans := sr.Ended()[before:]
		if len(spans) != 1 {
			t.Fatalf("%s %s: %d spans, want 1", tc.method, tc.path, len(spans))
		}
		s := spans[0]
		if s.Name() != tc.span || s.SpanKind() != oteltrace.SpanKindServer {
			t.Errorf("%s %s: span %q of kind %v, want %q of kind server", tc.method, tc.path, s.Name(), s.SpanKind(), tc.span)
		}
		if s.SpanContext().TraceID().String() != clientTraceID || s.Parent().SpanID().String() != clientSpanID || !s.Parent().IsRemote() {
			t.Errorf("%s %s: span in trace %s under %s, want a child of the client's %s", tc.method, tc.path,
				s.SpanContext().TraceID(), s.Parent().SpanID(), clientParent)
		}
		want := map[string]string{
			"faas.name": "f", "cloud.region": "eu-1", "http.request.method": tc.method,
			"http.response.status_code": "200", "url.path": strings.Split(tc.path, "?")[0],
		}
		got := attrsOf(s)
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s %s: attribute %s = %q, want %q (all: %v)", tc.method, tc.path, k, got[k], v, got)
			}
		}
		if len(fn.reqs) != calls+1 {
			t.Fatalf("%s %s: %d invocations, want 1", tc.method, tc.path, len(fn.reqs)-calls)
		}
		if got := fn.reqs[calls].Trigger; got != tc.trigger {
			t.Errorf("%s %s: trigger %q, want %q", tc.method, tc.path, got, tc.trigger)
		}
		if got := fn.spans[calls]; got.SpanID() != s.SpanContext().SpanID() {
			t.Errorf("%s %s: the invocation ran under span %s, want the gateway's %s", tc.method, tc.path, got.SpanID(), s.SpanContext().SpanID())
		}
	}
}

// TestTraceNames: span names are bounded whatever the path; the health
// and metrics endpoints get no span.
func TestTraceNames(t *testing.T) {
	sr, tracer := newRecorder(t)
	h := Trace(tracer, "")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusBadGateway)
		}
	}))
	for _, tc := range []struct {
		method, path, span, attr string
	}{
		{"GET", "/fn/hello", "GET /fn/{name}", "hello"},
		{"DELETE", "/fn/hello/x/y", "DELETE /fn/{name}", "hello"},
		{"BREW", "/fn/hello", "HTTP /fn/{name}", "hello"},
		{"POST", "/v1/functions/hello/invoke", "POST /v1/functions/{name}/invoke", "hello"},
		{"GET", "/v1/functions/hello/invoke", "api", ""},
		{"POST", "/v1/functions/a/b/invoke", "api", ""},
		{"PUT", "/svc/web/a/b", "/svc/{name}", "web"},
		{"GET", "/svc/web", "/svc/{name}", "web"},
		{"GET", "/v1/functions/hello", "api", ""},
		{"GET", "/anything/at/all", "api", ""},
		{"GET", "/fail", "api", ""},
		{"GET", "/healthz", "", ""},
		{"GET", "/readyz", "", ""},
		{"GET", "/metrics", "", ""},
	} {
		before := len(sr.Ended())
		r := httptest.NewRequest(tc.method, tc.path, nil)
		h.ServeHTTP(httptest.NewRecorder(), r)
		spans := sr.Ended()[before:]
		if tc.span == "" {
			if len(spans) != 0 {
				t.Errorf("%s %s: %d spans, want none", tc.method, tc.path, len(spans))
			}
			continue
		}
		if len(spans) != 1 {
			t.Errorf("%s %s: %d spans, want 1", tc.method, tc.path, len(spans))
			continue
		}
		s := spans[0]
		got := attrsOf(s)
		name := got["faas.name"] + got["stratus.service.name"]
		if s.Name() != tc.span || name != tc.attr || s.Parent().IsValid() {
			t.Errorf("%s %s: span %q naming %q (parent %v), want a root %q naming %q", tc.method, tc.path, s.Name(), name, s.Parent().IsValid(), tc.span, tc.attr)
		}
		if tc.path == "/fail" && (got["http.response.status_code"] != "502" || s.Status().Code.String() != "Error") {
			t.Errorf("a 502: attributes %v, status %v; want its status and an error", got, s.Status())
		}
	}
}

// TestServiceTraceContext: the replica gets a traceparent in the
// client's trace whose parent is the gateway's span, on the path and
// host routes alike, and the host route's span says so.
func TestServiceTraceContext(t *testing.T) {
	sr, tracer := newRecorder(t)
	seen := make(chan http.Header, 1)
	replica := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
	}))
	defer replica.Close()
	u, _ := url.Parse(replica.URL)
	p := NewServiceProxy(ProxyConfig{Services: oneReplica{
		auth:   map[string]string{"web": stratus.AuthNone},
		target: &services.Target{URL: u, Transport: replica.Client().Transport},
	}, Domain: "apps.test"})
	mux := http.NewServeMux()
	mux.HandleFunc("/svc/{name}/{path...}", p.ServeSvcPath)
	h := Trace(tracer, "")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if name, ok := p.HostService(r); ok {
			p.ServeHost(w, r, name)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	for _, tc := range []struct {
		host, path, parent, span string
	}{
		{"", "/svc/web/x", clientParent, "/svc/{name}"},
		{"web.apps.test", "/fn/x", clientParent, "host route"},
		{"", "/svc/web/x", "", "/svc/{name}"}, // a new trace
	} {
		before := len(sr.Ended())
		r := httptest.NewRequest("GET", tc.path, nil)
		if tc.host != "" {
			r.Host = tc.host
		}
		if tc.parent != "" {
			r.Header.Set("traceparent", tc.parent)
			r.Header.Set("tracestate", "vendor=1")
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			t.Fatalf("%s%s: %d %s", tc.host, tc.path, w.Code, w.Body)
		}
		got := <-seen
		spans := sr.Ended()[before:]
		if len(spans) != 1 {
			t.Fatalf("%s%s: %d spans, want 1", tc.host, tc.path, len(spans))
		}
		s := spans[0]
		if s.Name() != tc.span || attrsOf(s)["stratus.service.name"] != "web" {
			t.Errorf("%s%s: span %q with %v, want %q naming web", tc.host, tc.path, s.Name(), attrsOf(s), tc.span)
		}
		sc := trace.Extract(context.Background(), got)
		want := oteltrace.SpanContextFromContext(sc)
		if want.SpanID() != s.SpanContext().SpanID() || want.TraceID() != s.SpanContext().TraceID() {
			t.Errorf("%s%s: the replica got traceparent %q, want the gateway's span %s/%s", tc.host, tc.path,
				got.Get("traceparent"), s.SpanContext().TraceID(), s.SpanContext().SpanID())
		}
		if tc.parent != "" {
			if want.TraceID().String() != clientTraceID || got.Get("tracestate") != "vendor=1" {
				t.Errorf("%s%s: the replica got %q, %q; want the client's trace and its tracestate", tc.host, tc.path, got.Get("traceparent"), got.Get("tracestate"))
			}
		}
	}
}

// TestTraceNoopPassesContextOn: without a recording tracer, the client's
// trace context still reaches the replica as it came.
func TestTraceNoopPassesContextOn(t *testing.T) {
	seen := make(chan string, 1)
	replica := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("traceparent")
	}))
	defer replica.Close()
	u, _ := url.Parse(replica.URL)
	p := NewServiceProxy(ProxyConfig{Services: oneReplica{
		auth:   map[string]string{"web": stratus.AuthNone},
		target: &services.Target{URL: u, Transport: replica.Client().Transport},
	}})
	mux := http.NewServeMux()
	mux.HandleFunc("/svc/{name}/{path...}", p.ServeSvcPath)
	h := Trace(nil, "")(mux)
	for _, parent := range []string{clientParent, ""} {
		r := httptest.NewRequest("GET", "/svc/web/", nil)
		if parent != "" {
			r.Header.Set("traceparent", parent)
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
		if got := <-seen; got != parent {
			t.Errorf("the replica got traceparent %q, want %q", got, parent)
		}
	}
}

// scriptedServices is service "web" (auth token) and "open" (auth none)
// whose Acquire fails with err, else gives target.
type scriptedServices struct {
	target *services.Target
	err    error
}

func (s scriptedServices) Acquire(ctx context.Context, name string) (*services.Target, func(), error) {
	if s.err != nil {
		return nil, nil, s.err
	}
	return s.target, func() {}, nil
}

func (s scriptedServices) Auth(name string) (string, bool) {
	switch name {
	case "web":
		return stratus.AuthToken, true
	case "open":
		return stratus.AuthNone, true
	}
	return "", false
}

type observation struct {
	service string
	status  int
}

// TestObserve: every request to a service is observed once, with the
// status its client got, whoever answered it; requests to unknown
// services are not.
func TestObserve(t *testing.T) {
	replica := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/missing":
			http.NotFound(w, r)
		case "/broken":
			w.WriteHeader(http.StatusInternalServerError)
		case "/silent":
		default:
			_, _ = w.Write([]byte("ok"))
		}
	}))
	defer replica.Close()
	u, _ := url.Parse(replica.URL)
	target := &services.Target{URL: u, Transport: replica.Client().Transport}
	for _, tc := range []struct {
		name       string
		acquireErr error
		path, auth string
		want       []observation
	}{
		{"2xx", nil, "/svc/open/", "", []observation{{"open", 200}}},
		{"nothing written", nil, "/svc/open/silent", "", []observation{{"open", 200}}},
		{"4xx of the replica", nil, "/svc/open/missing", "", []observation{{"open", 404}}},
		{"5xx of the replica", nil, "/svc/web/broken", "Bearer t", []observation{{"web", 500}}},
		{"no token", nil, "/svc/web/", "", []observation{{"web", 401}}},
		{"queue full", stratus.ErrCapacity, "/svc/open/", "", []observation{{"open", 429}}},
		{"no replica", stratus.ErrUnavailable, "/svc/open/", "", []observation{{"open", 503}}},
		{"no replica in time", stratus.ErrTimeout, "/svc/open/", "", []observation{{"open", 504}}},
		{"unknown service", nil, "/svc/nope/", "Bearer t", nil},
		{"unknown service without token", nil, "/svc/nope/", "", nil},
	} {
		var got []observation
		p := NewServiceProxy(ProxyConfig{
			Services: scriptedServices{target: target, err: tc.acquireErr}, Token: NewToken("t"),
			Observe: func(service string, status int, d time.Duration) {
				if d <= 0 {
					t.Errorf("%s: observed a duration of %s", tc.name, d)
				}
				got = append(got, observation{service, status})
			},
		})
		mux := http.NewServeMux()
		mux.HandleFunc("/svc/{name}/{path...}", p.ServeSvcPath)
		r := httptest.NewRequest("GET", tc.path, nil)
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(observation{})); diff != "" {
			t.Errorf("%s: observations (-want +got):\n%s", tc.name, diff)
		}
		if len(got) == 1 && got[0].status != w.Code {
			t.Errorf("%s: observed %d, the client got %d", tc.name, got[0].status, w.Code)
		}
	}
}

// TestObserveClientGone: a client that goes away while it waits for a
// replica is observed as 499.
func TestObserveClientGone(t *testing.T) {
	var got []observation
	p := NewServiceProxy(ProxyConfig{
		Services: scriptedServices{err: context.Canceled},
		Observe:  func(service string, status int, d time.Duration) { got = append(got, observation{service, status}) },
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := httptest.NewRequestWithContext(ctx, "GET", "/svc/open/", nil)
	r.SetPathValue("name", "open")
	p.ServeSvcPath(httptest.NewRecorder(), r)
	if diff := cmp.Diff([]observation{{"open", 499}}, got, cmp.AllowUnexported(observation{})); diff != "" {
		t.Errorf("observations (-want +got):\n%s", diff)
	}
}

// TestStatusWriter: the status kept is the answer's.
func TestStatusWriter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(w http.ResponseWriter)
		want  int
	}{
		{"nothing", func(w http.ResponseWriter) {}, 0},
		{"write", func(w http.ResponseWriter) { _, _ = w.Write([]byte("x")) }, 200},
		{"header", func(w http.ResponseWriter) { w.WriteHeader(503); w.WriteHeader(200) }, 503},
		{"informational first", func(w http.ResponseWriter) { w.WriteHeader(103); w.WriteHeader(201) }, 201},
		{"flush", func(w http.ResponseWriter) {
			w.WriteHeader(202)
			if err := http.NewResponseController(w).Flush(); err != nil {
				t.Errorf("flush through statusWriter: %v", err)
			}
		}, 202},
	} {
		sw := &statusWriter{ResponseWriter: httptest.NewRecorder()}
		tc.write(sw)
		if sw.status != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, sw.status, tc.want)
		}
	}
	// A hijack through a writer that cannot is an error, not a 101.
	sw := &statusWriter{ResponseWriter: httptest.NewRecorder()}
	if _, _, err := sw.Hijack(); !errors.Is(err, http.ErrNotSupported) || sw.status != 0 {
		t.Errorf("hijack of a recorder: %v, status %d", err, sw.status)
	}
}

// FuzzRouteOf: any request line gets one of the bounded span names.
func FuzzRouteOf(f *testing.F) {
	for _, s := range []string{"/fn/a", "/fn/", "/fn//x", "/svc/web/x", "/v1/functions/x/invoke", "/v1/functions//invoke", "/", "/fn/a%2Fb"} {
		f.Add("GET", s)
		f.Add("POST", s)
	}
	names := map[string]bool{spanInvoke: true, spanService: true, spanAPI: true, fnSpanOther: true}
	for _, n := range fnSpans {
		names[n] = true
	}
	f.Fuzz(func(t *testing.T, method, path string) {
		r := &http.Request{Method: method, URL: &url.URL{Path: path}}
		name, route, key, _ := routeOf(r)
		if !names[name] {
			t.Fatalf("routeOf(%q %q) = %q, not a bounded name", method, path, name)
		}
		if (route == "") != (key == "") {
			t.Fatalf("routeOf(%q %q): route %q with key %q", method, path, route, key)
		}
	})
}

// BenchmarkTrace measures the middleware's cost per request: with the
// no-op tracer (tracing off), with it and a client's traceparent, and
// with a recording tracer; "bare" is the handler alone.
func BenchmarkTrace(b *testing.B) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(noopProcessor{}))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	for _, bc := range []struct {
		name   string
		h      http.Handler
		parent string
	}{
		{"bare", ok, ""},
		{"noop", Trace(nil, "eu-1")(ok), ""},
		{"noop+traceparent", Trace(nil, "eu-1")(ok), clientParent},
		{"recording", Trace(tp.Tracer("gateway"), "eu-1")(ok), clientParent},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := httptest.NewRequest("GET", "/fn/hello/x", nil)
			if bc.parent != "" {
				r.Header.Set("traceparent", bc.parent)
			}
			w := discardWriter{h: make(http.Header)}
			b.ReportAllocs()
			for b.Loop() {
				bc.h.ServeHTTP(w, r)
			}
		})
	}
}

// noopProcessor drops every span, so that the benchmark measures the
// middleware and the SDK's span, not an exporter.
type noopProcessor struct{}

func (noopProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (noopProcessor) OnEnd(sdktrace.ReadOnlySpan)                     {}
func (noopProcessor) Shutdown(context.Context) error                  { return nil }
func (noopProcessor) ForceFlush(context.Context) error                { return nil }

type discardWriter struct{ h http.Header }

func (w discardWriter) Header() http.Header         { return w.h }
func (w discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w discardWriter) WriteHeader(int)             {}
