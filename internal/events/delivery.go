package events

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	mathrand "math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	stratus "github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/events/cloudevent"
	"github.com/stratus-run/stratus/internal/trace"
)

// runner is one running subscription, owned by Run.
type runner struct {
	cancel  context.CancelFunc
	removed atomic.Bool // stopped because the subscription was deleted
}

// Run delivers the events of every subscription until ctx ends: the
// stored ones at start and those added later, until they are deleted. It
// returns once every goroutine it started has ended, after in-flight
// deliveries have finished (each bounded by URLTimeout or one enqueue). It
// returns an error only if the stream or the stored subscriptions cannot
// be read at start. Only one Run may be active per Topics.
func (t *Topics) Run(ctx context.Context) error {
	t.mu.Lock()
	if t.running {
		t.mu.Unlock()
		return fmt.Errorf("run topics: already running: %w", stratus.ErrConflict)
	}
	t.running = true
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		t.running = false
		t.mu.Unlock()
	}()
	s, err := t.getStream(ctx)
	if err != nil {
		return fmt.Errorf("run topics: %w", err)
	}
	if err := t.loadSubscriptions(ctx); err != nil {
		return fmt.Errorf("run topics: %w", err)
	}
	t.removeOrphans(ctx, s)

	var wg sync.WaitGroup
	runners := make(map[string]*runner)
	reconcile := func() {
		t.mu.Lock()
		want := maps.Clone(t.subs)
		t.mu.Unlock()
		for id, r := range runners {
			if _, ok := want[id]; !ok {
				r.removed.Store(true)
				r.cancel()
				delete(runners, id)
			}
		}
		for id, sub := range want {
			if runners[id] != nil {
				continue
			}
			rctx, cancel := context.WithCancel(ctx)
			r := &runner{cancel: cancel}
			runners[id] = r
			wg.Go(func() { t.runSubscription(rctx, sub, r) })
		}
	}
	reconcile()
	tick := time.NewTicker(t.cfg.ReloadInterval)
	defer tick.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-t.kick:
			reconcile()
		case <-t.reload:
			t.reloadSubscriptions(ctx)
			reconcile()
		case <-tick.C:
			t.reloadSubscriptions(ctx)
			reconcile()
		}
	}
	for _, r := range runners {
		r.cancel()
	}
	wg.Wait()
	return nil
}

// loadSubscriptions makes the set of subscriptions Run follows the stored
// one.
func (t *Topics) loadSubscriptions(ctx context.Context) error {
	t.changeMu.Lock()
	defer t.changeMu.Unlock()
	stored, err := t.st.ListSubscriptions(ctx, "")
	if err != nil {
		return err
	}
	subs := make(map[string]stratus.Subscription, len(stored))
	for _, sub := range stored {
		subs[sub.ID] = sub
	}
	t.mu.Lock()
	t.subs = subs
	t.mu.Unlock()
	return nil
}

// reloadSubscriptions is loadSubscriptions while Run runs: a store that
// does not answer leaves the set as it is, until the next reload.
func (t *Topics) reloadSubscriptions(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if err := t.loadSubscriptions(rctx); err != nil && ctx.Err() == nil {
		t.log.Warn("read subscriptions; keeping the ones known", "err", err)
	}
}

// removeOrphans deletes consumers of subscriptions that are no longer
// stored (deleted while their consumer could not be).
func (t *Topics) removeOrphans(ctx context.Context, s jetstream.Stream) {
	t.mu.Lock()
	known := maps.Clone(t.subs)
	t.mu.Unlock()
	done := t.bus.api()
	names := s.ConsumerNames(ctx)
	var orphans []string
	for name := range names.Name() {
		if _, ok := known[name]; !ok && strings.HasPrefix(name, subscriptionPrefix) {
			orphans = append(orphans, name)
		}
	}
	done()
	if err := names.Err(); err != nil && ctx.Err() == nil {
		t.log.Warn("list subscription consumers", "err", err)
	}
	for _, id := range orphans {
		t.log.Info("removing the consumer of a deleted subscription", "subscription", id)
		t.deleteConsumer(id)
	}
}

// runSubscription delivers sub's events until ctx ends; if it ends
// because sub was deleted, it deletes sub's consumer.
func (t *Topics) runSubscription(ctx context.Context, sub stratus.Subscription, r *runner) {
	defer func() {
		if r.removed.Load() {
			t.deleteConsumer(sub.ID)
		}
	}()
	log := t.log.With("topic", sub.Topic, "subscription", sub.ID)
	filter, err := cloudevent.ParseFilter(sub.Filter)
	if err != nil {
		log.Error("stored subscription has a bad filter; it receives nothing", "err", err)
		return
	}
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		if t.bus.Health() != nil {
			// JetStream would not answer, or is about to be re-enabled.
			select {
			case <-time.After(500 * time.Millisecond):
			case <-ctx.Done():
			}
			continue
		}
		// A JetStream re-enabled after a write error has lost the
		// consumer's pull requests: consume again.
		cctx, cancel := context.WithCancel(ctx)
		restarted := t.bus.Restarted()
		var watch sync.WaitGroup
		watch.Go(func() {
			select {
			case <-restarted:
				cancel()
			case <-cctx.Done():
			}
		})
		err := t.consume(cctx, sub, filter, log)
		again := cctx.Err() != nil && ctx.Err() == nil
		cancel()
		watch.Wait()
		if ctx.Err() != nil {
			return
		}
		if again {
			wait = 100 * time.Millisecond
			continue
		}
		t.mu.Lock()
		_, wanted := t.subs[sub.ID]
		t.mu.Unlock()
		if wanted && !t.stored(ctx, sub) {
			// Deleted through another server, which deleted its
			// consumer: making it again would deliver the topic's
			// events again from the subscription's start.
			wanted = false
			t.Reload()
		}
		if !wanted { // deleted: its consumer went first
			r.removed.Store(true)
			return
		}
		log.Warn("subscription interrupted; resuming", "err", err)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// stored reports whether sub is still in the store; true when the store
// does not answer.
func (t *Topics) stored(ctx context.Context, sub stratus.Subscription) bool {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	subs, err := t.st.ListSubscriptions(ctx, sub.Topic)
	if errors.Is(err, stratus.ErrNotFound) {
		return false // its topic is gone
	} else if err != nil {
		return true
	}
	return slices.ContainsFunc(subs, func(s stratus.Subscription) bool { return s.ID == sub.ID })
}

// consumer creates (or finds) sub's durable consumer: it starts at the
// subscription's creation time and filters on its topic's subject.
func (t *Topics) consumer(ctx context.Context, sub stratus.Subscription) (jetstream.Consumer, error) {
	s, err := t.getStream(ctx)
	if err != nil {
		return nil, err
	}
	start := sub.CreatedAt
	done := t.bus.api()
	defer done()
	cfg := jetstream.ConsumerConfig{
		Durable:       sub.ID,
		Description:   "Stratus subscription to topic " + sub.Topic,
		FilterSubject: TopicSubject(sub.Topic),
		DeliverPolicy: jetstream.DeliverByStartTimePolicy,
		OptStartTime:  &start,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       t.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: max(subscriptionMaxAckPending, 2*sub.Batch),
	}
	c, err := upsert(ctx, t.bus, func(ctx context.Context) (jetstream.Consumer, error) {
		return s.CreateOrUpdateConsumer(ctx, cfg)
	})
	if err != nil {
		if c, gerr := s.Consumer(ctx, sub.ID); gerr == nil {
			return c, nil
		}
		return nil, fmt.Errorf("create consumer %s: %w", sub.ID, t.bus.publishErr(err))
	}
	return c, nil
}

// subscriptionPullExpiry bounds one pull request of a subscription. A
// request stays with JetStream until it expires, even once its server
// stopped (in a NATS cluster, events still go to it, and come back only
// after AckWait): a short one hands a stopped server's share of a
// subscription to the others sooner.
const subscriptionPullExpiry = 5 * time.Second

// consume runs one message iterator of sub until ctx ends (nil) or the
// iterator fails.
func (t *Topics) consume(ctx context.Context, sub stratus.Subscription, filter cloudevent.Filter, log *slog.Logger) error {
	c, err := t.consumer(ctx, sub)
	if err != nil {
		return err
	}
	buffer := 2 * t.cfg.URLConcurrency
	if sub.Function != "" {
		buffer = max(2*sub.Batch, 32)
	}
	it, err := c.Messages(jetstream.PullMaxMessages(buffer), jetstream.PullExpiry(subscriptionPullExpiry))
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	defer it.Stop()
	if sub.Function != "" {
		return t.consumeForFunction(ctx, sub, filter, it, log)
	}
	return t.consumeForURL(ctx, sub, filter, it, log)
}

// next returns the next message of it, waiting until ctx ends; missing
// heartbeats are not errors.
func next(ctx context.Context, it jetstream.MessagesContext) (jetstream.Msg, error) {
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if errors.Is(err, jetstream.ErrNoHeartbeat) && ctx.Err() == nil {
			continue
		}
		return msg, err
	}
}

// accept parses msg and applies filter; a message that is not for the
// subscriber is settled here and accept returns false.
func (t *Topics) accept(sub stratus.Subscription, filter cloudevent.Filter, msg jetstream.Msg, log *slog.Logger) (cloudevent.Event, bool) {
	e, err := cloudevent.FromJSON(msg.Data(), int64(t.cfg.MaxEventSize))
	if err != nil {
		t.invalid.Add(1)
		log.Warn("dropping a message that is not a valid CloudEvent", "err", err)
		_ = msg.Term()
		return cloudevent.Event{}, false
	}
	if !filter.Matches(e) {
		_ = msg.Ack()
		return cloudevent.Event{}, false
	}
	return e, true
}

// pending is a batch of events collected for one invocation.
type pending struct {
	msgs     []jetstream.Msg
	events   [][]byte // structured-mode JSON
	size     int      // bytes of the JSON list of events
	deadline time.Time
}

func (p *pending) reset() { p.msgs, p.events, p.size = p.msgs[:0], p.events[:0], 0 }

// consumeForFunction enqueues an async invocation of sub.Function per
// matching event, or per batch of up to sub.Batch events collected within
// BatchWait, and acknowledges the events once Enqueue succeeded.
func (t *Topics) consumeForFunction(ctx context.Context, sub stratus.Subscription, filter cloudevent.Filter, it jetstream.MessagesContext, log *slog.Logger) error {
	limit := t.cfg.MaxEventSize
	var p pending
	flush := func() {
		if len(p.msgs) == 0 {
			return
		}
		body := make([]byte, 0, p.size)
		body = append(body, '[')
		for i, e := range p.events {
			if i > 0 {
				body = append(body, ',')
			}
			body = append(body, e...)
		}
		body = append(body, ']')
		t.enqueue(sub, p.msgs, body, log)
		p.reset()
	}
	defer flush() // events collected when ctx ended
	for {
		nctx, cancel := ctx, context.CancelFunc(func() {})
		if len(p.msgs) > 0 {
			nctx, cancel = context.WithDeadline(ctx, p.deadline)
		}
		msg, err := next(nctx, it)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if len(p.msgs) > 0 && errors.Is(err, context.DeadlineExceeded) {
				flush()
				continue
			}
			return err
		}
		e, ok := t.accept(sub, filter, msg, log)
		if !ok {
			continue
		}
		b, err := e.JSON()
		if err != nil { // FromJSON validated it; this does not happen
			t.dropped.Add(1)
			log.Warn("dropping an event that does not render", "err", err)
			_ = msg.Term()
			continue
		}
		if sub.Batch <= 1 {
			t.enqueue(sub, []jetstream.Msg{msg}, b, log)
			continue
		}
		if len(p.msgs) > 0 && p.size+1+len(b) > limit {
			flush() // the list would be too large for one async event
		}
		if len(p.msgs) == 0 {
			p.size = 2
			p.deadline = time.Now().Add(t.cfg.BatchWait)
		} else {
			p.size++
		}
		p.msgs = append(p.msgs, msg)
		p.events = append(p.events, b)
		p.size += len(b)
		if len(p.msgs) >= sub.Batch {
			flush()
		}
	}
}

// subscriptionNS is the UUID namespace of request IDs made for topic
// events delivered to functions.
var subscriptionNS = uuid.MustParse("6f0b3c1e-3c61-4c1e-9a55-2b7f4f6f7a10")

// enqueue starts the async invocation of sub.Function with event
// (stratus.TriggerTopic, in the trace of the first event's publisher) and
// settles msgs: acknowledged once the event is stored, dropped when it can
// never be (function gone, event too large), else delivered again after a
// backoff.
func (t *Topics) enqueue(sub stratus.Subscription, msgs []jetstream.Msg, event []byte, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	ctx = trace.Extract(ctx, traceHeaders(msgs[0].Headers()))
	// The request ID follows from the subscription and the first event's
	// place in the stream, so a redelivery of the same events (an ack lost
	// in a crash) is stored once.
	key := sub.ID
	if md, merr := msgs[0].Metadata(); merr == nil {
		key += "/" + strconv.FormatUint(md.Sequence.Stream, 10) + "/" + strconv.Itoa(len(msgs))
	} else {
		key += "/" + uuid.NewString()
	}
	_, err := t.q.EnqueueWith(ctx, sub.Function, event, EnqueueOptions{
		ID: uuid.NewSHA1(subscriptionNS, []byte(key)).String(), Trigger: stratus.TriggerTopic,
	})
	switch {
	case err == nil:
		for _, m := range msgs {
			_ = m.Ack()
		}
		t.delivered.Add(int64(len(msgs)))
	case errors.Is(err, stratus.ErrNotFound), errors.Is(err, stratus.ErrTooLarge), errors.Is(err, stratus.ErrInvalid):
		t.dropped.Add(int64(len(msgs)))
		log.Warn("dropping events for a function subscriber", "fn", sub.Function, "events", len(msgs), "err", err)
		for _, m := range msgs {
			_ = m.Term()
		}
	default:
		log.Warn("enqueue events for a function subscriber; trying again later", "fn", sub.Function, "events", len(msgs), "err", err)
		for _, m := range msgs {
			_ = m.NakWithDelay(t.retryDelay(m))
		}
	}
}

// retryDelay is the wait before msg is delivered again.
func (t *Topics) retryDelay(msg jetstream.Msg) time.Duration {
	n := 1
	if md, err := msg.Metadata(); err == nil {
		n = int(md.NumDelivered)
	}
	return retryDelay(t.cfg.RetryBase, t.cfg.RetryMax, n, mathrand.Float64())
}

// consumeForURL POSTs each matching event to sub.URL, up to URLConcurrency
// at once, and returns after the POSTs in flight have ended.
func (t *Topics) consumeForURL(ctx context.Context, sub stratus.Subscription, filter cloudevent.Filter, it jetstream.MessagesContext, log *slog.Logger) error {
	slots := make(chan struct{}, t.cfg.URLConcurrency)
	var posts sync.WaitGroup
	defer posts.Wait()
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		msg, err := next(ctx, it)
		if err != nil {
			<-slots
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		e, ok := t.accept(sub, filter, msg, log)
		if !ok {
			<-slots
			continue
		}
		posts.Go(func() {
			defer func() { <-slots }()
			t.post(sub, msg, e, log)
		})
	}
}

// post delivers e to sub.URL once and settles msg: acknowledged on a 2xx
// answer; dropped on a 4xx other than 408 and 429 (the subscriber refuses
// the event) or after URLAttempts attempts; else delivered again after a
// backoff.
func (t *Topics) post(sub stratus.Subscription, msg jetstream.Msg, e cloudevent.Event, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.URLTimeout)
	defer cancel()
	ctx = trace.Extract(ctx, traceHeaders(msg.Headers())) // the publisher's
	status, err := t.send(ctx, sub.URL, e)
	attempt := 1
	if md, merr := msg.Metadata(); merr == nil {
		attempt = int(md.NumDelivered)
	}
	if err == nil && (status < 200 || status > 299) {
		err = fmt.Errorf("answered %d %s", status, http.StatusText(status))
	}
	switch {
	case err == nil:
		_ = msg.Ack()
		t.delivered.Add(1)
	case status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests:
		t.dropped.Add(1)
		log.Warn("dropping an event its URL subscriber refused", "url", sub.URL, "id", e.ID, "err", err)
		_ = msg.Term()
	case attempt >= t.cfg.URLAttempts:
		t.dropped.Add(1)
		log.Warn("dropping an event after its last attempt", "url", sub.URL, "id", e.ID, "attempts", attempt, "err", err)
		_ = msg.Term()
	default:
		delay := t.retryDelay(msg)
		log.Info("delivery to URL failed; trying again", "url", sub.URL, "id", e.ID, "attempt", attempt, "retry_in", delay, "err", err)
		_ = msg.NakWithDelay(delay)
	}
}

// send POSTs e in structured mode and returns the answer's status.
func (t *Topics) send(ctx context.Context, target string, e cloudevent.Event) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, nil)
	if err != nil {
		return 0, err
	}
	if err := cloudevent.WriteRequest(req, e); err != nil {
		return 0, err
	}
	req.Header.Set("User-Agent", "stratus")
	trace.Inject(ctx, req.Header)
	resp, err := t.cfg.Client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}
