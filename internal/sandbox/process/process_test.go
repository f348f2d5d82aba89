package process_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/sandbox"
	"github.com/stratus-run/stratus/internal/sandbox/process"
	"github.com/stratus-run/stratus/internal/sandbox/sandboxtest"
)

// Environment of the helper process that plays a server which crashes.
const (
	helperStateDir = "STRATUS_PROCESS_TEST_HELPER"
	helperMarker   = "STRATUS_PROCESS_TEST_MARKER"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperStateDir); dir != "" {
		crashingServer(dir, os.Getenv(helperMarker))
		return
	}
	os.Exit(m.Run())
}

func newDriver(t *testing.T, stateDir string) *process.Driver {
	t.Helper()
	d, err := process.New(process.Config{StateDir: stateDir})
	if err != nil {
		t.Fatalf("process.New: %v", err)
	}
	return d
}

func TestDriver(t *testing.T) {
	sandboxtest.Run(t, func(t *testing.T, stateDir string) sandbox.Driver {
		return newDriver(t, stateDir)
	})
}

// run runs script to its end and returns its stdout.
func run(t *testing.T, d *process.Driver, id, script string, env ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut sandboxtest.Buffer
	err := d.Start(ctx, sandbox.Spec{
		ID: id, Argv: []string{"/bin/sh", "-c", script},
		Env:    append([]string{"PATH=/usr/bin:/bin"}, env...),
		Dir:    t.TempDir(),
		Stdout: &out, Stderr: &errOut,
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background(), id, 0) })
	e, err := d.Wait(ctx, id)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if e.Code != 0 {
		t.Fatalf("%s: %s, stderr %q", id, e, errOut.String())
	}
	return out.String()
}

// TestRlimits checks the limits the sandbox's main process and the
// children it forks see, whatever the server's own limits are. The limits
// must hold from the program's first instruction, so it is tried a few
// times: a driver that applies them only after the program started loses
// that race now and then.
func TestRlimits(t *testing.T) {
	d := newDriver(t, t.TempDir())
	for i := range 10 {
		out := run(t, d, "limits-"+strconv.Itoa(i), `cat /proc/$$/limits; echo ---; cat /proc/self/limits`)
		self, child, ok := strings.Cut(out, "---\n")
		if !ok {
			t.Fatalf("output %q", out)
		}
		for _, tc := range []struct {
			who, limits string
		}{{"main process", self}, {"child", child}} {
			nofile, core := limit(t, tc.limits, "Max open files"), limit(t, tc.limits, "Max core file size")
			if nofile != "1024 1024" || core != "0 0" {
				t.Fatalf("run %d: the sandbox's %s saw Max open files %q, Max core file size %q; want 1024 1024 and 0 0 from its first instruction on",
					i, tc.who, nofile, core)
			}
		}
	}
}

// limit returns "soft hard" of the named line of a /proc/PID/limits text.
func limit(t *testing.T, limits, name string) string {
	t.Helper()
	for line := range strings.Lines(limits) {
		if rest, ok := strings.CutPrefix(line, name); ok {
			f := strings.Fields(rest)
			if len(f) >= 2 {
				return f[0] + " " + f[1]
			}
		}
	}
	t.Fatalf("no %q in %q", name, limits)
	return ""
}

// TestSessionAndGroup checks that each sandbox leads a session and a
// process group of its own, which its children share.
func TestSessionAndGroup(t *testing.T) {
	d := newDriver(t, t.TempDir())
	script := `read -r a < /proc/$$/stat; echo "$a"; sleep 1000 & read -r b < /proc/$!/stat; echo "$b"; kill $!; wait; exit 0`
	type ids struct{ pid, pgrp, sid int }
	parse := func(line string) ids {
		t.Helper()
		pid, rest, _ := strings.Cut(line, " ")
		i := strings.LastIndexByte(rest, ')')
		f := strings.Fields(rest[i+1:])
		if i < 0 || len(f) < 4 {
			t.Fatalf("stat line %q", line)
		}
		n := func(s string) int {
			v, err := strconv.Atoi(s)
			if err != nil {
				t.Fatalf("stat line %q: %v", line, err)
			}
			return v
		}
		return ids{n(pid), n(f[2]), n(f[3])}
	}
	mySID, _ := syscallGetsid()
	var sessions []int
	for _, id := range []string{"one", "two"} {
		lines := strings.Split(strings.TrimSpace(run(t, d, id, script)), "\n")
		if len(lines) != 2 {
			t.Fatalf("%s: output %q", id, lines)
		}
		main, child := parse(lines[0]), parse(lines[1])
		if main.pgrp != main.pid || main.sid != main.pid {
			t.Errorf("%s: main process %d is in group %d, session %d; want both its own", id, main.pid, main.pgrp, main.sid)
		}
		if child.pgrp != main.pid || child.sid != main.pid {
			t.Errorf("%s: child %d is in group %d, session %d; want the sandbox's (%d)", id, child.pid, child.pgrp, child.sid, main.pid)
		}
		if main.sid == mySID {
			t.Errorf("%s: shares the test's session %d", id, mySID)
		}
		sessions = append(sessions, main.sid)
	}
	if sessions[0] == sessions[1] {
		t.Errorf("two sandboxes share session %d", sessions[0])
	}
}

func syscallGetsid() (int, error) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return strconv.Atoi(f[3])
}

// TestServerCrash kills a server process (SIGKILL, no chance to clean up)
// that runs a sandbox with a child, then checks that a new driver on the
// same state dir finds what is left of the sandbox and stops all of it.
func TestServerCrash(t *testing.T) {
	stateDir := t.TempDir()
	marker := helperMarker + "=" + strconv.FormatInt(time.Now().UnixNano(), 36)
	t.Cleanup(func() {
		// Whatever the outcome, end what the test started.
		for _, pid := range sandboxtest.Processes(marker) {
			if p, err := os.FindProcess(pid); err == nil {
				_ = p.Kill()
			}
		}
	})

	server := exec.Command(os.Args[0], "-test.run=^$")
	server.Env = append(os.Environ(), helperStateDir+"="+stateDir, helperMarker+"="+marker)
	server.Stderr = os.Stderr
	stdout, err := server.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "started\n" {
		_ = server.Process.Kill()
		_ = server.Wait()
		t.Fatalf("helper server said %q, %v", line, err)
	}
	if err := server.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = server.Wait()

	// The sandbox's main process dies with the server (parent-death
	// signal); its child may outlive it.
	leader := leaderPID(t, filepath.Join(stateDir, "crash.json"))
	eventually.True(t, 10*time.Second, "the sandbox's main process to die with the server", func() bool {
		st := procState(leader)
		return st == "" || st == "Z"
	})

	d := newDriver(t, stateDir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ids, err := d.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	left := sandboxtest.Processes(marker)
	if len(left) > 0 && !slices.Contains(ids, "crash") {
		t.Errorf("List = %v after the server crashed, but the sandbox's processes %s still run", ids, sandboxtest.Describe(left))
	}
	for _, id := range ids {
		if err := d.Stop(ctx, id, time.Second); err != nil {
			t.Errorf("Stop(%q): %v", id, err)
		}
	}
	if left := sandboxtest.Processes(marker); len(left) > 0 {
		t.Errorf("processes left after a crash and a restart: %s", sandboxtest.Describe(left))
	}
}

func leaderPID(t *testing.T, stateFile string) int {
	t.Helper()
	b, err := os.ReadFile(stateFile)
	if err != nil {
		t.Fatalf("state file of the crashed server's sandbox: %v", err)
	}
	var st struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal(b, &st); err != nil || st.PID <= 0 {
		t.Fatalf("state file %q: %v", b, err)
	}
	return st.PID
}

// crashingServer runs in the helper process: it starts a sandbox whose
// main process forks a child, says "started" and waits to be killed.
func crashingServer(stateDir, marker string) {
	d, err := process.New(process.Config{StateDir: stateDir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var out sandboxtest.Buffer
	err = d.Start(context.Background(), sandbox.Spec{
		ID:     "crash",
		Argv:   []string{"/bin/sh", "-c", `sleep 1000 & echo "child $!"; wait`},
		Env:    []string{"PATH=/usr/bin:/bin", marker},
		Dir:    stateDir,
		Stdout: &out,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for !strings.Contains(out.String(), "child ") {
		time.Sleep(time.Millisecond)
	}
	fmt.Println("started")
	_, _ = io.Copy(io.Discard, os.Stdin) // until killed
	time.Sleep(time.Hour)
}

func procState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return f[0]
}

// TestNewNeedsStateDir: a Config without a state dir is refused; one
// without a logger works (and discards what it would log).
func TestNewNeedsStateDir(t *testing.T) {
	if _, err := process.New(process.Config{}); !errors.Is(err, stratus.ErrInvalid) {
		t.Errorf("New without a state dir: %v, want ErrInvalid", err)
	}
	dir := filepath.Join(t.TempDir(), "state")
	if _, err := process.New(process.Config{StateDir: dir}); err != nil {
		t.Fatalf("New without a logger: %v", err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir %s: %v; want a folder of mode 0700", dir, err)
	}
}

// BenchmarkCPUNanos is the per-invocation CPU time read of a running
// sandbox: its main process's CPU clock and /proc/PID/stat.
func BenchmarkCPUNanos(b *testing.B) {
	d, err := process.New(process.Config{StateDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := d.Start(ctx, sandbox.Spec{ID: "cpu", Argv: []string{"sleep", "1000"}, Env: []string{"PATH=/usr/bin:/bin"}}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = d.Stop(ctx, "cpu", 0) })
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.CPUNanos(ctx, "cpu"); err != nil {
			b.Fatal(err)
		}
	}
}
