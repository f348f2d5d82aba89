package events

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	mathrand "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	stratus "github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/events/cloudevent"
)

// TopicStream is the JetStream stream holding the events of every topic.
const TopicStream = "STRATUS_TOPICS"

const (
	topicSubjectPrefix = "stratus.topic."
	// subscriptionPrefix starts every subscription ID, and so the name of
	// its durable consumer: Run deletes consumers of TopicStream with this
	// prefix that no stored subscription names, and leaves others alone.
	subscriptionPrefix = "sub-"
)

// TopicSubject returns the subject on which topic's events are stored; any
// NATS client may publish a structured-mode CloudEvent (JSON) there.
func TopicSubject(topic string) string { return topicSubjectPrefix + topic }

// Defaults of Topics.
const (
	DefaultTopicMaxAge     = 24 * time.Hour
	DefaultTopicMaxBytes   = 1 << 30
	DefaultBatchWait       = time.Second
	DefaultURLAttempts     = 5
	DefaultURLTimeout      = 10 * time.Second
	DefaultURLConcurrency  = 8
	DefaultDeliveryRetry   = time.Second
	DefaultDeliveryRetryMx = time.Minute
)

// subscriptionMaxAckPending bounds a subscription's delivered but not yet
// settled events (at least its batch size).
const subscriptionMaxAckPending = 1000

// topicStore is what Topics keeps in the store.
type topicStore interface {
	CreateTopic(ctx context.Context, tp stratus.Topic) error
	GetTopic(ctx context.Context, name string) (*stratus.Topic, error)
	ListTopics(ctx context.Context) ([]stratus.Topic, error)
	DeleteTopic(ctx context.Context, name string) ([]stratus.Subscription, error)
	AddSubscription(ctx context.Context, sub stratus.Subscription) error
	ListSubscriptions(ctx context.Context, topic string) ([]stratus.Subscription, error)
	DeleteSubscription(ctx context.Context, id string) (*stratus.Subscription, error)
}

// subscriberQueue starts async invocations for function subscribers;
// *Queue is one.
type subscriberQueue interface {
	EnqueueID(ctx context.Context, fn, id string, event []byte) (string, error)
}

// TopicStats counts what happened to topic events since the start.
type TopicStats struct {
	// Published counts events stored by Publish.
	Published int64
	// Delivered counts events handed to a subscriber: enqueued for a
	// function (each event of a batch counts) or accepted by a URL.
	Delivered int64
	// Invalid counts stored messages that were not valid CloudEvents (sent
	// by plain NATS clients), once per subscription that dropped them.
	Invalid int64
	// Dropped counts matching events a subscription gave up on: its
	// function is gone, the event is too large for an async invocation, or
	// its URL refused it or failed every attempt.
	Dropped int64
}

// Topics keeps topics and subscriptions (in the store) and their events
// (in TopicStream), and delivers each event to the subscriptions whose
// filter it passes. Set its exported fields, if at all, before the first
// call of any method; zero fields take the defaults named after them.
type Topics struct {
	// MaxEventSize bounds an event's structured-mode JSON, which is what a
	// function subscriber receives as its async event
	// (DefaultMaxEventSize).
	MaxEventSize int
	// MaxAge and MaxBytes bound the stream (DefaultTopicMaxAge,
	// DefaultTopicMaxBytes or a quarter of the embedded server's store if
	// that is less: Bus.StreamBytes): older events, and the oldest beyond
	// MaxBytes, are removed whether or not every subscriber has received
	// them.
	MaxAge   time.Duration
	MaxBytes int64
	// BatchWait is the longest a batching subscription holds its first
	// event before it invokes its function with fewer than Batch events.
	BatchWait time.Duration
	// URLAttempts is how many times an event is POSTed to a URL subscriber
	// before it is dropped; URLTimeout bounds one POST; URLConcurrency is
	// how many POSTs one subscription has in flight.
	URLAttempts    int
	URLTimeout     time.Duration
	URLConcurrency int
	// RetryBase and RetryMax shape the delay before a failed delivery is
	// tried again: about RetryBase·2^(n-1) after attempt n, at most
	// RetryMax, half of it jittered.
	RetryBase, RetryMax time.Duration
	// AckWait is how long a delivered event may stay unsettled before
	// JetStream delivers it again (DefaultAckWait).
	AckWait time.Duration
	// Client posts to URL subscribers (a client with no timeout of its
	// own; URLTimeout bounds each request).
	Client *http.Client

	bus      *Bus
	st       topicStore
	q        subscriberQueue
	fnExists func(fn string) bool
	log      *slog.Logger
	kick     chan struct{} // the set of subscriptions changed; buffered 1

	// changeMu orders a change of subscriptions in the store with the
	// matching change of subs, and Run's first load of them.
	changeMu sync.Mutex
	mu       sync.Mutex
	stream   jetstream.Stream                // nil until created
	subs     map[string]stratus.Subscription // the subscriptions that should run, by ID
	running  bool

	published, delivered, invalid, dropped atomic.Int64
}

// NewTopics returns Topics keeping its records in st, its events on bus,
// and delivering to functions through q. fnExists reports whether a
// function exists (checked when subscribing).
func NewTopics(bus *Bus, st topicStore, q subscriberQueue, fnExists func(fn string) bool, log *slog.Logger) *Topics {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Topics{
		bus: bus, st: st, q: q, fnExists: fnExists, log: log,
		kick: make(chan struct{}, 1),
		subs: make(map[string]stratus.Subscription),
	}
}

// Stats returns the counters of t.
func (t *Topics) Stats() TopicStats {
	return TopicStats{
		Published: t.published.Load(), Delivered: t.delivered.Load(),
		Invalid: t.invalid.Load(), Dropped: t.dropped.Load(),
	}
}

// CreateTopic creates topic name. Errors: stratus.ErrInvalid (bad name),
// ErrConflict (it exists).
func (t *Topics) CreateTopic(ctx context.Context, name string) (*stratus.Topic, error) {
	if err := stratus.ValidName(name); err != nil {
		return nil, fmt.Errorf("topic: %w", err)
	}
	tp := stratus.Topic{Name: name, CreatedAt: time.Now().UTC().Round(0)}
	if err := t.st.CreateTopic(ctx, tp); err != nil {
		return nil, err
	}
	return &tp, nil
}

// GetTopic returns topic name. Errors: stratus.ErrNotFound.
func (t *Topics) GetTopic(ctx context.Context, name string) (*stratus.Topic, error) {
	return t.st.GetTopic(ctx, name)
}

// ListTopics returns every topic, ordered by name.
func (t *Topics) ListTopics(ctx context.Context) ([]stratus.Topic, error) {
	return t.st.ListTopics(ctx)
}

// DeleteTopic deletes topic name, stops and removes its subscriptions and
// purges its stored events. Errors: stratus.ErrNotFound.
func (t *Topics) DeleteTopic(ctx context.Context, name string) error {
	t.changeMu.Lock()
	subs, err := t.st.DeleteTopic(ctx, name)
	if err == nil {
		t.mu.Lock()
		for _, sub := range subs {
			delete(t.subs, sub.ID)
		}
		t.mu.Unlock()
	}
	t.changeMu.Unlock()
	if err != nil {
		return err
	}
	t.poke()
	for _, sub := range subs {
		t.deleteConsumer(sub.ID)
	}
	if s, err := t.getStream(ctx); err == nil {
		done := t.bus.api()
		err := s.Purge(ctx, jetstream.WithPurgeSubject(TopicSubject(name)))
		done()
		if err != nil {
			t.log.Warn("purge events of a deleted topic; they age out", "topic", name, "err", err)
		}
	}
	return nil
}

// Subscribe validates sub, stores it with a new ID and starts delivering
// the topic's events published from now on. Set Topic, one of Function and
// URL, and optionally Filter and Batch (0 means 1). Errors:
// stratus.ErrInvalid (bad filter, batch, URL, or both or neither of
// Function and URL), ErrNotFound (no such topic or function).
func (t *Topics) Subscribe(ctx context.Context, sub stratus.Subscription) (*stratus.Subscription, error) {
	if err := stratus.ValidName(sub.Topic); err != nil {
		return nil, fmt.Errorf("subscribe: topic: %w", err)
	}
	switch {
	case sub.Function != "" && sub.URL != "":
		return nil, fmt.Errorf("subscribe: give a function or a URL, not both: %w", stratus.ErrInvalid)
	case sub.Function == "" && sub.URL == "":
		return nil, fmt.Errorf("subscribe: give a function or a URL to deliver to: %w", stratus.ErrInvalid)
	case sub.Function != "":
		if err := stratus.ValidName(sub.Function); err != nil {
			return nil, fmt.Errorf("subscribe: function: %w", err)
		}
	default:
		if err := checkURL(sub.URL); err != nil {
			return nil, fmt.Errorf("subscribe: %w", err)
		}
	}
	f, err := cloudevent.ParseFilter(sub.Filter)
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	sub.Filter = f.String()
	if sub.Batch == 0 {
		sub.Batch = 1
	}
	switch {
	case sub.Batch < 1 || sub.Batch > stratus.MaxSubscriptionBatch:
		return nil, fmt.Errorf("subscribe: batch %d: must be between 1 and %d: %w", sub.Batch, stratus.MaxSubscriptionBatch, stratus.ErrInvalid)
	case sub.URL != "" && sub.Batch != 1:
		return nil, fmt.Errorf("subscribe: batch %d: only function subscribers take batches; a URL receives one event per request: %w", sub.Batch, stratus.ErrInvalid)
	}
	if _, err := t.st.GetTopic(ctx, sub.Topic); err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	if sub.Function != "" && !t.fnExists(sub.Function) {
		return nil, fmt.Errorf("subscribe: function %q: %w", sub.Function, stratus.ErrNotFound)
	}
	sub.ID = newSubscriptionID()
	sub.CreatedAt = time.Now().UTC().Round(0)

	t.changeMu.Lock()
	err = t.st.AddSubscription(ctx, sub)
	if err == nil {
		t.mu.Lock()
		t.subs[sub.ID] = sub
		t.mu.Unlock()
	}
	t.changeMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	t.poke()
	return &sub, nil
}

// Subscriptions returns the subscriptions of topic, or of every topic
// when topic is "". Errors: stratus.ErrNotFound (no such topic).
func (t *Topics) Subscriptions(ctx context.Context, topic string) ([]stratus.Subscription, error) {
	return t.st.ListSubscriptions(ctx, topic)
}

// Unsubscribe deletes subscription id and stops its deliveries; events
// being delivered when it is called may still arrive. Errors:
// stratus.ErrNotFound.
func (t *Topics) Unsubscribe(ctx context.Context, id string) error {
	t.changeMu.Lock()
	_, err := t.st.DeleteSubscription(ctx, id)
	if err == nil {
		t.mu.Lock()
		delete(t.subs, id)
		t.mu.Unlock()
	}
	t.changeMu.Unlock()
	if err != nil {
		return err
	}
	t.poke()
	t.deleteConsumer(id)
	return nil
}

func (t *Topics) poke() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

func newSubscriptionID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return subscriptionPrefix + hex.EncodeToString(b[:])
}

// checkURL accepts absolute http and https URLs.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url %q: want an absolute http:// or https:// URL: %w", s, stratus.ErrInvalid)
	}
	return nil
}

// Publish stores events on topic and returns once JetStream has
// acknowledged every one. Each is stored as its structured-mode JSON with
// a Nats-Msg-Id made of the topic, source and id, so publishing the same
// event again within two minutes stores it once. Errors: stratus.ErrNotFound
// (no such topic), ErrInvalid (an invalid event), ErrTooLarge (an event's
// JSON over MaxEventSize), ErrNoSpace (the data volume is full: see
// Bus.Health), ErrUnavailable (JetStream not answering within
// PublishTimeout, or disabled), or ctx's error. It fails at once while the
// bus is unhealthy. On an error some events may be stored; publishing them
// all again is safe.
func (t *Topics) Publish(ctx context.Context, topic string, events []cloudevent.Event) error {
	if _, err := t.st.GetTopic(ctx, topic); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if len(events) == 0 {
		return nil
	}
	limit := orDefault(t.MaxEventSize, DefaultMaxEventSize)
	msgs := make([]*nats.Msg, len(events))
	for i, e := range events {
		b, err := e.JSON()
		if err != nil {
			return fmt.Errorf("publish: event %d: %w", i, err)
		}
		if len(b) > limit {
			return fmt.Errorf("publish: event %q: %d bytes as structured JSON exceed the async event limit of %d: %w", e.ID, len(b), limit, stratus.ErrTooLarge)
		}
		m := nats.NewMsg(TopicSubject(topic))
		m.Data = b
		m.Header.Set(nats.MsgIdHdr, eventMsgID(topic, e))
		msgs[i] = m
	}
	if err := t.bus.Health(); err != nil {
		return fmt.Errorf("publish to %s: %w", topic, err)
	}
	if _, err := t.getStream(ctx); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, m := range msgs {
		f, err := t.bus.js.PublishMsgAsync(m, jetstream.WithExpectStream(TopicStream))
		if err != nil {
			return fmt.Errorf("publish to %s: %w", topic, t.bus.publishErr(err))
		}
		futures = append(futures, f)
	}
	// Each wait is bounded (Bus.await) and they overlap: the whole
	// publish takes about one PublishTimeout at most.
	for _, f := range futures {
		ack, err := t.bus.await(ctx, f)
		if err != nil {
			return fmt.Errorf("publish to %s: %w", topic, err)
		}
		if !ack.Duplicate {
			t.published.Add(1)
		}
	}
	return nil
}

// eventMsgID identifies an event for JetStream's duplicate detection: a
// CloudEvent is identified by source and id, within its topic.
func eventMsgID(topic string, e cloudevent.Event) string {
	h := sha256.Sum256([]byte(topic + "\x00" + e.Source + "\x00" + e.ID))
	return hex.EncodeToString(h[:16])
}

func (t *Topics) getStream(ctx context.Context) (jetstream.Stream, error) {
	t.mu.Lock()
	s := t.stream
	t.mu.Unlock()
	if s != nil {
		return s, nil
	}
	release, err := t.bus.lockStreams(ctx)
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", TopicStream, err)
	}
	defer release()
	t.mu.Lock()
	s = t.stream
	t.mu.Unlock()
	if s != nil {
		return s, nil // made meanwhile
	}
	limit := orDefault(t.MaxEventSize, DefaultMaxEventSize)
	done := t.bus.api()
	defer done()
	s, err = t.bus.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        TopicStream,
		Description: "Stratus topics",
		Subjects:    []string{topicSubjectPrefix + "*"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      orDefault(t.MaxAge, DefaultTopicMaxAge),
		MaxBytes:    orDefault(t.MaxBytes, t.bus.StreamBytes(DefaultTopicMaxBytes, topicsShare)),
		// JSON of an event may be about twice its size (escaping, base64).
		MaxMsgSize: int32(2*limit + headerAllowance),
		Duplicates: 2 * time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", TopicStream, t.bus.publishErr(err))
	}
	t.mu.Lock()
	t.stream = s
	t.mu.Unlock()
	return s, nil
}

// Ensure creates the stream of topic events if it does not exist, so that
// plain NATS clients may publish before Run starts. It is idempotent; Run
// and Publish call it.
func (t *Topics) Ensure(ctx context.Context) error {
	if _, err := t.getStream(ctx); err != nil {
		return fmt.Errorf("ensure topics: %w", err)
	}
	return nil
}

// deleteConsumer deletes the durable consumer of subscription id, if any.
func (t *Topics) deleteConsumer(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	s, err := t.getStream(ctx)
	if err != nil {
		t.log.Warn("delete subscription consumer", "subscription", id, "err", err)
		return
	}
	done := t.bus.api()
	defer done()
	if err := s.DeleteConsumer(ctx, id); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.log.Warn("delete subscription consumer; the next start removes it", "subscription", id, "err", err)
	}
}

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
	t.changeMu.Lock()
	stored, err := t.st.ListSubscriptions(ctx, "")
	if err == nil {
		t.mu.Lock()
		for _, sub := range stored {
			t.subs[sub.ID] = sub
		}
		t.mu.Unlock()
	}
	t.changeMu.Unlock()
	if err != nil {
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
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-t.kick:
			reconcile()
		}
	}
	for _, r := range runners {
		r.cancel()
	}
	wg.Wait()
	return nil
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
	c, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       sub.ID,
		Description:   "Stratus subscription to topic " + sub.Topic,
		FilterSubject: TopicSubject(sub.Topic),
		DeliverPolicy: jetstream.DeliverByStartTimePolicy,
		OptStartTime:  &start,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       orDefault(t.AckWait, DefaultAckWait),
		MaxDeliver:    -1,
		MaxAckPending: max(subscriptionMaxAckPending, 2*sub.Batch),
	})
	if err != nil {
		if c, gerr := s.Consumer(ctx, sub.ID); gerr == nil {
			return c, nil
		}
		return nil, fmt.Errorf("create consumer %s: %w", sub.ID, t.bus.publishErr(err))
	}
	return c, nil
}

// consume runs one message iterator of sub until ctx ends (nil) or the
// iterator fails.
func (t *Topics) consume(ctx context.Context, sub stratus.Subscription, filter cloudevent.Filter, log *slog.Logger) error {
	c, err := t.consumer(ctx, sub)
	if err != nil {
		return err
	}
	buffer := 2 * orDefault(t.URLConcurrency, DefaultURLConcurrency)
	if sub.Function != "" {
		buffer = max(2*sub.Batch, 32)
	}
	it, err := c.Messages(jetstream.PullMaxMessages(buffer))
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
	e, err := cloudevent.FromJSON(msg.Data(), int64(orDefault(t.MaxEventSize, DefaultMaxEventSize)))
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
	limit := orDefault(t.MaxEventSize, DefaultMaxEventSize)
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
			p.deadline = time.Now().Add(orDefault(t.BatchWait, DefaultBatchWait))
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

// enqueue starts the async invocation of sub.Function with event and
// settles msgs: acknowledged once the event is stored, dropped when it can
// never be (function gone, event too large), else delivered again after a
// backoff.
func (t *Topics) enqueue(sub stratus.Subscription, msgs []jetstream.Msg, event []byte, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	// The request ID follows from the subscription and the first event's
	// place in the stream, so a redelivery of the same events (an ack lost
	// in a crash) is stored once.
	key := sub.ID
	if md, merr := msgs[0].Metadata(); merr == nil {
		key += "/" + strconv.FormatUint(md.Sequence.Stream, 10) + "/" + strconv.Itoa(len(msgs))
	} else {
		key += "/" + uuid.NewString()
	}
	_, err := t.q.EnqueueID(ctx, sub.Function, uuid.NewSHA1(subscriptionNS, []byte(key)).String(), event)
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
	return retryDelay(orDefault(t.RetryBase, DefaultDeliveryRetry), orDefault(t.RetryMax, DefaultDeliveryRetryMx), n, mathrand.Float64())
}

// consumeForURL POSTs each matching event to sub.URL, up to URLConcurrency
// at once, and returns after the POSTs in flight have ended.
func (t *Topics) consumeForURL(ctx context.Context, sub stratus.Subscription, filter cloudevent.Filter, it jetstream.MessagesContext, log *slog.Logger) error {
	slots := make(chan struct{}, orDefault(t.URLConcurrency, DefaultURLConcurrency))
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
	ctx, cancel := context.WithTimeout(context.Background(), orDefault(t.URLTimeout, DefaultURLTimeout))
	defer cancel()
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
	case attempt >= orDefault(t.URLAttempts, DefaultURLAttempts):
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
	hc := t.Client
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}
