package services

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
)

// revKey names a revision on fakeRevisions.
type revKey struct {
	service string
	number  int
}

// fakeRevisions is a Revisions backend whose endpoints the test sets: it
// keeps the replicas applied to each revision's objects and makes no
// endpoint by itself.
type fakeRevisions struct {
	mu       sync.Mutex
	objects  map[revKey]int // replicas applied, of the revisions whose objects exist
	eps      map[revKey][]Endpoint
	peak     int                   // the most replicas applied to all revisions together
	calls    int                   // Ensure and Scale calls
	deletes  []revKey              // Delete calls, in order
	lists    int                   // List calls
	fail     func(op string) error // if set, the error of a call ("ensure", "scale", "delete", "list")
	changed  chan struct{}
	appliedC chan struct{} // closed and replaced on every change of objects
}

var _ Revisions = (*fakeRevisions)(nil)

func newFakeRevisions() *fakeRevisions {
	return &fakeRevisions{
		objects: make(map[revKey]int), eps: make(map[revKey][]Endpoint),
		changed: make(chan struct{}), appliedC: make(chan struct{}),
	}
}

func (f *fakeRevisions) applyLocked(k revKey, replicas int) {
	f.objects[k] = replicas
	sum := 0
	for _, n := range f.objects {
		sum += n
	}
	f.peak = max(f.peak, sum)
	close(f.appliedC)
	f.appliedC = make(chan struct{})
}

func (f *fakeRevisions) Ensure(ctx context.Context, rev *stratus.Revision, img *Image, replicas int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fail != nil {
		if err := f.fail("ensure"); err != nil {
			return err
		}
	}
	f.applyLocked(revKey{rev.Service, rev.Number}, replicas)
	return nil
}

func (f *fakeRevisions) Scale(ctx context.Context, service string, number, replicas int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fail != nil {
		if err := f.fail("scale"); err != nil {
			return err
		}
	}
	k := revKey{service, number}
	if _, ok := f.objects[k]; !ok {
		return fmt.Errorf("scale %s r%d: %w", service, number, stratus.ErrNotFound)
	}
	f.applyLocked(k, replicas)
	return nil
}

func (f *fakeRevisions) Delete(ctx context.Context, service string, number int) error {
	f.mu.Lock()
	k := revKey{service, number}
	f.deletes = append(f.deletes, k)
	if f.fail != nil {
		if err := f.fail("delete"); err != nil {
			close(f.appliedC)
			f.appliedC = make(chan struct{})
			f.mu.Unlock()
			return err
		}
	}
	delete(f.objects, k)
	delete(f.eps, k)
	close(f.appliedC)
	f.appliedC = make(chan struct{})
	f.mu.Unlock()
	f.notify()
	return nil
}

// List returns the revisions that have objects, by service and number
// (so that a test knows which it reached first).
func (f *fakeRevisions) List(ctx context.Context) ([]RevisionRef, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	if f.fail != nil {
		if err := f.fail("list"); err != nil {
			return nil, err
		}
	}
	var refs []RevisionRef
	for k := range f.objects {
		refs = append(refs, RevisionRef{k.service, k.number})
	}
	slices.SortFunc(refs, func(a, b RevisionRef) int {
		return cmp.Or(strings.Compare(a.Service, b.Service), a.Number-b.Number)
	})
	return refs, nil
}

func (f *fakeRevisions) Endpoints(service string, number int) []Endpoint {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.eps[revKey{service, number}])
}

func (f *fakeRevisions) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

func (f *fakeRevisions) notify() {
	f.mu.Lock()
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

// setEndpoints makes eps revision number of service's endpoints.
func (f *fakeRevisions) setEndpoints(service string, number int, eps ...Endpoint) {
	f.mu.Lock()
	f.eps[revKey{service, number}] = eps
	f.mu.Unlock()
	f.notify()
}

// setFail makes fail decide the errors of Ensure and Scale.
func (f *fakeRevisions) setFail(fail func(op string) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = fail
}

// applied returns the replicas applied to each revision, and the most
// applied to all together so far.
func (f *fakeRevisions) applied() (map[revKey]int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.objects), f.peak
}

// deleted returns the Delete calls so far, in order.
func (f *fakeRevisions) deleted() []revKey {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.deletes)
}

func (f *fakeRevisions) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// waitApplied waits until revision number of service's objects have
// replicas replicas.
func (f *fakeRevisions) waitApplied(t *testing.T, service string, number, replicas int) {
	t.Helper()
	eventually.True(t, waitFor, fmt.Sprintf("%s r%d at %d replicas", service, number, replicas), func() bool {
		objects, _ := f.applied()
		n, ok := objects[revKey{service, number}]
		return ok && n == replicas
	})
}

// readyEndpoint is a ready endpoint named name at 10.0.0.i.
func readyEndpoint(name string, i int) Endpoint {
	return Endpoint{Name: name, Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 8080), Ready: true}
}

// newBackendHarness is a harness whose Manager runs revisions on a
// fakeRevisions, with no driver and no image store. It returns once the
// Manager has listed the backend's objects (none) for its cleanup at
// start, so that the cleanup deletes none of what the test makes.
func newBackendHarness(t *testing.T, tune ...func(*Config)) (*harness, *fakeRevisions) {
	f := newFakeRevisions()
	h := newHarness(t, append([]func(*Config){func(c *Config) {
		c.Revisions, c.Driver, c.Images = f, nil, nil
	}}, tune...)...)
	eventually.True(t, waitFor, "the objects listed at start", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.lists > 0
	})
	return h, f
}

// deployOn deploys name's revision number with cfg on f, making eps its
// endpoints once its objects have replicas replicas.
func (h *harness) deployOn(f *fakeRevisions, name string, number int, cfg stratus.ServiceConfig, replicas int, eps ...Endpoint) {
	h.t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := h.m.Deploy(h.t.Context(), name, cfg)
		done <- err
	}()
	f.waitApplied(h.t, name, number, replicas)
	f.setEndpoints(name, number, eps...)
	select {
	case err := <-done:
		if err != nil {
			h.t.Fatalf("deploy %s: %v", name, err)
		}
	case <-time.After(waitFor):
		h.t.Fatalf("deploy %s did not return within %s", name, waitFor)
	}
}

// replicaStatus returns the status of service name's replica id, if it
// has one.
func (h *harness) replicaStatus(name, id string) (ReplicaStatus, bool) {
	for _, r := range h.status(name).Replicas {
		if r.ID == id {
			return r, true
		}
	}
	return ReplicaStatus{}, false
}

// TestBackendUsage: a backend replica is metered from the first sight of
// its endpoint's address to its end, or to Run's end, in the usage
// minutes and its ReplicaUsage, with no CPU time (the Manager has no
// driver here: reading a CPU counter would fail the test).
func TestBackendUsage(t *testing.T) {
	clock := &stepClock{t: t0.Add(2 * time.Second)}
	sink := &usageSink{}
	h, f := newBackendHarness(t, func(c *Config) { c.Now, c.Usage = clock.Now, sink })
	cfg := stratus.ServiceConfig{Image: "app", MinScale: 1, MaxScale: 1, MemoryMB: 512, CPU: 0.5}
	// A pod placed but not started (no address) is not metered: its
	// metering starts at 10 s, when it has an address.
	done := make(chan error, 1)
	go func() {
		_, err := h.m.Deploy(t.Context(), "web", cfg)
		done <- err
	}()
	f.waitApplied(t, "web", 1, 1)
	f.setEndpoints("web", 1, Endpoint{Name: "web-a", Node: "n1"})
	eventually.True(t, waitFor, "the pod seen", func() bool {
		h.m.mu.Lock()
		defer h.m.mu.Unlock()
		n := 0
		for set := range h.m.deploying {
			n += len(set.replicas)
		}
		return n == 1
	})
	clock.set(t0.Add(10 * time.Second))
	f.setEndpoints("web", 1, readyEndpoint("web-a", 1))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	_, release := h.acquire("web")
	release()

	clock.set(t0.Add(61 * time.Second))
	eventually.True(t, waitFor, "the first minute", func() bool {
		minutes, _ := sink.got()
		return len(minutes) == 1
	})
	minutes, _ := sink.got()
	want := stratus.UsageMinute{
		Kind: stratus.KindService, Name: "web", Minute: t0, MaxInFlight: 1,
		Replicas: 50.0 / 60, VCPUSeconds: 25, GBSeconds: 25,
		MemoryMB: 512, VCPU: 0.5, Arch: hostArch,
	}
	if diff := gocmp.Diff([]stratus.UsageMinute{want}, minutes, approx()); diff != "" {
		t.Errorf("the first minute (-want +got):\n%s", diff)
	}

	// Its endpoint goes at 70 s: its usage comes at once.
	clock.set(t0.Add(70 * time.Second))
	f.setEndpoints("web", 1)
	eventually.True(t, waitFor, "the pod's usage", func() bool {
		_, replicas := sink.got()
		return len(replicas) == 1
	})
	// Another pod starts at 80 s; the server stops at 90 s.
	clock.set(t0.Add(80 * time.Second))
	f.setEndpoints("web", 1, readyEndpoint("web-b", 2))
	eventually.True(t, waitFor, "the second pod ready", func() bool {
		r, ok := h.replicaStatus("web", "web-b")
		return ok && r.State == stateReady
	})
	clock.set(t0.Add(90 * time.Second))
	h.stop()

	minutes, replicas := sink.got()
	wantLast := stratus.UsageMinute{
		Kind: stratus.KindService, Name: "web", Minute: t0.Add(time.Minute),
		Replicas: 20.0 / 60, VCPUSeconds: 10, GBSeconds: 10,
		MemoryMB: 512, VCPU: 0.5, Arch: hostArch,
	}
	if diff := gocmp.Diff([]stratus.UsageMinute{want, wantLast}, minutes, approx()); diff != "" {
		t.Errorf("minutes after Run's end (-want +got):\n%s", diff)
	}
	wantReplicas := []stratus.ReplicaUsage{
		{
			Service: "web", Revision: 1, Replica: "web-a",
			Start: t0.Add(10 * time.Second), End: t0.Add(70 * time.Second),
			CPU: 0.5, MemoryMB: 512, Requests: 1, Arch: hostArch,
		},
		{
			Service: "web", Revision: 1, Replica: "web-b",
			Start: t0.Add(80 * time.Second), End: t0.Add(90 * time.Second),
			CPU: 0.5, MemoryMB: 512, Arch: hostArch,
		},
	}
	if diff := gocmp.Diff(wantReplicas, replicas, approx()); diff != "" {
		t.Errorf("replica usage (-want +got):\n%s", diff)
	}
}

// TestBackendUsageUntilDeleted: a retired revision's pods are metered
// until its objects are deleted.
func TestBackendUsageUntilDeleted(t *testing.T) {
	clock := &stepClock{t: t0}
	sink := &usageSink{}
	h, f := newBackendHarness(t, func(c *Config) { c.Now, c.Usage = clock.Now, sink })
	cfg := stratus.ServiceConfig{Image: "app", MinScale: 1, MaxScale: 1, MemoryMB: 256, CPU: 1}
	h.deployOn(f, "web", 1, cfg, 1, readyEndpoint("web-a", 1))
	clock.set(t0.Add(30 * time.Second))
	if err := h.m.Remove(t.Context(), "web"); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, waitFor, "the deleted revision's pod usage", func() bool {
		_, replicas := sink.got()
		return len(replicas) == 1
	})
	if objects, _ := f.applied(); len(objects) != 0 {
		t.Errorf("objects left: %v", objects)
	}
	_, replicas := sink.got()
	if got := replicas[0]; got.Replica != "web-a" || !got.Start.Equal(t0) || !got.End.Equal(t0.Add(30*time.Second)) || got.CPUMs != 0 {
		t.Errorf("usage of the deleted revision's pod: %+v", got)
	}
}

// TestBackendRestartsAndOOM: restarts count from the growth of the
// endpoints' restarts (not those a pod had when first seen), OOM
// kills from the end they restarted after; the replica's reason and the
// platform log say it as on runc.
func TestBackendRestartsAndOOM(t *testing.T) {
	h, f := newBackendHarness(t)
	h.deployOn(f, "web", 1, stratus.ServiceConfig{Image: "app", MinScale: 1, MaxScale: 2, MemoryMB: 256}, 1, readyEndpoint("web-a", 1))
	counters := func() (int64, int64) {
		st := statsOf(t, h.m, "web")
		return st.Restarts, st.OOMKills
	}
	waitCounters := func(what string, restarts, ooms int64) {
		t.Helper()
		eventually.True(t, waitFor, what, func() bool {
			r, o := counters()
			return r == restarts && o == ooms
		})
	}

	oom := OOMReason(256)
	a := readyEndpoint("web-a", 1)
	a.Restarts, a.OOMKilled, a.Reason = 1, true, oom
	f.setEndpoints("web", 1, a)
	waitCounters("an OOM kill", 1, 1)
	if r, ok := h.replicaStatus("web", "web-a"); !ok || r.LastErr != oom || r.Restarts != 1 {
		t.Errorf("replica status %+v, want the reason %q", r, oom)
	}
	eventually.True(t, waitFor, "the OOM kill in the platform log", func() bool {
		return h.logs.has("web", "platform", "replica web-00001: "+oom)
	})

	// The same figures seen again count nothing more; two more restarts
	// after an exit count two, and no OOM kill.
	b := readyEndpoint("web-b", 2)
	f.setEndpoints("web", 1, a, b)
	eventually.True(t, waitFor, "the second pod", func() bool { return len(h.status("web").Replicas) == 2 })
	a.Restarts, a.OOMKilled, a.Reason = 3, false, "exited: Error, exit code 1"
	f.setEndpoints("web", 1, a, b)
	waitCounters("two more restarts", 3, 1)

	// A pod first seen having restarted twice (say, before this server
	// took the service over): those were counted where they happened.
	// Its next restart, an OOM kill, counts.
	c := readyEndpoint("web-c", 3)
	c.Restarts, c.OOMKilled, c.Reason = 2, true, oom
	f.setEndpoints("web", 1, a, b, c)
	eventually.True(t, waitFor, "the third pod", func() bool { return len(h.status("web").Replicas) == 3 })
	if r, o := counters(); r != 3 || o != 1 {
		t.Errorf("after a pod first seen restarted: %d restarts, %d OOM kills; want 3 and 1 still", r, o)
	}
	c.Restarts = 3
	f.setEndpoints("web", 1, a, b, c)
	waitCounters("web-c's next restart", 4, 2)
	f.setEndpoints("web", 1, a, c)
	eventually.True(t, waitFor, "web-b gone", func() bool { return len(h.status("web").Replicas) == 2 })
	if r, o := counters(); r != 4 || o != 2 {
		t.Errorf("after another change: %d restarts, %d OOM kills; want 4 and 2", r, o)
	}
}

// TestBackendMaxReplicas: the replicas applied to all revisions together
// never exceed MaxReplicas; a revision the cap holds below its desired
// gets its room once another's objects go.
func TestBackendMaxReplicas(t *testing.T) {
	h, f := newBackendHarness(t, func(c *Config) { c.MaxReplicas = 3 })
	h.deployOn(f, "a", 1, stratus.ServiceConfig{Image: "app", MinScale: 2, MaxScale: 2}, 2, readyEndpoint("a-1", 1), readyEndpoint("a-2", 2))
	h.deployOn(f, "b", 1, stratus.ServiceConfig{Image: "app", MinScale: 1, MaxScale: 3, Concurrency: 1, Target: 1}, 1, readyEndpoint("b-1", 3))

	// Two requests for b's one replica of concurrency 1: b wants more,
	// the cap leaves it 1.
	_, release := h.acquire("b")
	defer release()
	waiting := h.acquireAsync(t.Context(), "b")
	eventually.True(t, waitFor, "b desiring 2", func() bool { return statsOf(t, h.m, "b").DesiredReplicas == 2 })
	objects, peak := f.applied()
	if objects[revKey{"a", 1}] != 2 || objects[revKey{"b", 1}] != 1 || peak > 3 {
		t.Errorf("applied %v, at most %d together; want a 2, b 1, at most 3", objects, peak)
	}

	// a goes: b takes the room.
	if err := h.m.Remove(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	f.waitApplied(t, "b", 1, 2)
	f.setEndpoints("b", 1, readyEndpoint("b-1", 3), readyEndpoint("b-2", 4))
	got := receive(t, waiting)
	if got.err != nil {
		t.Fatalf("the waiting request: %v", got.err)
	}
	got.release()
	if _, peak := f.applied(); peak > 3 {
		t.Errorf("%d replicas applied together; the cap is 3", peak)
	}
}

// TestBackendTransientErrorRetried: an API error that is not the
// caller's is retried, and the deploy succeeds once the call does.
func TestBackendTransientErrorRetried(t *testing.T) {
	h, f := newBackendHarness(t)
	failures := 2
	f.setFail(func(op string) error {
		if (op == "ensure" || op == "scale") && failures > 0 {
			failures--
			return fmt.Errorf("create deployment: etcdserver: request timed out: %w", stratus.ErrUnavailable)
		}
		return nil
	})
	h.deployOn(f, "web", 1, stratus.ServiceConfig{Image: "app", MinScale: 1}, 1, readyEndpoint("web-a", 1))
	if n := f.callCount(); n != 3 {
		t.Errorf("%d calls, want 3 (two failures, then the success)", n)
	}
}

// TestBackendInvalidFailsFast: objects the API refuses fail the deploy at
// once, with the API's reason; they are not retried as if the API were
// away.
func TestBackendInvalidFailsFast(t *testing.T) {
	h, f := newBackendHarness(t, func(c *Config) { c.ReadyTimeout = time.Minute })
	f.setFail(func(op string) error {
		return fmt.Errorf(`create deployment: Deployment "x" is invalid: spec.template: bad: %w`, stratus.ErrInvalid)
	})
	start := time.Now()
	_, err := h.m.Deploy(t.Context(), "web", stratus.ServiceConfig{Image: "app", MinScale: 1})
	if !errors.Is(err, stratus.ErrInvalid) || !strings.Contains(err.Error(), "is invalid: spec.template: bad") {
		t.Fatalf("deploy of refused objects: %v; want invalid, with the API's reason", err)
	}
	if d := time.Since(start); d > waitFor/2 {
		t.Errorf("the deploy took %s to fail", d)
	}
}

// TestBackendUnavailableUntilDeadline: an API that stays away fails the
// deploy only at its deadline, naming the last error, as unavailable.
func TestBackendUnavailableUntilDeadline(t *testing.T) {
	h, f := newBackendHarness(t, func(c *Config) { c.ReadyTimeout = 100 * time.Millisecond })
	f.setFail(func(op string) error {
		return fmt.Errorf("create deployment: connection refused: %w", stratus.ErrUnavailable)
	})
	start := time.Now()
	_, err := h.m.Deploy(t.Context(), "web", stratus.ServiceConfig{Image: "app", MinScale: 1})
	if !errors.Is(err, stratus.ErrUnavailable) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("deploy with the API away: %v; want unavailable, naming the last error", err)
	}
	// The deadline: ReadyTimeout and 10 s for a slow start.
	if d := time.Since(start); d < 10*time.Second {
		t.Errorf("the deploy failed after %s, before its deadline", d)
	}
	if n := f.callCount(); n < 3 {
		t.Errorf("%d calls; want the call retried", n)
	}
}

// TestBackendDeleteRetried: a retired revision's objects whose deletion
// fails are deleted again, after a backoff, until it succeeds.
func TestBackendDeleteRetried(t *testing.T) {
	h, f := newBackendHarness(t)
	h.deployOn(f, "web", 1, stratus.ServiceConfig{Image: "app", MinScale: 1}, 1, readyEndpoint("web-a", 1))
	failures := 2
	f.setFail(func(op string) error {
		if op == "delete" && failures > 0 {
			failures--
			return fmt.Errorf("delete deployment: etcdserver: request timed out: %w", stratus.ErrUnavailable)
		}
		return nil
	})
	if err := h.m.Remove(t.Context(), "web"); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, waitFor, "the objects deleted", func() bool {
		objects, _ := f.applied()
		return len(objects) == 0
	})
	want := []revKey{{"web", 1}, {"web", 1}, {"web", 1}}
	if diff := gocmp.Diff(want, f.deleted(), gocmp.AllowUnexported(revKey{})); diff != "" {
		t.Errorf("delete calls (-want +got): two failures, then the success:\n%s", diff)
	}
}

// TestBackendDeleteRetriesEndWithRun: a deletion that keeps failing is
// retried until the server stops, and the stop does not wait for it; the
// objects stay (the next start deletes them, see TestBackendOrphans).
func TestBackendDeleteRetriesEndWithRun(t *testing.T) {
	// The first retry would come in an hour: only the stop ends the wait.
	h, f := newBackendHarness(t, func(c *Config) { c.BackoffBase, c.BackoffMax = time.Hour, time.Hour })
	h.deployOn(f, "web", 1, stratus.ServiceConfig{Image: "app", MinScale: 1}, 1, readyEndpoint("web-a", 1))
	f.setFail(func(op string) error {
		if op == "delete" {
			return fmt.Errorf("delete deployment: connection refused: %w", stratus.ErrUnavailable)
		}
		return nil
	})
	if err := h.m.Remove(t.Context(), "web"); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, waitFor, "a delete call", func() bool { return len(f.deleted()) == 1 })
	start := time.Now()
	h.stop() // fails the test if Run does not return
	if d := time.Since(start); d > waitFor/2 {
		t.Errorf("Run took %s to return", d)
	}
	if n := len(f.deleted()); n != 1 {
		t.Errorf("%d delete calls; want 1 (no retry before the stop, none after)", n)
	}
	if objects, _ := f.applied(); len(objects) != 1 {
		t.Errorf("objects %v; want web's left", objects)
	}
}

// TestBackendDeleteYieldsToRedeploy: a retried deletion stops once a
// new deploy takes the revision's number again (the service removed and
// made anew): the new revision's objects stay.
func TestBackendDeleteYieldsToRedeploy(t *testing.T) {
	sink := &usageSink{}
	h, f := newBackendHarness(t, func(c *Config) { c.Usage = sink })
	cfg := stratus.ServiceConfig{Image: "app", MinScale: 1}
	h.deployOn(f, "web", 1, cfg, 1, readyEndpoint("web-a", 1))
	f.setFail(func(op string) error {
		if op == "delete" {
			return fmt.Errorf("delete deployment: connection refused: %w", stratus.ErrUnavailable)
		}
		return nil
	})
	if err := h.m.Remove(t.Context(), "web"); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, waitFor, "a failed delete", func() bool { return len(f.deleted()) >= 1 })

	// The objects are still there: the new deploy ensures them again.
	ensured := f.callCount()
	done := make(chan error, 1)
	go func() {
		_, err := h.m.Deploy(t.Context(), "web", cfg)
		done <- err
	}()
	eventually.True(t, waitFor, "the new revision's Ensure", func() bool { return f.callCount() > ensured })
	f.setEndpoints("web", 1, readyEndpoint("web-b", 2))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The removed revision's goroutine ends (its pod's metering with
	// it) once its deletion gives way.
	eventually.True(t, waitFor, "the removed revision's pod metered to its end", func() bool {
		_, replicas := sink.got()
		return len(replicas) == 1 && replicas[0].Replica == "web-a"
	})
	if objects, _ := f.applied(); objects[revKey{"web", 1}] != 1 {
		t.Errorf("objects %v; want web r1's, the new revision's, at 1", objects)
	}
	_, release := h.acquire("web")
	release()
}

// TestBackendOrphans: at its start, a Manager on a backend deletes the
// objects of the revisions no traffic reaches and of services the store
// has not, among those this server owns; those of a service another
// server owns (stored or not) stay, as do the live revisions'.
func TestBackendOrphans(t *testing.T) {
	st := newFakeStore()
	c := stratus.ServiceConfig{Image: "app", MinScale: 1}
	c.Defaults()
	for _, rev := range []stratus.Revision{{Service: "web", Number: 1}, {Service: "web", Number: 2}, {Service: "theirs", Number: 1}} {
		rev.Config, rev.Digest = c, "sha256:app"
		if _, err := st.PutRevision(t.Context(), &rev); err != nil {
			t.Fatal(err)
		}
	}
	f := newFakeRevisions()
	for _, k := range []revKey{{"elsewhere", 1}, {"gone", 1}, {"theirs", 1}, {"web", 1}, {"web", 2}, {"zombie", 3}} {
		f.objects[k] = 1
	}
	owns := func(name string) bool { return name != "theirs" && name != "elsewhere" }
	h := newHarness(t, func(cfg *Config) {
		cfg.Revisions, cfg.Driver, cfg.Images = f, nil, nil
		cfg.Store, cfg.Owns = st, owns
	})
	// The fake lists them in the order above: zombie is the last one.
	eventually.True(t, waitFor, "zombie's objects deleted", func() bool {
		objects, _ := f.applied()
		_, ok := objects[revKey{"zombie", 3}]
		return !ok
	})
	want := []revKey{{"gone", 1}, {"web", 1}, {"zombie", 3}}
	if diff := gocmp.Diff(want, f.deleted(), gocmp.AllowUnexported(revKey{})); diff != "" {
		t.Errorf("deleted (-want +got):\n%s", diff)
	}
	objects, _ := f.applied()
	for _, k := range []revKey{{"elsewhere", 1}, {"theirs", 1}, {"web", 2}} {
		if _, ok := objects[k]; !ok {
			t.Errorf("%s r%d deleted; want it kept", k.service, k.number)
		}
	}
	h.stop()
}

// TestBackendOrphansListRetried: a failed List is retried.
func TestBackendOrphansListRetried(t *testing.T) {
	f := newFakeRevisions()
	f.objects[revKey{"gone", 1}] = 1
	failures := 2
	f.fail = func(op string) error {
		if op == "list" && failures > 0 {
			failures--
			return fmt.Errorf("list deployments: connection refused: %w", stratus.ErrUnavailable)
		}
		return nil
	}
	newHarness(t, func(cfg *Config) { cfg.Revisions, cfg.Driver, cfg.Images = f, nil, nil })
	eventually.True(t, waitFor, "gone's objects deleted", func() bool {
		objects, _ := f.applied()
		return len(objects) == 0
	})
}
