package events

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	stratus "github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/clustertest"
	"github.com/stratus-run/stratus/internal/events/cloudevent"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/store"
)

// blindStore is the store as a server sees it that never notices the
// firings other servers record: its schedules read as never fired.
type blindStore struct{ *store.Store }

func (b blindStore) ListSchedules(ctx context.Context) ([]stratus.Schedule, error) {
	list, err := b.Store.ListSchedules(ctx)
	for i := range list {
		list[i].LastFiredAt = time.Time{}
	}
	return list, err
}

func (b blindStore) GetSchedule(ctx context.Context, name string) (*stratus.Schedule, error) {
	s, err := b.Store.GetSchedule(ctx, name)
	if s != nil {
		s.LastFiredAt = time.Time{}
	}
	return s, err
}

// lockstep runs Schedulers on one stepped clock and waits, after each
// step, until every loop it woke sleeps again.
type lockstep struct {
	t      *testing.T
	clk    *stepClock
	idle   chan time.Time
	ctx    context.Context
	cancel context.CancelFunc // stops every loop
}

func (l *lockstep) run(sc *Scheduler) {
	sc.idle = func(wake time.Time) {
		select {
		case l.idle <- wake:
		case <-l.ctx.Done():
		}
	}
	done := make(chan error, 1)
	go func() { done <- sc.Run(l.ctx) }()
	l.t.Cleanup(func() {
		l.cancel()
		if err := <-done; err != nil {
			l.t.Errorf("scheduler: %v", err)
		}
	})
	l.sleeps(1)
}

// sleeps waits until n loops have gone to sleep.
func (l *lockstep) sleeps(n int) {
	l.t.Helper()
	for range n {
		select {
		case <-l.idle:
		case <-time.After(30 * time.Second):
			l.t.Fatal("a scheduler loop did not go to sleep within 30s")
		}
	}
}

// TestClusterSchedulersFireOncePerTick: two servers' Schedulers share one
// store (SQLite here, PostgreSQL in a cluster) and fire a rate(1 minute)
// schedule at the same ticks of a stepped clock, each through its own
// Queue on the NATS cluster. The second one never sees the first one's
// records (blindStore), so it makes every firing too: JetStream's
// duplicate window keeps one event per tick, whose request ID is the
// firing's. A server that starts late does not fire a tick again.
func TestClusterSchedulersFireOncePerTick(t *testing.T) {
	c := clustertest.StartNATSCluster(t, 3)
	inv, pol, done := newSharedInvoker(), newPolicies("f", AsyncPolicy{}), newDoneSet()
	a := newClusterServer(t, c, "a", inv, pol, done)
	b := newClusterServer(t, c, "b", inv, pol, done)
	a.run()
	b.run()
	st := openScheduleStore(t)
	t0 := utcTime("2026-03-01T10:00:00Z")
	ctx, cancel := context.WithCancel(context.Background())
	l := &lockstep{t: t, clk: &stepClock{now: t0}, idle: make(chan time.Time), ctx: ctx, cancel: cancel}
	exists := func(fn string) bool { _, ok := pol.lookup(fn); return ok }
	newSched := func(s scheduleStore, q firingQueue) *Scheduler {
		return NewScheduler(SchedulerConfig{Store: s, Queue: q, FunctionExists: exists, Region: "eu-test-1",
			Now: l.clk.Now, NewTimer: l.clk.NewTimer, Log: testLog()})
	}
	scA, scB := newSched(st, a.q), newSched(blindStore{st}, b.q)
	l.run(scA)
	l.run(scB)

	if _, err := scA.Create(t.Context(), ScheduleSpec{Name: "tick", Function: "f", Rate: "1 minute"}); err != nil {
		t.Fatal(err)
	}
	l.sleeps(1) // a read it and fired t0
	scB.Reload()
	l.sleeps(1) // b read it and fired t0 again
	for k := 1; k <= 3; k++ {
		if n := l.clk.Set(t0.Add(time.Duration(k) * time.Minute)); n != 2 {
			t.Fatalf("tick %d woke %d loops, want 2", k, n)
		}
		l.sleeps(2)
	}

	sched, err := st.GetSchedule(t.Context(), "tick")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for k := range 4 {
		want = append(want, firingID(sched, t0.Add(time.Duration(k)*time.Minute)))
	}
	eventually.True(t, 30*time.Second, "a firing of every tick done", func() bool { return done.missing(want) == 0 })
	// Both loops have enqueued every firing: a twin not dropped would be
	// in the stream now, or done.
	s, err := a.q.getStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	cons, err := s.Consumer(t.Context(), consumerPrefix+"f")
	if err != nil {
		t.Fatal(err)
	}
	eventually.Nil(t, 30*time.Second, "nothing left for f", func() error {
		info, err := cons.Info(t.Context())
		if err != nil {
			return err
		}
		if info.NumPending > 0 || info.NumAckPending > 0 {
			return fmt.Errorf("%d pending, %d not acknowledged", info.NumPending, info.NumAckPending)
		}
		return nil
	})
	inv.mu.Lock()
	got := make(map[string]int)
	for id, n := range inv.calls {
		got[id] = n
	}
	inv.mu.Unlock()
	wantCalls := make(map[string]int)
	for _, id := range want {
		wantCalls[id] = 1
	}
	if diff := cmp.Diff(wantCalls, got); diff != "" {
		t.Errorf("invocations by request ID (-want +got):\n%s", diff)
	}
	if !sched.LastFiredAt.Equal(t0.Add(3 * time.Minute)) {
		t.Errorf("last fired at %v, want %v", sched.LastFiredAt, t0.Add(3*time.Minute))
	}

	// A third server starting half a minute after the last tick reads the
	// record and waits for the next one.
	if n := l.clk.Set(t0.Add(3*time.Minute + 30*time.Second)); n != 2 { // a's and b's reloads
		t.Fatalf("the reload time woke %d loops, want 2", n)
	}
	l.sleeps(2)
	late := newSched(st, a.q)
	l.run(late)
	id, err := a.q.Enqueue(t.Context(), "f", []byte(`"marker"`))
	if err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 30*time.Second, "the marker done", func() bool { return done.missing([]string{id}) == 0 })
	inv.mu.Lock()
	calls := len(inv.calls)
	inv.mu.Unlock()
	if calls != len(want)+1 {
		t.Errorf("%d request IDs invoked, want %d: the late server fired a tick again", calls, len(want)+1)
	}
}

// TestSchedulerSkipsFiringsRecordedElsewhere: a firing another server has
// recorded in the shared store is not made again, whether the store is
// read at a reload or just before the firing; a schedule deleted through
// another server fires no more.
func TestSchedulerSkipsFiringsRecordedElsewhere(t *testing.T) {
	t0 := utcTime("2025-05-01T10:00:00Z")
	for _, reload := range []time.Duration{0, time.Hour} {
		t.Run(fmt.Sprintf("reload every %s", reload), func(t *testing.T) {
			st := openScheduleStore(t)
			r := newSchedRig(t, st, t0, func(c *SchedulerConfig) { c.ReloadInterval = reload }).start()
			s := r.create(ScheduleSpec{Name: "s", Function: "fn", Rate: "1 minute"})
			// Another server fired up to t0+2m meanwhile.
			if err := st.SetLastFired(t.Context(), "s", t0.Add(2*time.Minute)); err != nil {
				t.Fatal(err)
			}
			r.advanceTo(t0.Add(3 * time.Minute))
			r.wantFired("s@2025-05-01T10:00:00Z", "s@2025-05-01T10:03:00Z")
			r.enq.mu.Lock()
			for _, a := range r.enq.attempts {
				if f := utcTime(a.ev.Time); a.ev.ID != firingID(s, f) {
					t.Errorf("event of %v has id %s, want %s", f, a.ev.ID, firingID(s, f))
				}
			}
			r.enq.mu.Unlock()

			if err := st.DeleteSchedule(t.Context(), "s"); err != nil {
				t.Fatal(err)
			}
			r.advanceTo(t0.Add(5 * time.Minute))
			r.wantFired("s@2025-05-01T10:00:00Z", "s@2025-05-01T10:03:00Z")
		})
	}
}

func TestFiringID(t *testing.T) {
	created := utcTime("2025-05-01T10:00:00Z")
	s := &stratus.Schedule{Name: "s", CreatedAt: created}
	f := created.Add(time.Minute)
	id := firingID(s, f)
	if id != firingID(&stratus.Schedule{Name: "s", CreatedAt: created.In(time.FixedZone("x", 3600))}, f.Local()) {
		t.Error("firing ID depends on the time zone of its times")
	}
	for _, other := range []string{
		firingID(&stratus.Schedule{Name: "t", CreatedAt: created}, f),
		firingID(&stratus.Schedule{Name: "s", CreatedAt: created.Add(time.Nanosecond)}, f),
		firingID(s, f.Add(time.Minute)),
	} {
		if other == id {
			t.Errorf("two firings share the ID %s", id)
		}
	}
}

// TestClusterTopicsShareSubscriptions: a subscription made through one
// server's Topics is served by another's after Reload: both share its
// consumer (each event delivered once), and the second delivers alone
// once the first stops.
func TestClusterTopicsShareSubscriptions(t *testing.T) {
	c := clustertest.StartNATSCluster(t, 3)
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "stratus.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	type server struct {
		tp   *Topics
		q    *topicQueue
		stop func()
	}
	start := func() *server {
		bus, closeBus := openClusterBus(t, c.URL())
		s := &server{q: &topicQueue{}}
		s.tp = NewTopics(TopicsConfig{Bus: bus, Store: st, Queue: s.q, FunctionExists: func(string) bool { return true },
			BatchWait: 200 * time.Millisecond, AckWait: 2 * time.Second, Log: testLog()})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.tp.Run(ctx) }()
		var once sync.Once
		// As a server stops: its Topics, then its connection.
		s.stop = func() {
			once.Do(func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("run topics: %v", err)
				}
				closeBus()
			})
		}
		t.Cleanup(s.stop)
		return s
	}
	a, b := start(), start()
	if _, err := a.tp.CreateTopic(t.Context(), "t"); err != nil {
		t.Fatal(err)
	}
	sub, err := a.tp.Subscribe(t.Context(), stratus.Subscription{Topic: "t", Function: "fn"})
	if err != nil {
		t.Fatal(err)
	}
	if got := streamReplicas(t, a.tp.bus, TopicStream); got != 3 {
		t.Errorf("%s has %d replicas, want 3", TopicStream, got)
	}
	b.tp.Reload()
	eventually.True(t, 10*time.Second, "server b follows the subscription", func() bool {
		b.tp.mu.Lock()
		defer b.tp.mu.Unlock()
		_, ok := b.tp.subs[sub.ID]
		return ok
	})
	var events []cloudevent.Event
	for i := range 40 {
		events = append(events, ev(fmt.Sprint(i), "x", "/cluster", ""))
	}
	if err := b.tp.Publish(t.Context(), "t", events); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 30*time.Second, "40 events delivered", func() bool {
		return len(a.q.delivered("fn"))+len(b.q.delivered("fn")) >= 40
	})
	t.Logf("delivered by server a: %d, by server b: %d", len(a.q.delivered("fn")), len(b.q.delivered("fn")))

	// The server that delivered most stops (its pull requests with it);
	// the other one delivers what comes next.
	gone, other := a, b
	if len(b.q.delivered("fn")) > len(a.q.delivered("fn")) {
		gone, other = b, a
	}
	gone.stop()
	before := len(other.q.delivered("fn"))
	stoppedAt := time.Now()
	if err := other.tp.Publish(t.Context(), "t", []cloudevent.Event{ev("last", "x", "/cluster", "")}); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 30*time.Second, "the last event delivered by the other server", func() bool {
		return len(other.q.delivered("fn")) > before
	})
	t.Logf("the other server delivered the next event %s after the first one stopped", time.Since(stoppedAt).Round(time.Millisecond))
	if n := len(a.q.delivered("fn")) + len(b.q.delivered("fn")); n != 41 {
		t.Errorf("%d deliveries of 41 events, want 41", n)
	}

	// A server started now follows it too; deleted through the other, it
	// stops.
	a2 := start()
	follows := func(s *server) bool {
		s.tp.mu.Lock()
		defer s.tp.mu.Unlock()
		_, ok := s.tp.subs[sub.ID]
		return ok
	}
	eventually.True(t, 10*time.Second, "a server started later follows the subscription", func() bool { return follows(a2) })
	if err := other.tp.Unsubscribe(t.Context(), sub.ID); err != nil {
		t.Fatal(err)
	}
	// The change notification's Reload: a2 stops delivering, and does not
	// make the consumer again (were its delivery to fail first, it would
	// find the subscription gone from the store).
	a2.tp.Reload()
	eventually.True(t, 10*time.Second, "the other server drops the deleted subscription", func() bool { return !follows(a2) })
	a2.stop() // its deliveries have ended
	s, err := other.tp.getStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Consumer(t.Context(), sub.ID); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Errorf("consumer of the deleted subscription: %v, want ErrConsumerNotFound", err)
	}
}
