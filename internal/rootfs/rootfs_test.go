package rootfs_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stratus-run/stratus/internal/rootfs"
)

func TestBuild(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	tree := t.TempDir()
	for name, content := range map[string]string{"keep/a.txt": "a", "skipme/b.txt": "b", "keep/test/c.txt": "c"} {
		p := filepath.Join(tree, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := rootfs.Recipe{
		Name: "t",
		Files: []rootfs.File{
			{Host: sh, Path: "/usr/bin/sh"},
			{Host: "/no/such/tool", Optional: true},
		},
		Trees: []rootfs.Tree{{Host: tree, Path: "/var/lang/lib", Skip: []string{"skipme", "tes*"}}},
		Links: map[string]string{"/usr/bin/dash-link": "sh"},
	}
	dir := t.TempDir()
	root, err := rootfs.Build(dir, r)
	if err != nil {
		t.Fatal(err)
	}
	again, err := rootfs.Build(dir, r)
	if err != nil || again != root {
		t.Fatalf("second Build = %q, %v; want the same root %q", again, err, root)
	}
	exists := func(p string) bool { _, err := os.Lstat(filepath.Join(root, p)); return err == nil }
	for _, p := range []string{"/bin/sh", "/usr/bin/sh", "/var/lang/lib/keep/a.txt", "/usr/bin/dash-link", "/etc/passwd",
		"/etc/group", "/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf", "/proc", "/dev", "/tmp", "/var/task", "/var/runtime", "/sys/fs/cgroup"} {
		if !exists(p) {
			t.Errorf("%s missing from the root", p)
		}
	}
	for _, p := range []string{"/var/lang/lib/skipme", "/var/lang/lib/keep/test", "/no/such/tool", "/root", "/home", "/run", "/etc/shadow"} {
		if exists(p) {
			t.Errorf("%s is in the root", p)
		}
	}
	passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if !strings.Contains(string(passwd), "sbx_user1051:x:993:990:") {
		t.Errorf("/etc/passwd = %q, want Lambda's sandbox user", passwd)
	}
	if fi, err := os.Stat(filepath.Join(root, "tmp")); err != nil || fi.Mode().Perm() != 0o777 || fi.Mode()&os.ModeSticky == 0 {
		t.Errorf("/tmp mode = %v, %v; want 1777", fi.Mode(), err)
	}
	// The shell runs in the root with nothing but what Build placed: its
	// loader and libraries came along.
	if os.Geteuid() == 0 {
		out, err := exec.Command("chroot", root, "/bin/sh", "-c", "echo in root").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "in root" {
			t.Errorf("sh in the root: %q, %v", out, err)
		}
	}
	// Nothing half-built is left beside it.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("the roots dir holds %d entries, want 1", len(ents))
	}
}

func TestBuildMissingFile(t *testing.T) {
	dir := t.TempDir()
	_, err := rootfs.Build(dir, rootfs.Recipe{Name: "bad", Files: []rootfs.File{{Host: "/no/such/interpreter"}}})
	if err == nil {
		t.Fatal("Build with a missing file: no error")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("a failed Build left %d entries", len(ents))
	}
}

func TestResolvConf(t *testing.T) {
	p := filepath.Join(t.TempDir(), "resolv.conf")
	host := "# comment\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch example.org\noptions ndots:2\nsortlist 1.2.3.4\n"
	if err := os.WriteFile(p, []byte(host), 0o644); err != nil {
		t.Fatal(err)
	}
	want := "nameserver 10.0.0.2\nsearch example.org\noptions ndots:2\n"
	if got := rootfs.ResolvConf(p); got != want {
		t.Errorf("ResolvConf = %q, want %q", got, want)
	}
}
