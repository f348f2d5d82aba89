package events

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	oteltrace "go.opentelemetry.io/otel/trace"

	stratus "github.com/stratus-run/stratus"
)

// Attribute keys of Stratus's spans beyond the FaaS conventions
// (trace.Attr*): OpenTelemetry's messaging conventions and our own.
const (
	attrMessagingSystem      = "messaging.system"
	attrMessagingDestination = "messaging.destination.name"
	attrMessagingOperation   = "messaging.operation.type"
	attrAttempt              = "stratus.attempt"
	attrTrigger              = "stratus.trigger"
)

// producerSpan starts a producer span (the messaging conventions') for a
// send to subject, only within a trace: a send nobody traces costs
// nothing more. It returns nil and ctx when ctx holds no span.
func producerSpan(ctx context.Context, t oteltrace.Tracer, name, subject string, attrs ...attribute.KeyValue) (oteltrace.Span, context.Context) {
	if !oteltrace.SpanContextFromContext(ctx).IsValid() {
		return nil, ctx
	}
	ctx, span := t.Start(ctx, name,
		oteltrace.WithSpanKind(oteltrace.SpanKindProducer),
		oteltrace.WithAttributes(append([]attribute.KeyValue{
			attribute.String(attrMessagingSystem, "nats"),
			attribute.String(attrMessagingDestination, subject),
			attribute.String(attrMessagingOperation, "send"),
		}, attrs...)...))
	return span, ctx
}

// endSpan ends span, marking it failed when err is not nil.
func endSpan(span oteltrace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// jsErrCodeStoreFailed is nats-server's JSStreamStoreFailedF, which a
// full stream with discard-new answers ("maximum bytes exceeded").
const jsErrCodeStoreFailed jetstream.ErrorCode = 10077

// JetStream's answers when its store is over its limits (the embedded
// server's is sized from the data volume).
const (
	jsErrCodeAccountResources      jetstream.ErrorCode = 10002
	jsErrCodeInsufficientResources jetstream.ErrorCode = 10023
)

// publish stores msg in the async stream and returns once JetStream has
// acknowledged it. It publishes asynchronously and waits for this
// message's own acknowledgement (Bus.await: bounded): as durable as a
// synchronous publish, and concurrent callers share the connection's
// pipeline.
func (q *Queue) publish(ctx context.Context, msg *nats.Msg, id string, dedupe bool) error {
	opts := []jetstream.PublishOpt{jetstream.WithExpectStream(AsyncStream)}
	if dedupe {
		opts = append(opts, jetstream.WithMsgID(id))
	}
	paf, err := q.bus.js.PublishMsgAsync(msg, opts...)
	if err != nil {
		return q.bus.publishErr(err)
	}
	_, err = q.bus.await(ctx, paf)
	return err
}

// publishErr adds the error kind to a failed publish or JetStream request.
func publishErr(err error) error {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, stratus.ErrNoSpace), errors.Is(err, stratus.ErrUnavailable):
		return err // kind known
	case errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrCodeStoreFailed && strings.Contains(apiErr.Description, "maximum"):
		return fmt.Errorf("async stream full: %w: %w", err, stratus.ErrCapacity)
	case errors.As(err, &apiErr) && (apiErr.ErrorCode == jsErrCodeAccountResources || apiErr.ErrorCode == jsErrCodeInsufficientResources):
		return fmt.Errorf("JetStream store full: %w: %w", err, stratus.ErrNoSpace)
	case errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum:
		return fmt.Errorf("%w: %w", err, stratus.ErrTooLarge)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrTimeout), errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, jetstream.ErrAsyncPublishTimeout), errors.Is(err, jetstream.ErrTooManyStalledMsgs),
		errors.Is(err, jetstream.ErrJetStreamNotEnabled):
		return fmt.Errorf("%w: %w", err, stratus.ErrUnavailable)
	}
	return err
}
