package events

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// statsMaxAge is how long a figure read from JetStream is reused: a
// scrape reads the stream at most once per statsMaxAge.
const statsMaxAge = time.Second

// statsTimeout bounds the JetStream requests of one refresh of the figures.
const statsTimeout = 2 * time.Second

// liveMargin is added to the longest an event may stay taken and not done
// (Queue.liveFor): the time its finish takes (OnDone, BeforeAck, the
// acknowledgement) and a skew between the clocks of the servers that
// stamped and took it.
const liveMargin = 10 * time.Minute

// liveSweepEvery is how often a function's events taken and not done are
// looked through for those that can no longer be running here.
const liveSweepEvery = time.Minute

// QueueStats are the figures of one function's async events.
type QueueStats struct {
	// Depth is the function's events not yet done: queued, running or
	// waiting for a retry (its messages in the stream). Read at most
	// once a second.
	Depth int64
	// OldestAge is how long ago the oldest event not yet done was first
	// enqueued (Lambda's AsyncEventAge), 0 when there is none: the older
	// of the event first in line in the stream and the events this server
	// has taken and not finished (running, or waiting for a retry, which
	// wait behind newer ones).
	OldestAge time.Duration
	// Counters since the Queue was made (the server started).
	//
	// Retries counts attempts after an event's first.
	Retries int64
	// Expired counts events that failed for good, Lambda's dropped
	// events: out of retries, older than MaxEventAge, or whose function
	// is gone.
	Expired int64
	// DeadLettered counts failed events whose record went to the
	// function's on-failure destination.
	DeadLettered int64
	// DestinationFailures counts records (success or failure) that could
	// not be delivered to their destination.
	DestinationFailures int64
}

// queueCounters are the Queue's counters and the events it has taken and
// not finished, by function, and its cache of the stream's figures.
//
// Both stay bounded when events are finished elsewhere (another server on
// the same stream, an event deleted from it) and when functions go: an
// event taken and not done is forgotten once it is older than its
// function's events can be while still running here (fnCounters.keep), or
// when its function has nothing left in the stream; a function's counters
// are dropped once it is removed and has nothing left in the stream
// (refreshStats).
type queueCounters struct {
	mu     sync.Mutex
	byFn   map[string]*fnCounters
	depth  map[string]int64 // from the stream, as of readAt
	first  map[string]time.Time
	readAt time.Time

	refreshing sync.Mutex // held by the one refresh under way
}

type fnCounters struct {
	retries, expired, deadLettered, destFailures int64

	live    map[string]time.Time // request ID → first enqueue
	keep    time.Duration        // how long after its first enqueue an event of live may still be running here
	sweepAt time.Time            // when live is next looked through for events older than keep
	changes uint64               // counts every call that touched these counters
}

// fnLocked returns fn's counters; c.mu is held.
func (c *queueCounters) fnLocked(fn string) *fnCounters {
	if c.byFn == nil {
		c.byFn = make(map[string]*fnCounters)
	}
	f := c.byFn[fn]
	if f == nil {
		f = &fnCounters{live: make(map[string]time.Time)}
		c.byFn[fn] = f
	}
	f.changes++
	return f
}

// sweep forgets the events of live first enqueued more than keep before
// now, at most once per liveSweepEvery: they were finished by another
// server, or are failed at their next delivery (older than their maximum
// age), which tracks them again. The caller holds the queueCounters' mu.
func (f *fnCounters) sweep(now time.Time) {
	if f.keep <= 0 || now.Before(f.sweepAt) {
		return
	}
	f.sweepAt = now.Add(liveSweepEvery)
	maps.DeleteFunc(f.live, func(_ string, at time.Time) bool { return now.Sub(at) > f.keep })
}

// track notes that event id of fn, first enqueued at, was taken at now
// and is not done; keep is how long after its first enqueue an event of
// fn may still be running here (Queue.liveFor).
func (c *queueCounters) track(fn, id string, at, now time.Time, keep time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.fnLocked(fn)
	f.keep = keep
	f.sweep(now)
	f.live[id] = at
}

func (c *queueCounters) retried(fn string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fnLocked(fn).retries++
}

// done notes that event id of fn is done, failed or not, and what its
// DoneFunc did with it.
func (c *queueCounters) done(fn, id string, failed bool, r Routing) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.fnLocked(fn)
	delete(f.live, id)
	if failed {
		f.expired++
		if r.Destination != "" && !r.Failed {
			f.deadLettered++
		}
	}
	if r.Failed {
		f.destFailures++
	}
}

// Stats returns the figures of every function that has events, a
// consumer, or counts since the start, but not of a removed function
// (PolicyFunc false) with nothing left in the stream: its counts are
// dropped at the first read of the stream that finds none of its events.
// Depth and the stream's oldest event are read from JetStream at most
// once a second (one request for every function's depth, one per function
// with events for its first); between reads, and while the bus is
// unhealthy, the last ones are returned. It blocks for at most about two
// seconds.
func (q *Queue) Stats() map[string]QueueStats {
	q.refreshStats()
	now := q.now()
	q.mu.Lock()
	fns := make([]string, 0, len(q.consumers))
	for fn := range q.consumers {
		fns = append(fns, fn)
	}
	q.mu.Unlock()
	// A removed function keeps its consumer, and its worker fails what
	// is left of its events; the consumer alone is no figure.
	fns = slices.DeleteFunc(fns, func(fn string) bool {
		_, ok := q.cfg.Policy(fn)
		return !ok
	})

	c := &q.stats
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]QueueStats, len(c.byFn)+len(c.depth))
	for _, fn := range fns {
		out[fn] = QueueStats{}
	}
	for fn, d := range c.depth {
		out[fn] = QueueStats{Depth: d}
	}
	for fn, f := range c.byFn {
		f.sweep(now)
		s := out[fn]
		s.Retries, s.Expired, s.DeadLettered, s.DestinationFailures = f.retries, f.expired, f.deadLettered, f.destFailures
		out[fn] = s
	}
	for fn, s := range out {
		oldest := c.first[fn]
		if f := c.byFn[fn]; f != nil && s.Depth > 0 {
			for _, at := range f.live {
				if oldest.IsZero() || at.Before(oldest) {
					oldest = at
				}
			}
		}
		if s.Depth > 0 && !oldest.IsZero() {
			s.OldestAge = max(now.Sub(oldest), 0)
		}
		out[fn] = s
	}
	return out
}

// refreshStats reads every function's depth and first event from the
// stream if the last read is older than statsMaxAge; a refresh already
// under way (another scrape) is not waited for. A function with nothing
// left in the stream loses its events taken and not done (done elsewhere),
// and, if it is removed and its counters did not change since before the
// read, its counters.
func (q *Queue) refreshStats() {
	c := &q.stats
	c.mu.Lock()
	fresh := time.Since(c.readAt) < statsMaxAge
	c.mu.Unlock()
	if fresh || q.bus.Health() != nil || !c.refreshing.TryLock() {
		return
	}
	defer c.refreshing.Unlock()
	// Counters that change after this (an event of a removed function
	// failed meanwhile) are kept until the next read.
	c.mu.Lock()
	changes := make(map[string]uint64, len(c.byFn))
	for fn, f := range c.byFn {
		changes[fn] = f.changes
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	depth, first, err := q.readStream(ctx)
	if err != nil {
		q.log.Debug("read async queue figures", "err", err)
		return
	}
	// Removed functions with nothing left in the stream; PolicyFunc is
	// called without c.mu held.
	maps.DeleteFunc(changes, func(fn string, _ uint64) bool {
		_, ok := q.cfg.Policy(fn)
		return ok || depth[fn] > 0
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	c.depth, c.first, c.readAt = depth, first, time.Now()
	for fn, f := range c.byFn {
		if depth[fn] > 0 {
			continue
		}
		// Nothing stored: what this server took is done (by another
		// server, or before a restart of the stream).
		clear(f.live)
		if n, gone := changes[fn]; gone && n == f.changes {
			delete(c.byFn, fn)
		}
	}
}

// readStream returns each function's events in the stream and the first
// enqueue time of the event first in line.
func (q *Queue) readStream(ctx context.Context) (map[string]int64, map[string]time.Time, error) {
	s, err := q.getStream(ctx)
	if err != nil {
		return nil, nil, err
	}
	done := q.bus.api()
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(asyncSubjectPrefix+"*"))
	done()
	if err != nil {
		return nil, nil, publishErr(err)
	}
	depth := make(map[string]int64, len(info.State.Subjects))
	first := make(map[string]time.Time, len(info.State.Subjects))
	for subj, n := range info.State.Subjects {
		fn := strings.TrimPrefix(subj, asyncSubjectPrefix)
		depth[fn] = int64(n)
		done := q.bus.api()
		m, err := s.GetMsg(ctx, info.State.FirstSeq, jetstream.WithGetMsgSubject(subj))
		done()
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			continue // done meanwhile
		case err != nil:
			return nil, nil, publishErr(err)
		}
		at := m.Time
		if t, err := time.Parse(time.RFC3339Nano, m.Header.Get(hdrEnqueuedAt)); err == nil {
			at = t
		}
		first[fn] = at
	}
	return depth, first, nil
}

// BusStats are the figures of the bus's JetStream.
type BusStats struct {
	// Enabled is whether JetStream is enabled (with an external server:
	// whether it answered the last read).
	Enabled bool
	// Healthy is whether the bus can store events (Health is nil).
	Healthy bool
	// Streams are the messages and bytes of each of Stratus's streams
	// (AsyncStream, TopicStream), by name.
	Streams map[string]StreamStats
	// StoreMax is the file store's limit (the embedded server's, or the
	// account's with an external one; 0 when unlimited or unknown);
	// StoreReserved what the streams' MaxBytes reserve of it; StoreUsed
	// the bytes stored.
	StoreMax, StoreReserved, StoreUsed int64
}

// StreamStats are the figures of one stream.
type StreamStats struct {
	Messages, Bytes uint64
}

// busStatsCache is the last BusStats read and when.
type busStatsCache struct {
	mu         sync.Mutex
	stats      BusStats
	at         time.Time
	refreshing sync.Mutex
}

// Stats returns the figures of the bus's JetStream. They are read at
// most once a second (from the embedded server directly, or with two
// requests to an external one) and reused in between; Healthy is always
// current. It blocks for at most about two seconds.
func (b *Bus) Stats() BusStats {
	c := &b.stats
	c.mu.Lock()
	stale := time.Since(c.at) >= statsMaxAge
	c.mu.Unlock()
	if stale && c.refreshing.TryLock() {
		st, ok := b.readStats()
		if ok {
			c.mu.Lock()
			c.stats, c.at = st, time.Now()
			c.mu.Unlock()
		}
		c.refreshing.Unlock()
	}
	c.mu.Lock()
	st := c.stats
	c.mu.Unlock()
	st.Streams = maps.Clone(st.Streams)
	st.Healthy = b.Health() == nil
	return st
}

// readStats reads the figures; false when they cannot be read now (keep
// the last ones).
func (b *Bus) readStats() (BusStats, bool) {
	st := BusStats{Streams: make(map[string]StreamStats)}
	if b.srv != nil {
		// The server's own figures, without a request; not while
		// JetStream is being re-enabled.
		if !b.apiMu.TryRLock() {
			return st, false
		}
		defer b.apiMu.RUnlock()
		st.Enabled = b.srv.JetStreamEnabled()
		if !st.Enabled {
			return st, true
		}
		info, err := b.srv.Jsz(&server.JSzOptions{Accounts: true, Streams: true})
		if err != nil {
			b.log.Debug("read JetStream figures", "err", err)
			return st, true
		}
		st.StoreMax = info.Config.MaxStore
		st.StoreReserved, st.StoreUsed = int64(info.ReservedStore), int64(info.Store)
		for _, acc := range info.AccountDetails {
			for _, s := range acc.Streams {
				if ours(s.Name) {
					st.Streams[s.Name] = StreamStats{Messages: s.State.Msgs, Bytes: s.State.Bytes}
				}
			}
		}
		return st, true
	}
	if b.Health() != nil {
		return st, true // not connected: nothing answers
	}
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	done := b.api()
	defer done()
	acc, err := b.js.AccountInfo(ctx)
	if err != nil {
		b.log.Debug("read JetStream account figures", "err", err)
		return st, true
	}
	st.Enabled = true
	st.StoreMax = max(acc.Limits.MaxStore, 0)
	st.StoreReserved, st.StoreUsed = int64(acc.ReservedStore), int64(acc.Store)
	names := b.js.ListStreams(ctx)
	for s := range names.Info() {
		if ours(s.Config.Name) {
			st.Streams[s.Config.Name] = StreamStats{Messages: s.State.Msgs, Bytes: s.State.Bytes}
		}
	}
	if err := names.Err(); err != nil {
		b.log.Debug("list JetStream streams", "err", err)
	}
	return st, true
}

// ours reports whether stream is one of Stratus's.
func ours(stream string) bool { return stream == AsyncStream || stream == TopicStream }

// liveFor is how long after its first enqueue an event of fn may still be
// taken by this server and not done: its last attempt starts at most
// MaxEventAge after the enqueue and runs for at most Timeout plus
// InvokeSlack; liveMargin covers its finish. A removed function's events
// are failed at once; they get the defaults.
func (q *Queue) liveFor(fn string) time.Duration {
	pol, _ := q.cfg.Policy(fn)
	pol = pol.withDefaults()
	return pol.MaxEventAge + pol.Timeout + q.cfg.InvokeSlack + liveMargin
}
