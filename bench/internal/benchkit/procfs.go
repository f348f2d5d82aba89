package benchkit

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of the CPU times in /proc/PID/stat and /proc/stat
// (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// statFields are the fields of /proc/PID/stat after the command name: [0]
// is field 3 (state); utime is [11], stime [12], cutime [13], cstime
// [14]. Nil if pid is gone.
func statFields(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// ticks sums the clock-tick fields f[from:to].
func ticks(f []string, from, to int) time.Duration {
	if len(f) < to {
		return 0
	}
	var n int64
	for _, x := range f[from:to] {
		v, _ := strconv.ParseInt(x, 10, 64)
		n += v
	}
	return time.Duration(n) * clockTick
}

// ProcCPU is utime + stime of pid (all its threads), 0 if it is gone.
func ProcCPU(pid int) time.Duration { return ticks(statFields(pid), 11, 13) }

// ProcCPUWithChildren is ProcCPU plus the CPU time of pid's children that
// it has reaped (cutime + cstime).
func ProcCPUWithChildren(pid int) time.Duration { return ticks(statFields(pid), 11, 15) }

// Children lists the child processes of pid (of all its threads).
func Children(pid int) []int {
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// Descendants lists every process below pid, depth first.
func Descendants(pid int) []int {
	var out []int
	seen := map[int]bool{pid: true}
	var walk func(int)
	walk = func(p int) {
		for _, c := range Children(p) {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
				walk(c)
			}
		}
	}
	walk(pid)
	return out
}

// CPUSample is the CPU time (user + system) each process had used.
type CPUSample map[int]time.Duration

// SampleCPU reads the CPU time of pids and of all their descendants.
func SampleCPU(pids ...int) CPUSample {
	s := CPUSample{}
	for _, p := range pids {
		for _, q := range append([]int{p}, Descendants(p)...) {
			if _, seen := s[q]; !seen {
				s[q] = ProcCPU(q)
			}
		}
	}
	return s
}

// Since is the CPU time used between s0 and s by the processes alive in
// s (all of it for those that were not in s0).
func (s CPUSample) Since(s0 CPUSample) time.Duration {
	var d time.Duration
	for pid, t := range s {
		d += t - s0[pid]
	}
	return d
}

// Total is the CPU time of every process in s.
func (s CPUSample) Total() time.Duration {
	var d time.Duration
	for _, t := range s {
		d += t
	}
	return d
}

// TreeCPU is the CPU time of pid and of its descendants still alive.
func TreeCPU(pid int) time.Duration { return SampleCPU(pid).Total() }

// TreeCPUReaped is the CPU time of pid and of its descendants still
// alive, each with that of the children it has reaped (cutime + cstime):
// the difference of two readings also counts the processes that ended in
// between (a database's backends, the commands a server runs), as long as
// they were reaped inside the tree.
func TreeCPUReaped(pid int) time.Duration {
	var d time.Duration
	for _, p := range append([]int{pid}, Descendants(pid)...) {
		d += ProcCPUWithChildren(p)
	}
	return d
}

// MachineBusy is the CPU time all cores have spent not idle (nor waiting
// for I/O) since boot.
func MachineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	// user nice system idle iowait irq softirq steal
	return ticks(f[1:4], 0, 3) + ticks(f[6:9], 0, 3)
}

// LoadAvg is the machine's 1-minute load average, 0 if unknown.
func LoadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// LoadAvgs is the machine's 1, 5 and 15-minute load averages as
// /proc/loadavg writes them ("0.52 1.10 0.98").
func LoadAvgs() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// Mem is a process's memory, in bytes: RSS (VmRSS: shared pages counted
// in full), HWM (VmHWM, the peak RSS) and Anon (RssAnon: heap and stacks,
// no file pages) from /proc/PID/status; PSS (its share of the pages it
// shares with others, so that a sum over processes counts a shared page
// once) and USS (Private_Clean + Private_Dirty: what only it maps) from
// /proc/PID/smaps_rollup.
type Mem struct {
	RSS, HWM, Anon, PSS, USS int64
}

// ProcMem reads the memory of pid.
func ProcMem(pid int) (Mem, error) {
	var m Mem
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return m, fmt.Errorf("read memory of process %d: %w", pid, err)
	}
	m.RSS = KBField(string(b), "VmRSS")
	m.HWM = KBField(string(b), "VmHWM")
	m.Anon = KBField(string(b), "RssAnon")
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup"); err == nil {
		m.PSS = KBField(string(b), "Pss")
		m.USS = KBField(string(b), "Private_Clean") + KBField(string(b), "Private_Dirty")
	}
	return m, nil
}

// KBField reads "Name:   123 kB" from the text of a /proc file, in bytes.
func KBField(s, name string) int64 {
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k != name {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		return kb << 10
	}
	return 0
}

// Comm is the command name of pid.
func Comm(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return strings.TrimSpace(string(b))
}

// Cgroups maps each controller of pid (cgroup v1: "memory", "cpuacct",
// ...; v2: "") to its cgroup path.
func Cgroups(pid int) map[string]string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return nil
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			out[c] = f[2]
		}
	}
	return out
}

// CgroupV1 reports whether the memory controller is on a cgroup v1
// hierarchy (as runc uses it on a hybrid host).
func CgroupV1() bool {
	_, err := os.Stat("/sys/fs/cgroup/memory/cgroup.procs")
	return err == nil
}
