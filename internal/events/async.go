package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	stratus "github.com/stratus-run/stratus"
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

// Message headers of an async event.
const (
	hdrRequestID  = "Stratus-Request-Id"
	hdrEnqueuedAt = "Stratus-Enqueued-At" // RFC 3339, of the first enqueue
	hdrAttempts   = "Stratus-Attempts"    // attempts already made
	hdrNotBefore  = "Stratus-Not-Before"  // RFC 3339, earliest next attempt
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
	// Timeout plus Queue.InvokeSlack is cancelled and counts as a failed
	// attempt. Default stratus.DefaultTimeoutSec.
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
type DoneFunc func(fn, requestID string, event []byte, result *stratus.Response, attempts int, err error)

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

// Queue holds durable async invocations and dispatches them to an Invoker.
// Set its exported fields, if at all, before the first call of any method;
// zero fields take the defaults named after them.
type Queue struct {
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
	// about RetryBase·2^(n-1), at most RetryMax, half of it jittered.
	RetryBase, RetryMax time.Duration
	// ThrottleDelay is about how long a throttled event waits (jittered).
	ThrottleDelay time.Duration
	// AckWait is how long a delivered event may go without an ack or a
	// heartbeat before JetStream delivers it again; heartbeats go every
	// AckWait/3 while an invocation runs. After a crash, events that were
	// in flight are delivered again once it has passed.
	AckWait time.Duration
	// DrainTimeout bounds how long Run waits for in-flight invocations
	// when its ctx ends.
	DrainTimeout time.Duration
	// PollWait is how long one pull request waits for events; a stopping
	// Run waits for each worker's last request to end, so it is also about
	// how long an idle Run takes to stop.
	PollWait time.Duration
	// RescanInterval is how often Run looks for functions with events or
	// consumers it does not serve yet (published by other servers or
	// plain NATS clients).
	RescanInterval time.Duration
	// InvokeSlack is added to a function's Timeout to bound one Invoke.
	InvokeSlack time.Duration
	// Now is the clock of retry and age decisions (time.Now).
	Now func() time.Time

	bus    *Bus
	inv    Invoker
	lookup PolicyFunc
	sink   StatusSink
	log    *slog.Logger
	kick   chan struct{} // a consumer was added; buffered 1

	mu        sync.Mutex
	stream    jetstream.Stream              // nil until created
	consumers map[string]jetstream.Consumer // by function
	running   bool
}

// NewQueue returns a Queue storing events on bus and invoking them with
// inv. lookup gives each function's policy; sink (may be nil) receives
// status transitions.
func NewQueue(bus *Bus, inv Invoker, lookup PolicyFunc, sink StatusSink, log *slog.Logger) *Queue {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Queue{
		bus: bus, inv: inv, lookup: lookup, sink: sink, log: log,
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

func (q *Queue) now() time.Time {
	if q.Now != nil {
		return q.Now()
	}
	return time.Now()
}

// Enqueue stores event for an async invocation of fn and returns its
// request ID once JetStream has acknowledged it. It blocks for one
// round trip (plus the consumer's creation on fn's first event). Errors:
// stratus.ErrInvalid (bad name), ErrNotFound (no such function),
// ErrTooLarge (event over MaxEventSize), ErrCapacity (stream full),
// ErrNoSpace (the data volume is full: see Bus.Health), ErrUnavailable
// (JetStream not answering within PublishTimeout, or disabled), or ctx's
// error. It fails at once while the bus is unhealthy.
func (q *Queue) Enqueue(ctx context.Context, fn string, event []byte) (string, error) {
	// A new ID cannot be a duplicate: no deduplication to ask for.
	return q.enqueue(ctx, fn, stratus.NewRequestID(), event, false)
}

// EnqueueID is Enqueue with the request ID chosen by the caller: enqueuing
// the same ID again within the stream's duplicate window stores the event
// once (a subscription redelivering a topic event, say).
func (q *Queue) EnqueueID(ctx context.Context, fn, id string, event []byte) (string, error) {
	return q.enqueue(ctx, fn, id, event, true)
}

func (q *Queue) enqueue(ctx context.Context, fn, id string, event []byte, dedupe bool) (string, error) {
	if id == "" || len(id) > 128 {
		return "", fmt.Errorf("enqueue: request id %q: must be 1 to 128 characters: %w", id, stratus.ErrInvalid)
	}
	if err := stratus.ValidName(fn); err != nil {
		return "", fmt.Errorf("enqueue: %w", err)
	}
	if _, ok := q.lookup(fn); !ok {
		return "", fmt.Errorf("enqueue: function %q: %w", fn, stratus.ErrNotFound)
	}
	if limit := orDefault(q.MaxEventSize, DefaultMaxEventSize); len(event) > limit {
		return "", fmt.Errorf("enqueue %s: event of %d bytes exceeds %d: %w", fn, len(event), limit, stratus.ErrTooLarge)
	}
	if err := q.bus.Health(); err != nil {
		return "", fmt.Errorf("enqueue %s: %w", fn, err)
	}
	if _, err := q.consumer(ctx, fn); err != nil {
		return "", fmt.Errorf("enqueue %s: %w", fn, err)
	}
	now := q.now()
	msg := nats.NewMsg(AsyncSubject(fn))
	msg.Data = event
	msg.Header.Set(hdrRequestID, id)
	msg.Header.Set(hdrEnqueuedAt, now.UTC().Format(time.RFC3339Nano))
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

// Ensure creates the stream and fn's consumer if they do not exist and
// has Run serve fn. It is idempotent; Enqueue calls it.
func (q *Queue) Ensure(ctx context.Context, fn string) error {
	if err := stratus.ValidName(fn); err != nil {
		return fmt.Errorf("ensure async consumer: %w", err)
	}
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
	maxBytes := orDefault(q.MaxBytes, q.bus.StreamBytes(DefaultMaxBytes, asyncShare))
	done := q.bus.api()
	defer done()
	s, err = q.bus.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        AsyncStream,
		Description: "Stratus async invocations",
		Subjects:    []string{asyncSubjectPrefix + "*"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    maxBytes,
		MaxMsgSize:  int32(orDefault(q.MaxEventSize, DefaultMaxEventSize) + headerAllowance),
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
	done := q.bus.api()
	c, err = s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       consumerPrefix + fn,
		Description:   "Stratus async invocations of " + fn,
		FilterSubject: AsyncSubject(fn),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       orDefault(q.AckWait, DefaultAckWait),
		MaxDeliver:    -1,
		MaxAckPending: maxAckPending,
	})
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

// Run dispatches stored events until ctx ends, then drains (see the
// package comment) and returns nil once every goroutine it started has
// ended. It returns an error only if the stream cannot be created at
// start. Only one Run may be active per Queue.
func (q *Queue) Run(ctx context.Context) error {
	q.mu.Lock()
	if q.running {
		q.mu.Unlock()
		return fmt.Errorf("run async queue: already running: %w", stratus.ErrConflict)
	}
	q.running = true
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		q.running = false
		q.mu.Unlock()
	}()
	if _, err := q.getStream(ctx); err != nil {
		return fmt.Errorf("run async queue: %w", err)
	}

	// Invocations outlive ctx by up to DrainTimeout.
	invCtx, stopInvocations := context.WithCancel(context.WithoutCancel(ctx))
	defer stopInvocations()

	var wg sync.WaitGroup
	workers := make(map[string]bool)
	exited := make(chan string)
	startWorkers := func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		for fn := range q.consumers {
			if workers[fn] {
				continue
			}
			workers[fn] = true
			wg.Go(func() {
				q.work(ctx, invCtx, fn)
				select {
				case exited <- fn:
				case <-ctx.Done():
				}
			})
		}
	}
	q.scan(ctx)
	startWorkers()
	rescan := time.NewTicker(orDefault(q.RescanInterval, DefaultRescanInterval))
	defer rescan.Stop()
	for ctx.Err() == nil {
		restarted := q.bus.Restarted()
		select {
		case <-ctx.Done():
		case <-restarted:
			// JetStream was re-enabled: make sure the stream and every
			// consumer exist (Enqueue creates its function's again).
			q.mu.Lock()
			q.stream = nil
			clear(q.consumers)
			q.mu.Unlock()
			q.scan(ctx)
			startWorkers()
		case <-q.kick:
			startWorkers()
		case fn := <-exited:
			delete(workers, fn)
			q.mu.Lock()
			delete(q.consumers, fn) // the next scan recreates it if it has events
			q.mu.Unlock()
		case <-rescan.C:
			q.scan(ctx)
			startWorkers()
		}
	}

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	drain := time.NewTimer(orDefault(q.DrainTimeout, DefaultDrainTimeout))
	defer drain.Stop()
	select {
	case <-done:
	case <-drain.C:
		q.log.Warn("async invocations still running after drain timeout; cancelling them")
		stopInvocations()
		<-done
	}
	return nil
}

// scan makes sure every function with a consumer or with stored events has
// a consumer in q.consumers.
func (q *Queue) scan(ctx context.Context) {
	if q.bus.Health() != nil {
		return // JetStream would not answer, or is about to be re-enabled
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	s, err := q.getStream(ctx)
	if err != nil {
		q.log.Warn("scan async stream", "err", err)
		return
	}
	fns := make(map[string]bool)
	done := q.bus.api()
	names := s.ConsumerNames(ctx)
	for name := range names.Name() {
		if fn, ok := strings.CutPrefix(name, consumerPrefix); ok {
			fns[fn] = true
		}
	}
	if err := names.Err(); err != nil && ctx.Err() == nil {
		q.log.Warn("list async consumers", "err", err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(asyncSubjectPrefix+"*"))
	done()
	if err != nil {
		if ctx.Err() == nil {
			q.log.Warn("list async subjects", "err", err)
		}
	} else {
		for subj := range info.State.Subjects {
			fns[strings.TrimPrefix(subj, asyncSubjectPrefix)] = true
		}
	}
	for fn := range fns {
		if err := stratus.ValidName(fn); err != nil {
			q.log.Warn("async events for an invalid function name stay unserved", "fn", fn)
			continue
		}
		if _, err := q.consumer(ctx, fn); err != nil && ctx.Err() == nil {
			q.log.Warn("ensure async consumer", "fn", fn, "err", err)
		}
	}
}

// work pulls fn's events while it has free concurrency slots and runs a
// handler for each, until ctx ends or the consumer is deleted; it returns
// after its last pull request has ended, every event that request brought
// after ctx ended has been handed back, and its handlers have ended.
func (q *Queue) work(ctx, invCtx context.Context, fn string) {
	p, err := newPuller(q.bus, AsyncStream, consumerPrefix+fn)
	if err != nil {
		q.log.Warn("pull async events", "fn", fn, "err", err)
		return
	}
	defer p.close()
	acks := newAcker(q, fn)
	go acks.run()
	defer acks.close() // after the handlers: they add to it
	var handlers sync.WaitGroup
	defer handlers.Wait()
	defer p.finish(func(msg *nats.Msg) { q.handBack(fn, msg, decode(msg)) }) // not started

	var inflight atomic.Int64
	freed := make(chan struct{}, 1)
	pollWait := orDefault(q.PollWait, DefaultPollWait)
	errWait := 100 * time.Millisecond
	var backoff <-chan time.Time // set after an error: no request until it fires
	for ctx.Err() == nil {
		if p.open == nil && backoff == nil && q.bus.Health() != nil {
			// Events wait in the stream while the bus cannot store
			// (a full disk): what they would write could not be kept.
			backoff = time.After(pollWait / 4)
		}
		if p.open == nil && backoff == nil {
			limit := 1 // a removed function's events are failed one at a time
			if pol, ok := q.lookup(fn); ok {
				limit = pol.withDefaults().MaxConcurrency
			}
			if free := limit - int(inflight.Load()); free > 0 {
				if err := p.request(free, pollWait); err != nil {
					q.log.Warn("pull async events", "fn", fn, "err", err)
					backoff, errWait = time.After(errWait), min(2*errWait, 5*time.Second)
				}
			}
		}
		restarted := q.bus.Restarted()
		select {
		case m := <-p.msgs:
			msg, asked, err := p.receive(m)
			switch {
			case msg != nil && ctx.Err() != nil:
				q.handBack(fn, msg, decode(msg)) // not started
			case msg != nil && !asked:
				_ = msg.Nak() // its request was given up: no slot for it
			case msg != nil:
				errWait = 100 * time.Millisecond
				inflight.Add(1)
				handlers.Go(func() {
					var once sync.Once
					release := func() {
						once.Do(func() {
							inflight.Add(-1)
							select {
							case freed <- struct{}{}:
							default:
							}
						})
					}
					defer release()
					q.handle(invCtx, fn, msg, release, acks)
				})
			case errors.Is(err, errConsumerDeleted):
				q.log.Info("async consumer gone", "fn", fn)
				return
			case err != nil:
				q.log.Warn("pull async events", "fn", fn, "err", err)
				backoff, errWait = time.After(errWait), min(2*errWait, 5*time.Second)
			default:
				errWait = 100 * time.Millisecond
			}
		case <-p.giveUp():
			q.log.Warn("async pull request unanswered; asking again", "fn", fn)
			p.end()
		case <-restarted:
			p.end() // JetStream was re-enabled: the request is gone
		case <-backoff:
			backoff = nil
		case <-freed:
		case <-ctx.Done():
		}
	}
}

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
	pol, ok := q.lookup(fn)
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
	invCtx, cancel := context.WithTimeout(ctx, pol.Timeout+orDefault(q.InvokeSlack, DefaultInvokeSlack))
	stopBeats := q.heartbeat(msg)
	res, err := q.inv.Invoke(invCtx, fn, stratus.Request{RequestID: e.id, Event: msg.Data})
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
		_ = msg.NakWithDelay(jitter(orDefault(q.ThrottleDelay, DefaultThrottleDelay), rand.Float64()))
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
	delay := retryDelay(orDefault(q.RetryBase, DefaultRetryBase), orDefault(q.RetryMax, DefaultRetryMax), attempt, rand.Float64())
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
	if q.OnDone != nil {
		q.OnDone(fn, e.id, msg.Data, res, st.Attempt, err)
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
	if q.BeforeAck == nil {
		return true
	}
	if err := q.BeforeAck(ctx); err != nil {
		q.log.Error("store the trace of an async attempt; not acknowledging its event, it runs again",
			"fn", fn, "req_id", id, "err", err)
		_ = msg.NakWithDelay(jitter(2*orDefault(q.ThrottleDelay, DefaultThrottleDelay), rand.Float64()))
		return false
	}
	return true
}

// heartbeat keeps msg's ack deadline moving until the returned stop is
// called; stop waits for its goroutine.
func (q *Queue) heartbeat(msg *nats.Msg) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	every := orDefault(q.AckWait, DefaultAckWait) / 3
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
	if q.sink != nil {
		q.sink.AsyncStatus(st)
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
