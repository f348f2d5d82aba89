package events

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/store"
)

// stepClock is a clock that tests step; its timers fire when it passes
// their deadline.
type stepClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*stepTimer
}

type stepTimer struct {
	at time.Time
	c  chan time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *stepClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &stepTimer{at: c.now.Add(d), c: make(chan time.Time, 1)}
	if d <= 0 {
		t.c <- c.now
		return t.c, func() bool { return false }
	}
	c.timers = append(c.timers, t)
	return t.c, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		n := len(c.timers)
		c.timers = slices.DeleteFunc(c.timers, func(x *stepTimer) bool { return x == t })
		return len(c.timers) < n
	}
}

// Set moves the clock to t (never back) and fires the timers due; it
// returns how many it fired.
func (c *stepClock) Set(t time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.Before(c.now) {
		panic(fmt.Sprintf("clock set back from %v to %v", c.now, t))
	}
	c.now = t
	n := 0
	c.timers = slices.DeleteFunc(c.timers, func(x *stepTimer) bool {
		if x.at.After(t) {
			return false
		}
		x.c <- t
		n++
		return true
	})
	return n
}

// schedQueue records the events it is given; fail, if set, decides
// whether call n (from 1) fails.
type schedQueue struct {
	fail func(fn string, n int) error

	mu       sync.Mutex
	attempts []schedCall
}

type schedCall struct {
	fn      string
	ev      scheduledEventBody
	err     error
	trigger string
	traceID string // of ctx's span context, "" when none
}

func (f *schedQueue) EnqueueWith(ctx context.Context, fn string, event []byte, opts EnqueueOptions) (string, error) {
	var ev scheduledEventBody
	if err := json.Unmarshal(event, &ev); err != nil {
		return "", fmt.Errorf("not a scheduled event: %v: %w", err, stratus.ErrInvalid)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var err error
	if f.fail != nil {
		err = f.fail(fn, len(f.attempts)+1)
	}
	var traceID string
	if sc := oteltrace.SpanContextFromContext(ctx); sc.IsValid() {
		traceID = sc.TraceID().String()
	}
	f.attempts = append(f.attempts, schedCall{fn, ev, err, opts.Trigger, traceID})
	if err != nil {
		return "", err
	}
	return uuid.NewString(), nil
}

// fired lists the successful enqueues as "schedule@time" (the time in
// UTC, from the event).
func (f *schedQueue) fired() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []string{}
	for _, a := range f.attempts {
		if a.err == nil {
			out = append(out, ruleName(a.ev)+"@"+a.ev.Time)
		}
	}
	return out
}

func ruleName(ev scheduledEventBody) string {
	if len(ev.Resources) != 1 {
		return "?"
	}
	r := ev.Resources[0]
	for i := len(r) - 1; i >= 0; i-- {
		if r[i] == '/' {
			return r[i+1:]
		}
	}
	return r
}

// schedRig runs a Scheduler on a real store with a fake clock and
// enqueuer, in lock step with the test: the loop reports each time it
// goes to sleep, and the test acts only while it sleeps.
type schedRig struct {
	t    *testing.T
	st   *store.Store
	clk  *stepClock
	enq  *schedQueue
	sc   *Scheduler
	idle chan time.Time
	wake time.Time // when the sleeping loop wants to wake; zero for never

	cancel context.CancelFunc
	done   chan error
}

func openScheduleStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "stratus.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// newSchedRig returns a rig on st whose clock reads now; start runs it.
// change, if any, adjusts the Scheduler's configuration.
func newSchedRig(t *testing.T, st *store.Store, now time.Time, change ...func(*SchedulerConfig)) *schedRig {
	r := &schedRig{t: t, st: st, clk: &stepClock{now: now}, enq: &schedQueue{}, idle: make(chan time.Time)}
	cfg := SchedulerConfig{
		Store: st, Queue: r.enq, FunctionExists: func(fn string) bool { return fn != "ghost" },
		Region: "eu-test-1", Now: r.clk.Now, NewTimer: r.clk.NewTimer, Log: testLog(),
	}
	for _, c := range change {
		c(&cfg)
	}
	r.sc = NewScheduler(cfg)
	return r
}

// start runs the loop and waits until it first sleeps.
func (r *schedRig) start() *schedRig {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	r.sc.idle = func(wake time.Time) {
		select {
		case r.idle <- wake:
		case <-ctx.Done():
		}
	}
	go func() { r.done <- r.sc.Run(ctx) }()
	r.t.Cleanup(r.stop)
	r.sync()
	return r
}

// stop ends Run and waits for it; it may be called more than once.
func (r *schedRig) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			r.t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		r.t.Fatal("Run did not return within 10s of its context ending")
	}
	r.cancel = nil
}

// sync waits until the loop sleeps again.
func (r *schedRig) sync() {
	r.t.Helper()
	select {
	case r.wake = <-r.idle:
	case <-time.After(10 * time.Second):
		r.t.Fatal("the scheduler loop did not go to sleep within 10s")
	}
}

// advanceTo steps the clock up to end, to each time the loop wants to
// wake and at most maxSleep at a time (the loop's longest sleep), letting
// it run at each.
func (r *schedRig) advanceTo(end time.Time) {
	r.t.Helper()
	for {
		next := r.clk.Now().Add(maxSleep)
		if !r.wake.IsZero() && r.wake.Before(next) {
			next = r.wake
		}
		if next.After(end) {
			if r.clk.Set(end) > 0 {
				r.sync()
			}
			return
		}
		if r.clk.Set(next) > 0 {
			r.sync()
		}
	}
}

func (r *schedRig) create(spec ScheduleSpec) *stratus.Schedule {
	r.t.Helper()
	s, err := r.sc.Create(context.Background(), spec)
	if err != nil {
		r.t.Fatalf("Create(%+v): %v", spec, err)
	}
	r.sync()
	return s
}

func (r *schedRig) delete(name string) {
	r.t.Helper()
	if err := r.sc.Delete(context.Background(), name); err != nil {
		r.t.Fatalf("Delete(%s): %v", name, err)
	}
	r.sync()
}

func (r *schedRig) wantFired(want ...string) {
	r.t.Helper()
	if want == nil {
		want = []string{}
	}
	if diff := cmp.Diff(want, r.enq.fired()); diff != "" {
		r.t.Errorf("firings (-want +got):\n%s", diff)
	}
}

func (r *schedRig) wantWake(want time.Time) {
	r.t.Helper()
	if !r.wake.Equal(want) {
		r.t.Errorf("the loop sleeps until %v, want %v", r.wake, want)
	}
}

func (r *schedRig) get(name string) *stratus.Schedule {
	r.t.Helper()
	s, err := r.st.GetSchedule(context.Background(), name)
	if err != nil {
		r.t.Fatal(err)
	}
	return s
}

func utcTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}
