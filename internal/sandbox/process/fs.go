package process

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// checkFS checks spec's root filesystem and mounts, and returns the path
// of Argv[0] in the root filesystem when there is one.
func (d *Driver) checkFS(spec sandbox.Spec) (string, error) {
	if err := sandbox.CheckNoImage(spec, "process"); err != nil {
		return "", err
	}
	for _, m := range spec.Mounts {
		switch {
		case spec.RootFS != "":
			return "", fmt.Errorf("mount %s at %s: the process driver cannot bind host folders into a root filesystem: %w", m.Source, m.Target, stratus.ErrInvalid)
		case path.Clean(m.Source) != path.Clean(m.Target):
			return "", fmt.Errorf("mount %s at %s: the process driver runs programs in the host's filesystem, so a mount must be at its own path: %w", m.Source, m.Target, stratus.ErrInvalid)
		}
		if _, err := os.Stat(m.Source); err != nil {
			return "", fmt.Errorf("mount %s: %w: %w", m.Source, err, stratus.ErrInvalid)
		}
	}
	if spec.RootFS == "" {
		return "", nil
	}
	if !d.root {
		return "", fmt.Errorf("root filesystem %s: the process driver changes the root (chroot) only when the server runs as root: %w", spec.RootFS, stratus.ErrInvalid)
	}
	if fi, err := os.Stat(spec.RootFS); err != nil || !fi.IsDir() || !filepath.IsAbs(spec.RootFS) {
		return "", fmt.Errorf("root filesystem %q is not a folder's absolute path: %w", spec.RootFS, stratus.ErrInvalid)
	}
	if spec.Dir != "" && !path.IsAbs(spec.Dir) {
		return "", fmt.Errorf("dir %q is not absolute: %w", spec.Dir, stratus.ErrInvalid)
	}
	name := spec.Argv[0]
	if strings.Contains(name, "/") {
		return name, nil // the kernel resolves it in the root, from Dir
	}
	pathEnv := "/usr/local/bin:/usr/bin:/bin"
	for _, kv := range spec.Env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathEnv = v
		}
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if !path.IsAbs(dir) {
			continue
		}
		p := path.Join(dir, name)
		if host, err := inRoot(spec.RootFS, p); err == nil {
			if fi, err := os.Stat(host); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("%q: not found in $PATH (%s) of root filesystem %s: %w", name, pathEnv, spec.RootFS, stratus.ErrInvalid)
}

// inRoot returns the host path of p in the root filesystem root,
// following symlinks as if root were "/".
func inRoot(root, p string) (string, error) {
	rest := strings.Split(p, "/")
	cur := "/"
	for hops := 0; len(rest) > 0; {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, name)
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return "", syscall.ELOOP
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if path.IsAbs(target) {
			cur = "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return filepath.Join(root, cur), nil
}
