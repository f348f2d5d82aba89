// Package trace carries W3C trace context through Stratus and exports
// spans over OTLP when the server is given an endpoint.
//
// Who calls what:
//
//   - internal/server builds one Provider with New from the server's
//     --otlp-endpoint, region and version, hands each component
//     Provider.Tracer("gateway"), Tracer("pool"), … in its Config, and calls
//     Provider.Shutdown last, after the components have stopped, so that the
//     spans they ended are flushed.
//   - The gateway calls Extract at the edge (traceparent and tracestate, else
//     Lambda's X-Amzn-Trace-Id) and starts the server span of the request
//     from the context it returns; a service's request carries that span on
//     in traceparent (Inject).
//   - A function pool starts the queue-wait span (waiting for an instance),
//     the cold-start span (starting one) and the invocation span; the
//     Runtime API hands the invocation span to the function as
//     Lambda-Runtime-Trace-Id (LambdaHeader), so the function's own
//     tracer sees a span of Stratus as its parent, in the caller's trace.
//   - The event system carries the context of an asynchronous invocation,
//     a topic delivery or a schedule in the NATS message's headers (Inject
//     and Extract with the message's header, an http.Header), so the
//     invocation that handles it joins the trace of the request that
//     queued it.
//
// Components take an OpenTelemetry trace.Tracer in their Config (nil: a
// no-op one, see Or) and use only the OpenTelemetry API; this package is
// the one place that knows the SDK and the exporters.
//
// Nothing is sent anywhere without an endpoint: New(ctx, Config{}) gives
// tracers that record nothing and only hand out fresh span IDs in the
// caller's trace (so the IDs passed on stay meaningful), for about a fifth
// of what the SDK spends on a span that no processor reads (BenchmarkSpan). With an endpoint, spans are sampled parent-based
// (a caller's traceparent with the sampled flag clear is honoured, a new
// trace is sampled), batched for up to a second and exported over OTLP/HTTP
// or OTLP/gRPC; an export error is logged and never reaches the code that
// ended the span.
package trace

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/propagation"
	oteltrace "go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Attribute keys of the OpenTelemetry FaaS semantic conventions.
const (
	AttrInvocationID = "faas.invocation_id"
	AttrColdStart    = "faas.coldstart"
	AttrTrigger      = "faas.trigger"
	AttrFaaSName     = "faas.name"
	AttrFaaSVersion  = "faas.version"
	AttrCloudRegion  = "cloud.region"
)

var w3c = propagation.TraceContext{}

// Or returns t, or a no-op tracer when t is nil.
func Or(t oteltrace.Tracer) oteltrace.Tracer {
	if t == nil {
		return noop.NewTracerProvider().Tracer("")
	}
	return t
}

// Extract returns ctx with the remote span context of h: W3C traceparent
// and tracestate, else Lambda's X-Amzn-Trace-Id.
func Extract(ctx context.Context, h http.Header) context.Context {
	ctx = w3c.Extract(ctx, propagation.HeaderCarrier(h))
	if oteltrace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	if sc, ok := FromLambdaHeader(h.Get("X-Amzn-Trace-Id")); ok {
		return oteltrace.ContextWithRemoteSpanContext(ctx, sc)
	}
	return ctx
}

// Inject sets traceparent (and tracestate) in h from ctx's span.
func Inject(ctx context.Context, h http.Header) {
	w3c.Inject(ctx, propagation.HeaderCarrier(h))
}
