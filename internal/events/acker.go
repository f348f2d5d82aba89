package events

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// ackInterval is the least time between two of an acker's batches: events
// finished meanwhile share one BeforeAck (one store transaction) and one
// flush of their acknowledgements.
const ackInterval = 5 * time.Millisecond

// acker settles the events a worker's handlers have finished, in batches:
// one BeforeAck for every event finished since the last batch, then an
// acknowledgement of each and one flush of the connection, where settling
// each event alone costs a store sync and an acknowledgement round trip.
// The guarantees are those of settling one at a time: an event is
// acknowledged only after BeforeAck, called after its OnDone, returned
// nil (its trace is stored), and if BeforeAck fails none of the batch is
// acknowledged, each is delivered again. An acknowledgement lost in a
// crash before the flush means a redelivery (at least once), as a lost
// synchronous one would.
//
// The worker that makes an acker starts its goroutine (run) and stops it
// with close after its handlers have ended; close settles what is left.
type acker struct {
	q    *Queue
	fn   string
	wake chan struct{} // buffered 1: something was added
	quit chan struct{} // closed by close
	done chan struct{} // closed when run returns

	mu      sync.Mutex
	pending []pendingAck
}

type pendingAck struct {
	msg *nats.Msg
	id  string
}

func newAcker(q *Queue, fn string) *acker {
	return &acker{q: q, fn: fn, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
}

// add hands over msg, whose event is done and whose trace (status, OnDone)
// has been handed to the store, to be acknowledged after BeforeAck. It
// does not block.
func (a *acker) add(msg *nats.Msg, id string) {
	a.mu.Lock()
	a.pending = append(a.pending, pendingAck{msg: msg, id: id})
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// run settles batches until close, then settles what is left and returns.
func (a *acker) run() {
	defer close(a.done)
	var last time.Time
	for {
		select {
		case <-a.wake:
		case <-a.quit:
			a.settle(a.take())
			return
		}
		// Let more events finish, so that they share the batch.
		if wait := ackInterval - time.Since(last); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-a.quit:
				t.Stop()
			}
		}
		last = time.Now()
		a.settle(a.take())
	}
}

func (a *acker) take() []pendingAck {
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.pending
	a.pending = nil
	return b
}

// settle stores the traces of batch (BeforeAck) and acknowledges its
// events, or, if that fails, has them delivered again.
func (a *acker) settle(batch []pendingAck) {
	if len(batch) == 0 {
		return
	}
	q := a.q
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if q.cfg.BeforeAck != nil {
		if err := q.cfg.BeforeAck(ctx); err != nil {
			q.log.Error("store the traces of async attempts; not acknowledging their events, they run again",
				"fn", a.fn, "events", len(batch), "req_id", batch[0].id, "err", err)
			for _, p := range batch {
				_ = p.msg.NakWithDelay(jitter(2*q.cfg.ThrottleDelay, rand.Float64()))
			}
			return
		}
	}
	failed := 0
	for _, p := range batch {
		if err := p.msg.Ack(); err != nil {
			failed++
			if failed == 1 {
				q.log.Warn("ack async event; it will be delivered again", "fn", a.fn, "req_id", p.id, "err", err)
			}
		}
	}
	if failed < len(batch) {
		// The acknowledgements are on their way once flushed; wait for
		// that, so that close returns with them sent.
		if err := q.bus.nc.FlushWithContext(ctx); err != nil {
			q.log.Warn("flush async acks; their events may be delivered again", "fn", a.fn, "events", len(batch)-failed, "err", err)
		}
	}
}

// close stops run after it has settled everything added before; call it
// once every handler that may add has returned.
func (a *acker) close() {
	close(a.quit)
	<-a.done
}
