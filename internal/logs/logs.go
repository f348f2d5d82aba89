// Package logs batches the platform's output (instance log lines,
// invocation records, states of async invocations, services' usage
// minutes and replica lives) into the store, off the invocation path,
// tells followers when new lines are stored, and bounds the output of
// functions and services before it is queued (Limiter, Meter).
//
// Goroutines: Run owns the single writer goroutine (it is the loop
// itself); Log, Record, AsyncStatus, UsageMinute and ReplicaUsage only
// append to a queue bounded in bytes (Config.QueueBytes: an item costs
// its text plus a fixed overhead), and block while it is full
// (backpressure, never unbounded memory). They wake the loop only for a
// batch's worth or a full queue; otherwise it takes what is queued every
// flushEvery (200 ms), so that an invocation's lines and record cost no
// goroutine switch. An item's bytes
// count until it is stored. After Run returns, further items are dropped.
// A Meter's timer may call its report function from a goroutine of the
// runtime's; nothing else runs outside the caller's goroutine or Run's.
//
// Stored before acknowledged: Sync returns nil only once everything queued
// before it is stored. When the store fails (disk full), the writer keeps
// what it failed to store and tries again with backoff (250 ms doubling to
// 5 s) until it is stored, and Sync returns the error; Health says what
// failed until a store succeeds again, with no restart. While the store
// fails and the queue is full, what gives way is, first, log lines: they
// may fill all but an eighth of the queue, and beyond that they are dropped
// and counted (not waited for), so that sync invocations never wait on a
// failed store; the server's log says how many once the store works again.
// Records, async statuses, usage minutes and replica lives (together,
// records) may fill the whole queue; beyond it they are dropped too,
// counted and logged, and every Sync called within a minute after such a
// drop returns an error, so that the async event whose trace was dropped
// is not acknowledged and runs again.
//
// Usage is kept longer than records (Retention.Usage) and pruned in the
// same pass.
//
// Lock order: a Meter's mu, then its Limiter's mu. Writer.mu is never held
// with either; no lock is held across a store call or a report.
package logs

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratus-run/stratus"
)

const (
	// batchSize and batchBytes bound one transaction.
	batchSize  = 2000
	batchBytes = 4 << 20
	flushEvery = 200 * time.Millisecond
	// itemOverhead is what an item costs in the queue beyond its strings.
	itemOverhead = 256
	retryMin     = 250 * time.Millisecond
	retryMax     = 5 * time.Second
	// lossWindow is how long after a record or status was dropped Sync
	// fails.
	lossWindow = time.Minute
	// DefaultQueueBytes bounds the queue when Config.QueueBytes is 0.
	DefaultQueueBytes = 64 << 20
	// DefaultRetainUsage is how long usage is kept when Retention.Usage
	// is 0: a month's advice reads a month and a few days back.
	DefaultRetainUsage = 35 * 24 * time.Hour
)

// Retention bounds what the store keeps per function.
type Retention struct {
	Invocations int
	LogLines    int
	MaxAge      time.Duration
	// Usage is how long usage minutes and replica lives are kept
	// (DefaultRetainUsage if 0; less than 0 keeps them for good). It is
	// apart from MaxAge: usage is the history cost and advice read,
	// kept longer than records.
	Usage time.Duration
	// Every is how often old rows are pruned.
	Every time.Duration
}

// storer is what Writer needs of the store (*store.Store).
type storer interface {
	InsertLogs(ctx context.Context, lines []stratus.LogLine) error
	InsertInvocations(ctx context.Context, recs []stratus.Invocation) error
	PutAsyncStatuses(ctx context.Context, sts []stratus.AsyncStatus) error
	AddUsageMinutes(ctx context.Context, us []stratus.UsageMinute) error
	InsertReplicaUsages(ctx context.Context, us []stratus.ReplicaUsage) error
	Prune(ctx context.Context, maxInvocations, maxLogLines int, maxAge time.Duration) (int64, error)
	PruneUsage(ctx context.Context, maxAge time.Duration) (int64, error)
}

type item struct {
	line    *stratus.LogLine
	rec     *stratus.Invocation
	async   *stratus.AsyncStatus
	minute  *stratus.UsageMinute
	replica *stratus.ReplicaUsage
	sync    chan error // gets nil once everything queued before it is stored
}

// Writer stores log lines and records (invocation records, async
// statuses, usage minutes and replica lives) in batches. It is the
// services package's sink of usage (UsageMinute, ReplicaUsage).
type Writer struct {
	st   storer
	ret  Retention
	log  *slog.Logger
	max  int64            // the queue's bound in bytes
	now  func() time.Time // when records are dropped and Syncs called
	done chan struct{}    // closed when Run has returned
	wake chan struct{}    // the loop has items to take; buffered 1

	mu      sync.Mutex
	queue   []item
	qbytes  int64         // the cost of what queue holds
	bytes   int64         // queued or taken by the loop, not yet stored
	space   chan struct{} // closed and replaced when bytes go down or health changes
	failing error         // the last store attempt's error; nil if it succeeded
	lostAt  time.Time     // when a record or status was last dropped
	flushed chan struct{} // closed and replaced after each stored batch

	storeErrors  atomic.Int64
	droppedLines atomic.Int64 // lines dropped while the store failed
	droppedTrace atomic.Int64 // records (statuses, usage) dropped while the store failed
}

// Config configures a Writer. Store is required; every other zero field
// takes its default.
type Config struct {
	// Store keeps what the Writer is given; *store.Store is one.
	Store storer
	// Retention bounds what the store keeps; Retention.Every defaults to
	// a minute.
	Retention Retention
	// QueueBytes bounds the queue (DefaultQueueBytes).
	QueueBytes int64
	// Now is the clock of drops and Syncs (time.Now).
	Now func() time.Time
	// Log receives the Writer's log lines; nil discards them.
	Log *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Retention.Every == 0 {
		c.Retention.Every = time.Minute
	}
	if c.Retention.Usage == 0 {
		c.Retention.Usage = DefaultRetainUsage
	}
	if c.QueueBytes <= 0 {
		c.QueueBytes = DefaultQueueBytes
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// New returns a Writer configured by cfg; call Run.
func New(cfg Config) *Writer {
	cfg = cfg.withDefaults()
	return &Writer{
		st: cfg.Store, ret: cfg.Retention, log: cfg.Log, max: cfg.QueueBytes, now: cfg.Now,
		done: make(chan struct{}), wake: make(chan struct{}, 1),
		space: make(chan struct{}), flushed: make(chan struct{}),
	}
}

func lineCost(l *stratus.LogLine) int64 {
	return itemOverhead + int64(len(l.Text)+len(l.Function)+len(l.RequestID)+len(l.Instance)+len(l.Stream))
}

func recCost(r *stratus.Invocation) int64 {
	return itemOverhead + int64(len(r.RequestID)+len(r.Function)+len(r.Outcome)+len(r.ErrorType)+len(r.Instance))
}

func statusCost(s *stratus.AsyncStatus) int64 {
	return itemOverhead + int64(len(s.RequestID)+len(s.Function)+len(s.State)+len(s.ErrorType)+len(s.ErrorMessage))
}

func minuteCost(u *stratus.UsageMinute) int64 {
	return itemOverhead + int64(len(u.Kind)+len(u.Name)+len(u.Arch))
}

func replicaCost(u *stratus.ReplicaUsage) int64 {
	return itemOverhead + int64(len(u.Service)+len(u.Replica)+len(u.Arch))
}

// put outcomes.
const (
	queued = iota
	dropped
	stopped
)

// put queues it if the queue holds less than limit bytes with it (or is
// empty); else it waits for room while the store works and drops it while
// the store fails.
func (w *Writer) put(it item, cost, limit int64) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		select {
		case <-w.done:
			return stopped
		default:
		}
		if w.bytes == 0 || w.bytes+cost <= limit {
			w.queue = append(w.queue, it)
			w.bytes += cost
			w.qbytes += cost
			// The loop takes lines and records on its tick; it is woken
			// only for what should not wait for it: a Sync, or a batch's
			// worth.
			if it.sync != nil || len(w.queue) >= batchSize || w.qbytes >= batchBytes {
				w.wakeLocked()
			}
			return queued
		}
		if w.failing != nil {
			return dropped
		}
		// Room comes as the loop stores what it holds: have it store now.
		w.wakeLocked()
		space := w.space
		w.mu.Unlock()
		select {
		case <-space:
		case <-w.done:
		}
		w.mu.Lock()
	}
}

// wakeLocked has the loop take what is queued. w.mu is held.
func (w *Writer) wakeLocked() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Log queues a log line. While the queue is full it waits, unless the
// store fails: then the line is dropped and counted.
func (w *Writer) Log(l stratus.LogLine) {
	if w.put(item{line: &l}, lineCost(&l), w.max-w.max/8) == dropped {
		w.droppedLines.Add(1)
	}
}

// Record queues an invocation record (see the package doc for when it is
// dropped).
func (w *Writer) Record(r stratus.Invocation) {
	if w.put(item{rec: &r}, recCost(&r), w.max) == dropped {
		w.lost()
	}
}

// AsyncStatus queues the state of an asynchronous invocation (see the
// package doc for when it is dropped).
func (w *Writer) AsyncStatus(st stratus.AsyncStatus) {
	if w.put(item{async: &st}, statusCost(&st), w.max) == dropped {
		w.lost()
	}
}

// UsageMinute queues a minute of a service's use, which the store adds to
// what it holds of that minute (store.AddUsageMinutes). It is kept and
// dropped as a record is (see the package doc).
func (w *Writer) UsageMinute(u stratus.UsageMinute) {
	if w.put(item{minute: &u}, minuteCost(&u), w.max) == dropped {
		w.lost()
	}
}

// ReplicaUsage queues the life of a service's replica, so far or whole
// (store.InsertReplicaUsages). It is kept and dropped as a record is (see
// the package doc).
func (w *Writer) ReplicaUsage(u stratus.ReplicaUsage) {
	if w.put(item{replica: &u}, replicaCost(&u), w.max) == dropped {
		w.lost()
	}
}

func (w *Writer) lost() {
	w.droppedTrace.Add(1)
	w.mu.Lock()
	w.lostAt = w.now()
	w.mu.Unlock()
}

// Sync returns nil once everything queued before the call is stored.
// Waiting callers share one transaction (group commit), so many may sync at
// once at little cost. It returns the store's error when the next attempt
// to store fails (what it waited for stays queued and is tried again),
// an error within a minute after a record or status was dropped, and an
// error once Run has returned without storing it.
func (w *Writer) Sync(ctx context.Context) error {
	start := w.now()
	done := make(chan error, 1)
	if w.put(item{sync: done}, 0, math.MaxInt64) == stopped {
		return errStopped
	}
	var err error
	select {
	case err = <-done:
	case <-w.done:
		// Run stored what it found queued before it returned; whether that
		// included this call's predecessors, done tells.
		select {
		case err = <-done:
		default:
			return errStopped
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	if err != nil {
		return err
	}
	w.mu.Lock()
	lostAt := w.lostAt
	w.mu.Unlock()
	if !lostAt.IsZero() && start.Sub(lostAt) < lossWindow {
		return fmt.Errorf("log writer: a record or status was dropped at %s while the store failed: %w",
			lostAt.UTC().Format(time.RFC3339), stratus.ErrUnavailable)
	}
	return nil
}

var errStopped = fmt.Errorf("log writer stopped: %w", stratus.ErrUnavailable)

// Health returns nil when the last attempt to store succeeded (or none was
// made yet), else an error saying what failed ("store log lines: ...").
func (w *Writer) Health() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failing
}

// Stats are the writer's counters.
type Stats struct {
	// QueuedBytes is what waits to be stored, counted as the bound counts.
	QueuedBytes int64
	// StoreErrors counts failed attempts to store.
	StoreErrors int64
	// DroppedLines counts log lines dropped while the store failed and
	// the queue was full (DropStore).
	DroppedLines int64
	// DroppedRecords counts records, async statuses, usage minutes and
	// replica lives dropped so.
	DroppedRecords int64
}

// Stats returns the writer's counters.
func (w *Writer) Stats() Stats {
	w.mu.Lock()
	q := w.bytes
	w.mu.Unlock()
	return Stats{
		QueuedBytes: q, StoreErrors: w.storeErrors.Load(),
		DroppedLines: w.droppedLines.Load(), DroppedRecords: w.droppedTrace.Load(),
	}
}

// Flushed returns a channel closed after the next batch is stored.
func (w *Writer) Flushed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flushed
}

// batch is what the loop has taken from the queue and not yet stored.
type batch struct {
	lines []stratus.LogLine
	recs  []stratus.Invocation
	sts   []stratus.AsyncStatus
	mins  []stratus.UsageMinute
	reps  []stratus.ReplicaUsage
	syncs []chan error
	bytes int64
}

func (b *batch) empty() bool {
	return len(b.lines) == 0 && len(b.recs) == 0 && len(b.sts) == 0 && len(b.mins) == 0 && len(b.reps) == 0
}

// take moves what is queued into b.
func (w *Writer) take(b *batch) {
	w.mu.Lock()
	q := w.queue
	w.queue = nil
	w.qbytes = 0
	w.mu.Unlock()
	for _, it := range q {
		switch {
		case it.sync != nil:
			b.syncs = append(b.syncs, it.sync)
		case it.line != nil:
			b.lines = append(b.lines, *it.line)
			b.bytes += lineCost(it.line)
		case it.rec != nil:
			b.recs = append(b.recs, *it.rec)
			b.bytes += recCost(it.rec)
		case it.minute != nil:
			b.mins = append(b.mins, *it.minute)
			b.bytes += minuteCost(it.minute)
		case it.replica != nil:
			b.reps = append(b.reps, *it.replica)
			b.bytes += replicaCost(it.replica)
		default:
			b.sts = append(b.sts, *it.async)
			b.bytes += statusCost(it.async)
		}
	}
}

// release gives back n stored bytes.
func (w *Writer) release(b *batch, n int64) {
	b.bytes -= n
	w.mu.Lock()
	w.bytes -= n
	close(w.space)
	w.space = make(chan struct{})
	w.mu.Unlock()
}

// flush stores b in transactions of at most batchSize items and batchBytes
// and answers b's syncs. What could not be stored stays in b.
func (w *Writer) flush(ctx context.Context, b *batch) error {
	// Storing must finish even while the server stops.
	bg := context.WithoutCancel(ctx)
	err := w.store(bg, b)
	w.setHealth(err)
	for _, c := range b.syncs {
		c <- err
	}
	b.syncs = b.syncs[:0]
	return err
}

func (w *Writer) store(ctx context.Context, b *batch) error {
	for len(b.recs) > 0 {
		n := min(len(b.recs), batchSize)
		if err := w.st.InsertInvocations(ctx, b.recs[:n]); err != nil {
			return fmt.Errorf("store invocation records: %w", err)
		}
		var c int64
		for i := range b.recs[:n] {
			c += recCost(&b.recs[i])
		}
		clear(b.recs[:n])
		b.recs = b.recs[n:]
		w.release(b, c)
	}
	for len(b.mins) > 0 {
		n := min(len(b.mins), batchSize)
		if err := w.st.AddUsageMinutes(ctx, b.mins[:n]); err != nil {
			return fmt.Errorf("store usage minutes: %w", err)
		}
		var c int64
		for i := range b.mins[:n] {
			c += minuteCost(&b.mins[i])
		}
		clear(b.mins[:n])
		b.mins = b.mins[n:]
		w.release(b, c)
	}
	for len(b.reps) > 0 {
		n := min(len(b.reps), batchSize)
		if err := w.st.InsertReplicaUsages(ctx, b.reps[:n]); err != nil {
			return fmt.Errorf("store replica lives: %w", err)
		}
		var c int64
		for i := range b.reps[:n] {
			c += replicaCost(&b.reps[i])
		}
		clear(b.reps[:n])
		b.reps = b.reps[n:]
		w.release(b, c)
	}
	stored := false
	for len(b.lines) > 0 {
		n, c := 0, int64(0)
		for n < len(b.lines) && n < batchSize && (n == 0 || c < batchBytes) {
			c += lineCost(&b.lines[n])
			n++
		}
		if err := w.st.InsertLogs(ctx, b.lines[:n]); err != nil {
			return fmt.Errorf("store log lines: %w", err)
		}
		clear(b.lines[:n]) // let the texts go
		b.lines = b.lines[n:]
		w.release(b, c)
		stored = true
	}
	if stored {
		w.mu.Lock()
		close(w.flushed)
		w.flushed = make(chan struct{})
		w.mu.Unlock()
	}
	for len(b.sts) > 0 {
		n := min(len(b.sts), batchSize)
		if err := w.st.PutAsyncStatuses(ctx, b.sts[:n]); err != nil {
			return fmt.Errorf("store async statuses: %w", err)
		}
		var c int64
		for i := range b.sts[:n] {
			c += statusCost(&b.sts[i])
		}
		clear(b.sts[:n])
		b.sts = b.sts[n:]
		w.release(b, c)
	}
	return nil
}

// setHealth records the outcome of a store attempt; a change wakes callers
// waiting for room, who drop their item while the store fails.
func (w *Writer) setHealth(err error) {
	w.mu.Lock()
	was := w.failing
	w.failing = err
	if (was == nil) != (err == nil) {
		close(w.space)
		w.space = make(chan struct{})
	}
	queued := w.bytes
	w.mu.Unlock()
	switch {
	case err != nil:
		w.storeErrors.Add(1)
		if was == nil {
			w.log.Error("store failed; keeping what it holds and trying again", "queued_bytes", queued, "err", err)
		} else {
			w.log.Debug("store still fails", "queued_bytes", queued, "err", err)
		}
	case was != nil:
		w.log.Warn("store works again", "lines_dropped_total", w.droppedLines.Load(),
			"records_dropped_total", w.droppedTrace.Load(), "was", was)
	}
}

// Run stores queued items until ctx ends, then stores what is queued and
// returns. While the store fails it tries again with backoff.
func (w *Writer) Run(ctx context.Context) error {
	defer close(w.done)
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	prune := time.NewTicker(w.ret.Every)
	defer prune.Stop()
	var b batch
	var retryAt time.Time
	backoff := time.Duration(0)
	try := func() {
		if backoff > 0 && time.Now().Before(retryAt) {
			return
		}
		if len(b.syncs) == 0 && b.empty() {
			return
		}
		if err := w.flush(ctx, &b); err != nil {
			backoff = min(max(2*backoff, retryMin), retryMax)
			retryAt = time.Now().Add(backoff)
			return
		}
		backoff = 0
	}
	for {
		select {
		case <-w.wake:
			// A Sync, a batch's worth, or a caller waiting for room.
			w.take(&b)
			try()
		case <-tick.C:
			w.take(&b)
			try()
		case <-prune.C:
			w.take(&b)
			try()
			if backoff > 0 {
				continue
			}
			if n, err := w.st.Prune(ctx, w.ret.Invocations, w.ret.LogLines, w.ret.MaxAge); err != nil {
				w.log.Error("prune records", "err", err)
			} else if n > 0 {
				w.log.Debug("pruned records", "rows", n)
			}
			if n, err := w.st.PruneUsage(ctx, w.ret.Usage); err != nil {
				w.log.Error("prune usage", "err", err)
			} else if n > 0 {
				w.log.Debug("pruned usage", "rows", n)
			}
		case <-ctx.Done():
			w.take(&b)
			backoff = 0
			try()
			if !b.empty() {
				w.log.Error("log writer stopped with items not stored", "lines", len(b.lines),
					"records", len(b.recs), "statuses", len(b.sts), "usage_minutes", len(b.mins),
					"replica_lives", len(b.reps))
			}
			return nil
		}
	}
}
