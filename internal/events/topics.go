package events

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	oteltrace "go.opentelemetry.io/otel/trace"

	stratus "github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/events/cloudevent"
	"github.com/stratus-run/stratus/internal/trace"
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
	DefaultTopicsReload    = 30 * time.Second
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

// subscriberQueue starts async invocations for function subscribers
// (with stratus.TriggerTopic); *Queue is one.
type subscriberQueue interface {
	EnqueueWith(ctx context.Context, fn string, event []byte, opts EnqueueOptions) (string, error)
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

// TopicsConfig configures Topics. Bus, Store, Queue and FunctionExists
// are required; every other zero field takes the default named after it.
type TopicsConfig struct {
	// Bus stores the events.
	Bus *Bus
	// Store keeps topics and subscriptions; *store.Store is one.
	Store topicStore
	// Queue starts the async invocations of function subscribers; *Queue
	// is one.
	Queue subscriberQueue
	// FunctionExists reports whether a function exists, given "NAME" or
	// "NAME:QUALIFIER" (false for a missing version or alias); checked
	// when subscribing.
	FunctionExists func(fn string) bool
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
	// event before it invokes its function with fewer than Batch events
	// (DefaultBatchWait).
	BatchWait time.Duration
	// URLAttempts is how many times an event is POSTed to a URL subscriber
	// before it is dropped; URLTimeout bounds one POST; URLConcurrency is
	// how many POSTs one subscription has in flight (DefaultURLAttempts,
	// DefaultURLTimeout, DefaultURLConcurrency).
	URLAttempts    int
	URLTimeout     time.Duration
	URLConcurrency int
	// RetryBase and RetryMax shape the delay before a failed delivery is
	// tried again: about RetryBase·2^(n-1) after attempt n, at most
	// RetryMax, half of it jittered (DefaultDeliveryRetry,
	// DefaultDeliveryRetryMx).
	RetryBase, RetryMax time.Duration
	// AckWait is how long a delivered event may stay unsettled before
	// JetStream delivers it again (DefaultAckWait).
	AckWait time.Duration
	// ReloadInterval is how often Run reads the subscriptions from the
	// store when nothing told it they changed (DefaultTopicsReload):
	// another server may have added or deleted one.
	ReloadInterval time.Duration
	// Client posts to URL subscribers (http.DefaultClient; a client with
	// no timeout of its own: URLTimeout bounds each request).
	Client *http.Client
	// Tracer makes the spans of Publish ("publish <topic>", a producer,
	// when its caller's ctx is in a trace); nil makes none. Each event
	// carries its publisher's trace context to its subscribers: a
	// function's invocation and a URL's request join that trace.
	Tracer oteltrace.Tracer
	// Log receives the log lines of Topics; nil discards them.
	Log *slog.Logger
}

// withDefaults fills the zero fields of c. MaxBytes stays 0 until the
// stream is created: its default depends on the Bus's store.
func (c TopicsConfig) withDefaults() TopicsConfig {
	c.MaxEventSize = orDefault(c.MaxEventSize, DefaultMaxEventSize)
	c.MaxAge = orDefault(c.MaxAge, DefaultTopicMaxAge)
	c.BatchWait = orDefault(c.BatchWait, DefaultBatchWait)
	c.URLAttempts = orDefault(c.URLAttempts, DefaultURLAttempts)
	c.URLTimeout = orDefault(c.URLTimeout, DefaultURLTimeout)
	c.URLConcurrency = orDefault(c.URLConcurrency, DefaultURLConcurrency)
	c.RetryBase = orDefault(c.RetryBase, DefaultDeliveryRetry)
	c.RetryMax = orDefault(c.RetryMax, DefaultDeliveryRetryMx)
	c.AckWait = orDefault(c.AckWait, DefaultAckWait)
	c.ReloadInterval = orDefault(c.ReloadInterval, DefaultTopicsReload)
	if c.Client == nil {
		c.Client = http.DefaultClient
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	c.Tracer = trace.Or(c.Tracer)
	return c
}

// Topics keeps topics and subscriptions (in the store) and their events
// (in TopicStream), and delivers each event to the subscriptions whose
// filter it passes.
type Topics struct {
	cfg      TopicsConfig // defaults filled; read-only after NewTopics
	bus      *Bus
	st       topicStore
	q        subscriberQueue
	fnExists func(fn string) bool
	log      *slog.Logger
	kick     chan struct{} // the set of subscriptions changed; buffered 1
	reload   chan struct{} // read the subscriptions from the store; buffered 1

	// changeMu orders a change of subscriptions in the store with the
	// matching change of subs, and Run's first load of them.
	changeMu sync.Mutex
	mu       sync.Mutex
	stream   jetstream.Stream                // nil until created
	subs     map[string]stratus.Subscription // the subscriptions that should run, by ID
	running  bool

	published, delivered, invalid, dropped atomic.Int64
}

// NewTopics returns Topics configured by cfg. It does no I/O: Ensure, Run
// and Publish create the stream.
func NewTopics(cfg TopicsConfig) *Topics {
	cfg = cfg.withDefaults()
	return &Topics{
		cfg: cfg, bus: cfg.Bus, st: cfg.Store, q: cfg.Queue, fnExists: cfg.FunctionExists, log: cfg.Log,
		kick: make(chan struct{}, 1), reload: make(chan struct{}, 1),
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
		ref, err := validTarget(sub.Function)
		if err != nil {
			return nil, fmt.Errorf("subscribe: %w", err)
		}
		sub.Function = ref.String()
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
	// The version or alias too: deliveries to a missing one would fail.
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

// Reload has Run read the subscriptions from the store now, and start
// and stop deliveries to match: another server added or deleted some (a
// change notification). It does not block.
func (t *Topics) Reload() {
	select {
	case t.reload <- struct{}{}:
	default:
	}
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
// acknowledged every one. Each is stored as its structured-mode JSON with a
// Nats-Msg-Id made of the topic, source and id, so publishing the same
// event again within two minutes stores it once. Errors:
// stratus.ErrNotFound (no such topic), ErrInvalid (an invalid event),
// ErrTooLarge (an event's JSON over TopicsConfig.MaxEventSize), ErrNoSpace
// (the data volume is full: see Bus.Health), ErrUnavailable (JetStream not
// answering within PublishTimeout, or disabled), or ctx's error. It fails
// at once while the bus is unhealthy. On an error some events may be
// stored; publishing them all again is safe. The trace context of ctx
// travels with each event to its subscribers.
func (t *Topics) Publish(ctx context.Context, topic string, events []cloudevent.Event) (err error) {
	if _, err := t.st.GetTopic(ctx, topic); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if len(events) == 0 {
		return nil
	}
	if span, pctx := producerSpan(ctx, t.cfg.Tracer, "publish "+topic, TopicSubject(topic),
		attribute.Int("messaging.batch.message_count", len(events))); span != nil {
		ctx = pctx
		defer func() { endSpan(span, err) }()
	}
	limit := t.cfg.MaxEventSize
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
		trace.Inject(ctx, http.Header(m.Header))
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
	limit := t.cfg.MaxEventSize
	done := t.bus.api()
	defer done()
	s, err = t.bus.makeStream(ctx, jetstream.StreamConfig{
		Name:        TopicStream,
		Description: "Stratus topics",
		Subjects:    []string{topicSubjectPrefix + "*"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      t.cfg.MaxAge,
		MaxBytes:    orDefault(t.cfg.MaxBytes, t.bus.StreamBytes(DefaultTopicMaxBytes, topicsShare)),
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
