// Package rootfs builds the minimal root filesystems of sandboxes that run
// zip functions: a folder holding only the programs a runtime needs, the
// shared libraries they load (as the host's dynamic loader resolves them),
// CA certificates, /etc files of its own and empty mount points. Nothing
// else of the host is in it.
//
// A root is built once per recipe and reused by every sandbox: Build names
// the folder after a digest of the recipe and of the host files it takes,
// builds it beside under a temporary name and renames it into place, so a
// root is either complete or absent. Files are hard-linked from the host
// where the file systems allow it, else copied. The folder is meant to be
// bound read-only as a sandbox's "/".
package rootfs

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// layout is bumped when what Build writes changes, so that roots built by
// an older server are rebuilt.
const layout = "3"

// Recipe says what goes into a root.
type Recipe struct {
	// Name prefixes the root's folder name ("python3", "provided").
	Name string
	// Files are host files placed at a path in the root. An ELF executable
	// or library brings the libraries it loads. Optional files missing on
	// the host are skipped; others are an error.
	Files []File
	// Trees are host folders copied whole, but for the entries named in
	// Skip; the ELF objects in them bring their libraries.
	Trees []Tree
	// Links are symlinks made in the root: path → target.
	Links map[string]string
}

// File is a host file and where it goes in the root ("" keeps its path).
type File struct {
	Host, Path string
	Optional   bool
}

// Tree is a host folder and where it goes in the root.
type Tree struct {
	Host, Path string
	// Skip names entries (at any depth) left out; a trailing "*" matches
	// a prefix.
	Skip []string
}

// User is the account the root's /etc/passwd and /etc/group describe
// beside root and nobody (Lambda's is sbx_user1051, uid 993, gid 990).
type User struct {
	Name     string
	UID, GID int
}

// Sandbox is the unprivileged user that runs functions, as on Lambda.
var Sandbox = User{Name: "sbx_user1051", UID: 993, GID: 990}

// MountPoints are the empty folders every root has, so that a sandbox
// driver mounts there without laying out anything.
var MountPoints = []string{"/proc", "/dev", "/sys/fs/cgroup", "/tmp", "/var/task", "/var/runtime", "/opt"}

var building sync.Map // folder → *sync.Mutex

// Build returns the folder of r's root under dir, building it first when
// it is missing. Safe for concurrent use, also by several processes.
func Build(dir string, r Recipe) (string, error) {
	key, err := digest(r)
	if err != nil {
		return "", fmt.Errorf("root %s: %w", r.Name, err)
	}
	root := filepath.Join(dir, r.Name+"-"+key)
	mu, _ := building.LoadOrStore(root, new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	if _, err := os.Stat(root); err == nil {
		return root, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("root %s: %w", r.Name, err)
	}
	tmp, err := os.MkdirTemp(dir, ".build-"+r.Name+"-")
	if err != nil {
		return "", fmt.Errorf("root %s: %w", r.Name, err)
	}
	defer os.RemoveAll(tmp) // harmless once renamed
	if err := build(tmp, r); err != nil {
		return "", fmt.Errorf("build root %s: %w", r.Name, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", fmt.Errorf("root %s: %w", r.Name, err)
	}
	if err := os.Rename(tmp, root); err != nil && !errors.Is(err, fs.ErrExist) {
		if _, serr := os.Stat(root); serr != nil {
			return "", fmt.Errorf("root %s: %w", r.Name, err)
		}
	}
	return root, nil
}

// digest names a root after its recipe and the size and time of each host
// file and folder it takes.
func digest(r Recipe) (string, error) {
	h := sha256.New()
	enc := json.NewEncoder(h)
	_ = enc.Encode([]any{layout, r})
	stamp := func(p string, optional bool) error {
		fi, err := os.Stat(p)
		if err != nil {
			if optional && errors.Is(err, fs.ErrNotExist) {
				fmt.Fprintf(h, "%s missing\n", p)
				return nil
			}
			return err
		}
		fmt.Fprintf(h, "%s %d %d\n", p, fi.Size(), fi.ModTime().UnixNano())
		return nil
	}
	for _, f := range r.Files {
		if err := stamp(f.Host, f.Optional); err != nil {
			return "", err
		}
	}
	for _, t := range r.Trees {
		if err := stamp(t.Host, false); err != nil {
			return "", err
		}
	}
	for _, f := range []string{"/etc/resolv.conf", caBundle} {
		_ = stamp(f, true)
	}
	return hex.EncodeToString(h.Sum(nil)[:6]), nil
}

// caBundle is where Debian keeps its CA certificates; the root has them
// there and at Amazon Linux's path.
const caBundle = "/etc/ssl/certs/ca-certificates.crt"

// usrMerged are the top folders that are symlinks into /usr in the root,
// as on current distributions: a file placed at /bin/sh lands in /usr/bin.
var usrMerged = []string{"bin", "lib", "lib64", "sbin"}

func build(root string, r Recipe) error {
	if err := os.MkdirAll(filepath.Join(root, "usr"), 0o755); err != nil {
		return err
	}
	for _, d := range usrMerged {
		if err := os.MkdirAll(filepath.Join(root, "usr", d), 0o755); err != nil {
			return err
		}
		if err := os.Symlink("usr/"+d, filepath.Join(root, d)); err != nil {
			return err
		}
	}
	for _, d := range append(slices.Clone(MountPoints), "/etc/ssl/certs", "/etc/pki/tls/certs", "/var/lang") {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o777|os.ModeSticky); err != nil {
		return err
	}
	libs := newLibSet()
	for _, f := range r.Files {
		if _, err := os.Stat(f.Host); err != nil {
			if f.Optional && errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return err
		}
		dst := f.Path
		if dst == "" {
			dst = f.Host
		}
		if err := place(root, f.Host, dst); err != nil {
			return err
		}
		if err := libs.add(f.Host); err != nil {
			return err
		}
	}
	for _, t := range r.Trees {
		if err := copyTree(root, t, libs); err != nil {
			return err
		}
	}
	for _, lib := range libs.sorted() {
		if err := place(root, lib, libPath(lib)); err != nil {
			return err
		}
	}
	for p, target := range r.Links {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(target, full); err != nil {
			return err
		}
	}
	return writeEtc(root)
}

// place puts host file src at dst in root: a hard link when possible,
// else a copy with src's mode.
func place(root, src, dst string) error {
	full := filepath.Join(root, dst)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(src)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(full); err == nil {
		return nil // placed already (a library named twice)
	}
	if os.Link(real, full) == nil {
		return nil
	}
	return copyFile(real, full)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// copyTree places the files of t under root, symlinks as they are.
func copyTree(root string, t Tree, libs *libSet) error {
	skip := func(name string) bool {
		for _, s := range t.Skip {
			if p, ok := strings.CutSuffix(s, "*"); ok && strings.HasPrefix(name, p) || name == s {
				return true
			}
		}
		return false
	}
	return filepath.WalkDir(t.Host, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != t.Host && skip(d.Name()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(t.Host, p)
		if err != nil {
			return err
		}
		dst := filepath.Join(root, t.Path, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, dst)
		case d.Type().IsRegular():
			if err := place(root, p, filepath.Join(t.Path, rel)); err != nil {
				return err
			}
			if strings.Contains(d.Name(), ".so") {
				return libs.add(p)
			}
		}
		return nil
	})
}

// libSet collects the shared libraries that ELF objects load, as the host's
// dynamic loader resolves them ("ld.so --list", as ldd does).
type libSet struct {
	interp string
	seen   map[string]bool
}

func newLibSet() *libSet { return &libSet{seen: map[string]bool{}} }

func (s *libSet) sorted() []string {
	out := make([]string, 0, len(s.seen))
	for l := range s.seen {
		out = append(out, l)
	}
	slices.Sort(out)
	return out
}

// add records the libraries of the ELF object at p, and its loader; a file
// that is not ELF (a script) adds nothing.
func (s *libSet) add(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return nil // not an ELF object
	}
	interp := ""
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			b := make([]byte, prog.Filesz)
			if _, err := prog.ReadAt(b, 0); err == nil {
				interp = string(bytes.TrimRight(b, "\x00"))
			}
		}
	}
	dynamic := f.Section(".dynamic") != nil
	f.Close()
	if interp != "" {
		s.interp = interp
		s.seen[interp] = true
	}
	if !dynamic {
		return nil // static
	}
	loader := interp
	if loader == "" {
		loader = s.interp
	}
	if loader == "" {
		loader = defaultLoader
	}
	out, err := exec.Command(loader, "--list", p).Output()
	if err != nil {
		// A library the loader cannot load on its own (a module that
		// needs symbols of its host program): its other libraries are
		// the program's.
		return nil
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", or the
		// loader itself: "/lib64/ld-linux-x86-64.so.2 (0x...)".
		line := strings.TrimSpace(sc.Text())
		if _, rest, ok := strings.Cut(line, "=> "); ok {
			line = rest
		}
		lib, _, _ := strings.Cut(line, " (")
		if path.IsAbs(lib) {
			s.seen[lib] = true
		}
	}
	return nil
}

// libDirs are the folders the dynamic loader searches on its own.
var libDirs = []string{"/lib", "/usr/lib", "/lib64", "/usr/lib64", "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"}

// libPath is where library lib goes in a root: its own path in a folder
// the loader searches on its own, else such a folder (a library found
// through an executable's RUNPATH, such as a Python built under /root).
func libPath(lib string) string {
	if slices.Contains(libDirs, path.Dir(lib)) {
		return lib
	}
	return path.Join(multiarchDir, path.Base(lib))
}

// multiarchDir is Debian's folder of x86-64 libraries, which its loader
// searches without a cache.
const multiarchDir = "/usr/lib/x86_64-linux-gnu"

// defaultLoader is the x86-64 dynamic loader, used for libraries found
// before any executable named its own.
const defaultLoader = "/lib64/ld-linux-x86-64.so.2"

// writeEtc writes the root's own /etc files: accounts, names, resolver,
// and the host's CA certificates.
func writeEtc(root string) error {
	u := Sandbox
	files := map[string]string{
		"passwd": fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\n%s:x:%d:%d::/tmp:/sbin/nologin\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n", u.Name, u.UID, u.GID),
		"group":  fmt.Sprintf("root:x:0:\n%s:x:%d:\nnobody:x:65534:\n", u.Name, u.GID),
		"hosts":  "127.0.0.1\tlocalhost\n::1\tlocalhost\n",
		"nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n" +
			"networks: files\nprotocols: files\nservices: files\n",
		"resolv.conf": resolvConf(),
		"os-release":  "NAME=\"Stratus\"\nID=stratus\nPRETTY_NAME=\"Stratus function root\"\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, "etc", name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	if _, err := os.Stat(caBundle); err == nil {
		if err := copyFile(caBundle, filepath.Join(root, caBundle)); err != nil {
			return err
		}
		if err := os.Symlink("../../../ssl/certs/ca-certificates.crt", filepath.Join(root, "etc/pki/tls/certs/ca-bundle.crt")); err != nil {
			return err
		}
	}
	return nil
}

// resolvConf keeps the host resolver's nameservers that a sandbox could
// reach (not loopback ones: a sandbox has a loopback of its own).
func resolvConf() string {
	return ResolvConf("/etc/resolv.conf")
}

// ResolvConf is the resolver configuration of a sandbox, made from the
// host's file at p: its nameserver, search and options lines, loopback
// nameservers left out.
func ResolvConf(p string) string {
	b, _ := os.ReadFile(p)
	var out strings.Builder
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			if strings.HasPrefix(f[1], "127.") || f[1] == "::1" {
				continue
			}
		case "search", "options":
		default:
			continue
		}
		out.WriteString(strings.Join(f, " ") + "\n")
	}
	return out.String()
}
