package sandbox

import (
	"bytes"
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// ProcessCPUNanos returns the CPU time (user and system) process pid has
// used so far, in nanoseconds: every thread of it, live or ended, with the
// scheduler's nanosecond precision. It reads the process's CPU-time clock
// (clock_gettime of clock_getcpuclockid(pid): the kernel's
// sum_exec_runtime of the thread group), one system call, no file and no
// allocation; Linux lets any process read another's CPU clock. Children
// are not counted (see ReapedChildrenCPUNanos). pid must be a process
// (thread group leader); a process that is gone is an error.
func ProcessCPUNanos(pid int) (int64, error) {
	// The clock ID holds the PID in 29 bits, more than PID_MAX_LIMIT
	// (1<<22) needs; a larger one would name another process, or 0 this one.
	if pid <= 0 || pid > 1<<22 {
		return 0, fmt.Errorf("cpu time of process %d: no such process", pid)
	}
	// MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED) of the kernel's
	// posix-timers.h, as glibc's clock_getcpuclockid computes it.
	const cpuclockSched = 2
	clock := int32(^uint32(pid)<<3) | cpuclockSched
	var ts unix.Timespec
	if err := unix.ClockGettime(clock, &ts); err != nil {
		return 0, fmt.Errorf("cpu time of process %d: %w", pid, err)
	}
	return ts.Nano(), nil
}

// clockTick is the unit of the times in /proc/PID/stat: USER_HZ, which is
// 100 on every Linux architecture Stratus runs on.
const clockTick = 10_000_000 // ns

// ReapedChildrenCPUNanos returns the CPU time (user and system) of the
// children process pid has waited for, and of the children they waited
// for in turn (fields cutime and cstime of /proc/PID/stat), in
// nanoseconds. Its resolution is the clock tick, 10 ms. It reads
// /proc/PID/stat into a buffer on the stack.
func ReapedChildrenCPUNanos(pid int) (int64, error) {
	fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/stat", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("cpu time of children of process %d: %w", pid, err)
	}
	var buf [1024]byte
	n, err := unix.Read(fd, buf[:])
	unix.Close(fd)
	if err != nil {
		return 0, fmt.Errorf("cpu time of children of process %d: %w", pid, err)
	}
	cu, cs, ok := parseChildTimes(buf[:max(n, 0)])
	if !ok {
		return 0, fmt.Errorf("cpu time of children of process %d: unexpected /proc/%d/stat", pid, pid)
	}
	return (cu + cs) * clockTick, nil
}

// parseChildTimes returns fields 16 and 17 (cutime, cstime) of a
// /proc/PID/stat text, in clock ticks.
func parseChildTimes(b []byte) (cutime, cstime int64, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	// After ") " come fields 3 (state), 4, ... separated by one space.
	field := 3
	rest := b[i+1:]
	for len(rest) > 0 && field <= 17 {
		rest = bytes.TrimLeft(rest, " ")
		j := bytes.IndexByte(rest, ' ')
		if j < 0 {
			j = len(rest)
		}
		switch field {
		case 16:
			cutime, ok = atoi(rest[:j])
			if !ok {
				return 0, 0, false
			}
		case 17:
			cstime, ok = atoi(rest[:j])
			return cutime, cstime, ok
		}
		rest = rest[j:]
		field++
	}
	return 0, 0, false
}

// atoi parses a non-negative decimal without allocating.
func atoi(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// ParseCPUNanos parses the CPU time in a cgroup file read from its start
// into b: cgroup v1's cpuacct.usage (nanoseconds, one number) or, v2,
// the usage_usec line of cpu.stat (microseconds). It does not allocate.
func ParseCPUNanos(b []byte, v2 bool) (int64, bool) {
	if !v2 {
		return atoi(bytes.TrimSpace(b))
	}
	const key = "usage_usec "
	for len(b) > 0 {
		line := b
		if j := bytes.IndexByte(b, '\n'); j >= 0 {
			line, b = b[:j], b[j+1:]
		} else {
			b = nil
		}
		if bytes.HasPrefix(line, []byte(key)) {
			us, ok := atoi(bytes.TrimSpace(line[len(key):]))
			return us * 1000, ok
		}
	}
	return 0, false
}
