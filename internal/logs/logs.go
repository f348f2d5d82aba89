// Package logs batches the platform's output (instance log lines,
// invocation records, states of async invocations) into the store, off the invocation path, and tells
// followers when new lines are stored.
//
// Goroutines: Run owns the single writer goroutine (it is the loop itself);
// Log and Record only send on a bounded channel, blocking while it is full
// (backpressure, never unbounded memory). After Run returns, further lines
// are dropped.
package logs

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/store"
)

const (
	queueSize  = 1 << 16
	batchSize  = 2000
	flushEvery = 200 * time.Millisecond
)

// Retention bounds what the store keeps per function.
type Retention struct {
	Invocations int
	LogLines    int
	MaxAge      time.Duration
	// Every is how often old rows are pruned.
	Every time.Duration
}

type item struct {
	line  *stratus.LogLine
	rec   *stratus.Invocation
	async *stratus.AsyncStatus
	sync  chan struct{} // closed once everything queued before it is stored
}

// Writer stores log lines and records in batches.
type Writer struct {
	st   *store.Store
	ret  Retention
	log  *slog.Logger
	ch   chan item
	done chan struct{} // closed when Run has returned

	mu      sync.Mutex
	flushed chan struct{} // closed and replaced after each stored batch
}

// New returns a Writer; call Run.
func New(st *store.Store, ret Retention, log *slog.Logger) *Writer {
	if ret.Every == 0 {
		ret.Every = time.Minute
	}
	return &Writer{st: st, ret: ret, log: log, ch: make(chan item, queueSize), done: make(chan struct{}), flushed: make(chan struct{})}
}

// Log queues a log line.
func (w *Writer) Log(l stratus.LogLine) {
	select {
	case w.ch <- item{line: &l}:
	case <-w.done:
	}
}

// Record queues an invocation record.
func (w *Writer) Record(r stratus.Invocation) {
	select {
	case w.ch <- item{rec: &r}:
	case <-w.done:
	}
}

// AsyncStatus queues the state of an asynchronous invocation.
func (w *Writer) AsyncStatus(st stratus.AsyncStatus) {
	select {
	case w.ch <- item{async: &st}:
	case <-w.done:
	}
}

// Sync returns once everything queued before the call is stored. Waiting
// callers share one transaction (group commit), so many may sync at once
// at little cost.
func (w *Writer) Sync(ctx context.Context) error {
	select {
	case <-w.done:
		return errStopped
	default:
	}
	done := make(chan struct{})
	select {
	case w.ch <- item{sync: done}:
	case <-w.done:
		return errStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-w.done:
		// Run stored what it found queued before it returned; whether that
		// included this call's predecessors, done tells.
		select {
		case <-done:
			return nil
		default:
			return errStopped
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

var errStopped = errors.New("log writer stopped")

// Flushed returns a channel closed after the next batch is stored.
func (w *Writer) Flushed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flushed
}

// Run stores queued items until ctx ends, then stores what is queued and
// returns.
func (w *Writer) Run(ctx context.Context) error {
	defer close(w.done)
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	prune := time.NewTicker(w.ret.Every)
	defer prune.Stop()
	var lines []stratus.LogLine
	var recs []stratus.Invocation
	var sts []stratus.AsyncStatus
	var syncs []chan struct{}
	flush := func() {
		defer func() {
			for _, c := range syncs {
				close(c)
			}
			syncs = syncs[:0]
		}()
		if len(lines) == 0 && len(recs) == 0 && len(sts) == 0 {
			return
		}
		// Storing must finish even while the server stops.
		bg := context.WithoutCancel(ctx)
		if len(recs) > 0 {
			if err := w.st.InsertInvocations(bg, recs); err != nil {
				w.log.Error("store invocation records", "n", len(recs), "err", err)
			}
		}
		if len(lines) > 0 {
			if err := w.st.InsertLogs(bg, lines); err != nil {
				w.log.Error("store log lines", "n", len(lines), "err", err)
			}
		}
		if len(sts) > 0 {
			if err := w.st.PutAsyncStatuses(bg, sts); err != nil {
				w.log.Error("store async statuses", "n", len(sts), "err", err)
			}
		}
		lines, recs, sts = lines[:0], recs[:0], sts[:0]
		w.mu.Lock()
		close(w.flushed)
		w.flushed = make(chan struct{})
		w.mu.Unlock()
	}
	var add func(it item)
	add = func(it item) {
		switch {
		case it.sync != nil:
			syncs = append(syncs, it.sync)
			// Take whatever else is queued now, then store it all at once.
		drain:
			for {
				select {
				case more := <-w.ch:
					if more.sync != nil {
						syncs = append(syncs, more.sync)
						continue
					}
					add(more)
				default:
					break drain
				}
			}
			flush()
			return
		case it.line != nil:
			lines = append(lines, *it.line)
		case it.rec != nil:
			recs = append(recs, *it.rec)
		default:
			sts = append(sts, *it.async)
		}
		if len(lines)+len(recs)+len(sts) >= batchSize {
			flush()
		}
	}
	for {
		select {
		case it := <-w.ch:
			add(it)
		case <-tick.C:
			flush()
		case <-prune.C:
			flush()
			if n, err := w.st.Prune(ctx, w.ret.Invocations, w.ret.LogLines, w.ret.MaxAge); err != nil {
				w.log.Error("prune records", "err", err)
			} else if n > 0 {
				w.log.Debug("pruned records", "rows", n)
			}
		case <-ctx.Done():
		drain:
			for {
				select {
				case it := <-w.ch:
					add(it)
				default:
					break drain
				}
			}
			flush()
			return nil
		}
	}
}
