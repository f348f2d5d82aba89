package main

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// cpuCgroups lists the CPU cgroups (their folders under /sys/fs/cgroup)
// that hold pids, but the root one: cgroup v1's cpu controller, else the
// cgroup v2 (unified) hierarchy.
func cpuCgroups(pids []int) []string {
	seen := map[string]bool{}
	var out []string
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
		if err != nil {
			continue
		}
		v1, v2 := "", ""
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.SplitN(l, ":", 3)
			if len(f) != 3 || f[2] == "/" {
				continue
			}
			switch {
			case f[0] == "0" && f[1] == "":
				v2 = filepath.Join("/sys/fs/cgroup", f[2])
				if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/unified", f[2])); err == nil {
					v2 = filepath.Join("/sys/fs/cgroup/unified", f[2])
				}
			case slices.Contains(strings.Split(f[1], ","), "cpu"):
				v1 = filepath.Join("/sys/fs/cgroup", f[1], f[2])
			}
		}
		for _, d := range []string{v1, v2} {
			if d != "" && !seen[d] {
				if _, err := os.Stat(filepath.Join(d, "cpu.stat")); err == nil {
					seen[d] = true
					out = append(out, d)
					break
				}
			}
		}
	}
	return out
}

// throttledPeriods sums the CFS periods in which the quota held back the
// cgroups cgs (cpu.stat nr_throttled; a period is 100 ms in a runc
// sandbox).
func throttledPeriods(cgs []string) int64 {
	var n int64
	for _, cg := range cgs {
		b, err := os.ReadFile(filepath.Join(cg, "cpu.stat"))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "nr_throttled "); ok {
				x, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += x
			}
		}
	}
	return n
}
