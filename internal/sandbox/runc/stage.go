package runc

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stratus-run/stratus/internal/sandbox"
	"golang.org/x/sys/unix"
)

// With a user namespace, runc sets up a container's mounts as the
// sandbox's root, an unprivileged host uid that cannot search the server's
// folders (the data dir is 0700): a bind mount's source, and the bundle,
// must be reachable by anyone. So bundles live under /run/stratus (0711
// folders: searchable, not listable), and a bind source that is not
// reachable is staged first: bound read-only, by this process, on a mount
// point in the bundle, which runc then binds from. Once `runc run` has
// returned (the container's mounts are made), the staged mounts are
// detached; the container keeps its own. A bundle is removed only once
// nothing is mounted under it, so that a removal never reaches into a
// source.

// bundlesDir is where the bundles of the driver with stateDir live.
func bundlesDir(stateDir string) string {
	sum := sha256.Sum256([]byte(stateDir))
	base := "/run/stratus"
	if fi, err := os.Stat("/run"); err != nil || !fi.IsDir() {
		base = filepath.Join(os.TempDir(), "stratus-run")
	}
	return filepath.Join(base, hex.EncodeToString(sum[:6]), "bundles")
}

// mkdirReachable makes each of dirs, parents first, with mode 0711.
func mkdirReachable(dirs ...string) error {
	for _, d := range dirs {
		if err := os.Mkdir(d, 0o711); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if err := os.Chmod(d, 0o711); err != nil {
			return err
		}
	}
	return nil
}

// reachable reports whether anyone may search every folder on the way to
// p (p itself needs no permission to be bound).
func reachable(p string) bool {
	for d := filepath.Dir(filepath.Clean(p)); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		if d == "/" {
			return true
		}
	}
}

// stage binds the sources of s's bind mounts that are not reachable at
// mount points under bundle/mnt, read-only, and points the mounts there.
func stage(bundle string, s *specs.Spec) error {
	mnt := filepath.Join(bundle, "mnt")
	n := 0
	for i := range s.Mounts {
		m := &s.Mounts[i]
		if m.Type != "bind" || reachable(m.Source) {
			continue
		}
		if n == 0 {
			if err := os.Mkdir(mnt, 0o711); err != nil {
				return fmt.Errorf("stage mounts: %w", err)
			}
		}
		fi, err := os.Stat(m.Source)
		if err != nil {
			return fmt.Errorf("stage mount %s: %w", m.Source, err)
		}
		target := filepath.Join(mnt, strconv.Itoa(n))
		n++
		if fi.IsDir() {
			err = os.Mkdir(target, 0o755)
		} else {
			err = os.WriteFile(target, nil, 0o644)
		}
		if err != nil {
			return fmt.Errorf("stage mount %s: %w", m.Source, err)
		}
		if err := unix.Mount(m.Source, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("stage mount %s: %w", m.Source, err)
		}
		if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
			_ = unix.Unmount(target, unix.MNT_DETACH)
			return fmt.Errorf("stage mount %s read-only: %w", m.Source, err)
		}
		m.Source = target
	}
	return nil
}

// unstage detaches every mount under bundle.
func unstage(bundle string) error {
	points, err := mountsUnder(bundle)
	if err != nil {
		return err
	}
	var errs []error
	for i := len(points) - 1; i >= 0; i-- { // children first
		if err := unix.Unmount(points[i], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("detach %s: %w", points[i], err))
		}
	}
	return errors.Join(errs...)
}

// removeBundle detaches what is mounted under bundle, then removes it; it
// leaves the bundle in place when a mount stays.
func removeBundle(bundle string) error {
	if _, err := os.Lstat(bundle); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := unstage(bundle); err != nil {
		return err
	}
	if left, err := mountsUnder(bundle); err != nil || len(left) > 0 {
		return fmt.Errorf("remove bundle %s: mounts left under it: %v %w", bundle, left, err)
	}
	return os.RemoveAll(bundle)
}

// mountsUnder lists the mount points at or under dir, in mount order.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dir = filepath.Clean(dir)
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := sandbox.UnescapeMountinfo(fields[4])
		if p == dir || strings.HasPrefix(p, dir+"/") {
			out = append(out, p)
		}
	}
	return out, sc.Err()
}
