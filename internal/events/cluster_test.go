package events

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	stratus "github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/clustertest"
	"github.com/stratus-run/stratus/internal/eventually"
)

// The tests of this file and of cluster_more_test.go run two Stratus
// servers' event systems (a Bus and a Queue each, on connections of their
// own) on a real three-node NATS cluster (nats-server processes).

// sharedInvoker is the fake Invoker of every server of a test: it sees
// every invocation, wherever it runs, so that it can tell one event
// handled twice at once.
type sharedInvoker struct {
	// behave, if set, runs each invocation (success when nil).
	behave func(ctx context.Context, server string, req stratus.Request) (*stratus.Response, error)

	mu       sync.Mutex
	inflight map[string]string // request ID → the server running it
	calls    map[string]int    // request ID → invocations
	byServer map[string]int
	twice    []string // request IDs invoked while already running
}

func newSharedInvoker() *sharedInvoker {
	return &sharedInvoker{inflight: map[string]string{}, calls: map[string]int{}, byServer: map[string]int{}}
}

type invokerFunc func(ctx context.Context, name string, req stratus.Request) (*stratus.Response, error)

func (f invokerFunc) Invoke(ctx context.Context, name string, req stratus.Request) (*stratus.Response, error) {
	return f(ctx, name, req)
}

// on returns the Invoker of server.
func (s *sharedInvoker) on(server string) Invoker {
	return invokerFunc(func(ctx context.Context, _ string, req stratus.Request) (*stratus.Response, error) {
		s.mu.Lock()
		if other, ok := s.inflight[req.RequestID]; ok {
			s.twice = append(s.twice, fmt.Sprintf("%s on %s while running on %s", req.RequestID, server, other))
		}
		s.inflight[req.RequestID] = server
		s.calls[req.RequestID]++
		s.byServer[server]++
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			if s.inflight[req.RequestID] == server {
				delete(s.inflight, req.RequestID)
			}
			s.mu.Unlock()
		}()
		if s.behave == nil {
			return &stratus.Response{Body: []byte(`"ok"`)}, nil
		}
		return s.behave(ctx, server, req)
	})
}

// doneSet records the events that reached a final state, and where.
type doneSet struct {
	mu   sync.Mutex
	by   map[string]string // request ID → server that finished it
	errs map[string]error
}

func newDoneSet() *doneSet { return &doneSet{by: map[string]string{}, errs: map[string]error{}} }

func (d *doneSet) onDone(server string) DoneFunc {
	return func(_ context.Context, _, id string, _ []byte, _ *stratus.Response, _ int, err error) Routing {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.by[id] = server
		if err != nil {
			d.errs[id] = err
		}
		return Routing{}
	}
}

func (d *doneSet) server(id string) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.by[id]
	return s, ok
}

// missing returns how many of ids have not reached a final state.
func (d *doneSet) missing(ids []string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, id := range ids {
		if _, ok := d.by[id]; !ok {
			n++
		}
	}
	return n
}

// clusterServer is one Stratus server's event system in a cluster test.
type clusterServer struct {
	name string
	bus  *Bus
	q    *Queue

	stopQueue context.CancelFunc
	queueDone chan error
}

// openClusterBus connects a Bus to url and runs its health loop until
// the test ends.
func openClusterBus(t *testing.T, url string) (*Bus, func()) {
	t.Helper()
	b := openTestBus(t, BusConfig{URL: url})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	closed := false
	closeBus := func() {
		if closed {
			return
		}
		closed = true
		cancel()
		<-done
		_ = b.Close()
	}
	return b, closeBus
}

// newClusterServer opens a bus on the cluster c and a Queue on it with
// fast delays (AckWait 1s), the test's invoker, policies and done set.
func newClusterServer(t *testing.T, c *clustertest.NATSCluster, name string, inv *sharedInvoker, pol *policies, done *doneSet, change ...func(*QueueConfig)) *clusterServer {
	t.Helper()
	s := &clusterServer{name: name}
	var closeBus func()
	s.bus, closeBus = openClusterBus(t, c.URL())
	cfg := QueueConfig{Bus: s.bus, Invoker: inv.on(name), Policy: pol.lookup, OnDone: done.onDone(name), Log: testLog()}
	fastQueue(&cfg)
	cfg.PollWait = time.Second
	for _, ch := range change {
		ch(&cfg)
	}
	s.q = NewQueue(cfg)
	t.Cleanup(func() {
		s.stop(t)
		closeBus()
	})
	return s
}

// run starts the server's Queue.
func (s *clusterServer) run() {
	ctx, cancel := context.WithCancel(context.Background())
	s.stopQueue, s.queueDone = cancel, make(chan error, 1)
	go func() { s.queueDone <- s.q.Run(ctx) }()
}

// stop stops the server's Queue and waits for it.
func (s *clusterServer) stop(t *testing.T) {
	t.Helper()
	if s.stopQueue == nil {
		return
	}
	s.stopQueue()
	select {
	case err := <-s.queueDone:
		if err != nil {
			t.Errorf("server %s: run queue: %v", s.name, err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("server %s: queue still running 30s after its ctx ended", s.name)
	}
	s.stopQueue = nil
}

// streamReplicas returns the replica count of stream as JetStream has it,
// once the stream exists.
func streamReplicas(t *testing.T, b *Bus, stream string) int {
	t.Helper()
	var replicas int
	eventually.Nil(t, 20*time.Second, "stream "+stream, func() error {
		s, err := b.JetStream().Stream(t.Context(), stream)
		if err != nil {
			return err
		}
		replicas = s.CachedInfo().Config.Replicas
		return nil
	})
	return replicas
}

// TestClusterQueuesShareEvents: two servers' Queues on one NATS cluster
// serve one function's events as one work queue: every event enqueued
// through either is handled, by one of them at a time, once; an
// invocation running longer than AckWait is not handed to the other one.
func TestClusterQueuesShareEvents(t *testing.T) {
	c := clustertest.StartNATSCluster(t, 3)
	inv, pol, done := newSharedInvoker(), newPolicies("f", AsyncPolicy{MaxConcurrency: 4}), newDoneSet()
	slow := make(chan struct{})
	inv.behave = func(ctx context.Context, _ string, req stratus.Request) (*stratus.Response, error) {
		if string(req.Event) == `"slow"` {
			// Three times AckWait: only the heartbeats keep it here.
			select {
			case <-slow:
			case <-time.After(3500 * time.Millisecond):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return &stratus.Response{Body: []byte(`"ok"`)}, nil
	}
	a := newClusterServer(t, c, "a", inv, pol, done)
	b := newClusterServer(t, c, "b", inv, pol, done)
	if a.bus.Replicas() != 3 || b.bus.Replicas() != 3 {
		t.Fatalf("replicas %d and %d on a cluster of 3, want 3", a.bus.Replicas(), b.bus.Replicas())
	}
	// Both make the stream and the consumer at once.
	var wg sync.WaitGroup
	for _, s := range []*clusterServer{a, b} {
		wg.Go(func() {
			if err := s.q.Ensure(t.Context(), "f"); err != nil {
				t.Errorf("server %s: ensure: %v", s.name, err)
			}
		})
	}
	wg.Wait()
	if got := streamReplicas(t, a.bus, AsyncStream); got != 3 {
		t.Errorf("%s has %d replicas, want 3", AsyncStream, got)
	}
	a.run()
	b.run()

	slowID, err := a.q.Enqueue(t.Context(), "f", []byte(`"slow"`))
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	ids := []string{slowID}
	for i := range n {
		s := []*clusterServer{a, b}[i%2]
		id, err := s.q.Enqueue(t.Context(), "f", fmt.Appendf(nil, `{"n":%d}`, i))
		if err != nil {
			t.Fatalf("server %s: enqueue %d: %v", s.name, i, err)
		}
		ids = append(ids, id)
	}
	eventually.True(t, 60*time.Second, "every event done", func() bool { return done.missing(ids) == 0 })

	inv.mu.Lock()
	defer inv.mu.Unlock()
	for _, tw := range inv.twice {
		t.Errorf("handled twice at once: %s", tw)
	}
	for _, id := range ids {
		if inv.calls[id] != 1 {
			t.Errorf("event %s invoked %d times, want 1", id, inv.calls[id])
		}
	}
	if inv.byServer["a"] == 0 || inv.byServer["b"] == 0 {
		t.Errorf("invocations by server %v: want both to share the work", inv.byServer)
	}
	t.Logf("invocations by server: %v", inv.byServer)
}

// TestClusterServerDiesMidEvent: a server whose connection ends while it
// runs an event (a crash: no acknowledgement, no heartbeat) leaves the
// event to another server, which runs it once AckWait has passed.
func TestClusterServerDiesMidEvent(t *testing.T) {
	c := clustertest.StartNATSCluster(t, 3)
	inv, pol, done := newSharedInvoker(), newPolicies("f", AsyncPolicy{}), newDoneSet()
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	inv.behave = func(ctx context.Context, server string, _ stratus.Request) (*stratus.Response, error) {
		if server == "a" {
			once.Do(func() { close(started) })
			<-release
		}
		return &stratus.Response{Body: []byte(`"ok"`)}, nil
	}
	a := newClusterServer(t, c, "a", inv, pol, done)
	b := newClusterServer(t, c, "b", inv, pol, done)
	a.run()
	id, err := b.q.Enqueue(t.Context(), "f", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("server a did not start the event within 30s")
	}
	b.run()
	// a dies: its connection ends with the event unacknowledged.
	diedAt := time.Now()
	a.bus.Conn().Close()
	eventually.True(t, 30*time.Second, "the event done by server b", func() bool {
		s, ok := done.server(id)
		return ok && s == "b"
	})
	t.Logf("server b finished the event %s after server a died", time.Since(diedAt).Round(time.Millisecond))
	close(release)
	a.stop(t)
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if inv.byServer["b"] != 1 {
		t.Errorf("server b ran %d invocations, want 1", inv.byServer["b"])
	}
}

// TestClusterExistsKeepsSharedConsumer: a server that does not know a
// function yet (deployed through another server) neither fails its events
// nor deletes the consumer the other server uses, while the shared store
// says the function exists (QueueConfig.Exists).
func TestClusterExistsKeepsSharedConsumer(t *testing.T) {
	c := clustertest.StartNATSCluster(t, 3)
	inv, done := newSharedInvoker(), newDoneSet()
	var mu sync.Mutex
	stored := map[string]bool{"f": true} // the shared store
	exists := func(_ context.Context, fn string) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return stored[fn], nil
	}
	withExists := func(cfg *QueueConfig) { cfg.Exists = exists }
	knows, lags := newPolicies("f", AsyncPolicy{}), newPolicies()
	a := newClusterServer(t, c, "a", inv, knows, done, withExists)
	b := newClusterServer(t, c, "b", inv, lags, done, withExists)
	b.run() // b alone first: it finds f's consumer by its rescan
	var ids []string
	for range 20 {
		id, err := a.q.Enqueue(t.Context(), "f", []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	// b sees the events but hands them back; the consumer stays.
	eventually.True(t, 20*time.Second, "server b has a worker for f", func() bool {
		b.q.mu.Lock()
		defer b.q.mu.Unlock()
		return b.q.consumers["f"] != nil
	})
	if n := done.missing(ids); n != len(ids) {
		t.Fatalf("%d events done while only the server that does not know f runs", len(ids)-n)
	}
	a.run()
	eventually.True(t, 60*time.Second, "every event done", func() bool { return done.missing(ids) == 0 })
	done.mu.Lock()
	for id, err := range done.errs {
		t.Errorf("event %s failed: %v", id, err)
	}
	done.mu.Unlock()
	s, err := a.q.getStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Consumer(t.Context(), consumerPrefix+"f"); err != nil {
		t.Errorf("consumer of f: %v", err)
	}

	// Gone from the store too: the consumer ends once no event is left.
	mu.Lock()
	delete(stored, "f")
	mu.Unlock()
	knows.remove("f")
	eventually.True(t, 30*time.Second, "the consumer of removed f deleted", func() bool {
		_, err := s.Consumer(t.Context(), consumerPrefix+"f")
		return errors.Is(err, jetstream.ErrConsumerNotFound)
	})
}
