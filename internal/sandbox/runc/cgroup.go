package runc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// EndInit implements sandbox.Driver: it writes the sandbox's own CPU
// quota into its cgroup (cpu.cfs_quota_us of the cpu controller on cgroup
// v1, cpu.max on v2), in place of the larger one its init had. Rootless
// sandboxes have no cgroup: it does nothing.
func (d *Driver) EndInit(ctx context.Context, id string) error {
	d.mu.Lock()
	b, ok := d.boxes[id]
	if !ok || !b.inInit || isDone(b) {
		d.mu.Unlock()
		return nil
	}
	b.inInit = false
	d.mu.Unlock()
	if err := setCPUQuota(b.cgroup, b.quota); err != nil {
		if isDone(b) || len(CgroupDirs(b.cgroup)) == 0 {
			return nil // it ended meanwhile
		}
		d.mu.Lock()
		b.inInit = true // so that a retry writes it
		d.mu.Unlock()
		return fmt.Errorf("sandbox %q end init: %w", id, err)
	}
	return nil
}

// setCPUQuota sets the CPU quota of cgroup path cg to quota µs per
// cpuPeriod: cpu.cfs_quota_us in the cgroup v1 cpu hierarchy, else
// cpu.max in the v2 one.
func setCPUQuota(cg string, quota int64) error {
	q := strconv.FormatInt(quota, 10)
	err := writeCgroupFile(filepath.Join("/sys/fs/cgroup/cpu", cg, "cpu.cfs_quota_us"), q)
	if errors.Is(err, fs.ErrNotExist) {
		err = writeCgroupFile(filepath.Join("/sys/fs/cgroup", cg, "cpu.max"), q+" "+strconv.Itoa(cpuPeriod))
	}
	return err
}

// writeCgroupFile writes v to an existing cgroup file (never creating
// one).
func writeCgroupFile(path, v string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(v); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// Stats implements sandbox.Driver. MaxRSSBytes is the peak memory use of
// the container's cgroup (memory.max_usage_in_bytes on cgroup v1,
// memory.peak on v2), which counts page cache as well as resident memory.
// CPUNanos is as CPUNanos reports it (0 if it cannot be read).
func (d *Driver) Stats(ctx context.Context, id string) (sandbox.Stats, error) {
	d.mu.Lock()
	b, ok := d.boxes[id]
	d.mu.Unlock()
	if !ok || isDone(b) {
		return sandbox.Stats{}, fmt.Errorf("sandbox %q: %w", id, stratus.ErrNotFound)
	}
	if d.rootless {
		return rootlessStats(id, b)
	}
	for _, f := range []string{
		filepath.Join("/sys/fs/cgroup/memory", b.cgroup, "memory.max_usage_in_bytes"),
		filepath.Join("/sys/fs/cgroup", b.cgroup, "memory.peak"),
	} {
		if v, err := os.ReadFile(f); err == nil {
			n, err := strconv.ParseInt(strings.TrimSpace(string(v)), 10, 64)
			if err == nil {
				st := sandbox.Stats{MaxRSSBytes: n}
				st.CPUNanos, _ = d.CPUNanos(ctx, id)
				return st, nil
			}
		}
	}
	return sandbox.Stats{}, fmt.Errorf("sandbox %q stats: no memory figures in its cgroup", id)
}

// CPUNanos returns the CPU time (user and system) of everything sandbox id
// has run so far, ended processes included, in nanoseconds; an unknown or
// ended sandbox is ErrNotFound. It reads the container's cgroup: v1's
// cpuacct.usage (nanoseconds), else v2's cpu.stat usage_usec (to the
// microsecond). The file is opened at the first call and kept open until
// the sandbox ends, so a call is one pread into a buffer on the stack,
// without allocating. Rootless sandboxes have no cgroup: see
// rootlessCPUNanos.
func (d *Driver) CPUNanos(ctx context.Context, id string) (int64, error) {
	d.mu.Lock()
	b, ok := d.boxes[id]
	if !ok || isDone(b) || b.cpuClosed {
		d.mu.Unlock()
		return 0, fmt.Errorf("sandbox %q: %w", id, stratus.ErrNotFound)
	}
	if d.rootless {
		pid := b.pid
		d.mu.Unlock()
		return rootlessCPUNanos(id, pid)
	}
	f, v2 := b.cpu, b.cpuV2
	if f == nil {
		var err error
		f, v2, err = openCPUFile(b.cgroup)
		if err != nil {
			d.mu.Unlock()
			return 0, fmt.Errorf("sandbox %q cpu time: %w", id, err)
		}
		b.cpu, b.cpuV2 = f, v2
	}
	d.mu.Unlock()
	var buf [512]byte // cpu.stat is about 150 bytes, more with pressure figures
	n, err := f.ReadAt(buf[:], 0)
	if n == 0 && err != nil {
		if errors.Is(err, fs.ErrClosed) || isDone(b) {
			return 0, fmt.Errorf("sandbox %q: %w", id, stratus.ErrNotFound) // it ended meanwhile
		}
		return 0, fmt.Errorf("sandbox %q cpu time: %w", id, err)
	}
	ns, ok := sandbox.ParseCPUNanos(buf[:n], v2)
	if !ok {
		return 0, fmt.Errorf("sandbox %q cpu time: unexpected %s", id, f.Name())
	}
	return ns, nil
}

// openCPUFile opens the CPU time file of cgroup path cg: cpuacct.usage in
// the v1 cpuacct hierarchy (mounted alone or with cpu), else cpu.stat in
// the v2 one.
func openCPUFile(cg string) (f *os.File, v2 bool, err error) {
	for _, h := range []string{"cpuacct", "cpu,cpuacct", "cpu"} {
		f, err := os.Open(filepath.Join("/sys/fs/cgroup", h, cg, "cpuacct.usage"))
		if err == nil {
			return f, false, nil
		}
	}
	f, err = os.Open(filepath.Join("/sys/fs/cgroup", cg, "cpu.stat"))
	if err != nil {
		return nil, false, err
	}
	return f, true, nil
}

// CgroupDirs returns the directories of cgroup path cg that exist, in
// every v1 hierarchy and the v2 one.
func CgroupDirs(cg string) []string {
	var dirs []string
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	for _, r := range roots {
		if fi, err := os.Stat(filepath.Join(r, cg)); err == nil && fi.IsDir() {
			dirs = append(dirs, filepath.Join(r, cg))
		}
	}
	return dirs
}

// cgroupRuns reports whether a process is left in cgroup path cg.
func cgroupRuns(cg string) bool {
	for _, dir := range CgroupDirs(cg) {
		if b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			return true
		}
	}
	return false
}
