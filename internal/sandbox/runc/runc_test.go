package runc_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sandbox"
	"github.com/stratus-run/stratus/internal/sandbox/runc"
	"github.com/stratus-run/stratus/internal/sandbox/sandboxtest"
)

func newDriver(t *testing.T, stateDir string) *runc.Driver {
	t.Helper()
	if _, err := exec.LookPath("runc"); err != nil || os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("runc driver needs runc on PATH and root (lookup: %v, euid %d)", err, os.Geteuid())
		}
		t.Skipf("runc driver needs runc on PATH and root (lookup: %v, euid %d)", err, os.Geteuid())
	}
	d, err := runc.New(runc.Config{StateDir: stateDir})
	if err != nil {
		t.Fatalf("runc.New: %v", err)
	}
	// Before t.TempDir removes stateDir: the bridge and the netns mount go.
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return d
}

func TestDriver(t *testing.T) {
	sandboxtest.Run(t, func(t *testing.T, stateDir string) sandbox.Driver {
		return newDriver(t, stateDir)
	}, sandboxtest.Leftovers(func(d sandbox.Driver, id string) []string {
		return leftovers(d.(*runc.Driver), id)
	}))
}

// run runs script in a sandbox of memoryMB to its end and returns how it
// ended and its output; it then checks that nothing of it is left.
func run(t *testing.T, d *runc.Driver, id string, memoryMB int, script string) (sandbox.Exit, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errOut sandboxtest.Buffer
	err := d.Start(ctx, sandbox.Spec{
		ID: id, Argv: []string{"/bin/sh", "-c", script},
		Env: []string{"PATH=/usr/bin:/bin"}, Dir: t.TempDir(), MemoryMB: memoryMB,
		Stdout: &out, Stderr: &errOut,
	})
	if err != nil {
		t.Fatalf("Start(%s): %v", id, err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background(), id, 0) })
	e, err := d.Wait(ctx, id)
	if err != nil {
		t.Fatalf("Wait(%s): %v", id, err)
	}
	assertGone(t, d, id)
	return e, out.String(), errOut.String()
}

// assertGone checks that no mount, cgroup, runc state or bundle of
// sandbox id is left on the host.
func assertGone(t *testing.T, d *runc.Driver, id string) {
	t.Helper()
	for _, left := range netLeftovers(d, id) {
		t.Errorf("%s: %s left", id, left)
	}
	if dirs := runc.CgroupDirs(d.CgroupPath(id)); len(dirs) > 0 {
		t.Errorf("%s: cgroups left: %v", id, dirs)
	}
	if _, err := os.Stat(d.BundleDir(id)); !os.IsNotExist(err) {
		t.Errorf("%s: bundle %s left (%v)", id, d.BundleDir(id), err)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(mounts)) {
		if strings.Contains(line, d.BundleDir(id)) {
			t.Errorf("%s: mount left: %s", id, line)
		}
	}
}

func TestMemoryLimitKills(t *testing.T) {
	d := newDriver(t, t.TempDir())
	if !d.Capabilities().MemoryLimit {
		t.Fatal("Capabilities().MemoryLimit is false")
	}
	// tail buffers its one endless line.
	e, _, stderr := run(t, d, "oom", 64, "exec tail /dev/zero")
	if want := (sandbox.Exit{Code: -1, Signal: "killed", OOM: true}); e != want {
		t.Errorf("Exit = %+v, want %+v (stderr %q)", e, want, stderr)
	}
	// A program that exits 137 itself is not taken for a killed one.
	if e, _, _ := run(t, d, "exit137", 64, "exit 137"); e != (sandbox.Exit{Code: 137}) {
		t.Errorf("exit 137: Exit = %+v, want code 137", e)
	}
}

func TestFilesystem(t *testing.T) {
	d := newDriver(t, t.TempDir())
	e, out, stderr := run(t, d, "fs", 128, `
if echo x > /etc/stratus-runc-test; then echo "/etc writable"; fi
if echo x > "$PWD/f"; then echo "code dir writable"; fi
echo tmp > /tmp/f && cat /tmp/f
ls "$PWD" >/dev/null && echo "code dir readable"
exit 0`)
	if e.Code != 0 {
		t.Fatalf("Exit = %+v, stderr %q", e, stderr)
	}
	if want := "tmp\ncode dir readable\n"; out != want {
		t.Errorf("output = %q, want %q (stderr %q)", out, want, stderr)
	}
	if _, err := os.Stat("/etc/stratus-runc-test"); err == nil {
		os.Remove("/etc/stratus-runc-test")
		t.Error("the sandbox wrote to the host's /etc")
	}
}

func TestPIDNamespace(t *testing.T) {
	d := newDriver(t, t.TempDir())
	e, out, stderr := run(t, d, "pidns", 128, `echo $$; tr '\0' ' ' < /proc/1/cmdline; echo; ls /proc | grep -c '^[0-9]'`)
	if e.Code != 0 {
		t.Fatalf("Exit = %+v, stderr %q", e, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("output %q", out)
	}
	// PID 1 is the driver's init; the shell comes right after it (the
	// init's threads take a few PIDs).
	if pid, _ := strconv.Atoi(lines[0]); pid < 2 || pid > 64 {
		t.Errorf("the shell's PID is %s, want a low one in a PID namespace of its own", lines[0])
	}
	if !strings.HasPrefix(lines[1], "/dev/.stratus-init 0:0 on-go /bin/sh") {
		t.Errorf("PID 1 is %q, want the driver's init", lines[1])
	}
	if n, _ := strconv.Atoi(lines[2]); n > 10 {
		t.Errorf("the sandbox sees %d processes, want only its own", n)
	}
}

func TestPidsLimit(t *testing.T) {
	d := newDriver(t, t.TempDir())
	// Starts sleeps until fork fails; a full vCPU's memory so it is quick.
	e, out, stderr := run(t, d, "pids", 1769, `
# The inner shell exits when a fork fails; the outer one forks nothing
# after it (its builtins read the figures).
sh -c 'n=0; while [ $n -lt 1100 ]; do sleep 100 & n=$((n+1)); done' 2>/dev/null
cd /sys/fs/cgroup/pids
read max < pids.max; read cur < pids.current; read ev < pids.events
echo $max $cur $ev
exit 0`)
	f := strings.Fields(out)
	if e.Code != 0 || len(f) != 4 {
		t.Fatalf("Exit %+v, output %q, stderr %q", e, out, tail(stderr))
	}
	if f[0] != "1024" {
		t.Errorf("pids.max = %s, want 1024", f[0])
	}
	if n, _ := strconv.Atoi(f[1]); n > 1024 {
		t.Errorf("pids.current = %d, over the limit", n)
	}
	if n, _ := strconv.Atoi(f[3]); f[2] != "max" || n == 0 {
		t.Errorf("pids.events = %q, want forks refused at the limit", f[2]+" "+f[3])
	}
}

func tail(s string) string {
	if len(s) > 300 {
		return s[len(s)-300:]
	}
	return s
}

// TestStopLeavesNothing stops a sandbox with a process tree and checks
// the host for leftovers; then the same after a restart of the server.
func TestStopLeavesNothing(t *testing.T) {
	stateDir := t.TempDir()
	d := newDriver(t, stateDir)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, id := range []string{"tree", "recovered"} {
		var out sandboxtest.Buffer
		err := d.Start(ctx, sandbox.Spec{
			ID: id, Argv: []string{"/bin/sh", "-c", `sh -c 'sleep 1000 & wait' & sleep 1000 & echo ready; wait`},
			Env: []string{"PATH=/usr/bin:/bin"}, Dir: t.TempDir(), MemoryMB: 128, Stdout: &out,
		})
		if err != nil {
			t.Fatal(err)
		}
		out.WaitFor(t, "ready\n")
	}
	if err := d.Stop(ctx, "tree", time.Second); err != nil {
		t.Fatal(err)
	}
	assertGone(t, d, "tree")
	// A new driver on the same state dir stops what the first one left.
	d2 := newDriver(t, stateDir)
	if err := d2.Stop(ctx, "recovered", time.Second); err != nil {
		t.Fatal(err)
	}
	assertGone(t, d2, "recovered")
	for _, id := range []string{"tree", "recovered"} {
		if _, err := d.Wait(ctx, id); err != nil {
			t.Errorf("Wait(%s): %v", id, err)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(stateDir, "runc")); len(ents) > 0 {
		t.Errorf("runc state left: %v", ents)
	}
}

// TestSeccomp runs TestSeccompHelper, a copy of this test binary, in a
// sandbox: what Docker's default seccomp profile refuses a process
// without capabilities fails there with EPERM, even where the missing
// capabilities alone would not stop it (a new user namespace, a socket
// family outside the allow list), while a Go program with its threads,
// ordinary sockets and fork/exec works.
func TestSeccomp(t *testing.T) {
	d := newDriver(t, t.TempDir())
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir() // bound read-only in the sandbox; its /tmp is not the host's
	helper := filepath.Join(dir, "helper")
	if err := os.WriteFile(helper, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errOut sandboxtest.Buffer
	err = d.Start(ctx, sandbox.Spec{
		ID: "seccomp", Argv: []string{helper, "-test.run=^TestSeccompHelper$"},
		Env: []string{"PATH=/usr/bin:/bin", "STRATUS_SECCOMP_HELPER=1"}, Dir: dir, MemoryMB: 512,
		Stdout: &out, Stderr: &errOut,
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background(), "seccomp", 0) })
	e, err := d.Wait(ctx, "seccomp")
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	assertGone(t, d, "seccomp")
	if e.Code != 0 {
		t.Fatalf("Exit = %+v, output %q, stderr %q", e, out.String(), tail(errOut.String()))
	}
	got := map[string]string{}
	for line := range strings.Lines(out.String()) {
		if name, result, ok := strings.Cut(strings.TrimSpace(line), ": "); ok {
			got[name] = result
		}
	}
	want := map[string]string{
		"seccomp mode":           "2", // a filter
		"unshare(CLONE_NEWUSER)": "EPERM",
		"clone(CLONE_NEWUSER)":   "EPERM",
		"mount(tmpfs)":           "EPERM",
		"socket(AF_VSOCK)":       "EPERM",
		"socket(AF_INET)":        "ok",
		"socket(AF_UNIX)":        "ok",
		"exec sh":                "ok 42",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("results in the sandbox (-want +got):\n%s\nstderr %q", diff, tail(errOut.String()))
	}
}

// TestSeccompHelper is the program TestSeccomp runs in a sandbox. It
// prints a "name: result" line per try, the result being "ok" or the
// errno's name.
func TestSeccompHelper(t *testing.T) {
	if os.Getenv("STRATUS_SECCOMP_HELPER") != "1" {
		t.Skip("run in a sandbox by TestSeccomp")
	}
	report := func(name string, err error) {
		result := "ok"
		var errno syscall.Errno
		if errors.As(err, &errno) {
			result = unix.ErrnoName(errno)
		} else if err != nil {
			result = err.Error()
		}
		fmt.Printf("%s: %s\n", name, result)
	}
	socket := func(domain int) error {
		fd, err := unix.Socket(domain, unix.SOCK_STREAM, 0)
		if err == nil {
			unix.Close(fd)
		}
		return err
	}

	status, _ := os.ReadFile("/proc/self/status")
	for line := range strings.Lines(string(status)) {
		if mode, ok := strings.CutPrefix(line, "Seccomp:"); ok {
			fmt.Printf("seccomp mode: %s\n", strings.TrimSpace(mode))
		}
	}
	// Without seccomp: EINVAL, as a Go program has threads.
	report("unshare(CLONE_NEWUSER)", unix.Unshare(unix.CLONE_NEWUSER))
	// Without seccomp this one succeeds: a user namespace needs no
	// capability. The profile checks clone's flags.
	newUser := exec.Command("/bin/true")
	newUser.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}
	report("clone(CLONE_NEWUSER)", newUser.Run())
	report("mount(tmpfs)", unix.Mount("tmpfs", "/tmp", "tmpfs", 0, ""))
	// Without seccomp: EAFNOSUPPORT or a socket. The profile checks
	// socket's address family.
	report("socket(AF_VSOCK)", socket(unix.AF_VSOCK))
	report("socket(AF_INET)", socket(unix.AF_INET))
	report("socket(AF_UNIX)", socket(unix.AF_UNIX))
	sh, err := exec.Command("/bin/sh", "-c", "echo $((6*7))").Output()
	if err == nil {
		fmt.Printf("exec sh: ok %s", sh)
	} else {
		report("exec sh", err)
	}
}

// BenchmarkColdStart is Start to Wait of /bin/true in a sandbox.
func BenchmarkColdStart(b *testing.B) {
	if _, err := exec.LookPath("runc"); err != nil || os.Geteuid() != 0 {
		b.Skip("needs runc and root")
	}
	d, err := runc.New(runc.Config{StateDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = d.Close() })
	ctx := context.Background()
	dir := b.TempDir()
	var start time.Duration
	for i := 0; b.Loop(); i++ {
		id := "b" + strconv.Itoa(i)
		t0 := time.Now()
		if err := d.Start(ctx, sandbox.Spec{ID: id, Argv: []string{"/bin/true"}, Dir: dir, MemoryMB: 1769}); err != nil {
			b.Fatal(err)
		}
		start += time.Since(t0)
		if e, err := d.Wait(ctx, id); err != nil || e.Code != 0 {
			b.Fatal(e, err)
		}
	}
	b.ReportMetric(float64(start.Microseconds())/float64(b.N)/1000, "ms-to-started/op")
}

// TestCPUQuota: Spec.CPU sets the quota in cores; without it the quota
// follows memory (one core at 1,769 MB).
func TestCPUQuota(t *testing.T) {
	d := newDriver(t, t.TempDir())
	for _, tc := range []struct {
		id     string
		mem    int
		cpu    float64
		period string
		quota  string
	}{
		{"half", 512, 0.5, "100000", "50000"},
		{"two", 128, 2, "100000", "200000"},
		{"bymemory", 1769, 0, "100000", "100000"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		var out, errOut sandboxtest.Buffer
		err := d.Start(ctx, sandbox.Spec{
			ID: tc.id, Argv: []string{"/bin/sh", "-c", `cd /sys/fs/cgroup/cpu* 2>/dev/null && cat cpu.cfs_period_us cpu.cfs_quota_us || cat /sys/fs/cgroup/cpu.max`},
			Env: []string{"PATH=/usr/bin:/bin"}, Dir: t.TempDir(), MemoryMB: tc.mem, CPU: tc.cpu,
			Stdout: &out, Stderr: &errOut,
		})
		if err != nil {
			cancel()
			t.Fatalf("Start(%s): %v", tc.id, err)
		}
		if _, err := d.Wait(ctx, tc.id); err != nil {
			t.Fatalf("Wait(%s): %v", tc.id, err)
		}
		cancel()
		f := strings.Fields(out.String())
		if len(f) == 2 && f[0] == tc.quota && f[1] == tc.period { // cgroup v2: "quota period"
			continue
		}
		if len(f) != 2 || f[0] != tc.period || f[1] != tc.quota {
			t.Errorf("%s: cpu period and quota %q (stderr %q), want %s %s", tc.id, out.String(), errOut.String(), tc.period, tc.quota)
		}
	}
}

// TestCPURequest: Spec.CPURequest becomes the sandbox's cpu.shares as
// Kubernetes derives them from a CPU request (milli-cores × 1024 / 1000,
// at least 2), runc's cpu.weight of those shares on cgroup v2, and leaves
// the quota Spec.CPU sets; without it the cgroup keeps its default.
func TestCPURequest(t *testing.T) {
	d := newDriver(t, t.TempDir())
	for _, tc := range []struct {
		id     string
		cpu    float64
		req    float64
		shares uint64 // 0: the default, 1024 (cpu.weight 100)
		quota  string
	}{
		{"knative", 1, 0.125, 128, "100000"},
		{"tiny", 0.5, 0.001, 2, "50000"},
		{"equal", 2, 2, 2048, "200000"},
		{"none", 0.5, 0, 0, "50000"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		var out, errOut sandboxtest.Buffer
		err := d.Start(ctx, sandbox.Spec{
			ID: tc.id, Argv: []string{"/bin/sh", "-c", `cd /sys/fs/cgroup/cpu* 2>/dev/null && cat cpu.shares cpu.cfs_quota_us ||
				echo v2 $(cat /sys/fs/cgroup/cpu.weight) $(cut -d' ' -f1 /sys/fs/cgroup/cpu.max)`},
			Env: []string{"PATH=/usr/bin:/bin"}, Dir: t.TempDir(), MemoryMB: 128, CPU: tc.cpu, CPURequest: tc.req,
			Stdout: &out, Stderr: &errOut,
		})
		if err != nil {
			cancel()
			t.Fatalf("Start(%s): %v", tc.id, err)
		}
		if _, err := d.Wait(ctx, tc.id); err != nil {
			t.Fatalf("Wait(%s): %v", tc.id, err)
		}
		cancel()
		f := strings.Fields(out.String())
		shares := tc.shares
		if shares == 0 {
			shares = 1024
		}
		switch {
		case len(f) == 2:
			if f[0] != strconv.FormatUint(shares, 10) || f[1] != tc.quota {
				t.Errorf("%s: cpu.shares %s, cpu.cfs_quota_us %s; want %d and %s", tc.id, f[0], f[1], shares, tc.quota)
			}
		case len(f) == 3 && f[0] == "v2":
			if f[2] != tc.quota {
				t.Errorf("%s: cpu.max quota %s, want %s", tc.id, f[2], tc.quota)
			}
			// runc up to 1.3 maps shares linearly, later ones on a
			// curve that keeps 1024 at 100; either is Kubernetes's.
			linear := 1 + (shares-2)*9999/262142
			l := math.Log2(float64(shares))
			curve := uint64(math.Ceil(math.Pow(10, (l*l+125*l)/612-7.0/34)))
			if tc.shares == 0 {
				linear, curve = 100, 100
			}
			if f[1] != strconv.FormatUint(linear, 10) && f[1] != strconv.FormatUint(curve, 10) {
				t.Errorf("%s: cpu.weight %s, want %d or %d (cpu.shares %d)", tc.id, f[1], linear, curve, shares)
			}
		default:
			t.Errorf("%s: read %q (stderr %q), want cpu.shares or cpu.weight", tc.id, out.String(), errOut.String())
		}
	}
}

// hostCPUQuota reads the CPU quota of sandbox id from its cgroup on the
// host: cpu.cfs_quota_us (cgroup v1) or the first field of cpu.max (v2).
func hostCPUQuota(t *testing.T, d *runc.Driver, id string) string {
	t.Helper()
	cg := d.CgroupPath(id)
	if b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/cpu", cg, "cpu.cfs_quota_us")); err == nil {
		return strings.TrimSpace(string(b))
	}
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", cg, "cpu.max"))
	if err != nil {
		t.Fatalf("%s: no CPU quota in its cgroup: %v", id, err)
	}
	return strings.Fields(string(b))[0]
}

// TestInitCPU: a sandbox of 128 MB with InitCPU 1 has a full core's quota
// until EndInit, then its share of 128 MB; one with a quota of its own
// larger than InitCPU keeps it. EndInit is idempotent, and nil for an
// unknown or ended sandbox. Prepared or started directly, alike.
func TestInitCPU(t *testing.T) {
	d := newDriver(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	share := strconv.Itoa(100_000 * 128 / 1769)
	for _, tc := range []struct {
		id            string
		prepare       bool
		cpu, initCPU  float64
		before, after string
	}{
		{"started", false, 0, 1, "100000", share},
		{"prepared", true, 0, 1, "100000", share},
		{"noinit", false, 0, 0, share, share},
		{"ownlarger", false, 2, 1, "200000", "200000"},
	} {
		var out sandboxtest.Buffer
		spec := sandbox.Spec{
			ID: tc.id, Argv: []string{"/bin/sh", "-c", "echo ready; exec sleep 1000"},
			Env: []string{"PATH=/usr/bin:/bin"}, Dir: t.TempDir(), MemoryMB: 128, CPU: tc.cpu, InitCPU: tc.initCPU,
			Stdout: &out,
		}
		if tc.prepare {
			if err := d.Prepare(ctx, spec); err != nil {
				t.Fatalf("Prepare(%s): %v", tc.id, err)
			}
			if got := hostCPUQuota(t, d, tc.id); got != tc.before {
				t.Errorf("%s: quota prepared %s, want %s", tc.id, got, tc.before)
			}
		}
		if err := d.Start(ctx, spec); err != nil {
			t.Fatalf("Start(%s): %v", tc.id, err)
		}
		t.Cleanup(func() { _ = d.Stop(context.Background(), tc.id, 0) })
		out.WaitFor(t, "ready\n")
		if got := hostCPUQuota(t, d, tc.id); got != tc.before {
			t.Errorf("%s: quota before EndInit %s, want %s", tc.id, got, tc.before)
		}
		for range 2 {
			if err := d.EndInit(ctx, tc.id); err != nil {
				t.Errorf("%s: EndInit: %v", tc.id, err)
			}
			if got := hostCPUQuota(t, d, tc.id); got != tc.after {
				t.Errorf("%s: quota after EndInit %s, want %s", tc.id, got, tc.after)
			}
		}
		if err := d.Stop(ctx, tc.id, 0); err != nil {
			t.Fatalf("Stop(%s): %v", tc.id, err)
		}
		if _, err := d.Wait(ctx, tc.id); err != nil {
			t.Fatalf("Wait(%s): %v", tc.id, err)
		}
		if err := d.EndInit(ctx, tc.id); err != nil {
			t.Errorf("%s: EndInit after its end: %v, want nil", tc.id, err)
		}
	}
	if err := d.EndInit(ctx, "nobody"); err != nil {
		t.Errorf("EndInit of an unknown sandbox: %v, want nil", err)
	}
}

// TestStartAhead: a program started ahead runs from Prepare on, as its
// user, with the start pipe named in its environment, and goes on past
// its read of the start byte only once Start writes it.
func TestStartAhead(t *testing.T) {
	d := newDriver(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out sandboxtest.Buffer
	script := `echo "ahead fd=$` + sandbox.StartFDEnv + ` uid=$(id -u)"; ` +
		`b=$(head -c 1 <&"$` + sandbox.StartFDEnv + `"); echo "started with $b"`
	spec := sandbox.Spec{
		ID: "ahead", Argv: []string{"/bin/sh", "-c", script},
		Env: []string{"PATH=/usr/bin:/bin"}, Dir: t.TempDir(), MemoryMB: 128,
		User: &sandbox.User{UID: 993, GID: 990}, StartAhead: true,
		Stdout: &out, Stderr: &out,
	}
	if err := d.Prepare(ctx, spec); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background(), spec.ID, 0) })
	out.WaitFor(t, "ahead fd=3 uid=993\n")
	if strings.Contains(out.String(), "started") {
		t.Fatalf("the program went on before Start: %q", out.String())
	}
	if err := d.Start(ctx, spec); err != nil {
		t.Fatalf("Start: %v", err)
	}
	e, err := d.Wait(ctx, spec.ID)
	if err != nil || e.Code != 0 {
		t.Fatalf("Wait: %+v, %v; output %q", e, err, out.String())
	}
	if !strings.Contains(out.String(), "started with g\n") {
		t.Errorf("output %q, want the start byte read after Start", out.String())
	}
	assertGone(t, d, spec.ID)
}

// TestNewNeedsStateDir: a Config without a state dir is refused, before
// anything is looked for or set up.
func TestNewNeedsStateDir(t *testing.T) {
	if _, err := runc.New(runc.Config{}); !errors.Is(err, stratus.ErrInvalid) {
		t.Errorf("New without a state dir: %v, want ErrInvalid", err)
	}
}

// BenchmarkCPUNanos is the per-invocation CPU time read of a running
// sandbox: a pread of its cgroup's CPU time file, kept open.
func BenchmarkCPUNanos(b *testing.B) {
	if _, err := exec.LookPath("runc"); err != nil || os.Geteuid() != 0 {
		b.Skip("needs runc and root")
	}
	d, err := runc.New(runc.Config{StateDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = d.Close() })
	ctx := context.Background()
	if err := d.Start(ctx, sandbox.Spec{ID: "cpu", Argv: []string{"sleep", "1000"}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: b.TempDir(), MemoryMB: 128}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = d.Stop(ctx, "cpu", 0) })
	if _, err := d.CPUNanos(ctx, "cpu"); err != nil { // opens the file
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.CPUNanos(ctx, "cpu"); err != nil {
			b.Fatal(err)
		}
	}
}
