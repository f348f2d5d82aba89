package runc

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/rootfs"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// A sandbox's root is a host folder (the host's "/" or Spec.RootFS) bound
// recursively read-only at "/", over the bundle's empty rootfs dir. runc
// makes the mount point of every other mount in the root, which it cannot
// do in a read-only one. When every mount point exists in the folder (the
// host has /proc, /dev, /tmp, ...), that one bind serves. When some are
// missing (/var/task on the host, /proc in a bare image), layoutRoot lays
// out a skeleton of the deepest folder that holds each (its anchor: /var,
// or the image's root): a directory in the bundle with an empty mount
// point for each entry of the anchor (symlinks copied) and for the
// missing paths. The skeleton is bound read-only over the anchor (or is
// the root, which runc makes read-only once the mounts are done), and
// every entry of the anchor is bound read-only into it. The host folder
// itself is never written to.

// checkFS checks spec's root filesystem and mounts: host paths that
// exist, targets that are absolute paths other than "/".
func checkFS(spec sandbox.Spec) error {
	if err := sandbox.CheckNoImage(spec, "runc"); err != nil {
		return err
	}
	if spec.RootFS != "" {
		if !filepath.IsAbs(spec.RootFS) {
			return fmt.Errorf("root filesystem %q is not an absolute path: %w", spec.RootFS, stratus.ErrInvalid)
		}
		if fi, err := os.Stat(spec.RootFS); err != nil || !fi.IsDir() {
			return fmt.Errorf("root filesystem %q is not a folder: %w", spec.RootFS, stratus.ErrInvalid)
		}
	}
	for _, m := range spec.Mounts {
		if !path.IsAbs(m.Target) || path.Clean(m.Target) == "/" {
			return fmt.Errorf("mount target %q: must be an absolute path other than /: %w", m.Target, stratus.ErrInvalid)
		}
		if !filepath.IsAbs(m.Source) {
			return fmt.Errorf("mount source %q is not an absolute path: %w", m.Source, stratus.ErrInvalid)
		}
		if _, err := os.Stat(m.Source); err != nil {
			return fmt.Errorf("mount source %q: %w: %w", m.Source, err, stratus.ErrInvalid)
		}
	}
	return nil
}

// rootOf is the host folder that becomes spec's root.
func rootOf(spec sandbox.Spec) string {
	if spec.RootFS != "" {
		return spec.RootFS
	}
	return "/"
}

// inMounts reports whether dir is the target of one of mounts or lies
// under one.
func inMounts(dir string, mounts []sandbox.Mount) bool {
	for _, m := range mounts {
		t := path.Clean(m.Target)
		if dir == t || strings.HasPrefix(dir, strings.TrimSuffix(t, "/")+"/") {
			return true
		}
	}
	return false
}

// etcFiles are bound read-only into a root filesystem that lacks them (or
// has them empty), so that names resolve: the driver's own, written by
// writeEtc (not the host's). /etc/hosts is not among them: every sandbox
// gets one of its own (see writeHosts).
var etcFiles = []string{"/etc/resolv.conf"}

// writeEtc writes the driver's etcFiles in dir.
func writeEtc(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(rootfs.ResolvConf("/etc/resolv.conf")), 0o644); err != nil {
		return fmt.Errorf("write sandbox resolv.conf: %w", err)
	}
	return nil
}

// hostsFile is the name, in a sandbox's bundle, of the /etc/hosts bound
// into it.
const hostsFile = "hosts"

// defaultHostname is the hostname of a sandbox without Spec.Hostname and
// without an address of its own (rootless: the host's network).
const defaultHostname = "stratus"

// hostnameOf is the hostname of sandbox spec at addr: Spec.Hostname, else
// its address in dotted form (as Lambda's hostnames are their execution
// environment's address: unique among live sandboxes, and resolving to
// that address without /etc/hosts), else defaultHostname when it shares
// the host's network.
func hostnameOf(spec sandbox.Spec, addr netip.Addr, ownNet bool) string {
	switch {
	case spec.Hostname != "":
		return spec.Hostname
	case ownNet && addr.Is4():
		return addr.String()
	}
	return defaultHostname
}

// writeHosts writes a sandbox's /etc/hosts in its bundle: localhost, and
// hostname at addr (its own, or the loopback one it shares with the host)
// unless hostname is that address itself.
func writeHosts(bundle, hostname string, addr netip.Addr) error {
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost\n"
	if a, err := netip.ParseAddr(hostname); err != nil || a != addr {
		hosts += addr.String() + "\t" + hostname + "\n"
	}
	if err := os.WriteFile(filepath.Join(bundle, hostsFile), []byte(hosts), 0o644); err != nil {
		return fmt.Errorf("write sandbox hosts: %w", err)
	}
	return nil
}

// specMounts are the read-only binds of spec.Mounts, of the sandbox's own
// /etc/hosts (from bundle) unless a mount holds it, and, in a root
// filesystem of its own, of the etcFiles it lacks (from etcDir).
func specMounts(spec sandbox.Spec, bundle, etcDir string) []specs.Mount {
	var ms []specs.Mount
	for _, m := range spec.Mounts {
		ms = append(ms, specs.Mount{
			Destination: path.Clean(m.Target), Type: "bind", Source: m.Source,
			Options: []string{"rbind", "rro", "nosuid", "nodev", "rprivate"},
		})
	}
	if !inMounts("/etc/hosts", spec.Mounts) {
		ms = append(ms, specs.Mount{
			Destination: "/etc/hosts", Type: "bind", Source: filepath.Join(bundle, hostsFile),
			Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"},
		})
	}
	if spec.RootFS == "" {
		return ms
	}
	for _, f := range etcFiles {
		if inMounts(f, spec.Mounts) {
			continue
		}
		fi, err := os.Lstat(filepath.Join(spec.RootFS, f))
		if err == nil && (!fi.Mode().IsRegular() || fi.Size() > 0) {
			continue // the image's own (a symlink is resolved in it)
		}
		ms = append(ms, specs.Mount{
			Destination: f, Type: "bind", Source: filepath.Join(etcDir, path.Base(f)),
			Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"},
		})
	}
	return ms
}

// layoutRoot lays out skeletons in bundle for the mount points of s that
// are missing in its root folder, and binds them and their anchors'
// entries in s; it leaves s as it is when none is missing.
func layoutRoot(bundle string, s *specs.Spec) error {
	i := slices.IndexFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/" })
	if i < 0 {
		return nil
	}
	root := s.Mounts[i]
	dests := make(map[string]bool, len(s.Mounts))
	missing := make(map[string][]specs.Mount) // anchor → mounts missing under it
	for j, m := range s.Mounts {
		dest := path.Clean(m.Destination)
		dests[dest] = true
		if j == i || underOther(dest, s.Mounts) {
			continue
		}
		if a, ok := anchorOf(root.Source, dest); ok {
			missing[a] = append(missing[a], m)
		} else if a, ok := wrongMode(root.Source, m); ok {
			missing[a] = append(missing[a], m)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	anchors := make([]string, 0, len(missing))
	for a := range missing {
		anchors = append(anchors, a)
	}
	slices.Sort(anchors) // parents first
	var binds []specs.Mount
	for n, a := range anchors {
		skel := filepath.Join(bundle, "rootfs")
		if a != "/" {
			skel = filepath.Join(bundle, "skeleton", strconv.Itoa(n))
			binds = append(binds, specs.Mount{Destination: a, Type: "bind", Source: skel, Options: root.Options})
		}
		ents, err := skeleton(filepath.Join(root.Source, a), skel)
		if err != nil {
			return fmt.Errorf("lay out root: %w", err)
		}
		for _, e := range ents {
			p := path.Join(a, e)
			if dests[p] || slices.Contains(anchors, p) {
				continue // covered by a mount of its own
			}
			binds = append(binds, specs.Mount{Destination: p, Type: "bind", Source: filepath.Join(root.Source, p), Options: root.Options})
		}
		for _, m := range missing[a] {
			rel := strings.TrimPrefix(path.Clean(m.Destination), a)
			if err := mountPoint(filepath.Join(skel, rel), m); err != nil {
				return fmt.Errorf("lay out root: %w", err)
			}
		}
	}
	if anchors[0] == "/" {
		s.Mounts = slices.Replace(s.Mounts, i, i+1, binds...)
	} else {
		s.Mounts = slices.Insert(s.Mounts, i+1, binds...)
	}
	return nil
}

// skeleton makes dst a directory with the mode of src and an empty mount
// point for each entry of src: a directory, an empty file, or a copy of a
// symlink. It returns the names of the entries to bind (not symlinks).
func skeleton(src, dst string) ([]string, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chmod(dst, fi.Mode().Perm()|fi.Mode()&fs.ModeSticky); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		p := filepath.Join(dst, e.Name())
		switch {
		case e.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(filepath.Join(src, e.Name()))
			if err == nil {
				err = os.Symlink(target, p)
			}
			if err != nil {
				return nil, err
			}
			continue
		case e.IsDir():
			err = os.Mkdir(p, 0o755)
		default:
			err = os.WriteFile(p, nil, 0o644)
		}
		if err != nil {
			return nil, err
		}
		names = append(names, e.Name())
	}
	return names, nil
}

// mountPoint makes p, the missing mount point of m: a directory, or an
// empty file for a bind of a file. A tmpfs's mount point gets the mode of
// its "mode=" option: runc gives a tmpfs the mode of its mount point
// when that exists (and layoutRoot made it), overriding the option.
func mountPoint(p string, m specs.Mount) error {
	if m.Type == "bind" {
		if fi, err := os.Stat(m.Source); err == nil && !fi.IsDir() {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			return os.WriteFile(p, nil, 0o644)
		}
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		return err
	}
	if mode, ok := tmpfsMode(m); ok {
		return os.Chmod(p, mode) // MkdirAll's mode is cut by the umask
	}
	return nil
}

// tmpfsMode is the mode of m's "mode=" option (octal) when m is a tmpfs
// that has one.
func tmpfsMode(m specs.Mount) (fs.FileMode, bool) {
	if m.Type != "tmpfs" {
		return 0, false
	}
	for _, o := range m.Options {
		if v, ok := strings.CutPrefix(o, "mode="); ok {
			n, err := strconv.ParseUint(v, 8, 32)
			if err != nil {
				return 0, false
			}
			mode := fs.FileMode(n).Perm()
			if n&0o1000 != 0 {
				mode |= fs.ModeSticky
			}
			return mode, true
		}
	}
	return 0, false
}

// wrongMode returns the parent folder of m's mount point when m is a
// tmpfs with a mode option whose mount point exists in root as a folder
// of another mode (an image whose /tmp is 0755): runc would give the
// tmpfs that mode, so the mount point is laid out afresh in a skeleton
// of its parent, with the option's mode.
func wrongMode(root string, m specs.Mount) (string, bool) {
	want, ok := tmpfsMode(m)
	if !ok {
		return "", false
	}
	dest := path.Clean(m.Destination)
	fi, err := os.Lstat(filepath.Join(root, dest))
	if err != nil || !fi.IsDir() || fi.Mode()&(fs.ModePerm|fs.ModeSticky) == want {
		return "", false
	}
	return path.Dir(dest), true
}

// underOther reports whether dest lies strictly under the destination of
// another mount than the root's: its mount point is made in that mount
// (a tmpfs /dev, say), not in the root folder.
func underOther(dest string, mounts []specs.Mount) bool {
	for _, m := range mounts {
		if m.Destination != "/" && strings.HasPrefix(dest, strings.TrimSuffix(m.Destination, "/")+"/") {
			return true
		}
	}
	return false
}

// anchorOf returns the deepest directory of root on the way to dest when
// dest does not exist in root. A path through a symlink counts as
// existing: runc resolves it inside the root.
func anchorOf(root, dest string) (string, bool) {
	if dest == "/" {
		return "", false
	}
	dir := "/"
	parts := strings.Split(dest[1:], "/")
	for n, name := range parts {
		p := path.Join(dir, name)
		fi, err := os.Lstat(filepath.Join(root, p))
		if errors.Is(err, fs.ErrNotExist) {
			return dir, true
		}
		if err != nil || n == len(parts)-1 || !fi.IsDir() {
			// There (runc mounts on it, or reports what is wrong), or a
			// symlink that runc resolves in the root.
			return "", false
		}
		dir = p
	}
	return "", false
}

// libDir is where the driver binds the dynamic loader and libraries of
// its own executable into a sandbox with a root filesystem of its own.
const libDir = "/dev/.stratus-lib"

// initLoader says how to run the driver's executable as the init of a
// sandbox whose root is an image's: a dynamically linked executable
// (Go links libc when cgo is on, the default) finds neither its loader
// nor its libc in an arbitrary image, so the host's are bound at libDir
// and the loader runs the init with its library path set there. The
// program the init starts sees neither.
type initLoader struct {
	interp string   // the host's dynamic loader, "" for a static executable
	libs   []string // host paths of the libraries it needs
}

// loaderOf reads exe's dynamic loader and asks it which libraries exe
// needs (as ldd does).
func loaderOf(exe string) (initLoader, error) {
	f, err := elf.Open(exe)
	if err != nil {
		return initLoader{}, fmt.Errorf("read own executable: %w", err)
	}
	defer f.Close()
	var l initLoader
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return initLoader{}, fmt.Errorf("read own executable's loader: %w", err)
			}
			l.interp = string(bytes.TrimRight(b, "\x00"))
		}
	}
	if l.interp == "" {
		return l, nil
	}
	out, err := exec.Command(l.interp, "--list", exe).Output()
	if err != nil {
		return initLoader{}, fmt.Errorf("list own executable's libraries with %s: %w", l.interp, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)"
		_, rest, ok := strings.Cut(sc.Text(), "=> ")
		if !ok {
			continue
		}
		if lib, _, _ := strings.Cut(rest, " ("); filepath.IsAbs(lib) {
			l.libs = append(l.libs, lib)
		}
	}
	return l, nil
}

// apply makes s start its init through the loader, when there is one.
func (l initLoader) apply(s *specs.Spec) {
	if l.interp == "" {
		return
	}
	for _, f := range append([]string{l.interp}, l.libs...) {
		s.Mounts = append(s.Mounts, specs.Mount{
			Destination: path.Join(libDir, filepath.Base(f)), Type: "bind", Source: f,
			Options: []string{"bind", "ro", "nosuid", "nodev"},
		})
	}
	loader := path.Join(libDir, filepath.Base(l.interp))
	s.Process.Args = append([]string{loader, "--library-path", libDir}, s.Process.Args...)
}
