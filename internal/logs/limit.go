package logs

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Reasons a line of output is dropped, as counted by Stats.
const (
	// DropInvocation: beyond the output stored per invocation.
	DropInvocation = "invocation_limit"
	// DropRate: beyond the output stored per second per function or
	// service.
	DropRate = "rate_limit"
	// DropStore: the store failed and the queue was full.
	DropStore = "store_failing"
)

// minBurst is the least burst of a rate bucket: the longest line a
// sandbox.LineWriter emits, so that a line may always pass a full bucket.
const minBurst = 256 << 10

// rateKeyIdle is how long a key's bucket stays in memory unused; a bucket
// left that long is full again, the same as a new one.
const rateKeyIdle = time.Minute

// reportEvery is how often at most a Meter reports lines dropped for the
// rate.
const reportEvery = time.Second

// Limiter bounds the output of functions and services before it is
// copied into the queue: at most perInvocation bytes per invocation of a
// function and rate bytes per second per function or service (one token
// bucket per key, shared by all its instances or replicas, with a burst of
// one second of output and at least 256 KiB). A line counts its text and
// its line ending. Limiter is safe for concurrent use.
type Limiter struct {
	perInvocation int64
	rate          rate.Limit
	burst         int
	now           func() time.Time
	every         time.Duration

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time

	dropped [2]atomic.Int64 // lines, by reason: invocation, rate
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

// LimiterConfig configures a Limiter; a bound of 0 or less is no bound.
type LimiterConfig struct {
	// PerInvocation bounds the bytes of output stored per invocation of
	// a function.
	PerInvocation int64
	// BytesPerSecond bounds the output stored per second per function or
	// service.
	BytesPerSecond int64
	// Now is the clock of the rate buckets (time.Now).
	Now func() time.Time
}

// NewLimiter returns a Limiter configured by cfg.
func NewLimiter(cfg LimiterConfig) *Limiter {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := &Limiter{perInvocation: cfg.PerInvocation, rate: rate.Inf, now: cfg.Now, every: reportEvery, buckets: map[string]*bucket{}}
	if cfg.BytesPerSecond > 0 {
		l.rate = rate.Limit(cfg.BytesPerSecond)
		l.burst = int(max(cfg.BytesPerSecond, minBurst))
	}
	return l
}

// Dropped reports the lines dropped so far by reason (DropInvocation,
// DropRate).
func (l *Limiter) Dropped(reason string) int64 {
	switch reason {
	case DropInvocation:
		return l.dropped[0].Load()
	case DropRate:
		return l.dropped[1].Load()
	}
	return 0
}

// allowRate takes n bytes from key's bucket at now.
func (l *Limiter) allowRate(key string, now time.Time, n int) bool {
	if l.rate == rate.Inf {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= rateKeyIdle {
		for k, b := range l.buckets {
			if now.Sub(b.used) >= rateKeyIdle {
				delete(l.buckets, k)
			}
		}
		l.lastSweep = now
	}
	b := l.buckets[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(l.rate, l.burst)}
		l.buckets[key] = b
	}
	b.used = now
	return b.lim.AllowN(now, n)
}

// Meter accounts for the output of one instance of a function or one
// replica of a service (both of its streams): it is what a
// sandbox.LineWriter asks before copying a line. Lines beyond a bound are
// dropped and counted; report then writes one platform line saying how
// many: lines beyond the invocation's bound once, when the invocation ends
// (Done) or the next one begins; lines beyond the rate a second after the
// first drop not yet reported (from a timer), so at most once per second,
// or when the invocation ends.
//
// A nil *Meter allows everything.
type Meter struct {
	l             *Limiter
	key           string
	perInvocation bool
	report        func(req, text string)

	mu      sync.Mutex
	req     string      // the invocation whose output is being counted
	used    int64       // bytes of req stored
	inv     drops       // lines of req dropped beyond its bound, not yet reported
	rate    drops       // lines dropped beyond the rate, not yet reported
	rateReq string      // the request of the latest rate drop
	timer   *time.Timer // set from the first rate drop until its report
}

type drops struct{ lines, bytes int64 }

// Meter returns a Meter for output stored under key (a function's name or
// a service's log key). With perInvocation the invocation bound applies to
// each request ID passed to Allow (a function's output before its first
// invocation counts as one). report writes a platform line for request req
// (empty for a service); it is called without locks held, maybe from a
// timer's goroutine.
func (l *Limiter) Meter(key string, perInvocation bool, report func(req, text string)) *Meter {
	return &Meter{l: l, key: key, perInvocation: perInvocation && l.perInvocation > 0, report: report}
}

// Allow reports whether a line of n bytes (without its line ending) of
// request req may be stored, counting it if so. It blocks only while
// report does, when req is a new request and lines of the previous one
// were dropped.
func (m *Meter) Allow(req string, n int) bool {
	if m == nil {
		return true
	}
	cost := int64(n) + 1
	now := m.l.now()
	var reps []func()
	m.mu.Lock()
	if m.perInvocation && req != m.req {
		reps = append(reps, m.takeInvLocked())
		m.req, m.used = req, 0
	}
	ok := true
	switch {
	case m.perInvocation && m.used+cost > m.l.perInvocation:
		ok = false
		m.inv.lines++
		m.inv.bytes += cost
		m.l.dropped[0].Add(1)
	case !m.l.allowRate(m.key, now, int(cost)):
		ok = false
		m.rate.lines++
		m.rate.bytes += cost
		m.rateReq = req
		m.l.dropped[1].Add(1)
		if m.timer == nil {
			// The first drop since the last report: the report comes a
			// second later.
			m.timer = time.AfterFunc(m.l.every, m.flushRate)
		}
	default:
		m.used += cost
	}
	m.mu.Unlock()
	for _, r := range reps {
		r()
	}
	return ok
}

// Done reports the lines of request req dropped so far, once req has
// ended. Later lines of req are still bounded and reported at its next
// Done or when the next request begins.
func (m *Meter) Done(req string) {
	if m == nil {
		return
	}
	var reps []func()
	m.mu.Lock()
	if m.rate.lines > 0 {
		reps = append(reps, m.takeRateLocked())
	}
	if req == m.req {
		reps = append(reps, m.takeInvLocked())
	}
	m.mu.Unlock()
	for _, r := range reps {
		r()
	}
}

func (m *Meter) flushRate() {
	m.mu.Lock()
	m.timer = nil
	r := m.takeRateLocked()
	m.mu.Unlock()
	r()
}

// takeInvLocked returns the report of the lines of m.req dropped beyond
// the invocation's bound, and clears them.
func (m *Meter) takeInvLocked() func() {
	d, req := m.inv, m.req
	m.inv = drops{}
	if d.lines == 0 {
		return func() {}
	}
	text := fmt.Sprintf("Output dropped: %d lines (%s) beyond the output stored per invocation, %s (--max-output-bytes)",
		d.lines, size(d.bytes), size(m.l.perInvocation))
	return func() { m.report(req, text) }
}

// takeRateLocked returns the report of the lines dropped beyond the rate,
// and clears them.
func (m *Meter) takeRateLocked() func() {
	d, req := m.rate, m.rateReq
	m.rate = drops{}
	if d.lines == 0 {
		return func() {}
	}
	text := fmt.Sprintf("Output dropped: %d lines (%s) beyond the output rate, %s/s (--output-rate)",
		d.lines, size(d.bytes), size(int64(m.l.rate)))
	return func() { m.report(req, text) }
}

// size formats n bytes for people.
func size(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
