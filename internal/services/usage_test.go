package services

import (
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// stepClock is a clock the test moves.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *stepClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *stepClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// usageSink keeps what it receives.
type usageSink struct {
	mu       sync.Mutex
	minutes  []stratus.UsageMinute
	replicas []stratus.ReplicaUsage
}

func (s *usageSink) UsageMinute(u stratus.UsageMinute) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.minutes = append(s.minutes, u)
}

func (s *usageSink) ReplicaUsage(u stratus.ReplicaUsage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replicas = append(s.replicas, u)
}

func (s *usageSink) got() ([]stratus.UsageMinute, []stratus.ReplicaUsage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.minutes), slices.Clone(s.replicas)
}

// t0 is a minute's start.
var t0 = time.Date(2026, 12, 6, 18, 0, 0, 0, time.UTC)

func statsOf(t *testing.T, m *Manager, name string) ServiceStats {
	t.Helper()
	for _, st := range m.Stats() {
		if st.Name == name {
			return st
		}
	}
	t.Fatalf("Stats has no service %q", name)
	return ServiceStats{}
}

func TestStats(t *testing.T) {
	h := newHarness(t)
	h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 2, MaxScale: 2, Concurrency: 1})
	h.deploy("api", stratus.ServiceConfig{Image: "app", MinScale: 1, MaxScale: 1})
	if got := h.m.Stats(); len(got) != 2 || got[0].Name != "api" || got[1].Name != "web" {
		t.Fatalf("Stats = %+v, want api then web", got)
	}

	// Two requests take both replicas; a third waits.
	_, rel1 := h.acquire("web")
	_, rel2 := h.acquire("web")
	third := h.acquireAsync(t.Context(), "web")
	eventually.True(t, waitFor, "a queued request", func() bool { return statsOf(t, h.m, "web").Queued == 1 })
	// Three requests for two replicas of concurrency 1 put the autoscaler
	// in panic mode; its maximum holds it at 2.
	eventually.True(t, waitFor, "the autoscaler's panic", func() bool {
		st := statsOf(t, h.m, "web")
		return st.AutoscalerDesired == 2 && st.Panic
	})
	want := ServiceStats{Name: "web", ReadyReplicas: 2, DesiredReplicas: 2, InFlight: 2, Queued: 1, AutoscalerDesired: 2, Panic: true}
	if diff := cmp.Diff(want, statsOf(t, h.m, "web")); diff != "" {
		t.Errorf("Stats with two requests in flight and one queued (-want +got):\n%s", diff)
	}
	rel1()
	a := receive(t, third)
	if a.err != nil {
		t.Fatalf("third request: %v", a.err)
	}
	rel2()
	a.release()
	if st := statsOf(t, h.m, "web"); st.InFlight != 0 || st.Queued != 0 {
		t.Errorf("after the requests: %+v", st)
	}

	// A crash and an OOM kill are restarts; the OOM kill counts as such.
	boxes := h.d.liveOf("web-00001")
	h.d.crash(t, boxes[0].id, 1)
	boxes[1].finish(0, sandbox.Exit{Code: -1, Signal: "killed", OOM: true})
	eventually.True(t, waitFor, "two restarts", func() bool {
		st := statsOf(t, h.m, "web")
		return st.Restarts == 2 && st.OOMKills == 1
	})
	eventually.True(t, waitFor, "the replicas back", func() bool { return statsOf(t, h.m, "web").ReadyReplicas == 2 })

	// A new revision: the old one's replicas drain, one of them while it
	// finishes a request.
	_, release := h.acquire("web")
	h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 2, MaxScale: 2, Concurrency: 1, Env: map[string]string{"V": "2"}})
	eventually.True(t, waitFor, "one replica draining", func() bool { return statsOf(t, h.m, "web").Draining == 1 })
	if st := statsOf(t, h.m, "web"); st.InFlight != 1 || st.ReadyReplicas != 2 {
		t.Errorf("while the old revision drains: %+v", st)
	}
	release()
	eventually.True(t, waitFor, "the old revision gone", func() bool { return statsOf(t, h.m, "web").Draining == 0 })
	if st := statsOf(t, h.m, "web"); st.Restarts != 2 || st.OOMKills != 1 {
		t.Errorf("counters after a deploy: %+v, want 2 restarts and 1 OOM kill kept", st)
	}
}

func approx() cmp.Option { return cmpopts.EquateApprox(0, 1e-9) }

// TestUsageMinute: a minute of known requests, replica time and CPU time
// makes one UsageMinute; Run's end reports the minute in progress and
// the replica's usage over its life.
func TestUsageMinute(t *testing.T) {
	clock := &stepClock{t: t0.Add(10 * time.Second)}
	sink := &usageSink{}
	h := newHarness(t, func(c *Config) { c.Now, c.Usage = clock.Now, sink })
	h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 1, MaxScale: 1, MemoryMB: 512, CPU: 0.5})
	boxes := h.d.liveOf("web-00001")
	if len(boxes) != 1 {
		t.Fatalf("%d replicas, want 1", len(boxes))
	}
	box := boxes[0]

	// Two requests in flight at once, then three answers (200, 404, 503)
	// as the proxy observes them; "nope" is no service.
	_, rel1 := h.acquire("web")
	_, rel2 := h.acquire("web")
	rel1()
	rel2()
	h.m.Observe("web", http.StatusOK, 100*time.Millisecond)
	h.m.Observe("web", http.StatusNotFound, 50*time.Millisecond)
	h.m.Observe("web", http.StatusServiceUnavailable, 300*time.Millisecond)
	h.m.Observe("nope", http.StatusOK, time.Second)
	box.cpu.Store(1_500_000_000)

	clock.set(t0.Add(61 * time.Second))
	eventually.True(t, waitFor, "the first minute", func() bool {
		minutes, _ := sink.got()
		return len(minutes) == 1
	})
	minutes, _ := sink.got()
	want := stratus.UsageMinute{
		Kind: stratus.KindService, Name: "web", Minute: t0,
		Requests: 3, Errors: 1, DurationMs: 450, MaxDuration: 300, MaxInFlight: 2,
		Replicas: 50.0 / 60, VCPUSeconds: 25, GBSeconds: 25, CPUMs: 1500,
		MemoryMB: 512, VCPU: 0.5, Arch: hostArch,
	}
	if diff := cmp.Diff([]stratus.UsageMinute{want}, minutes, approx()); diff != "" {
		t.Errorf("the first minute (-want +got):\n%s", diff)
	}

	// The server stops 1 s into the next minute, the replica having used
	// 0.5 s more CPU.
	box.cpu.Store(2_000_000_000)
	h.stop()
	minutes, replicas := sink.got()
	wantLast := stratus.UsageMinute{
		Kind: stratus.KindService, Name: "web", Minute: t0.Add(time.Minute),
		Replicas: 1.0 / 60, VCPUSeconds: 0.5, GBSeconds: 0.5, CPUMs: 500,
		MemoryMB: 512, VCPU: 0.5, Arch: hostArch,
	}
	if diff := cmp.Diff([]stratus.UsageMinute{want, wantLast}, minutes, approx()); diff != "" {
		t.Errorf("minutes after Run's end (-want +got):\n%s", diff)
	}
	wantReplica := stratus.ReplicaUsage{
		Service: "web", Revision: 1, Replica: box.id,
		Start: t0.Add(10 * time.Second), End: t0.Add(61 * time.Second),
		CPU: 0.5, MemoryMB: 512, CPUMs: 2000, Requests: 2, Arch: hostArch,
	}
	if diff := cmp.Diff([]stratus.ReplicaUsage{wantReplica}, replicas, approx()); diff != "" {
		t.Errorf("replica usage after Run's end (-want +got):\n%s", diff)
	}
}

// TestReplicaUsageAtScaleDown: a replica the autoscaler stops reports
// its life at once; a crashed sandbox reports its own.
func TestReplicaUsageAtScaleDown(t *testing.T) {
	clock := &stepClock{t: t0}
	sink := &usageSink{}
	h := newHarness(t, func(c *Config) { c.Now, c.Usage = clock.Now, sink })
	h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 0, MaxScale: 1, MemoryMB: 256, CPU: 1})
	// The deploy's replica serves three requests, then the autoscaler
	// scales to zero as time passes.
	first := h.d.liveOf("web-00001")
	if len(first) != 1 {
		t.Fatalf("%d replicas, want 1", len(first))
	}
	for range 3 {
		_, release := h.acquire("web")
		release()
	}
	first[0].cpu.Store(42_000_000)
	clock.add(5 * time.Second)
	eventually.True(t, waitFor, "the scale-down's replica usage", func() bool {
		clock.add(time.Second)
		_, replicas := sink.got()
		return len(replicas) == 1
	})
	_, replicas := sink.got()
	got := replicas[0]
	if got.Service != "web" || got.Revision != 1 || got.Replica != first[0].id || got.Requests != 3 ||
		got.CPUMs != 42 || got.CPU != 1 || got.MemoryMB != 256 || got.Arch != hostArch ||
		!got.Start.Equal(t0) || !got.End.After(t0.Add(5*time.Second)) {
		t.Errorf("replica usage at scale-down: %+v", got)
	}

	// From zero again; its sandbox crashes: that sandbox's usage comes
	// with its own ID, and the restart's later.
	_, release := h.acquire("web")
	second := h.d.liveOf("web-00001")
	if len(second) != 1 {
		t.Fatalf("%d replicas, want 1", len(second))
	}
	h.d.crash(t, second[0].id, 1)
	eventually.True(t, waitFor, "the crashed sandbox's usage", func() bool {
		_, replicas := sink.got()
		return len(replicas) == 2
	})
	release()
	_, replicas = sink.got()
	if got := replicas[1]; got.Replica != second[0].id || got.Requests != 1 {
		t.Errorf("crashed sandbox's usage: %+v", got)
	}
}

// TestUsageAfterRedeploy: a service removed and deployed again within a
// minute has one record of the minute.
func TestUsageAfterRedeploy(t *testing.T) {
	clock := &stepClock{t: t0.Add(10 * time.Second)}
	sink := &usageSink{}
	h := newHarness(t, func(c *Config) { c.Now, c.Usage = clock.Now, sink })
	cfg := stratus.ServiceConfig{Image: "app", MinScale: 1, MaxScale: 1, MemoryMB: 128, CPU: 0.25}
	h.deploy("web", cfg)
	h.m.Observe("web", http.StatusOK, time.Millisecond)
	if err := h.m.Remove(t.Context(), "web"); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, waitFor, "the removed replica's usage", func() bool {
		_, replicas := sink.got()
		return len(replicas) == 1
	})
	clock.set(t0.Add(40 * time.Second))
	h.deploy("web", cfg)
	h.m.Observe("web", http.StatusBadGateway, time.Millisecond)
	clock.set(t0.Add(70 * time.Second))
	eventually.True(t, waitFor, "the minute", func() bool {
		minutes, _ := sink.got()
		return len(minutes) == 1
	})
	minutes, _ := sink.got()
	want := stratus.UsageMinute{
		Kind: stratus.KindService, Name: "web", Minute: t0, Requests: 2, Errors: 1, DurationMs: 2, MaxDuration: 1,
		Replicas: 20.0 / 60, VCPUSeconds: 5, GBSeconds: 2.5, MemoryMB: 128, VCPU: 0.25, Arch: hostArch,
	}
	if diff := cmp.Diff([]stratus.UsageMinute{want}, minutes, approx()); diff != "" {
		t.Errorf("the minute (-want +got):\n%s", diff)
	}
}

// TestNoUsageSink: without a sink nothing is measured, and Observe is a
// no-op.
func TestNoUsageSink(t *testing.T) {
	h := newHarness(t)
	h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 1, MaxScale: 1})
	h.hello("web")
	h.m.Observe("web", 200, time.Millisecond)
	h.m.mu.Lock()
	n := len(h.m.metered)
	h.m.mu.Unlock()
	if n != 0 {
		t.Errorf("%d services hold usage without a sink", n)
	}
}
