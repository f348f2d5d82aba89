package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	oteltrace "go.opentelemetry.io/otel/trace"

	stratus "github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/trace"
)

// AsyncStream is the JetStream stream holding async invocations.
const AsyncStream = "STRATUS_ASYNC"

const (
	asyncSubjectPrefix = "stratus.async."
	consumerPrefix     = "async_"
)

// AsyncSubject returns the subject on which fn's async events are stored;
// any NATS client may publish an event there (a JSON body; headers
// optional).
func AsyncSubject(fn string) string { return asyncSubjectPrefix + fn }

// validTarget checks fn, the function events go to: "NAME", or
// "NAME:QUALIFIER" for a published version or an alias (no ARN). It
// returns fn read, with "NAME:$LATEST" read as NAME, the head it names:
// its String is the name events for fn are kept under.
func validTarget(fn string) (stratus.FunctionRef, error) {
	if !strings.Contains(fn, ":") {
		if err := stratus.ValidName(fn); err != nil {
			return stratus.FunctionRef{}, fmt.Errorf("function %w", err)
		}
		return stratus.FunctionRef{Name: fn}, nil
	}
	ref, err := stratus.ParseFunctionRef(fn)
	if err != nil {
		return stratus.FunctionRef{}, err
	}
	if ref.String() != fn {
		return stratus.FunctionRef{}, fmt.Errorf("function %q: want NAME or NAME:QUALIFIER (a version or an alias): %w", fn, stratus.ErrInvalid)
	}
	if ref.Qualifier == stratus.LatestVersion {
		ref.Qualifier = ""
	}
	return ref, nil
}

// Message headers of an async event.
const (
	hdrRequestID  = "Stratus-Request-Id"
	hdrEnqueuedAt = "Stratus-Enqueued-At" // RFC 3339, of the first enqueue
	hdrAttempts   = "Stratus-Attempts"    // attempts already made
	hdrNotBefore  = "Stratus-Not-Before"  // RFC 3339, earliest next attempt
	hdrTrigger    = "Stratus-Trigger"     // stratus.TriggerAsync, TriggerTopic or TriggerSchedule; absent: async
	// The W3C trace context of the producer (trace.Inject's headers).
	hdrTraceparent = "Traceparent"
	hdrTracestate  = "Tracestate"
	hdrAmznTrace   = "X-Amzn-Trace-Id"
)

// Defaults of the Queue and of AsyncPolicy.
const (
	DefaultMaxRetries     = 2
	DefaultMaxEventAge    = 6 * time.Hour
	DefaultMaxEventSize   = 256 << 10
	DefaultMaxBytes       = 1 << 30
	DefaultRetryBase      = time.Second
	DefaultRetryMax       = 2 * time.Minute
	DefaultThrottleDelay  = time.Second
	DefaultAckWait        = 30 * time.Second
	DefaultDrainTimeout   = 10 * time.Second
	DefaultPollWait       = 2 * time.Second
	DefaultRescanInterval = 10 * time.Second
	DefaultInvokeSlack    = 2 * time.Minute
)

// maxAckPending bounds a consumer's delivered-but-unacknowledged events:
// those in flight plus those waiting for a retry or after a throttle.
const maxAckPending = 10000

// headerAllowance is what the stream accepts beyond MaxEventSize for headers.
const headerAllowance = 4 << 10

// opTimeout bounds acknowledgements and retry publishes.
const opTimeout = 10 * time.Second

// Invoker runs one invocation of a function; *pool.Manager is one. It
// blocks until the invocation ends. A function error comes back as a
// Response with ErrorType set; Go errors are platform errors:
// stratus.ErrNotFound (no such function), ErrCapacity (throttled),
// ErrUnavailable (stopping), or ctx's error.
type Invoker interface {
	Invoke(ctx context.Context, name string, req stratus.Request) (*stratus.Response, error)
}

// AsyncPolicy is how a function's async events are handled. Zero fields
// take defaults, except MaxRetries, where 0 means no retry.
type AsyncPolicy struct {
	// MaxRetries is how many times a failed event is tried again (Lambda's
	// default is DefaultMaxRetries).
	MaxRetries int
	// MaxEventAge is how long after its enqueue an event may still be
	// tried; default DefaultMaxEventAge.
	MaxEventAge time.Duration
	// MaxConcurrency caps the function's events in flight at once; default
	// stratus.DefaultMaxConc.
	MaxConcurrency int
	// Timeout is the function's timeout; an Invoke running longer than
	// Timeout plus QueueConfig.InvokeSlack is cancelled and counts as a
	// failed attempt. Default stratus.DefaultTimeoutSec.
	Timeout time.Duration
}

func (p AsyncPolicy) withDefaults() AsyncPolicy {
	p.MaxRetries = max(p.MaxRetries, 0)
	if p.MaxEventAge <= 0 {
		p.MaxEventAge = DefaultMaxEventAge
	}
	if p.MaxConcurrency <= 0 {
		p.MaxConcurrency = stratus.DefaultMaxConc
	}
	if p.Timeout <= 0 {
		p.Timeout = stratus.DefaultTimeoutSec * time.Second
	}
	return p
}

// PolicyFunc returns the async policy of function fn, false when there is
// no such function. The Queue calls it before every attempt (a function
// may be redeployed or removed while its events wait); it must be fast.
type PolicyFunc func(fn string) (AsyncPolicy, bool)

// States of an async invocation.
const (
	StateQueued    = "queued"
	StateRunning   = "running"
	StateRetrying  = "retrying"
	StateSucceeded = "succeeded"
	StateFailed    = "failed"
)

// Status is one state of an async invocation. Attempt is the attempt
// running (running) or last made (the other states; 0 before any).
type Status struct {
	RequestID    string
	Function     string
	State        string
	Attempt      int
	EnqueuedAt   time.Time
	UpdatedAt    time.Time
	ErrorType    string
	ErrorMessage string
	// Destination is where the outcome of a done invocation was sent
	// ("function:NAME" or "topic:NAME"), DestinationState whether it got
	// there (DestinationDelivered, DestinationFailed); both empty before,
	// and when the outcome has no destination.
	Destination      string
	DestinationState string
}

// StatusSink receives every state transition of every async invocation.
// AsyncStatus is called on the Queue's goroutines (and Enqueue's caller),
// in the order of each invocation's transitions; it must not block (batch,
// don't write through). Enqueue reports queued before it stores the event
// and failed (ErrorType EnqueueFailed) if storing fails, so the sink never
// sees a later state first. With at-least-once delivery a sink may see a
// transition twice.
type StatusSink interface {
	AsyncStatus(Status)
}

// DoneFunc is called once an event is done: succeeded (err nil), or failed
// for good. result is the last Response (nil when no attempt returned
// one), attempts the attempts made. A failure err is a *FunctionError after
// the last retry, wraps ErrEventAgeExceeded when the event grew too old,
// wraps stratus.ErrNotFound when the function is gone, or wraps the
// platform error of the last attempt. It runs on the event's goroutine,
// after the invocation has freed its concurrency slot and before the
// event is acknowledged (and before the BeforeAck that precedes the
// acknowledgement): with at-least-once delivery it may run twice for an
// event.
//
// ctx carries the span of the event's last attempt (and no deadline that
// matters: it may already be cancelled when the Queue is stopping); a
// DoneFunc that starts more work bounds it itself and keeps the trace
// context. It returns what it did with the outcome, which the Queue
// counts (QueueStats) and reports (Status.Destination).
type DoneFunc func(ctx context.Context, fn, requestID string, event []byte, result *stratus.Response, attempts int, err error) Routing

// ErrEventAgeExceeded is wrapped by the final error of an event older than
// its function's MaxEventAge.
var ErrEventAgeExceeded = fmt.Errorf("event age exceeded: %w", stratus.ErrTimeout)

// FunctionError is the final error of an event whose function failed on
// its last attempt.
type FunctionError struct {
	Type    string // Lambda's errorType, e.g. Runtime.ExitError
	Message string
}

func (e *FunctionError) Error() string {
	if e.Message == "" {
		return "function error " + e.Type
	}
	return "function error " + e.Type + ": " + e.Message
}

// QueueConfig configures a Queue. Bus, Invoker and Policy are required;
// every other zero field takes the default named after it.
type QueueConfig struct {
	// Bus stores the events.
	Bus *Bus
	// Invoker runs each attempt.
	Invoker Invoker
	// Policy gives each function's async policy.
	Policy PolicyFunc
	// Exists, if set, says whether function fn ("NAME" or
	// "NAME:QUALIFIER") exists in the store that every server shares,
	// where Policy answers from this server's memory, which may not know
	// yet a function deployed through another server. Before the Queue
	// takes a function that Policy does not know as gone (failing its
	// events, deleting its consumer, which other servers share), it asks
	// Exists: while that says the function exists, or fails, its events
	// are handed back (for another server, or for later: about
	// ThrottleDelay) and its consumer stays. Nil: Policy's answer stands
	// (one server).
	Exists func(ctx context.Context, fn string) (bool, error)
	// Sink, if set, receives every status transition.
	Sink StatusSink
	// OnDone, if set, is called once per event that is done.
	OnDone DoneFunc
	// BeforeAck, if set, is called before an attempt's message is
	// acknowledged or replaced by its retry, so that what the attempt left
	// (its invocation record, its status) is stored before the event can no
	// longer run again: a crash then never loses the trace of a finished
	// attempt.
	BeforeAck func(ctx context.Context) error
	// MaxEventSize bounds an event's bytes (DefaultMaxEventSize).
	MaxEventSize int
	// MaxBytes bounds the stream (DefaultMaxBytes, or half the embedded
	// server's store if that is less: Bus.StreamBytes); -1 is unbounded.
	MaxBytes int64
	// RetryBase and RetryMax shape the retry backoff: attempt n+1 waits
	// about RetryBase·2^(n-1), at most RetryMax, half of it jittered
	// (DefaultRetryBase, DefaultRetryMax).
	RetryBase, RetryMax time.Duration
	// ThrottleDelay is about how long a throttled event waits, jittered
	// (DefaultThrottleDelay).
	ThrottleDelay time.Duration
	// AckWait is how long a delivered event may go without an ack or a
	// heartbeat before JetStream delivers it again; heartbeats go every
	// AckWait/3 while an invocation runs. After a crash, events that were
	// in flight are delivered again once it has passed (DefaultAckWait).
	AckWait time.Duration
	// DrainTimeout bounds how long Run waits for in-flight invocations
	// when its ctx ends (DefaultDrainTimeout).
	DrainTimeout time.Duration
	// PollWait is how long one pull request waits for events; a stopping
	// Run waits for each worker's last request to end, so it is also about
	// how long an idle Run takes to stop (DefaultPollWait).
	PollWait time.Duration
	// RescanInterval is how often Run looks for functions with events or
	// consumers it does not serve yet, published by other servers or
	// plain NATS clients (DefaultRescanInterval).
	RescanInterval time.Duration
	// InvokeSlack is added to a function's Timeout to bound one Invoke
	// (DefaultInvokeSlack).
	InvokeSlack time.Duration
	// Now is the clock of retry and age decisions and of Stats
	// (time.Now).
	Now func() time.Time
	// Tracer makes the spans of enqueues ("enqueue <function>", a
	// producer) and attempts ("async <function>", a consumer); nil makes
	// none, though trace context still travels with each event.
	Tracer oteltrace.Tracer
	// Log receives the Queue's log lines; nil discards them.
	Log *slog.Logger
}

// withDefaults fills the zero fields of c. MaxBytes stays 0 until the
// stream is created: its default depends on the Bus's store.
func (c QueueConfig) withDefaults() QueueConfig {
	c.MaxEventSize = orDefault(c.MaxEventSize, DefaultMaxEventSize)
	c.RetryBase = orDefault(c.RetryBase, DefaultRetryBase)
	c.RetryMax = orDefault(c.RetryMax, DefaultRetryMax)
	c.ThrottleDelay = orDefault(c.ThrottleDelay, DefaultThrottleDelay)
	c.AckWait = orDefault(c.AckWait, DefaultAckWait)
	c.DrainTimeout = orDefault(c.DrainTimeout, DefaultDrainTimeout)
	c.PollWait = orDefault(c.PollWait, DefaultPollWait)
	c.RescanInterval = orDefault(c.RescanInterval, DefaultRescanInterval)
	c.InvokeSlack = orDefault(c.InvokeSlack, DefaultInvokeSlack)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	c.Tracer = trace.Or(c.Tracer)
	return c
}

// Queue holds durable async invocations and dispatches them to an Invoker.
type Queue struct {
	cfg  QueueConfig // defaults filled; read-only after NewQueue
	bus  *Bus
	log  *slog.Logger
	kick chan struct{} // a consumer was added; buffered 1

	mu        sync.Mutex
	stream    jetstream.Stream              // nil until created
	consumers map[string]jetstream.Consumer // by function
	running   bool

	stats queueCounters
}

// NewQueue returns a Queue configured by cfg. It does no I/O: the stream
// is created by the first Enqueue, Ensure, Depth or Run.
func NewQueue(cfg QueueConfig) *Queue {
	cfg = cfg.withDefaults()
	return &Queue{
		cfg: cfg, bus: cfg.Bus, log: cfg.Log,
		kick:      make(chan struct{}, 1),
		consumers: make(map[string]jetstream.Consumer),
	}
}

func orDefault[T int | int64 | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

func (q *Queue) now() time.Time { return q.cfg.Now() }

// Enqueue stores event for an async invocation of fn, triggered by an
// asynchronous invoke (stratus.TriggerAsync), and returns its request ID
// once JetStream has acknowledged it. It blocks for one round trip (plus
// the consumer's creation on fn's first event). The trace context of ctx
// travels with the event: its attempts' spans are children of the
// enqueue's. Errors: stratus.ErrInvalid (bad name), ErrNotFound (no such
// function), ErrTooLarge (event over QueueConfig.MaxEventSize),
// ErrCapacity (stream full), ErrNoSpace (the data volume is full: see
// Bus.Health), ErrUnavailable (JetStream not answering within
// PublishTimeout, or disabled), or ctx's error. It fails at once while the
// bus is unhealthy.
func (q *Queue) Enqueue(ctx context.Context, fn string, event []byte) (string, error) {
	return q.EnqueueWith(ctx, fn, event, EnqueueOptions{})
}

// EnqueueID is Enqueue with the request ID chosen by the caller: enqueuing
// the same ID again within the stream's duplicate window stores the event
// once (a subscription redelivering a topic event, say).
func (q *Queue) EnqueueID(ctx context.Context, fn, id string, event []byte) (string, error) {
	if id == "" {
		return "", fmt.Errorf("enqueue: empty request id: %w", stratus.ErrInvalid)
	}
	return q.EnqueueWith(ctx, fn, event, EnqueueOptions{ID: id})
}

// EnqueueOptions are the optional parts of an enqueue.
type EnqueueOptions struct {
	// ID is the request ID; "" makes a new one. Enqueuing an ID again
	// within the stream's duplicate window (two minutes) stores the event
	// once.
	ID string
	// Trigger is what made the invocation: stratus.TriggerAsync (the
	// default when ""), TriggerTopic or TriggerSchedule. Every attempt of
	// the event, after a restart too, runs with it.
	Trigger string
}

// EnqueueWith is Enqueue with options: a request ID of the caller's
// (see EnqueueID) and the trigger. Errors are Enqueue's, and
// stratus.ErrInvalid for a bad ID or trigger.
func (q *Queue) EnqueueWith(ctx context.Context, fn string, event []byte, opts EnqueueOptions) (string, error) {
	id, dedupe := opts.ID, opts.ID != ""
	if id == "" {
		// A new ID cannot be a duplicate: no deduplication to ask for.
		id = stratus.NewRequestID()
	}
	trigger := opts.Trigger
	if trigger == "" {
		trigger = stratus.TriggerAsync
	}
	if !asyncTrigger(trigger) {
		return "", fmt.Errorf("enqueue: trigger %q: want %s, %s or %s: %w", trigger,
			stratus.TriggerAsync, stratus.TriggerTopic, stratus.TriggerSchedule, stratus.ErrInvalid)
	}
	return q.enqueue(ctx, fn, id, trigger, event, dedupe)
}

// asyncTrigger reports whether t is a trigger of queued invocations.
func asyncTrigger(t string) bool {
	return t == stratus.TriggerAsync || t == stratus.TriggerTopic || t == stratus.TriggerSchedule
}

func (q *Queue) enqueue(ctx context.Context, fn, id, trigger string, event []byte, dedupe bool) (_ string, err error) {
	if id == "" || len(id) > 128 {
		return "", fmt.Errorf("enqueue: request id %q: must be 1 to 128 characters: %w", id, stratus.ErrInvalid)
	}
	ref, err := validTarget(fn)
	if err != nil {
		return "", fmt.Errorf("enqueue: %w", err)
	}
	fn = ref.String()
	if _, ok := q.cfg.Policy(fn); !ok {
		return "", fmt.Errorf("enqueue: function %q: %w", fn, stratus.ErrNotFound)
	}
	if limit := q.cfg.MaxEventSize; len(event) > limit {
		return "", fmt.Errorf("enqueue %s: event of %d bytes exceeds %d: %w", fn, len(event), limit, stratus.ErrTooLarge)
	}
	if err := q.bus.Health(); err != nil {
		return "", fmt.Errorf("enqueue %s: %w", fn, err)
	}
	if _, err := q.consumer(ctx, fn); err != nil {
		return "", fmt.Errorf("enqueue %s: %w", fn, err)
	}
	if span, pctx := producerSpan(ctx, q.cfg.Tracer, "enqueue "+fn, AsyncSubject(fn),
		attribute.String(trace.AttrInvocationID, id), attribute.String(attrTrigger, trigger)); span != nil {
		ctx = pctx
		defer func() { endSpan(span, err) }()
	}
	now := q.now()
	msg := nats.NewMsg(AsyncSubject(fn))
	msg.Data = event
	msg.Header.Set(hdrRequestID, id)
	msg.Header.Set(hdrEnqueuedAt, now.UTC().Format(time.RFC3339Nano))
	msg.Header.Set(hdrTrigger, trigger)
	trace.Inject(ctx, http.Header(msg.Header))
	// Report before publishing: a worker may take the event at once.
	st := Status{RequestID: id, Function: fn, State: StateQueued, EnqueuedAt: now, UpdatedAt: now}
	q.report(st)
	if err := q.publish(ctx, msg, id, dedupe); err != nil {
		err = fmt.Errorf("enqueue %s: %w", fn, err)
		st.State, st.UpdatedAt = StateFailed, q.now()
		st.ErrorType, st.ErrorMessage = "EnqueueFailed", err.Error()
		q.report(st)
		return "", err
	}
	return id, nil
}

// Ensure creates the stream and fn's consumer if they do not exist and
// has Run serve fn. It is idempotent; Enqueue calls it.
func (q *Queue) Ensure(ctx context.Context, fn string) error {
	ref, err := validTarget(fn)
	if err != nil {
		return fmt.Errorf("ensure async consumer: %w", err)
	}
	fn = ref.String()
	if _, err := q.consumer(ctx, fn); err != nil {
		return fmt.Errorf("ensure async consumer %s: %w", fn, err)
	}
	return nil
}

func (q *Queue) getStream(ctx context.Context) (jetstream.Stream, error) {
	q.mu.Lock()
	s := q.stream
	q.mu.Unlock()
	if s != nil {
		return s, nil
	}
	release, err := q.bus.lockStreams(ctx)
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", AsyncStream, err)
	}
	defer release()
	q.mu.Lock()
	s = q.stream
	q.mu.Unlock()
	if s != nil {
		return s, nil // made meanwhile
	}
	maxBytes := orDefault(q.cfg.MaxBytes, q.bus.StreamBytes(DefaultMaxBytes, asyncShare))
	done := q.bus.api()
	defer done()
	s, err = q.bus.makeStream(ctx, jetstream.StreamConfig{
		Name:        AsyncStream,
		Description: "Stratus async invocations",
		Subjects:    []string{asyncSubjectPrefix + "*"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    maxBytes,
		MaxMsgSize:  int32(q.cfg.MaxEventSize + headerAllowance),
		Duplicates:  2 * time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", AsyncStream, q.bus.publishErr(err))
	}
	q.mu.Lock()
	q.stream = s
	q.mu.Unlock()
	return s, nil
}

func (q *Queue) consumer(ctx context.Context, fn string) (jetstream.Consumer, error) {
	q.mu.Lock()
	c := q.consumers[fn]
	q.mu.Unlock()
	if c != nil {
		return c, nil
	}
	s, err := q.getStream(ctx)
	if err != nil {
		return nil, err
	}
	// Every server makes the same consumer, with the same configuration,
	// and shares it: creating it again is a no-op.
	done := q.bus.api()
	cfg := jetstream.ConsumerConfig{
		Durable:       consumerPrefix + fn,
		Description:   "Stratus async invocations of " + fn,
		FilterSubject: AsyncSubject(fn),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       q.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: maxAckPending,
	}
	c, err = upsert(ctx, q.bus, func(ctx context.Context) (jetstream.Consumer, error) {
		return s.CreateOrUpdateConsumer(ctx, cfg)
	})
	if err != nil {
		// Another server may have made it meanwhile.
		if c2, gerr := s.Consumer(ctx, consumerPrefix+fn); gerr == nil {
			c, err = c2, nil
		}
	}
	done()
	if err != nil {
		return nil, fmt.Errorf("create consumer: %w", q.bus.publishErr(err))
	}
	q.mu.Lock()
	if prev := q.consumers[fn]; prev != nil {
		c = prev
	} else {
		q.consumers[fn] = c
	}
	q.mu.Unlock()
	select {
	case q.kick <- struct{}{}:
	default:
	}
	return c, nil
}

// Depth reports fn's events not yet done (queued, running or waiting for a
// retry) and the age of the oldest stored one (a retried event keeps its
// first enqueue time but goes behind newer ones, so this is the age of the
// event first in line).
func (q *Queue) Depth(ctx context.Context, fn string) (pending int, oldest time.Duration, err error) {
	if err := q.bus.Health(); err != nil {
		return 0, 0, fmt.Errorf("queue depth %s: %w", fn, err)
	}
	s, err := q.getStream(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("queue depth %s: %w", fn, err)
	}
	subj := AsyncSubject(fn)
	done := q.bus.api()
	defer done()
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return 0, 0, fmt.Errorf("queue depth %s: %w", fn, publishErr(err))
	}
	n := info.State.Subjects[subj]
	if n == 0 {
		return 0, 0, nil
	}
	m, err := s.GetMsg(ctx, info.State.FirstSeq, jetstream.WithGetMsgSubject(subj))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return int(n), 0, nil // done meanwhile
	} else if err != nil {
		return int(n), 0, fmt.Errorf("queue depth %s: oldest event: %w", fn, publishErr(err))
	}
	at := m.Time
	if t, err := time.Parse(time.RFC3339Nano, m.Header.Get(hdrEnqueuedAt)); err == nil {
		at = t
	}
	return int(n), max(q.now().Sub(at), 0), nil
}
