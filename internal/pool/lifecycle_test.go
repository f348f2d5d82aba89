package pool

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sandbox"
	"github.com/stratus-run/stratus/internal/sandbox/process"
	"github.com/stratus-run/stratus/internal/sandbox/sandboxtest"
)

// An instance's life and the Manager's: reaping, MinInstances, deploys,
// Remove, Run and its end.

func TestReapIdle(t *testing.T) {
	e := newEnv(t, opts{fakeClock: true, idleTimeout: 5 * time.Minute})
	e.deploy("plain", 1, nil)
	e.deploy("short", 1, func(c *stratus.FunctionConfig) { c.IdleTimeout = stratus.Duration(time.Minute) })
	e.deploy("warm", 1, func(c *stratus.FunctionConfig) { c.MinInstances = 1 })
	// Deploy starts the provisioned instance.
	e.waitStats("warm", stratus.InstanceStats{Live: 1, Idle: 1})

	// Two instances of plain and warm, one of short.
	for _, fn := range []string{"plain", "warm"} {
		g := e.gate()
		c1, c2 := e.goInvoke(fn, block(g)), e.goInvoke(fn, block(g))
		e.waitStats(fn, stratus.InstanceStats{Live: 2, Busy: 2})
		e.open(g)
		e.open(g)
		e.await(c1)
		e.await(c2)
	}
	e.mustInvoke("short", map[string]any{"op": "echo"})
	e.waitStats("plain", stratus.InstanceStats{Live: 2, Idle: 2})
	e.waitStats("warm", stratus.InstanceStats{Live: 2, Idle: 2})
	if n := len(e.procs()); n != 5 {
		t.Fatalf("%d processes, want 5 instances", n)
	}

	e.clock.Step(59 * time.Second)
	e.m.Reap()
	for fn, want := range map[string]stratus.InstanceStats{"plain": {Live: 2, Idle: 2}, "warm": {Live: 2, Idle: 2}, "short": {Live: 1, Idle: 1}} {
		if got := e.gauges(fn); got != want {
			t.Errorf("after 59s idle: %s %+v, want %+v", fn, got, want)
		}
	}
	e.clock.Step(time.Second)
	e.m.Reap()
	e.waitStats("short", stratus.InstanceStats{})
	if got := e.gauges("plain"); got != (stratus.InstanceStats{Live: 2, Idle: 2}) {
		t.Errorf("after 1m idle: plain %+v, want both kept (default idle timeout 5m)", got)
	}

	e.clock.Step(4*time.Minute - time.Second)
	e.m.Reap()
	if got := e.gauges("plain"); got != (stratus.InstanceStats{Live: 2, Idle: 2}) {
		t.Errorf("after 4m59s idle: plain %+v, want both kept", got)
	}
	e.clock.Step(time.Second)
	e.m.Reap()
	e.waitStats("plain", stratus.InstanceStats{})
	// warm keeps its MinInstances.
	e.waitStats("warm", stratus.InstanceStats{Live: 1, Idle: 1})
	e.waitFor("one process left", func() bool { return len(e.procs()) == 1 })

	// Scale from zero works after a reap.
	if r := e.mustInvoke("plain", map[string]any{"op": "echo"}); !r.Record.Cold {
		t.Error("plain after scale to zero: want a cold start")
	}
	// The provisioned instance serves warm.
	if r := e.mustInvoke("warm", map[string]any{"op": "echo"}); r.Record.Cold {
		t.Error("warm: want the provisioned instance, warm")
	}
}

func TestReapStartsMinInstances(t *testing.T) {
	e := newEnv(t, opts{fakeClock: true})
	e.deploy("fn", 1, func(c *stratus.FunctionConfig) { c.MinInstances = 2 })
	e.waitStats("fn", stratus.InstanceStats{Live: 2, Idle: 2})
	// A provisioned instance serves warm.
	r := e.mustInvoke("fn", map[string]any{"op": "echo"})
	if r.Record.Cold {
		t.Error("want a warm provisioned instance")
	}
	// An instance crashes: Reap starts a new one to keep two.
	crash := e.mustInvoke("fn", map[string]any{"op": "exit", "code": 1})
	if crash.ErrorType != "Runtime.ExitError" {
		t.Fatalf("crash: %q %s", crash.ErrorType, crash.Body)
	}
	e.waitStats("fn", stratus.InstanceStats{Live: 1, Idle: 1})
	e.m.Reap()
	e.waitStats("fn", stratus.InstanceStats{Live: 2, Idle: 2})
	e.waitFor("two processes", func() bool { return len(e.procs()) == 2 })
	// Time passing does not take provisioned instances below the minimum.
	e.clock.Step(24 * time.Hour)
	e.m.Reap()
	if got := e.gauges("fn"); got != (stratus.InstanceStats{Live: 2, Idle: 2}) {
		t.Errorf("after a day idle: %+v, want the two provisioned instances", got)
	}
}

func TestDeployNewVersion(t *testing.T) {
	e := newEnv(t, opts{})
	e.deploy("fn", 1, nil)
	g := e.gate()
	busy := e.goInvoke("fn", block(g))
	e.atGate(g)
	idle := e.success(e.mustInvoke("fn", map[string]any{"op": "echo"}))
	if got := e.gauges("fn"); got != (stratus.InstanceStats{Live: 2, Idle: 1, Busy: 1}) {
		t.Fatalf("Stats = %+v", got)
	}

	e.deploy("fn", 2, nil)
	// The idle instance of version 1 stops now; the busy one goes on.
	e.gone(idle.PID)
	e.waitStats("fn", stratus.InstanceStats{Live: 1, Busy: 1})

	fresh := e.mustInvoke("fn", map[string]any{"op": "echo"})
	if ec := e.success(fresh); !fresh.Record.Cold || fresh.Record.Version != 2 || ec.Env["V"] != "2" {
		t.Errorf("after deploy: cold %v, version %d, env V=%q; want a new instance of version 2", fresh.Record.Cold, fresh.Record.Version, ec.Env["V"])
	}

	e.open(g)
	r := e.await(busy)
	if r.err != nil {
		t.Fatalf("in-flight invocation: %v", r.err)
	}
	old := e.success(r.resp)
	if r.resp.Record.Version != 1 || old.Env["V"] != "1" {
		t.Errorf("in-flight invocation finished on version %d (env V=%q), want 1", r.resp.Record.Version, old.Env["V"])
	}
	// Released, the old instance stops.
	e.gone(old.PID)
	e.waitStats("fn", stratus.InstanceStats{Live: 1, Idle: 1})
	if again := e.mustInvoke("fn", map[string]any{"op": "echo"}); again.Record.Instance != fresh.Record.Instance {
		t.Errorf("ran on %s, want the version 2 instance %s", again.Record.Instance, fresh.Record.Instance)
	}
}

func TestRemove(t *testing.T) {
	e := newEnv(t, opts{throttleWait: 30 * time.Second})
	e.deploy("fn", 1, func(c *stratus.FunctionConfig) { c.MaxConcurrency = 1 })
	g := e.gate()
	busy := e.goInvoke("fn", block(g))
	e.atGate(g)
	waiting := e.goInvoke("fn", map[string]any{"op": "echo"})
	e.waitFor("a waiter", func() bool { return e.waiters("fn") == 1 })

	e.m.Remove("fn")
	if r := e.await(waiting); !errors.Is(r.err, stratus.ErrNotFound) {
		t.Errorf("waiter: %v, want ErrNotFound", r.err)
	}
	if _, _, err := e.invoke("fn", map[string]any{"op": "echo"}); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("invoke after Remove: %v, want ErrNotFound", err)
	}
	e.open(g)
	r := e.await(busy)
	if r.err != nil {
		t.Fatalf("in-flight invocation: %v", r.err)
	}
	e.gone(e.success(r.resp).PID)
	e.waitFor("no process", func() bool { return len(e.procs()) == 0 })
	e.m.Remove("fn") // idempotent
}

func TestStopAllLeavesNoProcess(t *testing.T) {
	e := newEnv(t, opts{})
	e.deploy("a", 1, func(c *stratus.FunctionConfig) { c.MinInstances = 2 })
	e.deploy("b", 1, nil)
	e.waitStats("a", stratus.InstanceStats{Live: 2, Idle: 2})
	e.mustInvoke("b", map[string]any{"op": "echo"})
	g := e.gate()
	busy := e.goInvoke("b", block(g))
	e.atGate(g)
	if n := len(e.procs()); n != 3 {
		t.Fatalf("%d processes, want 3 instances", n)
	}

	// Stopping: idle instances stop now, the busy one when its
	// invocation ends, and Run returns once nothing is left.
	e.cancel()
	e.waitFor("the idle instances to stop", func() bool { return len(e.procs()) == 1 })
	if _, _, err := e.invoke("a", map[string]any{"op": "echo"}); !errors.Is(err, stratus.ErrUnavailable) {
		t.Errorf("invoke while stopping: %v, want ErrUnavailable", err)
	}
	select {
	case <-e.runDone:
		t.Fatal("Run returned while an invocation was in flight")
	default:
	}
	e.open(g)
	if r := e.await(busy); r.err != nil || r.resp.ErrorType != "" {
		t.Errorf("in-flight invocation: %v %+v, want it to finish", r.err, r.resp)
	}
	e.stop()
	if left := e.procs(); len(left) > 0 {
		t.Errorf("processes left when Run returned: %s", sandboxtest.Describe(left))
	}
	if got := e.m.Total(); got != 0 {
		t.Errorf("Total = %d after Run returned", got)
	}
	e.m.StopAll() // idempotent
}

// TestBackgroundWorkWaitsForRun: a Deploy before Run (the server deploys
// the stored functions while it wires its parts) prepares and starts
// nothing, nor does an Invoke; Run then prepares an instance, starts the
// MinInstances and serves the waiting call.
func TestBackgroundWorkWaitsForRun(t *testing.T) {
	driver, err := process.New(process.Config{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	drv := newPreparer(driver)
	e := &env{t: t, sink: &sink{}, codeDir: t.TempDir(), marker: strconv.FormatInt(time.Now().UnixNano(), 36)}
	m := New(Config{
		Driver:       drv,
		MaxPrepared:  5,
		Command:      func(v *stratus.Version, taskDir, rtDir string) ([]string, error) { return []string{rtBin}, nil },
		CodeDir:      func(string) string { return e.codeDir },
		ThrottleWait: 20 * time.Millisecond,
		StopGrace:    2 * time.Second,
	})
	e.m = m
	m.Deploy(e.version("fn", 1, func(c *stratus.FunctionConfig) { c.MinInstances = 1 }))
	m.Deploy(e.version("other", 1, nil))
	call := e.goInvoke("other", map[string]any{"op": "echo"})
	e.waitFor("a waiter", func() bool { return e.waiters("other") == 1 })
	time.Sleep(50 * time.Millisecond) // beyond ThrottleWait: the call waits for Run
	if calls := drv.log(); len(calls) != 0 {
		t.Errorf("driver calls before Run: %v", calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	e.waitStats("fn", stratus.InstanceStats{Live: 1, Idle: 1, Prepared: 1})
	if r := e.await(call); r.err != nil || !r.resp.Record.Cold {
		t.Errorf("call made before Run: %v, %+v; want a cold start once Run began", r.err, r.resp)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if left := drv.preparedLeft(); len(left) != 0 {
		t.Errorf("prepared sandboxes left after Run returned: %v", left)
	}
	if left := e.procs(); len(left) != 0 {
		t.Errorf("processes left after Run returned: %v", left)
	}
}

// TestStopBoundedWithHungDriver: driver calls that hang until their
// context ends do not hold the Manager's stop beyond stopBound.
func TestStopBoundedWithHungDriver(t *testing.T) {
	const grace, driverTimeout = 200 * time.Millisecond, 300 * time.Millisecond
	// stopWithin stops e's Manager and checks that Run returned within
	// bound of its ctx's end.
	stopWithin := func(t *testing.T, e *env, bound time.Duration) time.Duration {
		t.Helper()
		t0 := time.Now()
		e.stop()
		took := time.Since(t0)
		if took > bound {
			t.Errorf("Run returned %s after its ctx ended, want at most %s", took, bound)
		}
		return took
	}

	t.Run("start and prepare", func(t *testing.T) {
		// A prepare and a start, both hung in the driver, end with Run's
		// ctx: long before DriverTimeout. (No instance launches here;
		// "stop and wait" hangs the calls on launched ones.)
		h := &hanger{prepare: true, hang: map[string]bool{"start": true, "prepare": true}}
		e := newEnv(t, opts{maxPrepared: 1, stopGrace: grace, driverTimeout: time.Minute,
			driver: func(d *process.Driver) sandbox.Driver { h.Driver = d; return h }})
		e.deploy("fn", 1, nil)
		e.waitFor("a prepare hung", func() bool { return h.blocked() == 1 })
		// The first call waits for the prepare, the second starts its own.
		calls := []<-chan invResult{e.goInvoke("fn", map[string]any{"op": "echo"})}
		e.waitFor("a start waiting for the prepare", func() bool {
			e.m.mu.Lock()
			defer e.m.mu.Unlock()
			op := e.m.pools["fn"].preparing
			return op != nil && op.claim != nil
		})
		calls = append(calls, e.goInvoke("fn", map[string]any{"op": "echo"}))
		e.waitFor("a start hung", func() bool { return h.blocked() == 2 })
		stopWithin(t, e, time.Second)
		for _, c := range calls {
			if r := e.await(c); !errors.Is(r.err, stratus.ErrUnavailable) {
				t.Errorf("call while stopping: %v, want ErrUnavailable", r.err)
			}
		}
		if got := len(h.ended("start")) + len(h.ended("prepare")); got != 2 {
			t.Errorf("%d hung starts and prepares ended, want 2", got)
		}
	})

	t.Run("stop and wait", func(t *testing.T) {
		// An idle instance and one in its init; neither Stop nor Wait
		// ever returns on its own: Run returns within stopBound.
		h := &hanger{hang: map[string]bool{"stop": true, "wait": true}}
		e := newEnv(t, opts{stopGrace: grace, driverTimeout: driverTimeout, initTimeout: time.Minute,
			driver: func(d *process.Driver) sandbox.Driver { h.Driver = d; return h }})
		t.Cleanup(func() {
			// What the hung driver left: the tests' harness checks that
			// nothing is left after this.
			for _, id := range h.ended("stop") {
				if err := h.Driver.Stop(context.Background(), id, 0); err != nil {
					t.Errorf("stop %s: %v", id, err)
				}
			}
		})
		e.deploy("idle", 1, nil)
		e.mustInvoke("idle", map[string]any{"op": "echo"})
		e.deploy("init", 1, func(c *stratus.FunctionConfig) { c.Env["RT_INIT"] = "hang" })
		call := e.goInvoke("init", map[string]any{"op": "echo"})
		e.waitFor("two processes", func() bool { return len(e.procs()) == 2 })
		e.waitFor("two exit watchers waiting", func() bool { return h.blocked() == 2 })
		if took := stopWithin(t, e, e.m.stopBound()); took < grace+driverTimeout {
			t.Errorf("Run returned %s after its ctx ended, before the hung Stops' bound of %s", took, grace+driverTimeout)
		}
		if r := e.await(call); !errors.Is(r.err, stratus.ErrUnavailable) {
			t.Errorf("call waiting for an instance's init: %v, want ErrUnavailable", r.err)
		}
		if stops, waits := h.ended("stop"), h.ended("wait"); len(stops) != 2 || len(waits) != 2 {
			t.Errorf("hung calls ended: stops %v, waits %v; want both instances'", stops, waits)
		}
	})
}
