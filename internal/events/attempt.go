package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	stratus "github.com/stratus-run/stratus"
)

// envelope is what an event's headers say.
type envelope struct {
	id         string
	enqueuedAt time.Time
	attempts   int
	notBefore  time.Time
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
	return e
}

// handle runs one delivery of an event and settles its message.
// release frees the event's concurrency slot; handle calls it as soon as
// the invocation has ended, so the next event runs while this one's
// status, record and acknowledgement are being stored. A done event is
// acknowledged by acks (in a batch), or here when acks is nil.
func (q *Queue) handle(ctx context.Context, fn string, msg *nats.Msg, release func(), acks *acker) {
	e := decode(msg)
	now := q.now()
	if wait := e.notBefore.Sub(now); wait > 0 {
		_ = msg.NakWithDelay(wait) // a retry whose backoff has not passed
		return
	}
	st := Status{RequestID: e.id, Function: fn, EnqueuedAt: e.enqueuedAt, Attempt: e.attempts}
	pol, ok := q.cfg.Policy(fn)
	if !ok {
		q.finish(fn, msg, e, st, nil, fmt.Errorf("function %q: %w", fn, stratus.ErrNotFound), acks)
		return
	}
	pol = pol.withDefaults()
	if now.Sub(e.enqueuedAt) > pol.MaxEventAge {
		q.finish(fn, msg, e, st, nil, ErrEventAgeExceeded, acks)
		return
	}

	st.Attempt = e.attempts + 1
	st.State, st.UpdatedAt = StateRunning, now
	q.report(st)
	invCtx, cancel := context.WithTimeout(ctx, pol.Timeout+q.cfg.InvokeSlack)
	stopBeats := q.heartbeat(msg)
	res, err := q.cfg.Invoker.Invoke(invCtx, fn, stratus.Request{RequestID: e.id, Event: msg.Data})
	stopBeats()
	cancel()
	release()
	if err == nil && res == nil {
		err = errors.New("invoker returned no response")
	}

	switch {
	case err == nil && res.ErrorType == "":
		q.finish(fn, msg, e, st, res, nil, acks)
	case err == nil:
		q.failed(fn, msg, e, st, pol, res, &FunctionError{Type: res.ErrorType, Message: errorMessage(res.Body)}, acks)
	case errors.Is(err, stratus.ErrCapacity), errors.Is(err, stratus.ErrUnavailable), ctx.Err() != nil:
		// Throttled, or stopping: not an attempt; the event waits.
		st.Attempt, st.State, st.UpdatedAt = e.attempts, StateQueued, q.now()
		q.report(st)
		if ctx.Err() != nil {
			q.handBack(fn, msg, e)
			return
		}
		_ = msg.NakWithDelay(jitter(q.cfg.ThrottleDelay, rand.Float64()))
	case errors.Is(err, stratus.ErrNotFound):
		st.Attempt = e.attempts
		q.finish(fn, msg, e, st, nil, fmt.Errorf("function %q: %w", fn, err), acks)
	default:
		q.failed(fn, msg, e, st, pol, nil, fmt.Errorf("invoke %s: %w", fn, err), acks)
	}
}

// failed settles an attempt that failed: retry later, or done.
func (q *Queue) failed(fn string, msg *nats.Msg, e envelope, st Status, pol AsyncPolicy, res *stratus.Response, ferr error, acks *acker) {
	attempt := st.Attempt
	if attempt > pol.MaxRetries {
		q.finish(fn, msg, e, st, res, ferr, acks)
		return
	}
	now := q.now()
	delay := retryDelay(q.cfg.RetryBase, q.cfg.RetryMax, attempt, rand.Float64())
	next := now.Add(delay)
	if next.Sub(e.enqueuedAt) > pol.MaxEventAge {
		q.finish(fn, msg, e, st, res, fmt.Errorf("%w after %w", ErrEventAgeExceeded, ferr), acks)
		return
	}
	st.State, st.UpdatedAt = StateRetrying, now
	st.ErrorType, st.ErrorMessage = errorFields(ferr)
	q.report(st)

	e.attempts, e.notBefore = attempt, next
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	stored := q.beforeAck(ctx, fn, msg, e.id)
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

// finish reports the final state, calls OnDone and acknowledges the
// event: by acks after its batch's BeforeAck, or, when acks is nil, here
// after a BeforeAck of its own.
func (q *Queue) finish(fn string, msg *nats.Msg, e envelope, st Status, res *stratus.Response, err error, acks *acker) {
	st.State, st.UpdatedAt = StateSucceeded, q.now()
	if err != nil {
		st.State = StateFailed
		st.ErrorType, st.ErrorMessage = errorFields(err)
	}
	q.report(st)
	if q.cfg.OnDone != nil {
		q.cfg.OnDone(fn, e.id, msg.Data, res, st.Attempt, err)
	}
	if acks != nil {
		acks.add(msg, e.id)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
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
