// Package sandboxtest is the contract suite every sandbox.Driver runs: each
// driver's tests call Run with a constructor, so the process and runc
// drivers are held to the same behaviour (exit codes and signals, output
// drained before Wait returns, environment and working directory,
// conflicts, idempotent Stop with a grace period, whole process trees
// stopped, List and Stop across a restart of the server, a port the
// sandbox listens on reached at Addr and, for isolated drivers, sandboxes
// that reach the host but not each other; connections to the host told
// apart by the sandbox they come from, with Owns; EndInit idempotent; the
// CPU time a sandbox used, in Stats and a driver's CPUNanos; a hostname
// of its own in its /etc/hosts, and a world-writable sticky /tmp).
//
// The cases are grouped by subject: start.go (starting, exit, output,
// environment, stats, CPU time), stop.go (Stop, Wait, List and a
// restart), prepare.go (Prepare and EndInit), fs.go (root filesystems and
// mounts), host.go (hostname, /etc/hosts and /tmp), net.go (addresses and isolation, and the helper program the
// network and CPU time cases run); procs.go finds the processes a case
// left behind.
//
// The programs it runs need only /bin/sh and sleep in the sandbox, or, in
// a root filesystem of its own, a copy of the test binary (see Probe); the
// network cases run a copy of the test binary in the working directory
// (see net.go). Every sandbox it starts carries a unique marker in its
// environment, which is how the suite checks through /proc that no
// process of it is left.
package sandboxtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// markerKey is the environment variable that marks the processes a suite
// run started.
const markerKey = "STRATUS_SANDBOXTEST"

// testTimeout bounds every blocking call of one subtest, unless Timeout
// says otherwise.
const testTimeout = 30 * time.Second

// Run runs the driver contract suite. newDriver returns a driver that
// keeps its state in stateDir; the suite calls it again with the same
// stateDir to simulate a restart of the server. opts add driver-specific
// checks (Leftovers), adjust the specs (AdjustSpec), skip cases that
// cannot apply (Skip, FolderMounts) and bound the waits (Timeout).
func Run(t *testing.T, newDriver func(t *testing.T, stateDir string) sandbox.Driver, opts ...Option) {
	t.Helper()
	o := options{timeout: testTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	tests := []suiteCase{
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
		{"CPUTime", testCPUTime},
		{"EndInit", testEndInit},
		{"SyncOutput", testSyncOutput},
		{"List", testList},
		{"RestartListAndStop", testRestart},
		{"Concurrent", testConcurrent},
		{"RootFS", testRootFS},
		{"Mounts", testMounts},
		{"MountsSamePath", testMountsSamePath},
		{"ImageNeedsImageRef", testImageNeedsImageRef},
		{"Hostname", testHostname},
		{"Tmp", testTmp},
		{"NetListen", testNetListen},
		{"NetIsolation", testNetIsolation},
		{"NetAddrs", testNetAddrs},
		{"Owns", testOwns},
		{"PrepareThenStart", testPrepareStart},
		{"PrepareThenStop", testPrepareStop},
		{"PrepareChecksSpec", testPrepareChecks},
	}
	for name := range o.skip {
		if !slices.ContainsFunc(tests, func(tc suiteCase) bool { return tc.name == name }) {
			t.Fatalf("Skip(%q): the suite has no such subtest", name)
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if why, ok := o.skip[tc.name]; ok {
				t.Skipf("the %s case does not apply: %s", tc.name, why)
			}
			h := newHarness(t, newDriver, o)
			tc.fn(t, h)
		})
	}
}

// suiteCase is one subtest of Run.
type suiteCase struct {
	name string
	fn   func(t *testing.T, h *harness)
}

// harness is one subtest's driver, state dir and process marker.
type harness struct {
	t         *testing.T
	newDriver func(t *testing.T, stateDir string) sandbox.Driver
	d         sandbox.Driver
	stateDir  string
	marker    string // "KEY=VALUE" in every sandbox's environment
	ctx       context.Context
	timeout   time.Duration // bounds ctx and each wait (see Timeout)
	opts      options
}

func newHarness(t *testing.T, newDriver func(t *testing.T, stateDir string) sandbox.Driver, o options) *harness {
	stateDir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	h := &harness{
		t: t, newDriver: newDriver, stateDir: stateDir,
		marker: markerKey + "=" + randomHex(8), ctx: ctx, timeout: o.timeout, opts: o,
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

// spec is a sandbox running script under /bin/sh -c, as AdjustSpec
// adjusts it.
func (h *harness) spec(id, script string) sandbox.Spec {
	spec := sandbox.Spec{
		ID:       id,
		Argv:     []string{"/bin/sh", "-c", script},
		Env:      []string{"PATH=/usr/local/bin:/usr/bin:/bin", h.marker},
		Dir:      h.t.TempDir(),
		MemoryMB: 128,
	}
	if h.opts.adjust != nil {
		h.opts.adjust(&spec)
	}
	return spec
}

// start starts spec on d and stops it when the test ends.
func (h *harness) start(d sandbox.Driver, spec sandbox.Spec) {
	h.t.Helper()
	if err := d.Start(h.ctx, spec); err != nil {
		h.t.Fatalf("Start(%q): %v", spec.ID, err)
	}
	h.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
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
	ctx, cancel := context.WithTimeout(h.ctx, h.timeout)
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
	eventually.True(t, 10*time.Second, fmt.Sprintf("output to hold %q", s), func() bool {
		return strings.Contains(b.String(), s)
	})
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
