// Package sandboxtest is the contract suite every sandbox.Driver runs: each
// driver's tests call Run with a constructor, so the process driver today
// and the runc driver later are held to the same behaviour (exit codes and
// signals, output drained before Wait returns, environment and working
// directory, conflicts, idempotent Stop with a grace period, whole process
// trees stopped, List and Stop across a restart of the server, a port the
// sandbox listens on reached at Addr and, for isolated drivers, sandboxes
// that reach the host but not each other; connections to the host told
// apart by the sandbox they come from, with Owns; EndInit idempotent).
//
// The programs it runs need only /bin/sh and sleep in the sandbox, or, in
// a root filesystem of its own, a copy of the test binary (see Probe); the
// network cases run a copy of the test binary in the working directory
// (see net.go). Every
// sandbox it starts carries a unique marker in its environment, which is
// how the suite checks through /proc that no process of it is left.
package sandboxtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// markerKey is the environment variable that marks the processes a suite
// run started.
const markerKey = "STRATUS_SANDBOXTEST"

// testTimeout bounds every blocking call of one subtest.
const testTimeout = 30 * time.Second

// Run runs the driver contract suite. newDriver returns a driver that
// keeps its state in stateDir; the suite calls it again with the same
// stateDir to simulate a restart of the server. opts add driver-specific
// checks (Leftovers).
func Run(t *testing.T, newDriver func(t *testing.T, stateDir string) sandbox.Driver, opts ...Option) {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, h *harness)
	}{
		{"Name", testName},
		{"ExitCode", testExitCode},
		{"Signal", testSignal},
		{"OutputDrainedBeforeWait", testOutput},
		{"NilOutputDiscarded", testNilOutput},
		{"EnvAndDir", testEnvAndDir},
		{"StartLiveIDConflicts", testConflict},
		{"StartEmptyArgv", testEmptyArgv},
		{"StopIdempotent", testStopIdempotent},
		{"StopAfterExitKeepsStatus", testStopAfterExit},
		{"StopGraceTerminates", testStopGraceTerm},
		{"StopGraceKillsAfterGrace", testStopGraceKill},
		{"StopKillsProcessTree", testStopTree},
		{"ExitOfMainEndsSandbox", testExitEndsTree},
		{"WaitUnknown", testWaitUnknown},
		{"WaitContext", testWaitContext},
		{"StatsWhileRunning", testStats},
		{"EndInit", testEndInit},
		{"SyncOutput", testSyncOutput},
		{"List", testList},
		{"RestartListAndStop", testRestart},
		{"Concurrent", testConcurrent},
		{"RootFS", testRootFS},
		{"Mounts", testMounts},
		{"MountsSamePath", testMountsSamePath},
		{"NetListen", testNetListen},
		{"NetIsolation", testNetIsolation},
		{"NetAddrs", testNetAddrs},
		{"Owns", testOwns},
		{"PrepareThenStart", testPrepareStart},
		{"PrepareThenStop", testPrepareStop},
		{"PrepareChecksSpec", testPrepareChecks},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, newDriver)
			h.leftovers = o.leftovers
			tc.fn(t, h)
		})
	}
}

// harness is one subtest's driver, state dir and process marker.
type harness struct {
	t         *testing.T
	newDriver func(t *testing.T, stateDir string) sandbox.Driver
	d         sandbox.Driver
	stateDir  string
	marker    string // "KEY=VALUE" in every sandbox's environment
	ctx       context.Context
	leftovers func(d sandbox.Driver, id string) []string // see Leftovers; may be nil
}

func newHarness(t *testing.T, newDriver func(t *testing.T, stateDir string) sandbox.Driver) *harness {
	stateDir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	h := &harness{
		t: t, newDriver: newDriver, stateDir: stateDir,
		marker: markerKey + "=" + randomHex(8), ctx: ctx,
	}
	// Registered first, so it runs last: after every Stop below.
	t.Cleanup(func() {
		defer cancel()
		if left := waitNoneLeft(h.marker, 5*time.Second); len(left) > 0 {
			t.Errorf("processes left after the test: %s", describe(left))
			for _, pid := range left {
				_ = killPID(pid)
			}
		}
	})
	h.d = newDriver(t, stateDir)
	return h
}

// spec is a sandbox running script under /bin/sh -c.
func (h *harness) spec(id, script string) sandbox.Spec {
	return sandbox.Spec{
		ID:       id,
		Argv:     []string{"/bin/sh", "-c", script},
		Env:      []string{"PATH=/usr/local/bin:/usr/bin:/bin", h.marker},
		Dir:      h.t.TempDir(),
		MemoryMB: 128,
	}
}

// start starts spec on d and stops it when the test ends.
func (h *harness) start(d sandbox.Driver, spec sandbox.Spec) {
	h.t.Helper()
	if err := d.Start(h.ctx, spec); err != nil {
		h.t.Fatalf("Start(%q): %v", spec.ID, err)
	}
	h.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := d.Stop(ctx, spec.ID, 0); err != nil {
			h.t.Errorf("cleanup: Stop(%q): %v", spec.ID, err)
		}
	})
}

// run starts a script with output captured.
func (h *harness) run(id, script string) (stdout, stderr *Buffer) {
	h.t.Helper()
	stdout, stderr = new(Buffer), new(Buffer)
	spec := h.spec(id, script)
	spec.Stdout, spec.Stderr = stdout, stderr
	h.start(h.d, spec)
	return stdout, stderr
}

func (h *harness) wait(d sandbox.Driver, id string) sandbox.Exit {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.ctx, testTimeout)
	defer cancel()
	e, err := d.Wait(ctx, id)
	if err != nil {
		h.t.Fatalf("Wait(%q): %v", id, err)
	}
	return e
}

func (h *harness) stop(d sandbox.Driver, id string, grace time.Duration) time.Duration {
	h.t.Helper()
	t0 := time.Now()
	if err := d.Stop(h.ctx, id, grace); err != nil {
		h.t.Fatalf("Stop(%q, %s): %v", id, grace, err)
	}
	return time.Since(t0)
}

// noneLeft fails the test if a process of this subtest still runs. Stop
// promises that nothing is left when it returns, so it does not wait.
func (h *harness) noneLeft(when string) {
	h.t.Helper()
	if left := Processes(h.marker); len(left) > 0 {
		h.t.Fatalf("%s: processes left: %s", when, describe(left))
	}
}

func (h *harness) list(d sandbox.Driver) []string {
	h.t.Helper()
	ids, err := d.List(h.ctx)
	if err != nil {
		h.t.Fatalf("List: %v", err)
	}
	slices.Sort(ids)
	return ids
}

func testName(t *testing.T, h *harness) {
	if h.d.Name() == "" {
		t.Error("Name() is empty")
	}
	_ = h.d.Capabilities()
}

func testExitCode(t *testing.T, h *harness) {
	for _, tc := range []struct {
		script string
		want   sandbox.Exit
		str    string
	}{
		{"exit 0", sandbox.Exit{Code: 0}, "exit status 0"},
		{"exit 3", sandbox.Exit{Code: 3}, "exit status 3"},
		{"exit 255", sandbox.Exit{Code: 255}, "exit status 255"},
	} {
		id := "exit-" + strings.Fields(tc.script)[1]
		h.run(id, tc.script)
		got := h.wait(h.d, id)
		if got != tc.want {
			t.Errorf("%q: Exit = %+v, want %+v", tc.script, got, tc.want)
		}
		if got.String() != tc.str {
			t.Errorf("%q: Exit.String() = %q, want %q", tc.script, got.String(), tc.str)
		}
	}
}

func testSignal(t *testing.T, h *harness) {
	for _, tc := range []struct {
		sig, name string
	}{
		{"KILL", "killed"},
		{"TERM", "terminated"},
	} {
		id := "sig-" + tc.sig
		h.run(id, "kill -"+tc.sig+" $$")
		got := h.wait(h.d, id)
		want := sandbox.Exit{Code: -1, Signal: tc.name}
		if got != want {
			t.Errorf("kill -%s: Exit = %+v, want %+v", tc.sig, got, want)
		}
		if got.String() != "signal: "+tc.name {
			t.Errorf("kill -%s: Exit.String() = %q, want %q", tc.sig, got.String(), "signal: "+tc.name)
		}
	}
}

func testOutput(t *testing.T, h *harness) {
	const n = 3000
	// Both streams interleaved, then a last line with no newline: all of
	// it must be in the writers once Wait returns.
	script := fmt.Sprintf(`i=0
while [ $i -lt %d ]; do
  echo "out $i: the quick brown fox jumps over the lazy dog"
  echo "err $i: the quick brown fox jumps over the lazy dog" >&2
  i=$((i+1))
done
printf 'no newline at the end'
exit 7`, n)
	stdout, stderr := h.run("output", script)
	e := h.wait(h.d, "output")
	if e.Code != 7 {
		t.Errorf("Exit = %+v, want code 7", e)
	}
	var wantOut, wantErr strings.Builder
	for i := range n {
		fmt.Fprintf(&wantOut, "out %d: the quick brown fox jumps over the lazy dog\n", i)
		fmt.Fprintf(&wantErr, "err %d: the quick brown fox jumps over the lazy dog\n", i)
	}
	wantOut.WriteString("no newline at the end")
	if got := stdout.String(); got != wantOut.String() {
		t.Errorf("stdout: got %d bytes, want %d (tail %q)", len(got), wantOut.Len(), tail(got, 80))
	}
	if got := stderr.String(); got != wantErr.String() {
		t.Errorf("stderr: got %d bytes, want %d (tail %q)", len(got), wantErr.Len(), tail(got, 80))
	}
}

func testNilOutput(t *testing.T, h *harness) {
	// Output to nil writers is discarded without blocking the program.
	spec := h.spec("nil-output", `i=0; while [ $i -lt 2000 ]; do echo "line $i"; echo "line $i" >&2; i=$((i+1)); done; exit 4`)
	h.start(h.d, spec)
	if e := h.wait(h.d, "nil-output"); e.Code != 4 {
		t.Errorf("Exit = %+v, want code 4", e)
	}
}

func testEnvAndDir(t *testing.T, h *harness) {
	// A variable of the test process must not leak: Env is the whole
	// environment.
	t.Setenv("SANDBOXTEST_LEAK", "leaked")
	spec := h.spec("env", `printf '%s\n' "$GREETING" "${SANDBOXTEST_LEAK-unset}" "$(pwd -P)"`)
	spec.Env = append(spec.Env, "GREETING=hello, sandbox world")
	var out Buffer
	spec.Stdout = &out
	h.start(h.d, spec)
	if e := h.wait(h.d, "env"); e.Code != 0 {
		t.Fatalf("Exit = %+v, want 0", e)
	}
	dir, err := filepath.EvalSymlinks(spec.Dir)
	if err != nil {
		t.Fatal(err)
	}
	want := "hello, sandbox world\nunset\n" + dir + "\n"
	if got := out.String(); got != want {
		t.Errorf("output = %q, want %q", got, want)
	}
}

func testConflict(t *testing.T, h *harness) {
	h.run("dup", "exec sleep 1000")
	err := h.d.Start(h.ctx, h.spec("dup", "exit 0"))
	if !errors.Is(err, stratus.ErrConflict) {
		t.Fatalf("Start of a live ID: err = %v, want ErrConflict", err)
	}
	// The first sandbox is untouched by the refused Start.
	if ids := h.list(h.d); !slices.Contains(ids, "dup") {
		t.Fatalf("List = %v after a refused Start, want it to hold dup", ids)
	}
	h.stop(h.d, "dup", 0)
	h.wait(h.d, "dup")
	// Once ended and waited for, the ID may be used again.
	h.run("dup", "exit 6")
	if e := h.wait(h.d, "dup"); e.Code != 6 {
		t.Errorf("reused ID: Exit = %+v, want code 6", e)
	}
}

func testEmptyArgv(t *testing.T, h *harness) {
	spec := h.spec("empty", "")
	spec.Argv = nil
	if err := h.d.Start(h.ctx, spec); err == nil {
		_ = h.d.Stop(h.ctx, "empty", 0)
		t.Fatal("Start with an empty Argv succeeded")
	}
}

func testStopIdempotent(t *testing.T, h *harness) {
	h.stop(h.d, "never-started", 0)
	h.stop(h.d, "never-started", time.Second)

	h.run("live", "exec sleep 1000")
	h.stop(h.d, "live", 0)
	h.noneLeft("after Stop")
	h.stop(h.d, "live", 0)
	h.stop(h.d, "live", time.Second)
	if e := h.wait(h.d, "live"); e.Signal == "" {
		t.Errorf("stopped sandbox: Exit = %+v, want a signal", e)
	}
	// Stop after Wait: the sandbox is gone, and Stop still succeeds.
	h.stop(h.d, "live", 0)
}

func testStopAfterExit(t *testing.T, h *harness) {
	h.run("quick", "exit 5")
	// Wait until the driver no longer lists it, without calling Wait.
	waitUntil(t, 10*time.Second, "quick to leave List", func() bool {
		return !slices.Contains(h.list(h.d), "quick")
	})
	h.stop(h.d, "quick", time.Second)
	h.stop(h.d, "quick", 0)
	// Stop of an ended sandbox does not lose its exit status.
	if e := h.wait(h.d, "quick"); e != (sandbox.Exit{Code: 5}) {
		t.Errorf("Exit after Stop = %+v, want code 5", e)
	}
}

func testStopGraceTerm(t *testing.T, h *harness) {
	stdout, _ := h.run("term", `echo ready; exec sleep 1000`)
	stdout.WaitFor(t, "ready\n")
	const grace = 20 * time.Second
	if took := h.stop(h.d, "term", grace); took >= grace/2 {
		t.Errorf("Stop of a program that ends on SIGTERM took %s (grace %s)", took, grace)
	}
	h.noneLeft("after Stop")
	if e := h.wait(h.d, "term"); e != (sandbox.Exit{Code: -1, Signal: "terminated"}) {
		t.Errorf("Exit = %+v, want signal terminated", e)
	}
}

func testStopGraceKill(t *testing.T, h *harness) {
	// The shell and the sleep it forks both ignore SIGTERM (an ignored
	// signal stays ignored across fork and exec).
	stdout, _ := h.run("stubborn", `trap '' TERM; sleep 1000 & echo "ready"; while :; do wait; done`)
	stdout.WaitFor(t, "ready\n")
	const grace = 300 * time.Millisecond
	took := h.stop(h.d, "stubborn", grace)
	if took < grace {
		t.Errorf("Stop returned after %s, before the grace of %s", took, grace)
	}
	if took > grace+10*time.Second {
		t.Errorf("Stop took %s with a grace of %s", took, grace)
	}
	h.noneLeft("after Stop of a program ignoring SIGTERM")
	if e := h.wait(h.d, "stubborn"); e != (sandbox.Exit{Code: -1, Signal: "killed"}) {
		t.Errorf("Exit = %+v, want signal killed", e)
	}
}

func testStopTree(t *testing.T, h *harness) {
	for _, grace := range []time.Duration{0, 5 * time.Second} {
		id := fmt.Sprintf("tree-%d", grace.Milliseconds())
		// A child and a grandchild the sandbox forked.
		stdout, _ := h.run(id, `sh -c 'sleep 1000 & echo "grandchild $!"; wait' & sleep 1000 & echo "child $!"; wait`)
		stdout.WaitFor(t, "grandchild ")
		stdout.WaitFor(t, "child ")
		// A process in the middle of execve shows no environment for a
		// moment, so count until all four are seen.
		waitUntil(t, 10*time.Second, "4 processes in the sandbox (sh, sh, sleep, sleep)", func() bool {
			return len(Processes(h.marker)) >= 4
		})
		h.stop(h.d, id, grace)
		h.noneLeft(fmt.Sprintf("after Stop with grace %s", grace))
		h.wait(h.d, id)
	}
}

func testExitEndsTree(t *testing.T, h *harness) {
	// The main process exits while a child it forked still holds the
	// output: the sandbox has ended, so Wait returns and nothing is left.
	stdout, _ := h.run("orphan", `sleep 1000 & echo "child $!"; exit 9`)
	if e := h.wait(h.d, "orphan"); e.Code != 9 {
		t.Errorf("Exit = %+v, want code 9", e)
	}
	if !strings.Contains(stdout.String(), "child ") {
		t.Errorf("stdout = %q, want the child's pid", stdout.String())
	}
	h.noneLeft("after Wait of a sandbox whose main process exited")
}

func testWaitUnknown(t *testing.T, h *harness) {
	if _, err := h.d.Wait(h.ctx, "nobody"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("Wait(unknown): err = %v, want ErrNotFound", err)
	}
}

func testWaitContext(t *testing.T, h *harness) {
	h.run("long", "exec sleep 1000")
	ctx, cancel := context.WithCancel(h.ctx)
	cancel()
	if _, err := h.d.Wait(ctx, "long"); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait with a cancelled context: err = %v, want context.Canceled", err)
	}
	// The sandbox still runs and can be waited for.
	if ids := h.list(h.d); !slices.Contains(ids, "long") {
		t.Errorf("List = %v, want it to hold long", ids)
	}
	h.stop(h.d, "long", 0)
	h.wait(h.d, "long")
}

// testSyncOutput: once the program has written its output (it says so by
// replacing itself with sleep after writing, which the test sees in /proc:
// Spec.Dir may be read-only in the sandbox, so no marker file), SyncOutput
// hands every byte of it to the writers at once, with no waiting.
func testSyncOutput(t *testing.T, h *harness) {
	spec := h.spec("sync", `i=0; while [ $i -lt 3000 ]; do echo "out line $i"; echo "err line $i" >&2; i=$((i+1)); done; exec sleep 1000`)
	var stdout, stderr Buffer
	spec.Stdout, spec.Stderr = &stdout, &stderr
	h.start(h.d, spec)
	waitUntil(t, testTimeout, "the program to finish writing and exec sleep", func() bool {
		for _, pid := range Processes(h.marker) {
			if cmd, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); string(cmd) == "sleep\x001000\x00" {
				return true
			}
		}
		return false
	})
	if err := h.d.SyncOutput(h.ctx, "sync"); err != nil {
		t.Fatalf("SyncOutput: %v", err)
	}
	for name, b := range map[string]*Buffer{"stdout": &stdout, "stderr": &stderr} {
		got := b.String()
		if n := strings.Count(got, "\n"); n != 3000 || !strings.HasSuffix(got, " line 2999\n") {
			t.Errorf("%s right after SyncOutput has %d lines (ends %q), want all 3000", name, n, got[max(0, len(got)-20):])
		}
	}
	if err := h.d.SyncOutput(h.ctx, "nobody"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("SyncOutput of an unknown sandbox: %v, want ErrNotFound", err)
	}
}

func testStats(t *testing.T, h *harness) {
	stdout, _ := h.run("stats", `echo ready; exec sleep 1000`)
	stdout.WaitFor(t, "ready\n")
	st, err := h.d.Stats(h.ctx, "stats")
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if st.MaxRSSBytes <= 0 {
		t.Errorf("Stats.MaxRSSBytes = %d, want > 0", st.MaxRSSBytes)
	}
	if _, err := h.d.Stats(h.ctx, "nobody"); err == nil {
		t.Error("Stats of an unknown sandbox succeeded")
	}
}

// testEndInit: EndInit of a sandbox with an init quota leaves it running,
// and is idempotent: again, for an unknown or an ended sandbox it returns
// nil. (What it does to the CPU quota is the driver's to test.)
func testEndInit(t *testing.T, h *harness) {
	if err := h.d.EndInit(h.ctx, "nobody"); err != nil {
		t.Errorf("EndInit of an unknown sandbox: %v, want nil", err)
	}
	spec := h.spec("init", `echo ready; exec sleep 1000`)
	spec.InitCPU = 1
	var stdout Buffer
	spec.Stdout = &stdout
	h.start(h.d, spec)
	stdout.WaitFor(t, "ready\n")
	for i := range 2 {
		if err := h.d.EndInit(h.ctx, "init"); err != nil {
			t.Errorf("EndInit #%d: %v, want nil", i+1, err)
		}
	}
	if ids := h.list(h.d); !slices.Contains(ids, "init") {
		t.Errorf("List after EndInit = %v, want it to hold init", ids)
	}
	if _, err := h.d.Stats(h.ctx, "init"); err != nil {
		t.Errorf("Stats after EndInit: %v", err)
	}
	h.stop(h.d, "init", 0)
	if e := h.wait(h.d, "init"); e.Signal == "" {
		t.Errorf("stopped sandbox: Exit = %+v, want a signal", e)
	}
	if err := h.d.EndInit(h.ctx, "init"); err != nil {
		t.Errorf("EndInit of an ended sandbox: %v, want nil", err)
	}
}

func testList(t *testing.T, h *harness) {
	if ids := h.list(h.d); len(ids) != 0 {
		t.Fatalf("List of a new driver = %v, want none", ids)
	}
	h.run("a", "exec sleep 1000")
	h.run("b", "exec sleep 1000")
	h.run("c", "exit 0")
	h.wait(h.d, "c")
	if got, want := h.list(h.d), []string{"a", "b"}; !slices.Equal(got, want) {
		t.Fatalf("List = %v, want %v", got, want)
	}
	h.stop(h.d, "a", 0)
	if got, want := h.list(h.d), []string{"b"}; !slices.Equal(got, want) {
		t.Fatalf("List after Stop(a) = %v, want %v", got, want)
	}
	h.wait(h.d, "a")
	if got, want := h.list(h.d), []string{"b"}; !slices.Equal(got, want) {
		t.Fatalf("List after Wait(a) = %v, want %v", got, want)
	}
}

func testRestart(t *testing.T, h *harness) {
	old := h.d
	tree, _ := h.run("tree", `sleep 1000 & echo "child $!"; wait`)
	h.run("plain", "exec sleep 1000")
	stubborn, _ := h.run("stubborn", `trap '' TERM; echo ready; while :; do sleep 1; done`)
	h.run("ended", "exit 0")
	h.wait(old, "ended")
	tree.WaitFor(t, "child ")
	stubborn.WaitFor(t, "ready\n")

	// A new server process builds a new driver on the same state dir.
	d := h.newDriver(t, h.stateDir)
	if got, want := h.list(d), []string{"plain", "stubborn", "tree"}; !slices.Equal(got, want) {
		t.Fatalf("List of the new driver = %v, want %v", got, want)
	}
	h.stop(d, "tree", 0)
	h.stop(d, "plain", 5*time.Second)
	took := h.stop(d, "stubborn", 300*time.Millisecond)
	if took < 300*time.Millisecond {
		t.Errorf("Stop of a program ignoring SIGTERM returned after %s, before its grace", took)
	}
	h.noneLeft("after the new driver stopped what the old one left")
	for _, id := range []string{"tree", "plain", "stubborn"} {
		h.nothingLeft(d, id)
	}
	if ids := h.list(d); len(ids) != 0 {
		t.Errorf("List of the new driver after Stop = %v, want none", ids)
	}
	// Stop stays idempotent for recovered IDs.
	h.stop(d, "tree", 0)
	// The old driver sees its sandboxes end.
	for _, id := range []string{"tree", "plain", "stubborn"} {
		h.wait(old, id)
	}
	if ids := h.list(old); len(ids) != 0 {
		t.Errorf("List of the old driver = %v, want none", ids)
	}
}

func testConcurrent(t *testing.T, h *harness) {
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := "conc-" + strconv.Itoa(i)
			var out Buffer
			spec := h.spec(id, fmt.Sprintf("echo %d; exit %d", i, i))
			spec.Stdout = &out
			if err := h.d.Start(h.ctx, spec); err != nil {
				errs <- fmt.Errorf("Start(%s): %w", id, err)
				return
			}
			if i%2 == 0 {
				_, _ = h.d.Stats(h.ctx, id) // may race with the exit; must not crash
				_, _ = h.d.List(h.ctx)
			}
			e, err := h.d.Wait(h.ctx, id)
			if err != nil {
				errs <- fmt.Errorf("Wait(%s): %w", id, err)
				return
			}
			if e.Code != i || out.String() != fmt.Sprintf("%d\n", i) {
				errs <- fmt.Errorf("%s: Exit %+v, output %q", id, e, out.String())
			}
			if err := h.d.Stop(h.ctx, id, 0); err != nil {
				errs <- fmt.Errorf("Stop(%s) after Wait: %w", id, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// testPrepareStart: a prepared sandbox runs nothing of its program until
// Start, then runs it as Start would.
func testPrepareStart(t *testing.T, h *harness) {
	stdout := new(Buffer)
	spec := h.spec("prepared", "echo started; exit 4")
	spec.Stdout = stdout
	if err := h.d.Prepare(h.ctx, spec); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	t.Cleanup(func() { _ = h.d.Stop(context.Background(), "prepared", 0) })
	if h.d.Capabilities().Prepare {
		if ids := h.list(h.d); !slices.Contains(ids, "prepared") {
			t.Errorf("List after Prepare = %v, want it to hold the prepared sandbox", ids)
		}
		if err := h.d.SyncOutput(h.ctx, "prepared"); err != nil {
			t.Errorf("SyncOutput of a prepared sandbox: %v", err)
		}
		if got := stdout.String(); got != "" {
			t.Fatalf("output before Start: %q", got)
		}
	}
	h.start(h.d, spec)
	if e := h.wait(h.d, "prepared"); e.Code != 4 {
		t.Errorf("Exit = %+v, want code 4", e)
	}
	if got := stdout.String(); got != "started\n" {
		t.Errorf("stdout = %q", got)
	}
	if err := h.d.Start(h.ctx, spec); err == nil {
		// Started again under the same ID: a new sandbox, which is fine
		// once the first has ended; stop it.
		_ = h.d.Stop(h.ctx, "prepared", 0)
	}
}

// testPrepareStop: a prepared sandbox that is stopped never runs its
// program and leaves nothing.
func testPrepareStop(t *testing.T, h *harness) {
	stdout := new(Buffer)
	spec := h.spec("unused", "echo should not run")
	spec.Stdout = stdout
	if err := h.d.Prepare(h.ctx, spec); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	h.stop(h.d, "unused", time.Second)
	if h.d.Capabilities().Prepare {
		h.wait(h.d, "unused")
	}
	if got := stdout.String(); got != "" {
		t.Errorf("a stopped prepared sandbox printed %q", got)
	}
	if ids := h.list(h.d); slices.Contains(ids, "unused") {
		t.Errorf("List after Stop = %v", ids)
	}
	h.noneLeft("after Stop of a prepared sandbox")
	if h.leftovers != nil {
		if left := h.leftovers(h.d, "unused"); len(left) > 0 {
			t.Errorf("left after Stop of a prepared sandbox: %v", left)
		}
	}
}

// testPrepareChecks: Prepare refuses what Start refuses.
func testPrepareChecks(t *testing.T, h *harness) {
	spec := h.spec("bad", "true")
	spec.Argv = nil
	if err := h.d.Prepare(h.ctx, spec); !errors.Is(err, stratus.ErrInvalid) {
		t.Errorf("Prepare with empty argv: %v, want ErrInvalid", err)
	}
}

// Buffer is an io.Writer safe for a driver's copier goroutine and a test
// reading at the same time.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// WaitFor waits until the buffer holds s, failing the test after 10s.
func (b *Buffer) WaitFor(t testing.TB, s string) {
	t.Helper()
	waitUntil(t, 10*time.Second, fmt.Sprintf("output to hold %q", s), func() bool {
		return strings.Contains(b.String(), s)
	})
}

// waitUntil polls cond until it holds, failing the test after d.
func waitUntil(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Processes returns the PIDs of the live (not zombie) processes whose
// initial environment holds envEntry ("KEY=VALUE"). Tests put a unique
// entry in the environment of what they start and check with it that no
// process is left. A process in the middle of execve shows no environment
// for a moment, so a count of running processes may fall short; an empty
// result after a Stop is exact, as nothing dying calls execve.
func Processes(envEntry string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	want := []byte(envEntry)
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || len(env) == 0 {
			continue // gone, or a zombie (no memory left to read)
		}
		if !slices.ContainsFunc(bytes.Split(env, []byte{0}), func(kv []byte) bool { return bytes.Equal(kv, want) }) {
			continue
		}
		if procState(pid) == "Z" {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// WaitNoProcesses waits up to d until Processes(envEntry) is empty and
// returns what is still left then.
func WaitNoProcesses(envEntry string, d time.Duration) []int {
	return waitNoneLeft(envEntry, d)
}

func waitNoneLeft(envEntry string, d time.Duration) []int {
	deadline := time.Now().Add(d)
	for {
		left := Processes(envEntry)
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Describe formats PIDs with their command lines, for failure messages.
func Describe(pids []int) string { return describe(pids) }

func describe(pids []int) string {
	var parts []string
	for _, pid := range pids {
		cmd, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		parts = append(parts, fmt.Sprintf("%d (%s, state %s)", pid, strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " ")), procState(pid)))
	}
	return strings.Join(parts, ", ")
}

// procState is field 3 of /proc/PID/stat ("" if gone).
func procState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

func killPID(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
