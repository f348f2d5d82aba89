package runc_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/sandbox"
	"github.com/stratus-run/stratus/internal/sandbox/runc"
	"github.com/stratus-run/stratus/internal/sandbox/sandboxtest"
)

// TestUnprivileged: a program runs as its Spec.User (or the sandbox's
// root) with no capability, in a user namespace whose ids are
// unprivileged host ids; it can neither signal nor ptrace the init, nor
// read the init's descriptors, nor reach a host folder the server keeps
// private, and Stop ends it whatever it does.
func TestUnprivileged(t *testing.T) {
	d := newDriver(t, t.TempDir())
	private := t.TempDir() // 0700: only the server's user may search it
	code := filepath.Join(private, "code")
	if err := os.MkdirAll(code, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(code, "handler"), []byte("the code"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `grep -E '^(Uid|Gid|CapEff|CapPrm|CapBnd|CapAmb):' /proc/self/status | tr '\t' ' '
head -1 /proc/self/uid_map | tr -s ' '
kill -TERM 1 2>/dev/null && echo "kill: ok" || echo "kill: refused"
kill -STOP 1 2>/dev/null && echo "stop: ok" || echo "stop: refused"
(echo "exit 0 oom false" > /proc/1/fd/3) 2>/dev/null && echo "fd: ok" || echo "fd: refused"
cat /proc/1/environ >/dev/null 2>&1 && echo "environ: ok" || echo "environ: refused"
echo "code: $(cat /var/task/handler)"
exec sleep 1000
`
	for _, tc := range []struct {
		name string
		user *sandbox.User
		uid  string
	}{
		{"root", nil, "0"},
		{"sbx", &sandbox.User{UID: 993, GID: 990, Groups: []uint32{990, 7}}, "993"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var out sandboxtest.Buffer
			id := "userns-" + tc.name
			err := d.Start(ctx, sandbox.Spec{
				ID: id, Argv: []string{"/bin/sh", "-c", script}, User: tc.user,
				Env: []string{"PATH=/usr/bin:/bin"}, Dir: "/", MemoryMB: 128,
				Mounts: []sandbox.Mount{{Source: code, Target: "/var/task"}},
				Stdout: &out, Stderr: &out,
			})
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			out.WaitFor(t, "code: the code\n")
			got := out.String()
			for _, want := range []string{
				fmt.Sprintf("Uid: %s %s %s %s", tc.uid, tc.uid, tc.uid, tc.uid),
				"CapEff: 0000000000000000", "CapPrm: 0000000000000000", "CapBnd: 0000000000000000", "CapAmb: 0000000000000000",
				fmt.Sprintf("0 %d 65537", runc.DefaultIDBase),
				"kill: refused", "stop: refused", "fd: refused", "environ: refused",
				"code: the code",
			} {
				if !strings.Contains(got, want) {
					t.Errorf("output lacks %q:\n%s", want, got)
				}
			}
			// Seen from the host, no process of the sandbox has a
			// privileged id.
			pids := hostPIDs(t, d, id)
			if len(pids) < 2 {
				t.Fatalf("processes of the sandbox seen from the host: %v, want the init and the program", pids)
			}
			for _, pid := range pids {
				uid := statusField(t, pid, "Uid:")
				for _, f := range strings.Fields(uid) {
					if f == "0" || len(f) < 10 {
						t.Errorf("pid %d has uid %q on the host, want ids from %d", pid, uid, runc.DefaultIDBase)
					}
				}
			}
			if err := d.Stop(ctx, id, 0); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			if _, err := d.Wait(ctx, id); err != nil {
				t.Fatal(err)
			}
			assertGone(t, d, id)
		})
	}
}

// TestUserOutOfRange: ids above the sandbox's range are refused.
func TestUserOutOfRange(t *testing.T) {
	d := newDriver(t, t.TempDir())
	err := d.Start(context.Background(), sandbox.Spec{
		ID: "big-uid", Argv: []string{"/bin/true"}, Dir: "/", User: &sandbox.User{UID: 65536},
	})
	if err == nil || !strings.Contains(err.Error(), "at most 65535") {
		t.Fatalf("Start with uid 65536: err = %v, want a refusal", err)
	}
}

// hostPIDs are the processes in sandbox id's cgroup.
func hostPIDs(t *testing.T, d *runc.Driver, id string) []int {
	t.Helper()
	var pids []int
	for _, dir := range runc.CgroupDirs(d.CgroupPath(id)) {
		if !strings.Contains(dir, "/pids/") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range strings.Fields(string(b)) {
			var pid int
			fmt.Sscan(f, &pid)
			pids = append(pids, pid)
		}
	}
	return pids
}

func statusField(t *testing.T, pid int, key string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, key); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("pid %d: no %s in its status", pid, key)
	return ""
}

// TestOwnersInUserNamespace: a root file owned on the host by the id
// base plus N belongs to the sandbox's uid N (as the image store shifts
// an image's owners): N reads its 0600 file, another user cannot.
func TestOwnersInUserNamespace(t *testing.T) {
	d := newDriver(t, t.TempDir())
	root := sandboxtest.NewRootFS(t, map[string]string{"/app/secret": "only for app"})
	secret := filepath.Join(root, "app", "secret")
	if err := os.Chmod(secret, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(secret, runc.DefaultIDBase+1000, runc.DefaultIDBase+1000); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		uid  uint32
		want string
	}{{1000, "only for app"}, {1001, "EACCES"}, {0, "EACCES"}} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var out sandboxtest.Buffer
		id := fmt.Sprintf("owner-%d", tc.uid)
		err := d.Start(ctx, sandbox.Spec{
			ID: id, RootFS: root, Argv: []string{sandboxtest.ProbeName, "read:/app/secret"},
			User: &sandbox.User{UID: tc.uid, GID: tc.uid}, Env: []string{"PATH=/bin"}, Dir: "/work", Stdout: &out, MemoryMB: 128,
		})
		if err != nil {
			cancel()
			t.Fatalf("Start as %d: %v", tc.uid, err)
		}
		if e, err := d.Wait(ctx, id); err != nil || e.Code != 0 {
			t.Errorf("uid %d: exit %+v, %v: %s", tc.uid, e, err, out.String())
		}
		cancel()
		if got := strings.TrimSpace(out.String()); got != "read:/app/secret: "+tc.want {
			t.Errorf("uid %d: %q, want %q", tc.uid, got, tc.want)
		}
	}
}
