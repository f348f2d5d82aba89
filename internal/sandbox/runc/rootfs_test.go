package runc_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/rootfs"
	"github.com/stratus-run/stratus/internal/sandbox"
	"github.com/stratus-run/stratus/internal/sandbox/runc"
	"github.com/stratus-run/stratus/internal/sandbox/sandboxtest"
)

// TestRootFSWithoutLibc runs a static program as the only file of a root
// filesystem: the driver's init, this test binary, runs there too even
// when it is linked dynamically (as with -race). The root is read-only
// with the usual /proc, /dev and /tmp, gets the host's /etc/resolv.conf
// and /etc/hosts, takes a mount at a path it lacks, and is left as it
// was.
func TestRootFSWithoutLibc(t *testing.T) {
	d := newDriver(t, t.TempDir())
	root := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(root, "bin", "probe"), "./testdata/probe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build probe: %v\n%s", err, out)
	}
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	code := t.TempDir()
	if err := os.WriteFile(filepath.Join(code, "handler"), []byte("the code"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := walk(t, root)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errOut sandboxtest.Buffer
	probes := []string{
		"pwd", "read:/var/task/handler", "write:/var/task/new", "write:/new", "write:/etc/new",
		"write:/tmp/new", "read:/tmp/new", "exists:/proc/self/stat", "exists:/dev/null",
		"read:/etc/resolv.conf", "read:/etc/hosts", "exists:/lib", "exists:/bin/sh",
	}
	err := d.Start(ctx, sandbox.Spec{
		ID: "bare", RootFS: root, Argv: append([]string{"probe"}, probes...),
		Env: []string{"PATH=/bin"}, Dir: "/var/task", MemoryMB: 128,
		Mounts: []sandbox.Mount{{Source: code, Target: "/var/task"}},
		Stdout: &out, Stderr: &errOut,
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background(), "bare", 0) })
	e, err := d.Wait(ctx, "bare")
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	assertGone(t, d, "bare")
	if e.Code != 0 {
		t.Fatalf("Exit = %+v, stdout %q, stderr %q", e, out.String(), errOut.String())
	}
	got := map[string]string{}
	for line := range strings.Lines(out.String()) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ": "); ok {
			got[k] = v
		}
	}
	want := map[string]string{
		"pwd": "/var/task", "read:/var/task/handler": "the code", "write:/var/task/new": "EROFS",
		"write:/new": "EROFS", "write:/etc/new": "EROFS", "write:/tmp/new": "ok", "read:/tmp/new": "probe",
		"exists:/proc/self/stat": "yes", "exists:/dev/null": "yes",
		// The driver's own files, not the host's.
		"read:/etc/resolv.conf": strings.ReplaceAll(strings.TrimSpace(rootfs.ResolvConf("/etc/resolv.conf")), "\n", `\n`),
		"read:/etc/hosts":       `127.0.0.1	localhost\n::1	localhost`,
		"exists:/lib":           "no", "exists:/bin/sh": "no",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("probe %s = %q, want %q", k, got[k], v)
		}
	}
	if after := walk(t, root); !slices.Equal(before, after) {
		t.Errorf("the root filesystem changed:\nbefore %q\nafter  %q", before, after)
	}
}

func walk(t *testing.T, root string) []string {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p+" "+d.Type().String())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return paths
}

// BenchmarkColdStartMounts is BenchmarkColdStart with a function's
// layout: code at /var/task and the runtimes at /var/runtime, paths the
// host lacks, so the root is laid out entry by entry.
func BenchmarkColdStartMounts(b *testing.B) {
	if _, err := exec.LookPath("runc"); err != nil || os.Geteuid() != 0 {
		b.Skip("needs runc and root")
	}
	d, err := runc.New(runc.Config{StateDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = d.Close() })
	ctx := context.Background()
	code, rt := b.TempDir(), b.TempDir()
	var start time.Duration
	for i := 0; b.Loop(); i++ {
		id := "b" + strconv.Itoa(i)
		t0 := time.Now()
		err := d.Start(ctx, sandbox.Spec{
			ID: id, Argv: []string{"/bin/true"}, Dir: "/var/task", MemoryMB: 1769,
			Mounts: []sandbox.Mount{{Source: code, Target: "/var/task"}, {Source: rt, Target: "/var/runtime"}},
		})
		if err != nil {
			b.Fatal(err)
		}
		start += time.Since(t0)
		if e, err := d.Wait(ctx, id); err != nil || e.Code != 0 {
			b.Fatal(e, err)
		}
	}
	b.ReportMetric(float64(start.Microseconds())/float64(b.N)/1000, "ms-to-started/op")
}
