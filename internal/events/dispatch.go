package events

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	stratus "github.com/stratus-run/stratus"
)

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
	rescan := time.NewTicker(q.cfg.RescanInterval)
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
	drain := time.NewTimer(q.cfg.DrainTimeout)
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
		if _, err := validTarget(fn); err != nil {
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
	pollWait := q.cfg.PollWait
	errWait := 100 * time.Millisecond
	var backoff <-chan time.Time // set after an error: no request until it fires
	var retireAt time.Time       // when a removed function's end is next looked for
	for ctx.Err() == nil {
		if p.open == nil && backoff == nil && q.bus.Health() != nil {
			// Events wait in the stream while the bus cannot store
			// (a full disk): what they would write could not be kept.
			backoff = time.After(pollWait / 4)
		}
		if p.open == nil && backoff == nil {
			limit := 1 // a removed function's events are failed one at a time
			if pol, ok := q.cfg.Policy(fn); ok {
				limit = pol.withDefaults().MaxConcurrency
			} else if inflight.Load() == 0 && !time.Now().Before(retireAt) {
				// Gone, with nothing of it running: once nothing of it
				// is left in the stream either, its consumer and this
				// worker end (a later deploy of the name makes them
				// again at its first event).
				if q.retire(ctx, fn) {
					return
				}
				retireAt = time.Now().Add(pollWait)
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

// retire deletes the consumer of fn, a function that is gone (from Policy
// and, when QueueConfig.Exists is set, from the shared store), when it
// holds no event (none stored, none delivered and not yet acknowledged),
// and reports whether it did. An event stored after the check waits in the
// stream until the next scan makes the consumer again.
func (q *Queue) retire(ctx context.Context, fn string) bool {
	if q.bus.Health() != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	s, err := q.getStream(ctx)
	if err != nil {
		return false
	}
	// Another server may serve the function through the same consumer:
	// gone means gone from the store, not only from this server's memory.
	if q.existsElsewhere(ctx, fn) {
		return false
	}
	done := q.bus.api()
	defer done()
	c, err := s.Consumer(ctx, consumerPrefix+fn)
	if err != nil {
		return errors.Is(err, jetstream.ErrConsumerNotFound)
	}
	info, err := c.Info(ctx)
	if err != nil || info.NumPending > 0 || info.NumAckPending > 0 {
		return false
	}
	if err := s.DeleteConsumer(ctx, consumerPrefix+fn); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		q.log.Warn("delete the async consumer of a removed function", "fn", fn, "err", err)
		return false
	}
	q.log.Info("async consumer of a removed function deleted", "fn", fn)
	return true
}
