package sandboxtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/sandbox"
)

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

// testSyncOutput: once the program has written its output (it says so by
// replacing itself with sleep after writing, which the test sees in /proc:
// Spec.Dir may be read-only in the sandbox, so no marker file), SyncOutput
// hands every byte of it to the writers at once, with no waiting.
func testSyncOutput(t *testing.T, h *harness) {
	spec := h.spec("sync", `i=0; while [ $i -lt 3000 ]; do echo "out line $i"; echo "err line $i" >&2; i=$((i+1)); done; exec sleep 1000`)
	var stdout, stderr Buffer
	spec.Stdout, spec.Stderr = &stdout, &stderr
	h.start(h.d, spec)
	eventually.True(t, h.timeout, "the program to finish writing and exec sleep", func() bool {
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

// cpuTimer is the per-invocation CPU time read some drivers have beside
// Stats (the pool type-asserts for it).
type cpuTimer interface {
	CPUNanos(ctx context.Context, id string) (int64, error)
}

// testCPUTime runs the helper burning 200 ms of CPU time and checks that
// Stats.CPUNanos, and CPUNanos if the driver has it, report at least
// 100 ms (the helper's own count, getrusage, and the driver's may differ
// in what they include and their resolution) and no more than the wall
// time on every CPU.
func testCPUTime(t *testing.T, h *harness) {
	const burnt = 200 * time.Millisecond
	spec := h.netSpec("cpu", "burn", strconv.Itoa(int(burnt/time.Millisecond)))
	spec.CPU = 1 // not the share of its 128 MB: 200 ms would take seconds
	var stdout, stderr Buffer
	spec.Stdout, spec.Stderr = &stdout, &stderr
	t0 := time.Now()
	h.start(h.d, spec)
	eventually.Nil(t, 20*time.Second, "the helper to print burnt", func() error {
		if !strings.Contains(stdout.String(), "burnt\n") {
			return fmt.Errorf("stdout %q, stderr %q", stdout.String(), tail(stderr.String(), 500))
		}
		return nil
	})
	timer, hasTimer := h.d.(cpuTimer)
	check := func(what string, got int64) {
		t.Helper()
		limit := time.Since(t0) * time.Duration(runtime.NumCPU())
		t.Logf("%s = %v", what, time.Duration(got))
		if time.Duration(got) < burnt/2 || time.Duration(got) > limit {
			t.Errorf("%s = %v, want from %v to %v (wall time × %d CPUs)", what, time.Duration(got), burnt/2, limit, runtime.NumCPU())
		}
	}
	st, err := h.d.Stats(h.ctx, "cpu")
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	check("Stats.CPUNanos", st.CPUNanos)
	if st.MaxRSSBytes <= 0 {
		t.Errorf("Stats.MaxRSSBytes = %d, want > 0", st.MaxRSSBytes)
	}
	if hasTimer {
		n, err := timer.CPUNanos(h.ctx, "cpu")
		if err != nil {
			t.Fatalf("CPUNanos: %v", err)
		}
		check("CPUNanos", n)
		if n < st.CPUNanos {
			t.Errorf("CPUNanos = %d after Stats.CPUNanos = %d: went back", n, st.CPUNanos)
		}
		if _, err := timer.CPUNanos(h.ctx, "nobody"); !errors.Is(err, stratus.ErrNotFound) {
			t.Errorf("CPUNanos of an unknown sandbox: %v, want ErrNotFound", err)
		}
	}
	h.stop(h.d, "cpu", 0)
	if hasTimer {
		if _, err := timer.CPUNanos(h.ctx, "cpu"); !errors.Is(err, stratus.ErrNotFound) {
			t.Errorf("CPUNanos of a stopped sandbox: %v, want ErrNotFound", err)
		}
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
