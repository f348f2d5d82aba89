package sandboxtest

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// ProbeName is the program name under which the test binary, copied into
// a root filesystem, runs as a probe instead of as tests (see Probe).
const ProbeName = "sandboxtest-probe"

func init() {
	if len(os.Args) > 0 && filepath.Base(os.Args[0]) == ProbeName {
		os.Exit(Probe(os.Stdout, os.Args[1:]))
	}
}

// Probe looks at the filesystem it runs in and prints one "what: result"
// line per argument:
//
//	pwd        the working directory
//	read:P     the content of file P (newlines as \n), or the errno name
//	write:P    "ok" if P could be created and written, else the errno name
//	exists:P   "yes" or "no"
//	stat:P     P's type and permission bits in octal, sticky bit included
//	           ("dir 1777"), or the errno name
//	ids        the process's uid and gid, "uid:gid"
//	hostname   the hostname (uname's nodename)
//	serve:N    listen on TCP port N of every address ("ok" or the errno
//	           name), then answer each connection with "pong" for ever
//	           (so it comes last)
//
// It needs nothing of the filesystem: the suite runs it, a copy of the
// test binary, as the only program of a root filesystem.
func Probe(w io.Writer, args []string) int {
	errName := func(err error) string {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return unix.ErrnoName(errno)
		}
		return err.Error()
	}
	for _, a := range args {
		op, p, _ := strings.Cut(a, ":")
		var res string
		switch op {
		case "pwd":
			wd, err := os.Getwd()
			res = wd
			if err != nil {
				res = errName(err)
			}
		case "read":
			b, err := os.ReadFile(p)
			res = strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", `\n`)
			if err != nil {
				res = errName(err)
			}
		case "write":
			res = "ok"
			if err := os.WriteFile(p, []byte("probe\n"), 0o644); err != nil {
				res = errName(err)
			}
		case "exists":
			res = "yes"
			if _, err := os.Lstat(p); err != nil {
				res = "no"
			}
		case "stat":
			fi, err := os.Lstat(p)
			if err != nil {
				res = errName(err)
				break
			}
			kind := "file"
			if fi.IsDir() {
				kind = "dir"
			}
			perm := uint32(fi.Mode().Perm())
			if fi.Mode()&fs.ModeSticky != 0 {
				perm |= 0o1000
			}
			res = fmt.Sprintf("%s %o", kind, perm)
		case "ids":
			res = fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid())
		case "hostname":
			h, err := os.Hostname()
			res = h
			if err != nil {
				res = errName(err)
			}
		case "serve":
			l, err := net.Listen("tcp", ":"+p)
			if err != nil {
				fmt.Fprintf(w, "%s: %s\n", a, errName(err))
				return 1
			}
			fmt.Fprintf(w, "%s: ok\n", a)
			for {
				c, err := l.Accept()
				if err != nil {
					return 1
				}
				_, _ = io.WriteString(c, "pong\n")
				c.Close()
			}
		default:
			res = "unknown probe"
		}
		fmt.Fprintf(w, "%s: %s\n", a, res)
	}
	return 0
}

// probeResults parses Probe's output.
func probeResults(out string) map[string]string {
	got := make(map[string]string)
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		// Results may hold ": "; the probe's arguments in the suite do not.
		if k, v, ok := strings.Cut(sc.Text(), ": "); ok {
			got[k] = v
		}
	}
	return got
}

// NewRootFS makes a minimal root filesystem in a new temporary folder:
// the test binary at /bin/sandboxtest-probe (see Probe) with the dynamic
// loader and libraries it needs at their host paths, an empty /work and
// files (path in the root → content).
func NewRootFS(t testing.TB, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	CopyFile(t, exe, filepath.Join(root, "bin", ProbeName), 0o755)
	for _, lib := range sharedLibs(t, exe) {
		CopyFile(t, lib, filepath.Join(root, lib), 0o755)
	}
	if err := os.MkdirAll(filepath.Join(root, "work"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// SharedLibs returns the dynamic loader of exe and the libraries it
// loads, as host paths (symlinks not followed); none for a static
// executable. An image that runs a copy of the test binary (the network
// helper) needs them at those paths.
func SharedLibs(t testing.TB, exe string) []string {
	t.Helper()
	return sharedLibs(t, exe)
}

// sharedLibs is SharedLibs.
func sharedLibs(t testing.TB, exe string) []string {
	t.Helper()
	f, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var interp string
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				t.Fatal(err)
			}
			interp = string(bytes.TrimRight(b, "\x00"))
		}
	}
	if interp == "" {
		return nil
	}
	out, err := exec.Command(interp, "--list", exe).Output()
	if err != nil {
		t.Fatalf("%s --list %s: %v", interp, exe, err)
	}
	libs := []string{interp}
	for line := range strings.Lines(string(out)) {
		if _, rest, ok := strings.Cut(line, "=> "); ok {
			if lib, _, _ := strings.Cut(rest, " ("); filepath.IsAbs(lib) {
				libs = append(libs, lib)
			}
		}
	}
	return libs
}

// CopyFile places src (symlinks followed) at dst, its folder made: a hard
// link when it can, else a copy with mode.
func CopyFile(t testing.TB, src, dst string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	real, err := filepath.EvalSymlinks(src)
	if err != nil {
		t.Fatal(err)
	}
	if os.Link(real, dst) == nil {
		return
	}
	b, err := os.ReadFile(real)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}

// tree lists every path under root with its type, to see that a sandbox
// left a folder as it found it.
func tree(t testing.TB, root string) []string {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		paths = append(paths, rel+" "+d.Type().String())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return paths
}

// testRootFS runs the probe as the only program of a root filesystem:
// Argv[0] is found on the sandbox's PATH in that root, Dir is a path in
// it, and nothing of the host is seen. Where the driver binds read-only
// (Capabilities.Mounts), the root is read-only and left as it was; the
// process driver's chroot runs the program with the server's user, which
// may write to it.
func testRootFS(t *testing.T, h *harness) {
	caps := h.d.Capabilities()
	if !caps.RootFS {
		t.Skipf("the %s driver has no RootFS capability", h.d.Name())
	}
	hostOnly := filepath.Join(t.TempDir(), "host-only")
	if err := os.WriteFile(hostOnly, []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := NewRootFS(t, map[string]string{"/etc/sandboxtest": h.marker})
	before := tree(t, root)
	probes := []string{"pwd", "read:/etc/sandboxtest", "exists:" + hostOnly, "exists:/bin/sh", "write:/tmp/probe"}
	if caps.Mounts {
		probes = append(probes, "write:/work/probe", "write:/probe")
	}
	spec := h.spec("rootfs", "")
	spec.RootFS = root
	spec.Argv = append([]string{ProbeName}, probes...)
	spec.Env = []string{"PATH=/usr/bin:/bin", h.marker}
	spec.Dir = "/work"
	var stdout, stderr Buffer
	spec.Stdout, spec.Stderr = &stdout, &stderr
	h.start(h.d, spec)
	if e := h.wait(h.d, "rootfs"); e.Code != 0 {
		t.Fatalf("Exit = %+v, stdout %q, stderr %q", e, stdout.String(), stderr.String())
	}
	got := probeResults(stdout.String())
	want := map[string]string{
		"pwd":                   "/work",
		"read:/etc/sandboxtest": h.marker,
		"exists:" + hostOnly:    "no",
		"exists:/bin/sh":        "no",
	}
	if caps.Mounts {
		want["write:/work/probe"] = "EROFS"
		want["write:/probe"] = "EROFS"
		if after := tree(t, root); !slices.Equal(before, after) {
			t.Errorf("the root filesystem changed:\nbefore %q\nafter  %q", before, after)
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("probe %s = %q, want %q (stderr %q)", k, got[k], v, stderr.String())
		}
	}
	// A write to /tmp may or may not succeed (the driver may give /tmp
	// a tmpfs, or the root may have no /tmp); it must not fail the probe.
	if _, ok := got["write:/tmp/probe"]; !ok {
		t.Errorf("probe output %q has no result for /tmp", stdout.String())
	}

	// A root filesystem that is not a folder is refused.
	spec.ID, spec.RootFS = "rootfs-missing", filepath.Join(root, "missing")
	if err := h.d.Start(h.ctx, spec); !errors.Is(err, stratus.ErrInvalid) {
		_ = h.d.Stop(h.ctx, spec.ID, 0)
		t.Errorf("Start with a missing root filesystem: err = %v, want ErrInvalid", err)
	}
}

// testMounts binds a folder and a file read-only at paths that do not
// exist on the host, one the working directory: they are readable, not
// writable, and the host's root is left without them. With FolderMounts,
// only the folder, and a mount of the file is refused.
func testMounts(t *testing.T, h *harness) {
	if !h.d.Capabilities().Mounts {
		t.Skipf("the %s driver has no Mounts capability", h.d.Name())
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "code"), []byte("code of "+h.marker), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("file of "+h.marker), 0o644); err != nil {
		t.Fatal(err)
	}
	dirTarget := "/var/sandboxtest-" + randomHex(4)
	fileTarget := "/etc/sandboxtest-" + randomHex(4)
	if h.opts.folderMounts {
		// A driver that binds folders only refuses a file at once.
		spec := h.spec("mounts-file", "exit 0")
		spec.Mounts = append(spec.Mounts, sandbox.Mount{Source: file, Target: fileTarget})
		if err := h.d.Start(h.ctx, spec); !errors.Is(err, stratus.ErrInvalid) {
			_ = h.d.Stop(h.ctx, spec.ID, 0)
			t.Errorf("Start with a mount of a file, by a driver that binds folders only: err = %v, want ErrInvalid", err)
		}
	}
	script := `cat code; echo
cat ` + fileTarget + `; echo
pwd
if echo x > new 2>/dev/null; then echo "dir writable"; fi
if echo x > ` + fileTarget + ` 2>/dev/null; then echo "file writable"; fi
echo tmp > /tmp/f && cat /tmp/f`
	mounts := []sandbox.Mount{{Source: src, Target: dirTarget}, {Source: file, Target: fileTarget}}
	want := "code of " + h.marker + "\nfile of " + h.marker + "\n" + dirTarget + "\ntmp\n"
	if h.opts.folderMounts {
		script = strings.Replace(script, "cat "+fileTarget+"; echo\n", "", 1)
		mounts = mounts[:1]
		want = "code of " + h.marker + "\n" + dirTarget + "\ntmp\n"
	}
	spec := h.spec("mounts", script)
	spec.Mounts = append(spec.Mounts, mounts...)
	spec.Dir = dirTarget
	var stdout, stderr Buffer
	spec.Stdout, spec.Stderr = &stdout, &stderr
	h.start(h.d, spec)
	if e := h.wait(h.d, "mounts"); e.Code != 0 {
		t.Fatalf("Exit = %+v, stdout %q, stderr %q", e, stdout.String(), stderr.String())
	}
	if got := stdout.String(); got != want {
		t.Errorf("output %q, want %q (stderr %q)", got, want, stderr.String())
	}
	for _, p := range []string{dirTarget, fileTarget, filepath.Join(src, "new")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s exists on the host after the sandbox ran", p)
			_ = os.Remove(p)
		}
	}
	if b, _ := os.ReadFile(file); string(b) != "file of "+h.marker {
		t.Errorf("the mounted file changed: %q", b)
	}
}

// testMountsSamePath binds a folder at its own path, which every driver
// accepts (the process driver checks that it exists); a mount of a
// missing source is refused, and so is one at another path by a driver
// without Capabilities.Mounts.
func testMountsSamePath(t *testing.T, h *harness) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("same path"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := h.spec("same-path", `cat `+filepath.Join(src, "f"))
	spec.Mounts = append(spec.Mounts, sandbox.Mount{Source: src, Target: src})
	var stdout, stderr Buffer
	spec.Stdout, spec.Stderr = &stdout, &stderr
	h.start(h.d, spec)
	if e := h.wait(h.d, "same-path"); e.Code != 0 || stdout.String() != "same path" {
		t.Errorf("Exit = %+v, stdout %q, stderr %q; want the file's content", e, stdout.String(), stderr.String())
	}

	missing := filepath.Join(src, "missing")
	spec = h.spec("missing-source", "exit 0")
	spec.Mounts = append(spec.Mounts, sandbox.Mount{Source: missing, Target: missing})
	if err := h.d.Start(h.ctx, spec); !errors.Is(err, stratus.ErrInvalid) {
		_ = h.d.Stop(h.ctx, spec.ID, 0)
		t.Errorf("Start with a missing mount source: err = %v, want ErrInvalid", err)
	}
	if !h.d.Capabilities().Mounts {
		spec = h.spec("other-path", "exit 0")
		spec.Mounts = append(spec.Mounts, sandbox.Mount{Source: src, Target: "/var/task"})
		if err := h.d.Start(h.ctx, spec); !errors.Is(err, stratus.ErrInvalid) {
			_ = h.d.Stop(h.ctx, spec.ID, 0)
			t.Errorf("Start with a mount at another path, without the Mounts capability: err = %v, want ErrInvalid", err)
		}
	}
}

// testImageNeedsImageRef: a driver without Capabilities.ImageRef refuses a
// spec with an Image, at Prepare and at Start, and leaves nothing behind.
// (Drivers with it run images their own way; their own tests show it.)
func testImageNeedsImageRef(t *testing.T, h *harness) {
	if h.d.Capabilities().ImageRef {
		return
	}
	spec := h.spec("image-ref", "exit 0")
	spec.Image = "registry.example/fn:1"
	if err := h.d.Prepare(h.ctx, spec); !errors.Is(err, stratus.ErrInvalid) {
		_ = h.d.Stop(h.ctx, spec.ID, 0)
		t.Errorf("Prepare with an image, without the ImageRef capability: err = %v, want ErrInvalid", err)
	}
	if err := h.d.Start(h.ctx, spec); !errors.Is(err, stratus.ErrInvalid) {
		_ = h.d.Stop(h.ctx, spec.ID, 0)
		t.Errorf("Start with an image, without the ImageRef capability: err = %v, want ErrInvalid", err)
	}
}
