package events

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	stratus "github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/clustertest"
	"github.com/stratus-run/stratus/internal/eventually"
)

// enqueueTry is one Enqueue of the load of TestClusterNATSNodeDies.
type enqueueTry struct {
	start, end time.Time
	id         string
	err        error
}

// enqueueLoad enqueues events through the servers in turn, about every
// pace, until stop is closed; several run at once, as a server's
// requests do.
type enqueueLoad struct {
	mu    sync.Mutex
	tries []enqueueTry
}

func (l *enqueueLoad) run(servers []*clusterServer, fn string, pace time.Duration, stop <-chan struct{}, worker int) {
	tick := time.NewTicker(pace)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		s := servers[i%len(servers)]
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		start := time.Now()
		id, err := s.q.Enqueue(ctx, fn, fmt.Appendf(nil, `{"w":%d,"n":%d}`, worker, i))
		cancel()
		l.mu.Lock()
		l.tries = append(l.tries, enqueueTry{start: start, end: time.Now(), id: id, err: err})
		l.mu.Unlock()
	}
}

// accepted returns the IDs of the events whose Enqueue returned nil.
func (l *enqueueLoad) accepted() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ids []string
	for _, tr := range l.tries {
		if tr.err == nil {
			ids = append(ids, tr.id)
		}
	}
	return ids
}

// recovered returns when the enqueues that began after at work again: the
// end of the first of streak successes in a row (in the order they
// began) begun after at and after the last failure, or false if that has
// not happened yet.
func (l *enqueueLoad) recovered(at time.Time, streak int) (time.Time, bool) {
	l.mu.Lock()
	tries := slices.Clone(l.tries)
	l.mu.Unlock()
	slices.SortFunc(tries, func(a, b enqueueTry) int { return a.start.Compare(b.start) })
	run := 0
	var first time.Time
	for _, tr := range tries {
		if tr.start.Before(at) {
			continue
		}
		if tr.err != nil {
			run = 0
			continue
		}
		if run == 0 {
			first = tr.end
		}
		if run++; run == streak {
			return first, true
		}
	}
	return time.Time{}, false
}

// after summarizes the enqueues that ended after at: failures, the
// longest one, and the first failure's error.
func (l *enqueueLoad) after(at time.Time) (n, failed int, longest time.Duration, firstErr error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, tr := range l.tries {
		if tr.end.Before(at) {
			continue
		}
		n++
		longest = max(longest, tr.end.Sub(tr.start))
		if tr.err != nil {
			failed++
			if firstErr == nil {
				firstErr = tr.err
			}
		}
	}
	return n, failed, longest, firstErr
}

// TestClusterNATSNodeDies: under async load through two servers, the NATS
// node leading the async stream is killed (SIGKILL). Every event that
// Enqueue accepted, before, during and after, reaches a final state, and
// Enqueue works again within a bounded time, measured and logged.
func TestClusterNATSNodeDies(t *testing.T) {
	c := clustertest.StartNATSCluster(t, 3)
	inv, pol, done := newSharedInvoker(), newPolicies("load", AsyncPolicy{MaxConcurrency: 8}), newDoneSet()
	a := newClusterServer(t, c, "a", inv, pol, done)
	b := newClusterServer(t, c, "b", inv, pol, done)
	for _, s := range []*clusterServer{a, b} {
		if err := s.q.Ensure(t.Context(), "load"); err != nil {
			t.Fatal(err)
		}
		s.run()
	}

	var load enqueueLoad
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() { load.run([]*clusterServer{a, b}, "load", 10*time.Millisecond, stop, w) })
	}
	stopped := false
	stopLoad := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer stopLoad()
	eventually.True(t, 30*time.Second, "100 events accepted", func() bool { return len(load.accepted()) >= 100 })

	// Kill the node leading the stream: the hardest case, a new leader
	// must be elected before anything is stored.
	info, err := a.q.stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || info.Cluster == nil {
		t.Fatalf("stream %s: %d replicas, cluster %+v; want 3", AsyncStream, info.Config.Replicas, info.Cluster)
	}
	leader := info.Cluster.Leader
	i, err := strconv.Atoi(strings.TrimPrefix(leader, "n"))
	if err != nil {
		t.Fatalf("stream leader %q: not a node of the test cluster", leader)
	}
	killedAt := time.Now()
	c.Kill(t, i-1)
	var back time.Time
	eventually.True(t, 60*time.Second, "Enqueue working again after the kill", func() bool {
		var ok bool
		back, ok = load.recovered(killedAt, 20)
		return ok
	})
	recovery := back.Sub(killedAt)
	// Keep the load up a little after the recovery, then stop it.
	n0 := len(load.accepted())
	eventually.True(t, 30*time.Second, "100 more events accepted", func() bool { return len(load.accepted()) >= n0+100 })
	stopLoad()

	ids := load.accepted()
	eventually.True(t, 120*time.Second, "every accepted event done", func() bool { return done.missing(ids) == 0 })
	n, failed, longest, firstErr := load.after(killedAt)
	t.Logf("killed the stream leader %s: Enqueue works again %s after the kill (the first of 20 successes in a row begun after the last failure); "+
		"since the kill %d enqueues, %d failed (first: %v), the longest took %s; %d events accepted in all, every one done",
		leader, recovery.Round(time.Millisecond), n, failed, firstErr, longest.Round(time.Millisecond), len(ids))
	if recovery > 30*time.Second {
		t.Errorf("Enqueue worked again only %s after the kill, want within 30s", recovery)
	}
	done.mu.Lock()
	for id, err := range done.errs {
		t.Errorf("event %s failed: %v", id, err)
	}
	done.mu.Unlock()

	// The node comes back and catches up; the events keep flowing.
	c.Start(t, i-1)
	id, err := b.q.Enqueue(t.Context(), "load", []byte(`{}`))
	if err != nil {
		t.Fatalf("enqueue after the node's restart: %v", err)
	}
	eventually.True(t, 30*time.Second, "the event after the restart done", func() bool { return done.missing([]string{id}) == 0 })
}

// Sanity of the helpers above, without a cluster.
func TestEnqueueLoadRecovered(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	l := enqueueLoad{tries: []enqueueTry{
		{start: at(0), end: at(1)},
		{start: at(2), end: at(3), err: stratus.ErrUnavailable},
		{start: at(3), end: at(4)},
		{start: at(4), end: at(5), err: stratus.ErrUnavailable},
		{start: at(5), end: at(6)},
		{start: at(6), end: at(7)},
	}}
	got, ok := l.recovered(at(1), 2)
	if !ok || !got.Equal(at(6)) {
		t.Errorf("recovered = %v, %v; want %v", got, ok, at(6))
	}
	if _, ok := l.recovered(at(1), 3); ok {
		t.Error("recovered with 3 in a row, want not yet")
	}
}

func TestBusReplicasConfig(t *testing.T) {
	for _, n := range []int{-1, 2, 6} {
		_, err := OpenBus(t.Context(), BusConfig{StoreDir: t.TempDir(), Replicas: n})
		if !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("embedded bus with %d replicas: %v, want ErrInvalid", n, err)
		}
	}
	b := openTestBus(t, BusConfig{StoreDir: t.TempDir(), Replicas: 1})
	defer b.Close()
	if b.Replicas() != 1 {
		t.Errorf("embedded bus: %d replicas, want 1", b.Replicas())
	}
}
