package services

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// hangingDriver is the fake driver until hang is set; from then on its
// Start, Addr, Stop and Wait hang until their ctx ends, as a runc that
// no longer answers.
type hangingDriver struct {
	*fakeDriver
	hang          atomic.Bool
	hung, dropped atomic.Int32 // calls that hung; those that then returned
}

var _ sandbox.Driver = (*hangingDriver)(nil)

func (d *hangingDriver) hold(ctx context.Context) error {
	d.hung.Add(1)
	defer d.dropped.Add(1)
	<-ctx.Done()
	return ctx.Err()
}

func (d *hangingDriver) Start(ctx context.Context, spec sandbox.Spec) error {
	if d.hang.Load() {
		return d.hold(ctx)
	}
	return d.fakeDriver.Start(ctx, spec)
}

func (d *hangingDriver) Stop(ctx context.Context, id string, grace time.Duration) error {
	if d.hang.Load() {
		return d.hold(ctx)
	}
	return d.fakeDriver.Stop(ctx, id, grace)
}

func (d *hangingDriver) Wait(ctx context.Context, id string) (sandbox.Exit, error) {
	if d.hang.Load() {
		return sandbox.Exit{}, d.hold(ctx)
	}
	return d.fakeDriver.Wait(ctx, id)
}

func (d *hangingDriver) Addr(ctx context.Context, id string) (netip.Addr, error) {
	if d.hang.Load() {
		return netip.Addr{}, d.hold(ctx)
	}
	return d.fakeDriver.Addr(ctx, id)
}

// Run ends within its documented bound after its ctx ends even when the
// driver hangs: in the Stop of a serving replica (whose Wait then never
// returns on its own), in the Start of a replica being deployed, and with
// the serving replica's liveness probe hung when ctx ends (a probe runs
// outside the driver's contexts: the bound has room for one).
func TestRunEndsWithHungDriver(t *testing.T) {
	t.Parallel()
	d := &hangingDriver{fakeDriver: newFakeDriver(sandbox.Capabilities{})}
	t.Cleanup(d.stopAll)
	cfg := Config{
		Store: newFakeStore(), Images: fakeImages{}, Driver: d,
		ReadyTimeout:  time.Minute, // only the lifetime ends a hung Start
		ProbeInterval: 50 * time.Millisecond,
		Tick:          50 * time.Millisecond,
		StopGrace:     100 * time.Millisecond,
		DriverTimeout: 100 * time.Millisecond,
	}
	m := New(cfg)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	if _, err := m.Deploy(t.Context(), "web", stratus.ServiceConfig{Image: "app", MinScale: 1, HealthPath: "/healthz"}); err != nil {
		t.Fatal(err)
	}

	d.hang.Store(true)
	d.hangHealth.Store(true)
	deployed := make(chan error, 1)
	go func() {
		_, err := m.Deploy(t.Context(), "api", stratus.ServiceConfig{Image: "app"})
		deployed <- err
	}()
	eventually.True(t, waitFor, "a Start hung", func() bool { return d.hung.Load() == 1 })
	eventually.True(t, waitFor, "a liveness probe hung", func() bool { return d.healthHung.Load() >= 1 })

	cancel()
	stopped := time.Now()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(waitFor):
		t.Fatalf("Run did not return within %s of its ctx's end", waitFor)
	}
	took := time.Since(stopped)
	// The bound Run keeps to, with less room for a slow machine than the
	// probe it has to allow for, so that a bound leaving the probe out
	// fails here.
	bound := m.stopBound()
	if slack := probeTimeout / 2; took > bound+slack {
		t.Errorf("Run returned %s after its ctx ended, bound %s", took, bound)
	}
	// Start of api's replica, Stop of web's: both hung, both returned
	// before Run did.
	if hung, dropped := d.hung.Load(), d.dropped.Load(); hung < 2 || dropped != hung {
		t.Errorf("%d driver calls hung, %d of them returned; want at least 2, all returned", hung, dropped)
	}
	select {
	case err := <-deployed:
		if err == nil {
			t.Error("the deploy whose Start hung succeeded")
		}
	case <-time.After(waitFor):
		t.Fatal("the deploy whose Start hung did not return")
	}
	// After Run, the Manager refuses deploys.
	if _, err := m.Deploy(t.Context(), "late", stratus.ServiceConfig{Image: "app"}); !errors.Is(err, stratus.ErrUnavailable) {
		t.Errorf("deploy after Run: %v, want ErrUnavailable", err)
	}
}

// lostDriver is the fake driver whose Stop stops nothing (it fails, or
// with stopFails false returns as if it had stopped the sandbox) and
// whose Wait never sees a sandbox end, as a runc that lost track of its
// containers: Wait returns when its ctx ends.
type lostDriver struct {
	*fakeDriver
	stopFails bool
}

func (d *lostDriver) Stop(ctx context.Context, id string, grace time.Duration) error {
	if d.stopFails {
		return fmt.Errorf("stop sandbox %q: container not found", id)
	}
	return nil
}

func (d *lostDriver) Wait(ctx context.Context, id string) (sandbox.Exit, error) {
	<-ctx.Done()
	return sandbox.Exit{}, ctx.Err()
}

// A replica whose stop the driver does not finish is forgotten within
// about DriverTimeout of its Stop (at once when Stop fails), while Run
// goes on: it no longer counts against MaxReplicas, and its retired
// revision leaves the draining ones.
func TestStoppedReplicaForgottenWhenDriverLosesIt(t *testing.T) {
	t.Parallel()
	for _, stopFails := range []bool{true, false} {
		t.Run(fmt.Sprintf("stop fails %v", stopFails), func(t *testing.T) {
			t.Parallel()
			d := &lostDriver{fakeDriver: newFakeDriver(sandbox.Capabilities{}), stopFails: stopFails}
			t.Cleanup(d.stopAll)
			const driverTimeout = 100 * time.Millisecond
			m := New(Config{
				Store: newFakeStore(), Images: fakeImages{}, Driver: d,
				ProbeInterval: 50 * time.Millisecond, Tick: 50 * time.Millisecond,
				StopGrace: 100 * time.Millisecond, DriverTimeout: driverTimeout,
				MaxReplicas: 2,
			})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- m.Run(ctx) }()
			t.Cleanup(func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
			})
			deploys := 0
			deploy := func(name string) {
				t.Helper()
				deploys++ // a new configuration each time, so that each makes a revision
				env := map[string]string{"DEPLOY": strconv.Itoa(deploys)}
				if _, err := m.Deploy(t.Context(), name, stratus.ServiceConfig{Image: "app", MinScale: 1, MaxScale: 1, Env: env}); err != nil {
					t.Fatalf("deploy %s: %v", name, err)
				}
			}

			// web's second revision retires the first: its replica drains
			// and is stopped, which the driver does not see through.
			deploy("web")
			deploy("web")
			eventually.True(t, 20*driverTimeout, "the retired replica forgotten", func() bool {
				m.mu.Lock()
				defer m.mu.Unlock()
				return m.total == 1 && len(m.services["web"].draining) == 0
			})
			if st := statusOf(t, m, "web"); st.Live != 1 || st.Draining != 0 {
				t.Errorf("web after its first revision was forgotten: %+v", st)
			}
			// The room it left under MaxReplicas takes another service.
			deploy("api")
		})
	}
}

// statusOf is the status of m's service name.
func statusOf(t *testing.T, m *Manager, name string) Status {
	t.Helper()
	_, st, err := m.Get(name)
	if err != nil {
		t.Fatalf("get %s: %v", name, err)
	}
	return st
}

// Deploy waits for Run: a deploy whose ctx ends before Run starts fails
// and starts nothing; one that comes before Run blocks until Run starts,
// then proceeds.
func TestDeployWaitsForRun(t *testing.T) {
	t.Parallel()
	d := newFakeDriver(sandbox.Capabilities{})
	t.Cleanup(d.stopAll)
	m := New(Config{Store: newFakeStore(), Images: fakeImages{}, Driver: d, ProbeInterval: 50 * time.Millisecond, StopGrace: 100 * time.Millisecond})

	gone, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := m.Deploy(gone, "web", stratus.ServiceConfig{Image: "app"}); !errors.Is(err, context.Canceled) {
		t.Errorf("deploy before Run, its ctx cancelled: %v, want context.Canceled", err)
	}

	// Deploy asks its ctx for Done first where it waits for Run.
	ctx := &doneWatch{Context: t.Context(), asked: make(chan struct{})}
	deployed := make(chan error, 1)
	go func() {
		_, err := m.Deploy(ctx, "web", stratus.ServiceConfig{Image: "app", MinScale: 2})
		deployed <- err
	}()
	select {
	case <-ctx.asked:
	case <-time.After(waitFor):
		t.Fatal("Deploy did not wait on its ctx")
	}
	select {
	case err := <-deployed:
		t.Fatalf("Deploy returned before Run started: %v", err)
	default:
	}
	if started := d.started(); len(started) != 0 {
		t.Errorf("sandboxes started before Run: %v", started)
	}

	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if live := d.live(); len(live) != 0 {
			t.Errorf("sandboxes left running after Run returned: %v", live)
		}
	})
	select {
	case err := <-deployed:
		if err != nil {
			t.Fatalf("deploy once Run started: %v", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Deploy did not return once Run started")
	}
	if st := statusOf(t, m, "web"); st.Ready != 2 || len(d.started()) != 2 {
		t.Errorf("after the deploy: %+v, sandboxes started %v; want 2 ready", st, d.started())
	}
}

// doneWatch is a context that closes asked the first time Done is called.
type doneWatch struct {
	context.Context
	once  sync.Once
	asked chan struct{}
}

func (c *doneWatch) Done() <-chan struct{} {
	c.once.Do(func() { close(c.asked) })
	return c.Context.Done()
}

// Requests waiting for a replica when Run's ctx ends fail with
// ErrUnavailable (the server is stopping), not ErrNotFound, and so do
// requests that come then.
func TestRunFailsWaitingRequests(t *testing.T) {
	h := newHarness(t)
	h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 1, MaxScale: 1, Concurrency: 1})
	_, release := h.acquire("web")
	waiting := h.acquireAsync(t.Context(), "web")
	eventually.True(t, waitFor, "a request waiting", func() bool { return h.status("web").Waiting == 1 })

	h.cancel()
	if a := receive(t, waiting); !errors.Is(a.err, stratus.ErrUnavailable) {
		t.Errorf("waiting acquire when Run's ctx ended: %v, want ErrUnavailable", a.err)
	}
	if _, _, err := h.m.Acquire(t.Context(), "web"); !errors.Is(err, stratus.ErrUnavailable) {
		t.Errorf("acquire once Run's ctx ended: %v, want ErrUnavailable", err)
	}
	release()
	h.stop()
}

// A deploy in progress when Run's ctx ends is stopped with the rest: its
// replica, ready only after the stop began, does not keep Run waiting,
// and the deploy fails with ErrUnavailable.
func TestRunStopsDeployInProgress(t *testing.T) {
	h := newHarness(t)
	deployed := make(chan error, 1)
	go func() {
		_, err := h.m.Deploy(t.Context(), "web", stratus.ServiceConfig{Image: "app", Env: map[string]string{"FAKE_WAIT_GATE": "1"}})
		deployed <- err
	}()
	eventually.True(t, waitFor, "web's replica starting", func() bool { return len(h.d.live()) == 1 })
	h.cancel()
	eventually.True(t, waitFor, "the Manager stopping", func() bool {
		h.m.mu.Lock()
		defer h.m.mu.Unlock()
		return h.m.stopping
	})
	h.d.openGate() // the replica would be ready now
	h.stop()
	if err := <-deployed; !errors.Is(err, stratus.ErrUnavailable) {
		t.Errorf("deploy stopped by Run's end: %v, want ErrUnavailable", err)
	}
}
