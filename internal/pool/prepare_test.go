package pool

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
)

// Create-ahead.

// TestCreateAheadColdStart: a deploy prepares an instance; the cold start
// starts that one (the same spec, no other Prepare or Start before it),
// counts its init from Start, ties its output to the invocation; then the
// next one is prepared and serves the next cold start.
func TestCreateAheadColdStart(t *testing.T) {
	e := newEnv(t, opts{maxPrepared: 5, fakeClock: true})
	e.deploy("fn", 1, nil)
	id := e.waitPrepared("fn")
	if got := e.gauges("fn"); got != (stratus.InstanceStats{Prepared: 1}) {
		t.Errorf("Stats after deploy = %+v, want one prepared instance and none live", got)
	}
	if n := len(e.procs()); n != 0 {
		t.Errorf("%d processes run for a prepared instance, want none", n)
	}

	// A long wait prepared does not count in the init duration.
	e.clock.Step(time.Hour)
	resp := e.mustInvoke("fn", map[string]any{"op": "print", "text": "hello from a prepared instance"})
	e.success(resp)
	r := resp.Record
	if !r.Cold || r.Instance != id {
		t.Fatalf("first invocation: cold %v on %s, want a cold start on the prepared %s", r.Cold, r.Instance, id)
	}
	if r.InitDurationMs >= float64(time.Hour/time.Millisecond) {
		t.Errorf("init duration %.2f ms counts the time the instance waited prepared; want it from Start", r.InitDurationMs)
	}
	e.checkPlatformLines(r)
	for _, stream := range []string{"stdout", "stderr"} {
		e.waitFor(stream+" line", func() bool { return len(e.sink.linesOf(r.RequestID, stream)) == 1 })
		if l := e.sink.linesOf(r.RequestID, stream)[0]; l.Text != "hello from a prepared instance" || l.Instance != id || l.Function != "fn" {
			t.Errorf("%s line %+v, want it tied to instance %s", stream, l, id)
		}
	}

	// After the taken one, a new one is prepared.
	next := e.waitPrepared("fn")
	e.waitStats("fn", stratus.InstanceStats{Live: 1, Idle: 1, Prepared: 1})
	want := []call{{"prepare", id}, {"start-prepared", id}, {"end-init", id}, {"prepare", next}}
	if got := e.drv.log(); !slices.Equal(got, want) {
		t.Errorf("driver calls %v, want %v", got, want)
	}

	// With the warm instance busy, the next cold start takes the new one.
	g := e.gate()
	busy := e.goInvoke("fn", block(g))
	e.atGate(g)
	second := e.mustInvoke("fn", map[string]any{"op": "echo"})
	if ec := e.success(second); !second.Record.Cold || second.Record.Instance != next || !strings.HasSuffix(ec.Env["AWS_LAMBDA_LOG_STREAM_NAME"], "]"+next) {
		t.Errorf("second cold start on %s (cold %v, log stream %q), want the prepared %s", second.Record.Instance, second.Record.Cold, ec.Env["AWS_LAMBDA_LOG_STREAM_NAME"], next)
	}
	e.open(g)
	if r := e.await(busy); r.err != nil {
		t.Fatal(r.err)
	}
	if starts := e.drv.ids("start"); len(starts) != 0 {
		t.Errorf("sandboxes started without being prepared: %v", starts)
	}
	e.waitPrepared("fn")
	if n := e.settled(); n != 1 {
		t.Errorf("the Manager counts %d prepared instances, want 1", n)
	}
}

// TestEndInit: every sandbox of a function, prepared or started, gets
// initCPU, one core, for its init; the pool ends the init of each instance
// once, when its runtime first asks for an invocation and before it hands
// it that invocation (no START line of the instance yet).
func TestEndInit(t *testing.T) {
	for _, maxPrepared := range []int{0, 5} {
		t.Run(fmt.Sprintf("MaxPrepared=%d", maxPrepared), func(t *testing.T) {
			e := newEnv(t, opts{maxPrepared: maxPrepared, record: true})
			var mu sync.Mutex
			var late []string // instances that had an invocation before their init ended
			e.drv.mu.Lock()
			e.drv.onEndInit = func(id string) {
				e.sink.mu.Lock()
				defer e.sink.mu.Unlock()
				for _, l := range e.sink.lines {
					if l.Instance == id && strings.HasPrefix(l.Text, "START ") {
						mu.Lock()
						late = append(late, id)
						mu.Unlock()
						return
					}
				}
			}
			e.drv.mu.Unlock()
			e.deploy("fn", 1, nil)
			if maxPrepared > 0 {
				e.waitPrepared("fn")
			}
			first := e.mustInvoke("fn", map[string]any{"op": "echo"})
			e.success(first)
			second := e.mustInvoke("fn", map[string]any{"op": "echo"})
			e.success(second)
			id := first.Record.Instance
			if !first.Record.Cold || second.Record.Cold || second.Record.Instance != id {
				t.Fatalf("invocations on %s (cold %v) then %s (cold %v), want a cold start then a warm one on it",
					id, first.Record.Cold, second.Record.Instance, second.Record.Cold)
			}
			if got := e.drv.ids("end-init"); !slices.Equal(got, []string{id}) {
				t.Errorf("EndInit calls for %v, want one for %s", got, id)
			}
			mu.Lock()
			if len(late) > 0 {
				t.Errorf("init of %v ended after an invocation was handed to it", late)
			}
			mu.Unlock()
			if maxPrepared > 0 {
				e.waitPrepared("fn") // the next one, made after the cold start
			}
			e.drv.mu.Lock()
			specs := slices.Clone(e.drv.specs)
			e.drv.mu.Unlock()
			if len(specs) == 0 {
				t.Fatal("no sandbox prepared or started")
			}
			for _, s := range specs {
				if s.InitCPU != 1 {
					t.Errorf("sandbox %s has InitCPU %v, want 1", s.ID, s.InitCPU)
				}
			}
		})
	}
}

// TestCreateAheadNewVersion: a new version stops the prepared instance of
// the old one and prepares its own.
func TestCreateAheadNewVersion(t *testing.T) {
	e := newEnv(t, opts{maxPrepared: 5})
	e.deploy("fn", 1, nil)
	old := e.waitPrepared("fn")
	e.deploy("fn", 2, nil)
	e.waitFor("the old prepared instance to stop", func() bool { return e.drv.stopped(old) })
	id := e.waitPrepared("fn")
	if id == old {
		t.Fatalf("version 2 kept the prepared instance of version 1")
	}
	resp := e.mustInvoke("fn", map[string]any{"op": "echo"})
	if ec := e.success(resp); !resp.Record.Cold || resp.Record.Instance != id || resp.Record.Version != 2 || ec.Env["V"] != "2" {
		t.Errorf("after deploy: cold %v on %s, version %d, env V=%q; want the prepared %s of version 2", resp.Record.Cold, resp.Record.Instance, resp.Record.Version, ec.Env["V"], id)
	}
	if n := e.settled(); n != 1 {
		t.Errorf("the Manager counts %d prepared instances, want 1", n)
	}
}

// TestCreateAheadNewVersionWhilePreparing: a prepare in flight for an old
// version is dropped when it ends; the new version gets its own.
func TestCreateAheadNewVersionWhilePreparing(t *testing.T) {
	e := newEnv(t, opts{maxPrepared: 5})
	hold := make(chan struct{})
	e.drv.hold = hold
	e.deploy("fn", 1, nil)
	e.waitFor("a prepare of version 1", func() bool { return len(e.drv.ids("prepare")) == 1 })
	e.deploy("fn", 2, nil)
	e.waitFor("a prepare of version 2", func() bool { return len(e.drv.ids("prepare")) == 2 })
	close(hold)
	ids := e.drv.ids("prepare")
	e.waitFor("version 1's prepared sandbox to stop", func() bool { return e.drv.stopped(ids[0]) })
	if n := e.settled(); n != 1 {
		t.Errorf("the Manager counts %d prepared instances, want 1", n)
	}
	in := e.preparedOf("fn")
	if in == nil || in.ID != ids[1] || in.Version.Version != 2 {
		t.Fatalf("prepared instance %+v, want %s of version 2", in, ids[1])
	}
	if left := e.drv.preparedLeft(); !slices.Equal(left, ids[1:]) {
		t.Errorf("prepared sandboxes %v, want only %s", left, ids[1])
	}
}

// TestCreateAheadRemove: Remove stops the prepared instance.
func TestCreateAheadRemove(t *testing.T) {
	e := newEnv(t, opts{maxPrepared: 5})
	e.deploy("fn", 1, nil)
	id := e.waitPrepared("fn")
	e.m.Remove("fn")
	e.waitFor("the prepared instance to stop", func() bool { return e.drv.stopped(id) })
	if left := e.drv.preparedLeft(); len(left) != 0 {
		t.Errorf("prepared sandboxes left after Remove: %v", left)
	}
	if n := e.settled(); n != 0 {
		t.Errorf("the Manager counts %d prepared instances after Remove, want 0", n)
	}
}

// TestCreateAheadStopAll: stopping the Manager stops every prepared
// instance, and none is prepared afterwards.
func TestCreateAheadStopAll(t *testing.T) {
	e := newEnv(t, opts{maxPrepared: 5})
	e.deploy("a", 1, nil)
	e.deploy("b", 1, nil)
	ids := []string{e.waitPrepared("a"), e.waitPrepared("b")}
	e.stop()
	for _, id := range ids {
		if !e.drv.stopped(id) {
			t.Errorf("prepared instance %s not stopped when Run returned", id)
		}
	}
	if left := e.drv.preparedLeft(); len(left) != 0 {
		t.Errorf("prepared sandboxes left after Run returned: %v", left)
	}
	e.m.Deploy(e.version("c", 1, nil))
	if n := len(e.drv.ids("prepare")); n != 2 {
		t.Errorf("%d prepares, want none after StopAll", n-2)
	}
	if n := e.settled(); n != 0 {
		t.Errorf("the Manager counts %d prepared instances after StopAll", n)
	}
}

// TestCreateAheadCap: MaxPrepared holds across functions; at the cap the
// prepared instance of the least recently used function makes room.
// Prepared instances do not count against MaxInstances.
func TestCreateAheadCap(t *testing.T) {
	e := newEnv(t, opts{maxPrepared: 2, maxInstances: 1, fakeClock: true})
	e.deploy("a", 1, nil)
	a := e.waitPrepared("a")
	e.clock.Step(time.Second)
	e.deploy("b", 1, nil)
	e.waitPrepared("b")
	if got := e.m.Total(); got != 0 {
		t.Errorf("Total = %d with two prepared instances, want 0", got)
	}

	// c takes the place of a's, the least recently used.
	e.clock.Step(time.Second)
	e.deploy("c", 1, nil)
	e.waitPrepared("c")
	e.waitFor("a's prepared instance to stop", func() bool { return e.drv.stopped(a) })
	if n := e.settled(); n != 2 {
		t.Errorf("the Manager counts %d prepared instances, want the cap of 2", n)
	}
	if in := e.preparedOf("a"); in != nil {
		t.Errorf("a still has prepared instance %s", in.ID)
	}

	// A cold start of a (its sandbox not prepared) uses the one live
	// slot; then a prepares again, in the place of b's, now the least
	// recently used.
	e.clock.Step(time.Second)
	b := e.preparedOf("b").ID
	resp := e.mustInvoke("a", map[string]any{"op": "echo"})
	if e.success(resp); !resp.Record.Cold {
		t.Errorf("a: want a cold start")
	}
	e.waitPrepared("a")
	e.waitFor("b's prepared instance to stop", func() bool { return e.drv.stopped(b) })
	if n := e.settled(); n != 2 {
		t.Errorf("the Manager counts %d prepared instances, want the cap of 2", n)
	}
	e.waitFor("two prepared sandboxes", func() bool { return len(e.drv.preparedLeft()) == 2 })
	if got := e.m.Total(); got != 1 {
		t.Errorf("Total = %d, want 1", got)
	}
}

// TestCreateAheadReap: a function unused for its idle timeout drops its
// prepared instance with its idle ones; its next cold start prepares one
// again.
func TestCreateAheadReap(t *testing.T) {
	e := newEnv(t, opts{maxPrepared: 5, fakeClock: true, idleTimeout: 5 * time.Minute})
	e.deploy("fn", 1, nil)
	e.waitPrepared("fn")
	e.mustInvoke("fn", map[string]any{"op": "echo"})
	id := e.waitPrepared("fn")
	e.waitStats("fn", stratus.InstanceStats{Live: 1, Idle: 1, Prepared: 1})

	e.clock.Step(5*time.Minute - time.Second)
	e.m.Reap()
	if got := e.gauges("fn"); got != (stratus.InstanceStats{Live: 1, Idle: 1, Prepared: 1}) {
		t.Errorf("after 4m59s unused: %+v, want everything kept", got)
	}
	e.clock.Step(time.Second)
	e.m.Reap()
	e.waitStats("fn", stratus.InstanceStats{})
	e.waitFor("the prepared instance to stop", func() bool { return e.drv.stopped(id) })
	e.waitFor("no process", func() bool { return len(e.procs()) == 0 })
	if left := e.drv.preparedLeft(); len(left) != 0 {
		t.Errorf("prepared sandboxes left after the reap: %v", left)
	}

	resp := e.mustInvoke("fn", map[string]any{"op": "echo"})
	if e.success(resp); !resp.Record.Cold || !slices.Contains(e.drv.ids("start"), resp.Record.Instance) {
		t.Errorf("after the reap: cold %v on %s, want a cold start of a sandbox not prepared", resp.Record.Cold, resp.Record.Instance)
	}
	e.waitPrepared("fn")
}

// TestCreateAheadPrepareFails: a failed prepare is logged and not retried
// until the next cold start, which starts a sandbox of its own.
func TestCreateAheadPrepareFails(t *testing.T) {
	e := newEnv(t, opts{maxPrepared: 5})
	e.drv.fail = errors.New("no room for a sandbox")
	e.deploy("fn", 1, nil)
	e.waitFor("the prepare", func() bool { return len(e.drv.ids("prepare")) == 1 })
	if n := e.settled(); n != 0 {
		t.Errorf("the Manager counts %d prepared instances after a failed prepare", n)
	}
	for range 3 {
		e.m.Reap()
	}
	// Reap never prepares: what counts is that no goroutine retries the
	// failed prepare, which would show as a second one once the Manager
	// has settled.
	e.settled()
	if n := len(e.drv.ids("prepare")); n != 1 {
		t.Errorf("%d prepares after one deploy, want 1 (no retry loop)", n)
	}
	resp := e.mustInvoke("fn", map[string]any{"op": "echo"})
	if e.success(resp); !resp.Record.Cold || !slices.Contains(e.drv.ids("start"), resp.Record.Instance) {
		t.Errorf("cold %v on %s, want a cold start of a sandbox not prepared", resp.Record.Cold, resp.Record.Instance)
	}
	e.settled()
	if n := len(e.drv.ids("prepare")); n != 2 {
		t.Errorf("%d prepares, want one more after the cold start", n)
	}
	if got := e.gauges("fn"); got != (stratus.InstanceStats{Live: 1, Idle: 1}) {
		t.Errorf("Stats = %+v", got)
	}
}

// TestCreateAheadColdStartWaitsForPrepare: a cold start while a prepare of
// its version is in flight waits for it and starts what it makes; a second
// cold start meanwhile does not wait for it and starts a sandbox of its
// own. The queue's first call gets whichever instance is up first: here
// the second's own, as the prepare is held.
func TestCreateAheadColdStartWaitsForPrepare(t *testing.T) {
	e := newEnv(t, opts{maxPrepared: 5})
	hold := make(chan struct{})
	e.drv.hold = hold
	e.deploy("fn", 1, nil)
	e.waitFor("a prepare", func() bool { return len(e.drv.ids("prepare")) == 1 })
	id := e.drv.ids("prepare")[0]

	first := e.goInvoke("fn", map[string]any{"op": "echo"})
	e.waitFor("a start waiting for the prepare", func() bool {
		e.m.mu.Lock()
		defer e.m.mu.Unlock()
		op := e.m.pools["fn"].preparing
		return op != nil && op.claim != nil
	})
	second := e.goInvoke("fn", map[string]any{"op": "echo"})
	r1 := e.await(first)
	if r1.err != nil {
		t.Fatal(r1.err)
	}
	own := e.drv.ids("start")
	if e.success(r1.resp); !r1.resp.Record.Cold || len(own) != 1 || r1.resp.Record.Instance != own[0] {
		t.Errorf("first call on %s (cold %v), want the sandbox started meanwhile (%v)", r1.resp.Record.Instance, r1.resp.Record.Cold, own)
	}
	e.drv.mu.Lock()
	e.drv.hold = nil
	e.drv.mu.Unlock()
	close(hold)
	r2 := e.await(second)
	if r2.err != nil {
		t.Fatal(r2.err)
	}
	// The first call's instance may come free first and serve the second.
	if e.success(r2.resp); r2.resp.Record.Instance != id && r2.resp.Record.Instance != own[0] {
		t.Errorf("second call on %s, want the prepared %s or %s", r2.resp.Record.Instance, id, own[0])
	}
	// When the first call's instance served the second, the start that
	// waits for the prepare still takes it, and it stays idle.
	e.waitFor("both instances idle", func() bool { return e.gauges("fn") == stratus.InstanceStats{Live: 2, Idle: 2, Prepared: 1} })
	if got := e.drv.ids("start-prepared"); !slices.Equal(got, []string{id}) {
		t.Errorf("prepared sandboxes started %v, want %s", got, id)
	}
	e.waitPrepared("fn")
	if n := e.settled(); n != 1 {
		t.Errorf("the Manager counts %d prepared instances, want 1", n)
	}
}
