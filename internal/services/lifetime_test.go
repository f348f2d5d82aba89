package services

import (
	"context"
	"errors"
	"net/netip"
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
// returns on its own) and in the Start of a replica being deployed.
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
	if _, err := m.Deploy(t.Context(), "web", stratus.ServiceConfig{Image: "app", MinScale: 1}); err != nil {
		t.Fatal(err)
	}

	d.hang.Store(true)
	deployed := make(chan error, 1)
	go func() {
		_, err := m.Deploy(t.Context(), "api", stratus.ServiceConfig{Image: "app"})
		deployed <- err
	}()
	eventually.True(t, waitFor, "a Start hung", func() bool { return d.hung.Load() == 1 })

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
	// The documented bound, and room for a slow machine.
	if bound := 2*cfg.StopGrace + cfg.DriverTimeout; took > bound+2*time.Second {
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

// Deploy waits for Run: before it, no replica may start.
func TestDeployWaitsForRun(t *testing.T) {
	t.Parallel()
	d := newFakeDriver(sandbox.Capabilities{})
	t.Cleanup(d.stopAll)
	m := New(Config{Store: newFakeStore(), Images: fakeImages{}, Driver: d, ProbeInterval: 50 * time.Millisecond, StopGrace: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	deployed := make(chan error, 1)
	go func() {
		_, err := m.Deploy(ctx, "web", stratus.ServiceConfig{Image: "app"})
		deployed <- err
	}()
	cancel()
	if err := <-deployed; !errors.Is(err, context.Canceled) {
		t.Errorf("deploy before Run, its ctx cancelled: %v, want context.Canceled", err)
	}
	if started := d.started(); len(started) != 0 {
		t.Errorf("sandboxes started before Run: %v", started)
	}
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
