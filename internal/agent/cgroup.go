package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/stratus-run/stratus/internal/sandbox"
)

// cgroupFiles are the files of the agent's own cgroup (the container's)
// that Stats and the OOM check read.
type cgroupFiles struct {
	memPeak string // v1 memory.max_usage_in_bytes, v2 memory.peak
	memNow  string // v2 memory.current, when memory.peak is missing (before Linux 5.19)
	cpu     string // v1 cpuacct.usage, v2 cpu.stat
	cpuV2   bool
	oom     string // v1 memory.oom_control, v2 memory.events: "oom_kill N"
}

// ownCgroup finds the agent's cgroup files from /proc/self/cgroup and
// /proc/self/mountinfo.
func ownCgroup() (cgroupFiles, error) {
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return cgroupFiles{}, fmt.Errorf("own cgroup: %w", err)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return cgroupFiles{}, fmt.Errorf("own cgroup: %w", err)
	}
	return cgroupPaths(cg, mi, exists), nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// cgroupPaths resolves the files of the cgroup that cgroupText
// (/proc/self/cgroup) names in the mounts of mountinfo: cgroup v1's
// memory and cpuacct hierarchies when their files exist, else v2's.
func cgroupPaths(cgroupText, mountinfo []byte, exists func(string) bool) cgroupFiles {
	v1 := make(map[string]cgMount) // controller → mount
	var v2 *cgMount
	sc := bufio.NewScanner(bytes.NewReader(mountinfo))
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT POINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		m := cgMount{root: sandbox.UnescapeMountinfo(f[3]), point: sandbox.UnescapeMountinfo(f[4])}
		switch g[0] {
		case "cgroup2":
			if v2 == nil {
				v2 = &m
			}
		case "cgroup":
			for _, o := range strings.Split(g[2], ",") {
				if _, dup := v1[o]; !dup {
					v1[o] = m
				}
			}
		}
	}
	dirV1 := make(map[string]string) // controller → dir
	var dirV2 string
	for _, line := range strings.Split(string(cgroupText), "\n") {
		// ID:CONTROLLERS:PATH
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			if v2 != nil {
				dirV2 = under(*v2, parts[2])
			}
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if m, ok := v1[c]; ok {
				dirV1[c] = under(m, parts[2])
			}
		}
	}
	var f cgroupFiles
	if d, ok := dirV1["memory"]; ok && exists(path.Join(d, "memory.max_usage_in_bytes")) {
		f.memPeak = path.Join(d, "memory.max_usage_in_bytes")
		f.oom = path.Join(d, "memory.oom_control")
	} else if dirV2 != "" && exists(path.Join(dirV2, "memory.current")) {
		f.memPeak = path.Join(dirV2, "memory.peak")
		f.memNow = path.Join(dirV2, "memory.current")
		f.oom = path.Join(dirV2, "memory.events")
	}
	if d, ok := dirV1["cpuacct"]; ok && exists(path.Join(d, "cpuacct.usage")) {
		f.cpu = path.Join(d, "cpuacct.usage")
	} else if dirV2 != "" && exists(path.Join(dirV2, "cpu.stat")) {
		f.cpu, f.cpuV2 = path.Join(dirV2, "cpu.stat"), true
	}
	return f
}

// cgMount is a cgroup hierarchy's mount: the cgroup it shows as its
// root, and where.
type cgMount struct{ root, point string }

// under is cgroup path cg inside mount m: the mount shows the hierarchy
// from m.root down (a container sees its own cgroup as the root).
func under(m cgMount, cg string) string {
	if m.root == "/" {
		return path.Join(m.point, cg)
	}
	if rel, ok := strings.CutPrefix(cg, m.root); ok && (rel == "" || rel[0] == '/') {
		return path.Join(m.point, rel)
	}
	return m.point // a cgroup namespace: the mount's root is ours
}

// stats reads the peak memory and the CPU time of the cgroup.
func (f cgroupFiles) stats() (sandbox.Stats, error) {
	var st sandbox.Stats
	if f.memPeak == "" || f.cpu == "" {
		return st, fmt.Errorf("stats: no memory or cpu accounting in the agent's cgroup")
	}
	n, err := readInt(f.memPeak)
	if err != nil && f.memNow != "" {
		n, err = readInt(f.memNow)
	}
	if err != nil {
		return st, fmt.Errorf("stats: %w", err)
	}
	st.MaxRSSBytes = n
	b, err := os.ReadFile(f.cpu)
	if err != nil {
		return st, fmt.Errorf("stats: %w", err)
	}
	ns, ok := sandbox.ParseCPUNanos(b, f.cpuV2)
	if !ok {
		return st, fmt.Errorf("stats: unexpected %s", f.cpu)
	}
	st.CPUNanos = ns
	return st, nil
}

// oomKills returns the cgroup's count of OOM kills (0 when unknown).
func (f cgroupFiles) oomKills() int64 {
	b, err := os.ReadFile(f.oom)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

func readInt(p string) (int64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}
