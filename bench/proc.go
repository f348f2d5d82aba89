package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/stratus-run/stratus/bench/internal/benchkit"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuSample is the CPU time (user + system) each process had used.
type cpuSample map[int]time.Duration

// sampleCPU reads the CPU time of pids and of all their descendants.
func sampleCPU(pids []int) cpuSample {
	s := cpuSample{}
	var walk func(pid int)
	walk = func(pid int) {
		if _, seen := s[pid]; seen {
			return
		}
		s[pid] = procCPU(pid)
		for _, c := range children(pid) {
			walk(c)
		}
	}
	for _, p := range pids {
		walk(p)
	}
	return s
}

// since is the CPU time used between s0 and s by processes alive in s.
func (s cpuSample) since(s0 cpuSample) time.Duration {
	var d time.Duration
	for pid, t := range s {
		d += t - s0[pid]
	}
	return d
}

// vmRSS returns VmRSS and VmHWM of pid in bytes.
func vmRSS(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, fmt.Errorf("read memory of process %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		switch k {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			hwm = kb << 10
		}
	}
	return rss, hwm, nil
}

// proc is a child process the bench started; stop ends it and waits.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startProc starts argv in dir with stdout and stderr going to logPath
// (stdout to the returned reader instead, when pipeOut). It dies with the
// bench (parent-death signal).
func startProc(argv, env []string, dir, logPath string, pipeOut bool) (*proc, io.Reader, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, err
	}
	defer lf.Close()
	cmd.Stderr = lf
	var out io.Reader
	if pipeOut {
		r, err := cmd.StdoutPipe()
		if err != nil {
			return nil, nil, err
		}
		out = r
	} else {
		cmd.Stdout = lf
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start %s: %w", filepath.Base(argv[0]), err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	if !pipeOut {
		go p.wait()
	}
	return p, out, nil
}

func (p *proc) wait() {
	p.err = p.cmd.Wait()
	close(p.done)
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM, then SIGKILL to the process group after grace, and
// waits for the process.
func (p *proc) stop(grace time.Duration) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
}

// firstLine reads r until a line containing marker, and returns the rest of
// that line after marker. The remaining output is discarded in the
// background; p.wait runs once r is drained.
func firstLine(ctx context.Context, p *proc, r io.Reader, marker string) (string, error) {
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		sc := bufio.NewScanner(r)
		found := false
		for sc.Scan() {
			if i := strings.Index(sc.Text(), marker); i >= 0 && !found {
				found = true
				ch <- res{s: sc.Text()[i+len(marker):]}
			}
		}
		if !found {
			ch <- res{err: errors.New("process ended before saying " + strconv.Quote(marker))}
		}
		p.wait()
	}()
	select {
	case r := <-ch:
		return r.s, r.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

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

// loadAvg is the machine's 1-minute load average, 0 if unknown.
func loadAvg() float64 {
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

// Shared with the other benchmark programs.
var (
	procCPU  = benchkit.ProcCPU
	children = benchkit.Children
)
