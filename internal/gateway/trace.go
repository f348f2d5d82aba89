package gateway

import (
	"bufio"
	"net"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	oteltrace "go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/stratus-run/stratus/internal/trace"
)

// Attribute keys of the gateway's spans, beyond the FaaS ones of package
// trace.
const (
	attrMethod  = "http.request.method"
	attrStatus  = "http.response.status_code"
	attrRoute   = "http.route"
	attrPath    = "url.path"
	attrService = "stratus.service.name"
)

// Span names of the route kinds. A span's name is one of these, never a
// raw path, so that the names stay few whatever clients send.
const (
	spanInvoke    = "POST /v1/functions/{name}/invoke"
	spanService   = "/svc/{name}"
	spanHostRoute = "host route"
	spanAPI       = "api"
)

// fnSpans are the span names of the function route by method; other
// methods' requests are "HTTP /fn/{name}".
var fnSpans = func() map[string]string {
	m := make(map[string]string)
	for _, method := range []string{
		http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace,
	} {
		m[method] = method + " /fn/{name}"
	}
	return m
}()

const fnSpanOther = "HTTP /fn/{name}"

// Trace returns middleware that traces each request in a server span
// named after its route kind ("GET /fn/{name}", "POST
// /v1/functions/{name}/invoke", "/svc/{name}", "host route" (set by
// ServiceProxy.ServeHost) or "api"), child of the trace context the
// client sent (W3C traceparent and tracestate, else X-Amzn-Trace-Id),
// with the function's or service's name, the method, the path, the
// status and region (cloud.region, if not empty) as attributes. The
// handler gets the span in its request's context, so the invocation's
// spans are its children and the service proxy passes it on to the
// replica. /healthz, /readyz and /metrics get no span.
//
// With the no-op tracer (nil), a request without trace context costs two
// header lookups and allocates nothing; one with a trace context, its
// extraction. A tracer that does not record a span costs its Start too.
func Trace(t oteltrace.Tracer, region string) func(http.Handler) http.Handler {
	t = trace.Or(t)
	_, off := t.(noop.Tracer)
	var regionAttr []attribute.KeyValue
	if region != "" {
		regionAttr = []attribute.KeyValue{attribute.String(trace.AttrCloudRegion, region)}
	}
	opts := []oteltrace.SpanStartOption{oteltrace.WithSpanKind(oteltrace.SpanKindServer)}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/healthz", "/readyz", "/metrics":
				next.ServeHTTP(w, r)
				return
			}
			ctx := r.Context()
			if hasTraceContext(r.Header) {
				ctx = trace.Extract(ctx, r.Header)
			}
			if off {
				// The no-op tracer's span would only carry the
				// client's context forward: ctx does.
				if ctx != r.Context() {
					r = r.WithContext(ctx)
				}
				next.ServeHTTP(w, r)
				return
			}
			name, route, key, value := routeOf(r)
			ctx, span := t.Start(ctx, name, opts...)
			if !span.IsRecording() {
				if span.SpanContext().IsValid() {
					// The client's context goes on to the invocation
					// and the replica.
					r = r.WithContext(ctx)
				}
				next.ServeHTTP(w, r)
				return
			}
			defer span.End()
			span.SetAttributes(regionAttr...)
			span.SetAttributes(
				attribute.String(attrMethod, r.Method),
				attribute.String(attrPath, r.URL.Path),
			)
			if route != "" {
				span.SetAttributes(attribute.String(attrRoute, route), attribute.String(key, value))
			}
			sw := &statusWriter{ResponseWriter: w}
			next.ServeHTTP(sw, r.WithContext(ctx))
			if sw.status != 0 {
				span.SetAttributes(attribute.Int(attrStatus, sw.status))
				if sw.status >= 500 {
					span.SetStatus(codes.Error, http.StatusText(sw.status))
				}
			}
		})
	}
}

// hasTraceContext reports whether h may hold a trace context that
// trace.Extract reads, without the allocation of a lookup by a
// non-canonical name.
func hasTraceContext(h http.Header) bool {
	return len(h["Traceparent"]) > 0 || len(h["X-Amzn-Trace-Id"]) > 0
}

// routeOf returns the span name of r's route kind and, for the routes
// of one function or service, the route's pattern and the attribute
// naming the workload.
func routeOf(r *http.Request) (name, route, key, value string) {
	p := r.URL.Path
	if rest, ok := strings.CutPrefix(p, "/fn/"); ok {
		fn, _, _ := strings.Cut(rest, "/")
		name, ok := fnSpans[r.Method]
		if !ok {
			name = fnSpanOther
		}
		return name, "/fn/{name}", trace.AttrFaaSName, fn
	}
	if rest, ok := strings.CutPrefix(p, "/svc/"); ok {
		svc, _, _ := strings.Cut(rest, "/")
		return spanService, "/svc/{name}", attrService, svc
	}
	if r.Method == http.MethodPost {
		if rest, ok := strings.CutPrefix(p, "/v1/functions/"); ok {
			if fn, ok := strings.CutSuffix(rest, "/invoke"); ok && fn != "" && !strings.Contains(fn, "/") {
				return spanInvoke, "/v1/functions/{name}/invoke", trace.AttrFaaSName, fn
			}
		}
	}
	return spanAPI, "", "", ""
}

// hostRouteSpan renames the span of a request that a host route takes
// (the Trace middleware named it after its path) and names its service.
func hostRouteSpan(r *http.Request, service string) {
	span := oteltrace.SpanFromContext(r.Context())
	if !span.IsRecording() {
		return
	}
	span.SetName(spanHostRoute)
	span.SetAttributes(attribute.String(attrRoute, spanHostRoute), attribute.String(attrService, service))
}

// functionHostSpan renames the span of a request that a function's host
// route takes and names its function.
func functionHostSpan(r *http.Request, fn string) {
	span := oteltrace.SpanFromContext(r.Context())
	if !span.IsRecording() {
		return
	}
	span.SetName(spanHostRoute)
	span.SetAttributes(attribute.String(attrRoute, spanHostRoute), attribute.String(trace.AttrFaaSName, fn))
}

// statusWriter keeps the status of the answer written through it: the
// first WriteHeader's of 200 or more, 200 at the first Write, 101 once
// the connection is hijacked (a protocol upgrade), else 0. Flushes and
// the rest of http.ResponseController reach the writer it wraps.
//
// With a policy (a path route's PathPolicy), each status it writes, 1xx
// included, goes without the headers that dropOriginState drops and
// with the policy, set again each time: the service proxy clears the
// header map after passing on an informational answer (103 Early Hints).
type statusWriter struct {
	http.ResponseWriter
	status int
	policy []string
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		if w.policy != nil {
			h := w.Header()
			dropOriginState(h)
			// Set only when missing: assigning a key, even one it has, can
			// grow a full small map (an allocation per answer).
			//lint:ignore SA1008 policyKey is not canonical on purpose (see policyKey).
			if len(h[policyKey]) == 0 {
				h[policyKey] = w.policy
			}
		}
		if code >= 200 {
			w.status = code
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		if w.policy != nil {
			w.WriteHeader(http.StatusOK)
		} else {
			w.status = http.StatusOK
		}
	}
	return w.ResponseWriter.Write(b)
}

// Hijack takes over the connection, as http.Hijacker, for a protocol
// upgrade.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return c, rw, err
}

// Unwrap gives http.ResponseController the writer w wraps.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
