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
	"strconv"
	"strings"
	"syscall"
	"time"
)

// descendants lists every process below pid, depth first.
func descendants(pid int) []int {
	var out []int
	seen := map[int]bool{pid: true}
	var walk func(int)
	walk = func(p int) {
		for _, c := range children(p) {
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

// memOf is a process's resident memory, in bytes: VmRSS from
// /proc/PID/status (shared pages counted in full), and from
// /proc/PID/smaps_rollup Pss (its share of the pages it shares with other
// processes, so that summing over processes counts a shared page once)
// and USS, Private_Clean + Private_Dirty (what only it maps); Anon is
// RssAnon (heap, stacks: no file pages, so not moved by other processes
// mapping the same files).
type memOf struct {
	RSS, PSS, USS, Anon int64
}

func procMem(pid int) (memOf, error) {
	var m memOf
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return m, fmt.Errorf("read memory of process %d: %w", pid, err)
	}
	m.RSS = kbField(string(b), "VmRSS")
	m.Anon = kbField(string(b), "RssAnon")
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup"); err == nil {
		m.PSS = kbField(string(b), "Pss")
		m.USS = kbField(string(b), "Private_Clean") + kbField(string(b), "Private_Dirty")
	}
	return m, nil
}

// kbField reads "Name:   123 kB" from a /proc file, in bytes.
func kbField(s, name string) int64 {
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

// comm is the command name of pid.
func comm(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return strings.TrimSpace(string(b))
}

// procCgroups maps each controller of pid (cgroup v1: "memory",
// "cpuacct", ...; v2: "") to its cgroup path.
func procCgroups(pid int) map[string]string {
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

// proc is a child process the bench started; stop ends it and waits.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startProc starts argv with stdout and stderr going to logPath (stdout
// to the returned reader instead, when pipeOut). It dies with the bench
// (parent-death signal).
func startProc(argv, env []string, logPath string, pipeOut bool) (*proc, io.Reader, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
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
// waits for the process. It reports whether the process ended within
// grace.
func (p *proc) stop(grace time.Duration) bool {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
		return false
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

// Shared with the other benchmark programs.
var (
	procCPU  = benchkit.ProcCPU
	children = benchkit.Children
)
