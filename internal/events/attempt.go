package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	oteltrace "go.opentelemetry.io/otel/trace"

	stratus "github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/trace"
)

// envelope is what an event's headers say.
type envelope struct {
	id         string
	enqueuedAt time.Time
	attempts   int
	notBefore  time.Time
	trigger    string // stratus.TriggerAsync, TriggerTopic or TriggerSchedule
}

func decode(msg *nats.Msg) envelope {
	var e envelope
	h := msg.Header
	md, mdErr := msg.Metadata()
	e.id = h.Get(hdrRequestID)
	if e.id == "" {
		e.id = h.Get(nats.MsgIdHdr)
	}
	if e.id == "" && mdErr == nil {
		// A plain publish without an ID: derive a stable one.
		e.id = uuid.NewSHA1(uuid.NameSpaceURL, fmt.Appendf(nil, "nats:%s/%d", md.Stream, md.Sequence.Stream)).String()
	}
	if t, err := time.Parse(time.RFC3339Nano, h.Get(hdrEnqueuedAt)); err == nil {
		e.enqueuedAt = t
	} else if mdErr == nil {
		e.enqueuedAt = md.Timestamp
	}
	if n, err := strconv.Atoi(h.Get(hdrAttempts)); err == nil && n > 0 {
		e.attempts = n
	}
	if t, err := time.Parse(time.RFC3339Nano, h.Get(hdrNotBefore)); err == nil {
		e.notBefore = t
	}
	// Events stored before triggers were kept, and those of plain NATS
	// clients, are async invocations.
	e.trigger = stratus.TriggerAsync
	if t := h.Get(hdrTrigger); asyncTrigger(t) {
		e.trigger = t
	}
	return e
}

// traceHeaders returns the trace context headers of h, whatever the case
// of their names (a plain NATS client's "traceparent"), with the names
// trace.Extract reads.
func traceHeaders(h nats.Header) http.Header {
	out := make(http.Header, 2)
	for k, v := range h {
		switch ck := http.CanonicalHeaderKey(k); ck {
		case hdrTraceparent, hdrTracestate, hdrAmznTrace:
			out[ck] = v
		}
	}
	return out
}

// faasTrigger is the faas.trigger attribute of an async invocation's
// trigger: OpenTelemetry's "timer" for a schedule, "pubsub" for the rest.
func faasTrigger(trigger string) string {
	if trigger == stratus.TriggerSchedule {
		return "timer"
	}
	return "pubsub"
}

// handle runs one delivery of an event and settles its message.
// release frees the event's concurrency slot; handle calls it as soon as
// the invocation has ended, so the next event runs while this one's
// status, record and acknowledgement are being stored. A done event is
// acknowledged by acks (in a batch), or here when acks is nil.
func (q *Queue) handle(ctx context.Context, fn string, msg *nats.Msg, release func(), acks *acker) {
	e := decode(msg)
	now := q.now()
	q.stats.track(fn, e.id, e.enqueuedAt, now, q.liveFor(fn))
	if wait := e.notBefore.Sub(now); wait > 0 {
		_ = msg.NakWithDelay(wait) // a retry whose backoff has not passed
		return
	}
	// The producer's trace context: an attempt's span is its child, and
	// so is a destination's enqueue when no attempt runs.
	ctx = trace.Extract(ctx, traceHeaders(msg.Header))
	st := Status{RequestID: e.id, Function: fn, EnqueuedAt: e.enqueuedAt, Attempt: e.attempts}
	pol, ok := q.cfg.Policy(fn)
	if !ok {
		if now.Sub(e.enqueuedAt) <= DefaultMaxEventAge && q.existsElsewhere(ctx, fn) {
			// Deployed through another server, not known here yet.
			_ = msg.NakWithDelay(jitter(q.cfg.ThrottleDelay, rand.Float64()))
			return
		}
		q.finish(ctx, fn, msg, e, st, nil, fmt.Errorf("function %q: %w", fn, stratus.ErrNotFound), acks)
		return
	}
	pol = pol.withDefaults()
	if now.Sub(e.enqueuedAt) > pol.MaxEventAge {
		q.finish(ctx, fn, msg, e, st, nil, ErrEventAgeExceeded, acks)
		return
	}

	st.Attempt = e.attempts + 1
	ctx, span := q.cfg.Tracer.Start(ctx, "async "+fn,
		oteltrace.WithSpanKind(oteltrace.SpanKindConsumer),
		oteltrace.WithAttributes(
			attribute.String(trace.AttrTrigger, faasTrigger(e.trigger)),
			attribute.String(trace.AttrInvocationID, e.id),
			attribute.String(trace.AttrFaaSName, fn),
			attribute.Int(attrAttempt, st.Attempt),
			attribute.String(attrTrigger, e.trigger),
			attribute.String(attrMessagingSystem, "nats"),
			attribute.String(attrMessagingDestination, msg.Subject),
			attribute.String(attrMessagingOperation, "process"),
		))
	defer span.End()
	st.State, st.UpdatedAt = StateRunning, now
	q.report(st)
	invCtx, cancel := context.WithTimeout(ctx, pol.Timeout+q.cfg.InvokeSlack)
	stopBeats := q.heartbeat(msg)
	res, err := q.cfg.Invoker.Invoke(invCtx, fn, stratus.Request{RequestID: e.id, Event: msg.Data, Trigger: e.trigger})
	stopBeats()
	cancel()
	release()
	if err == nil && res == nil {
		err = errors.New("invoker returned no response")
	}
	// A throttled or cancelled invocation, or one of a removed function,
	// was no attempt.
	notRun := err != nil && (errors.Is(err, stratus.ErrCapacity) || errors.Is(err, stratus.ErrUnavailable) ||
		errors.Is(err, stratus.ErrNotFound) || ctx.Err() != nil)
	if !notRun && st.Attempt > 1 {
		q.stats.retried(fn)
	}

	switch {
	case err == nil && res.ErrorType == "":
		q.finish(ctx, fn, msg, e, st, res, nil, acks)
	case err == nil:
		span.SetStatus(codes.Error, res.ErrorType)
		q.failed(ctx, fn, msg, e, st, pol, res, &FunctionError{Type: res.ErrorType, Message: errorMessage(res.Body)}, acks)
	case errors.Is(err, stratus.ErrCapacity), errors.Is(err, stratus.ErrUnavailable), ctx.Err() != nil:
		// Throttled, or stopping: not an attempt; the event waits.
		span.AddEvent("handed back", oteltrace.WithAttributes(attribute.String("error", err.Error())))
		st.Attempt, st.State, st.UpdatedAt = e.attempts, StateQueued, q.now()
		q.report(st)
		if ctx.Err() != nil {
			q.handBack(fn, msg, e)
			return
		}
		_ = msg.NakWithDelay(jitter(q.cfg.ThrottleDelay, rand.Float64()))
	case errors.Is(err, stratus.ErrNotFound):
		span.SetStatus(codes.Error, err.Error())
		st.Attempt = e.attempts
		q.finish(ctx, fn, msg, e, st, nil, fmt.Errorf("function %q: %w", fn, err), acks)
	default:
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		q.failed(ctx, fn, msg, e, st, pol, nil, fmt.Errorf("invoke %s: %w", fn, err), acks)
	}
}

// existsElsewhere reports whether fn, unknown to Policy, may exist in the
// shared store (QueueConfig.Exists says so, or cannot answer).
func (q *Queue) existsElsewhere(ctx context.Context, fn string) bool {
	if q.cfg.Exists == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	ok, err := q.cfg.Exists(ctx, fn)
	if err != nil {
		q.log.Warn("look up a function this server does not know; its events wait", "fn", fn, "err", err)
		return true
	}
	return ok
}

// failed settles an attempt that failed: retry later, or done.
func (q *Queue) failed(ctx context.Context, fn string, msg *nats.Msg, e envelope, st Status, pol AsyncPolicy, res *stratus.Response, ferr error, acks *acker) {
	attempt := st.Attempt
	if attempt > pol.MaxRetries {
		q.finish(ctx, fn, msg, e, st, res, ferr, acks)
		return
	}
	now := q.now()
	delay := retryDelay(q.cfg.RetryBase, q.cfg.RetryMax, attempt, rand.Float64())
	next := now.Add(delay)
	if next.Sub(e.enqueuedAt) > pol.MaxEventAge {
		q.finish(ctx, fn, msg, e, st, res, fmt.Errorf("%w after %w", ErrEventAgeExceeded, ferr), acks)
		return
	}
	st.State, st.UpdatedAt = StateRetrying, now
	st.ErrorType, st.ErrorMessage = errorFields(ferr)
	q.report(st)

	e.attempts, e.notBefore = attempt, next
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	stored := q.beforeAck(bctx, fn, msg, e.id)
	cancel()
	if !stored {
		return
	}
	if err := q.replace(msg, e); err != nil {
		// Retry the stored message instead; its attempt count stays behind.
		q.log.Warn("store async retry", "fn", fn, "req_id", e.id, "err", err)
		_ = msg.NakWithDelay(delay)
	}
}

// handBack returns an event that was not run, or whose invocation was
// cancelled, to the queue without counting an attempt. It stores a copy
// rather than asking for a redelivery: JetStream keeps a consumer's
// redelivery requests in memory only, so after a restart a nak'd message
// would wait for AckWait, a copy is delivered at once.
func (q *Queue) handBack(fn string, msg *nats.Msg, e envelope) {
	e.notBefore = time.Time{}
	if err := q.replace(msg, e); err != nil {
		q.log.Warn("hand back async event; it comes back after the ack wait", "fn", fn, "req_id", e.id, "err", err)
		_ = msg.Nak()
	}
}

// replace stores msg's event again with the headers of e, then acknowledges
// msg. The copy's Nats-Msg-Id names the request and msg's stream sequence,
// so replacing the same message twice (an ack lost, a redelivery) stores
// one copy within the stream's duplicate window.
func (q *Queue) replace(msg *nats.Msg, e envelope) error {
	md, err := msg.Metadata()
	if err != nil {
		return fmt.Errorf("replace async event: %w", err)
	}
	next := nats.NewMsg(msg.Subject)
	next.Data = msg.Data
	next.Header.Set(hdrRequestID, e.id)
	next.Header.Set(hdrEnqueuedAt, e.enqueuedAt.UTC().Format(time.RFC3339Nano))
	if e.attempts > 0 {
		next.Header.Set(hdrAttempts, strconv.Itoa(e.attempts))
	}
	if !e.notBefore.IsZero() {
		next.Header.Set(hdrNotBefore, e.notBefore.UTC().Format(time.RFC3339Nano))
	}
	// What made the event and its producer's trace context stay with it.
	next.Header.Set(hdrTrigger, e.trigger)
	maps.Copy(next.Header, traceHeaders(msg.Header))
	if err := q.bus.Health(); err != nil {
		return fmt.Errorf("replace async event: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	msgID := e.id + "/" + strconv.FormatUint(md.Sequence.Stream, 10)
	paf, err := q.bus.js.PublishMsgAsync(next, jetstream.WithMsgID(msgID))
	if err == nil {
		_, err = q.bus.await(ctx, paf)
	}
	if err != nil {
		return fmt.Errorf("replace async event: %w", q.bus.publishErr(err))
	}
	if err := msg.AckSync(nats.Context(ctx)); err != nil {
		q.log.Warn("ack replaced async event; it may run once more", "req_id", e.id, "err", err)
	}
	return nil
}

// finish reports the final state, calls OnDone (with ctx, which carries
// the attempt's span) and acknowledges the event: by acks after its
// batch's BeforeAck, or, when acks is nil, here after a BeforeAck of its
// own.
func (q *Queue) finish(ctx context.Context, fn string, msg *nats.Msg, e envelope, st Status, res *stratus.Response, err error, acks *acker) {
	st.State, st.UpdatedAt = StateSucceeded, q.now()
	if err != nil {
		st.State = StateFailed
		st.ErrorType, st.ErrorMessage = errorFields(err)
	}
	q.report(st)
	var routing Routing
	if q.cfg.OnDone != nil {
		routing = q.cfg.OnDone(ctx, fn, e.id, msg.Data, res, st.Attempt, err)
		q.reportRouting(st, routing)
	}
	q.stats.done(fn, e.id, err != nil, routing)
	if acks != nil {
		acks.add(msg, e.id)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	if !q.beforeAck(ctx, fn, msg, e.id) {
		return
	}
	if err := msg.AckSync(nats.Context(ctx)); err != nil {
		q.log.Warn("ack async event; it will be delivered again", "fn", fn, "req_id", e.id, "err", err)
	}
}

// beforeAck stores what the attempt left (BeforeAck) and reports whether
// it was stored. If not, the event is not acknowledged: it is delivered
// again after about twice ThrottleDelay and its attempt runs again, so
// that a failing store loses no trace (at least once, as always).
func (q *Queue) beforeAck(ctx context.Context, fn string, msg *nats.Msg, id string) bool {
	if q.cfg.BeforeAck == nil {
		return true
	}
	if err := q.cfg.BeforeAck(ctx); err != nil {
		q.log.Error("store the trace of an async attempt; not acknowledging its event, it runs again",
			"fn", fn, "req_id", id, "err", err)
		_ = msg.NakWithDelay(jitter(2*q.cfg.ThrottleDelay, rand.Float64()))
		return false
	}
	return true
}

// heartbeat keeps msg's ack deadline moving until the returned stop is
// called; stop waits for its goroutine.
func (q *Queue) heartbeat(msg *nats.Msg) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	every := q.cfg.AckWait / 3
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				_ = msg.InProgress()
			case <-done:
				return
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func (q *Queue) report(st Status) {
	if q.cfg.Sink != nil {
		q.cfg.Sink.AsyncStatus(st)
	}
}

// retryDelay is the wait after failed attempt n (1-based): base·2^(n-1)
// capped at limit, its upper half scaled by r in [0, 1).
func retryDelay(base, limit time.Duration, n int, r float64) time.Duration {
	d := base
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return jitter(min(d, limit), r)
}

// jitter returns d/2 plus r·d/2.
func jitter(d time.Duration, r float64) time.Duration {
	return d/2 + time.Duration(r*float64(d/2))
}

// errorFields gives the status's error type and message for a final or
// retried error.
func errorFields(err error) (typ, msg string) {
	var fe *FunctionError
	switch {
	case errors.Is(err, ErrEventAgeExceeded):
		return "EventAgeExceeded", err.Error()
	case errors.As(err, &fe):
		return fe.Type, fe.Message
	case errors.Is(err, stratus.ErrNotFound):
		return "ResourceNotFoundException", err.Error()
	}
	return "ServiceException", err.Error()
}

// errorMessage extracts errorMessage from Lambda's error object, or the
// start of the body.
func errorMessage(body []byte) string {
	var obj struct {
		ErrorMessage string `json:"errorMessage"`
	}
	if json.Unmarshal(body, &obj) == nil && obj.ErrorMessage != "" {
		return obj.ErrorMessage
	}
	const limit = 256
	if len(body) > limit {
		return string(body[:limit]) + "…"
	}
	return string(body)
}
