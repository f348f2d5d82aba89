// Package process is the sandbox driver that runs each instance as a plain
// child process in a session and process group of its own, with Lambda's
// rlimits. Stopping a sandbox kills its whole group, so helpers the
// instance forked go with it; every child also gets SIGKILL when the server
// dies (parent-death signal), and a state file per sandbox lets a restarted
// server find and stop what a crashed one left behind.
//
// Filesystems: the program sees the host's. When the server runs as root,
// a Spec.RootFS becomes the program's root by chroot: it neither isolates
// nor is read-only (the program runs as the server's user, root). Mounts
// are accepted only at their own path, where the host's files already are.
//
// Network: instances share the host's, so Owns (peer.go) tells a
// sandbox's connections from others' by the process that holds the
// socket, not by an address. They share its hostname and /etc/hosts too
// (no UTS namespace): Spec.Hostname is ignored (no Capabilities.Hostname).
//
// Goroutines: per sandbox, one reaper (waits for the process, then kills the
// rest of its group) and one copier per output stream; all end before Wait
// returns for that sandbox.
package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// Rlimits each instance gets, as on Lambda.
const (
	maxOpenFiles = 1024
)

var _ sandbox.Driver = (*Driver)(nil)

// Driver runs sandboxes as process groups.
type Driver struct {
	stateDir string
	log      *slog.Logger
	root     bool        // running as root: RootFS by chroot
	noTrace  atomic.Bool // tracing new instances was refused: set rlimits after start

	mu    sync.Mutex
	procs map[string]*proc
}

type proc struct {
	pid   int
	done  chan struct{} // closed when the process and its output are gone
	exit  sandbox.Exit
	owned bool // started by this Driver (else recovered from a state file)

	out, err *sandbox.Output // nil for recovered sandboxes
}

// state is what a sandbox's state file holds.
type state struct {
	PID       int    `json:"pid"`
	StartTime uint64 `json:"startTime"` // /proc/PID/stat field 22
}

// Config configures a Driver.
type Config struct {
	// StateDir is the folder of the driver's state files (required); it
	// is created if missing. A restarted server given the same folder
	// finds what an earlier one left.
	StateDir string
	// Log receives the driver's warnings (a state file it could not
	// write, rlimits set after the start); nil discards them.
	Log *slog.Logger
}

// New returns a driver that keeps its state files in cfg.StateDir. An
// empty StateDir is ErrInvalid.
func New(cfg Config) (*Driver, error) {
	if cfg.StateDir == "" {
		return nil, fmt.Errorf("process driver: no state dir: %w", stratus.ErrInvalid)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("create sandbox state dir: %w", err)
	}
	return &Driver{stateDir: cfg.StateDir, log: log, root: os.Geteuid() == 0, procs: make(map[string]*proc)}, nil
}

// Name implements sandbox.Driver.
func (d *Driver) Name() string { return "process" }

// Capabilities implements sandbox.Driver: RootFS when running as root.
func (d *Driver) Capabilities() sandbox.Capabilities { return sandbox.Capabilities{RootFS: d.root} }

// Prepare implements sandbox.Driver. A process has nothing to do ahead:
// Prepare checks spec the way Start would, and Start does the rest.
func (d *Driver) Prepare(ctx context.Context, spec sandbox.Spec) error {
	if len(spec.Argv) == 0 {
		return fmt.Errorf("prepare sandbox %q: empty argv: %w", spec.ID, stratus.ErrInvalid)
	}
	if _, err := d.checkFS(spec); err != nil {
		return fmt.Errorf("prepare sandbox %q: %w", spec.ID, err)
	}
	return nil
}

// Start implements sandbox.Driver.
func (d *Driver) Start(ctx context.Context, spec sandbox.Spec) error {
	if len(spec.Argv) == 0 {
		return fmt.Errorf("start sandbox %q: empty argv: %w", spec.ID, stratus.ErrInvalid)
	}
	argv0, err := d.checkFS(spec)
	if err != nil {
		return fmt.Errorf("start sandbox %q: %w", spec.ID, err)
	}
	d.mu.Lock()
	if p, ok := d.procs[spec.ID]; ok {
		select {
		case <-p.done:
		default:
			d.mu.Unlock()
			return fmt.Errorf("start sandbox %q: already running: %w", spec.ID, stratus.ErrConflict)
		}
	}
	d.mu.Unlock()

	outR, outW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("start sandbox %q: %w", spec.ID, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return fmt.Errorf("start sandbox %q: %w", spec.ID, err)
	}
	newCmd := func() *exec.Cmd {
		cmd := exec.Command(spec.Argv[0], spec.Argv[1:]...)
		if spec.RootFS != "" {
			// Argv[0] and Dir are paths in the new root.
			cmd = &exec.Cmd{Path: argv0, Args: spec.Argv, Dir: "/"}
		}
		cmd.Env = spec.Env
		if spec.Dir != "" {
			cmd.Dir = spec.Dir
		}
		cmd.Stdout = outW
		cmd.Stderr = errW
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL, Chroot: spec.RootFS}
		return cmd
	}
	cmd, err := d.startLimited(newCmd)
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return fmt.Errorf("start sandbox %q: %w", spec.ID, err)
	}
	pid := cmd.Process.Pid

	p := &proc{pid: pid, done: make(chan struct{}), owned: true}
	if err := d.writeState(spec.ID, pid); err != nil {
		d.log.Warn("write sandbox state", "instance", spec.ID, "err", err)
	}
	d.mu.Lock()
	d.procs[spec.ID] = p
	d.mu.Unlock()

	p.out = sandbox.NewOutput(outR, spec.Stdout)
	p.err = sandbox.NewOutput(errR, spec.Stderr)
	var copiers sync.WaitGroup
	copiers.Add(2)
	go p.out.Copy(&copiers)
	go p.err.Copy(&copiers)
	go func() {
		st, err := cmd.Process.Wait()
		// The leader is gone; take whatever it left in its group with it.
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		copiers.Wait()
		p.exit = exitOf(st, err)
		d.removeState(spec.ID)
		close(p.done)
	}()
	return nil
}

// startLimited starts the command newCmd builds with Lambda's rlimits in
// place before the program runs: the child stops at its exec (it is
// traced), gets its limits, then is let go. Where tracing is not allowed,
// the limits are set just after the start instead, and a program may run
// its first moments (and fork) with the server's limits.
func (d *Driver) startLimited(newCmd func() *exec.Cmd) (*exec.Cmd, error) {
	if !d.noTrace.Load() {
		cmd, err := startTraced(newCmd())
		if err == nil || !errors.Is(err, syscall.EPERM) {
			return cmd, err
		}
		d.noTrace.Store(true)
		d.log.Warn("tracing a new instance is not allowed here; its rlimits are set just after it starts", "err", err)
	}
	cmd := newCmd()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	setLimits(cmd.Process.Pid)
	return cmd, nil
}

// startTraced starts cmd stopped at its exec, sets its limits and
// detaches. The tracer is the thread that forked, so the goroutine stays
// on it throughout.
func startTraced(cmd *exec.Cmd) (*exec.Cmd, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd.SysProcAttr.Ptrace = true
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	pid := cmd.Process.Pid
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, syscall.WALL, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			return nil, fmt.Errorf("wait for exec stop: %w", err)
		}
		break
	}
	if !ws.Stopped() {
		// Killed before its exec stop; it is reaped already.
		return nil, fmt.Errorf("program ended as it started (%v)", ws)
	}
	setLimits(pid)
	if err := syscall.PtraceDetach(pid); err != nil {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_, _ = cmd.Process.Wait()
		return nil, fmt.Errorf("let traced program go: %w", err)
	}
	return cmd, nil
}

func setLimits(pid int) {
	_ = unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: maxOpenFiles, Max: maxOpenFiles}, nil)
	_ = unix.Prlimit(pid, unix.RLIMIT_CORE, &unix.Rlimit{}, nil)
}

// SyncOutput implements sandbox.Driver.
func (d *Driver) SyncOutput(ctx context.Context, id string) error {
	d.mu.Lock()
	p, ok := d.procs[id]
	d.mu.Unlock()
	if !ok || p.out == nil {
		return fmt.Errorf("sandbox %q: %w", id, stratus.ErrNotFound)
	}
	p.out.Sync()
	p.err.Sync()
	return nil
}

func exitOf(st *os.ProcessState, err error) sandbox.Exit {
	if st == nil {
		return sandbox.Exit{Code: -1, Signal: "unknown: " + fmt.Sprint(err)}
	}
	ws, ok := st.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		return sandbox.Exit{Code: -1, Signal: ws.Signal().String()}
	}
	return sandbox.Exit{Code: st.ExitCode()}
}

// Stop implements sandbox.Driver.
func (d *Driver) Stop(ctx context.Context, id string, grace time.Duration) error {
	d.mu.Lock()
	p, ok := d.procs[id]
	d.mu.Unlock()
	if !ok {
		// Maybe a sandbox of an earlier server process.
		st, err := d.readState(id)
		if err != nil {
			return nil
		}
		return d.stopRecovered(ctx, id, st, grace)
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	if grace > 0 {
		_ = syscall.Kill(-p.pid, syscall.SIGTERM)
		t := time.NewTimer(grace)
		select {
		case <-p.done:
			t.Stop()
			return nil
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("stop sandbox %q: process %d did not exit after SIGKILL: %w", id, p.pid, stratus.ErrTimeout)
	}
}

// stopRecovered stops a process group that an earlier server left behind.
// It is not our child, so its end is seen by polling /proc. The group's
// leader may already be gone (it got the parent-death signal when the
// server died) while processes it forked still run in its group.
func (d *Driver) stopRecovered(ctx context.Context, id string, st state, grace time.Duration) error {
	defer d.removeState(id)
	if !groupLeft(st) {
		return nil
	}
	sig := syscall.SIGTERM
	if grace <= 0 {
		sig = syscall.SIGKILL
	}
	_ = syscall.Kill(-st.PID, sig)
	deadline := time.Now().Add(grace)
	var killed time.Time
	if sig == syscall.SIGKILL {
		killed = time.Now()
	}
	for groupLeft(st) {
		if sig == syscall.SIGTERM && (time.Now().After(deadline) || ctx.Err() != nil) {
			sig = syscall.SIGKILL
			killed = time.Now()
			_ = syscall.Kill(-st.PID, sig)
		}
		if sig == syscall.SIGKILL && time.Since(killed) > 5*time.Second {
			return fmt.Errorf("stop sandbox %q: process group %d still runs after SIGKILL: %w", id, st.PID, stratus.ErrTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// Wait implements sandbox.Driver.
func (d *Driver) Wait(ctx context.Context, id string) (sandbox.Exit, error) {
	d.mu.Lock()
	p, ok := d.procs[id]
	d.mu.Unlock()
	if !ok {
		return sandbox.Exit{}, fmt.Errorf("sandbox %q: %w", id, stratus.ErrNotFound)
	}
	select {
	case <-p.done:
		d.mu.Lock()
		if d.procs[id] == p {
			delete(d.procs, id)
		}
		d.mu.Unlock()
		return p.exit, nil
	case <-ctx.Done():
		return sandbox.Exit{}, ctx.Err()
	}
}

// live returns sandbox id's process while it runs; ErrNotFound else.
func (d *Driver) live(id string) (*proc, error) {
	d.mu.Lock()
	p, ok := d.procs[id]
	d.mu.Unlock()
	if ok {
		select {
		case <-p.done:
			ok = false // ended
		default:
		}
	}
	if !ok {
		return nil, fmt.Errorf("sandbox %q: %w", id, stratus.ErrNotFound)
	}
	return p, nil
}

// Addr implements sandbox.Driver: instances share the host's network.
func (d *Driver) Addr(ctx context.Context, id string) (netip.Addr, error) {
	if _, err := d.live(id); err != nil {
		return netip.Addr{}, err
	}
	return netip.AddrFrom4([4]byte{127, 0, 0, 1}), nil
}

// EndInit implements sandbox.Driver. Processes have no CPU quota: there is
// nothing to change.
func (d *Driver) EndInit(ctx context.Context, id string) error { return nil }

// Stats implements sandbox.Driver. MaxRSSBytes is the peak resident memory
// of the instance's main process; CPUNanos is as CPUNanos reports it.
func (d *Driver) Stats(ctx context.Context, id string) (sandbox.Stats, error) {
	d.mu.Lock()
	p, ok := d.procs[id]
	d.mu.Unlock()
	if !ok {
		return sandbox.Stats{}, fmt.Errorf("sandbox %q: %w", id, stratus.ErrNotFound)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.pid) + "/status")
	if err != nil {
		return sandbox.Stats{}, fmt.Errorf("sandbox %q stats: %w", id, err)
	}
	st := sandbox.Stats{MaxRSSBytes: parseHWM(b)}
	if n, err := cpuNanos(p.pid); err == nil {
		st.CPUNanos = n
	}
	return st, nil
}

// CPUNanos returns the CPU time (user and system) sandbox id has used so
// far, in nanoseconds; an unknown or ended sandbox is ErrNotFound. What
// it counts: the main process, every thread of it, live or ended, to the
// nanosecond (its CPU-time clock, see sandbox.ProcessCPUNanos), plus the
// children it has waited for and theirs (cutime and cstime of its
// /proc/PID/stat, to the clock tick of 10 ms). Not counted: processes of
// its group still running or never waited for by the main process (a
// server has no cgroup per process sandbox to ask, and scanning /proc
// for the group's members costs too much for a read per invocation).
// For an instance whose runtime runs the function in its own process, as
// Stratus's runtime clients do, that is all its CPU time. It costs one
// clock_gettime and one read of /proc/PID/stat, no allocation.
func (d *Driver) CPUNanos(ctx context.Context, id string) (int64, error) {
	p, err := d.live(id)
	if err != nil {
		return 0, err
	}
	n, err := cpuNanos(p.pid)
	if err != nil {
		if _, lerr := d.live(id); lerr != nil {
			return 0, lerr // it ended meanwhile
		}
		return 0, fmt.Errorf("sandbox %q cpu time: %w", id, err)
	}
	return n, nil
}

// cpuNanos is the CPU time of process pid and its reaped children.
func cpuNanos(pid int) (int64, error) {
	self, err := sandbox.ProcessCPUNanos(pid)
	if err != nil {
		return 0, err
	}
	children, err := sandbox.ReapedChildrenCPUNanos(pid)
	if err != nil {
		return 0, err
	}
	return self + children, nil
}

// parseHWM returns VmHWM from a /proc/PID/status text, in bytes.
func parseHWM(b []byte) int64 {
	s := string(b)
	i := strings.Index(s, "VmHWM:")
	if i < 0 {
		return 0
	}
	s = s[i+len("VmHWM:"):]
	if j := strings.IndexByte(s, '\n'); j >= 0 {
		s = s[:j]
	}
	s = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "kB"))
	kb, _ := strconv.ParseInt(s, 10, 64)
	return kb * 1024
}

// List implements sandbox.Driver: the sandboxes this driver runs and those
// whose state files an earlier server left, if their process still runs.
func (d *Driver) List(ctx context.Context) ([]string, error) {
	ents, err := os.ReadDir(d.stateDir)
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	var ids []string
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, p := range d.procs {
		select {
		case <-p.done:
		default:
			ids = append(ids, id)
		}
	}
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		if _, mine := d.procs[id]; mine {
			continue
		}
		st, err := d.readState(id)
		if err != nil || !groupLeft(st) {
			d.removeState(id)
			continue
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func (d *Driver) statePath(id string) string { return filepath.Join(d.stateDir, id+".json") }

func (d *Driver) writeState(id string, pid int) error {
	st := state{PID: pid, StartTime: startTime(pid)}
	b, _ := json.Marshal(st)
	return os.WriteFile(d.statePath(id), b, 0o600)
}

func (d *Driver) readState(id string) (state, error) {
	var st state
	b, err := os.ReadFile(d.statePath(id))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil || st.PID <= 0 {
		return st, errors.New("corrupt state file")
	}
	return st, nil
}

func (d *Driver) removeState(id string) { _ = os.Remove(d.statePath(id)) }

// sameProcess reports whether the process in st still runs (same PID, same
// start time, so not a reused PID).
func sameProcess(st state) bool {
	t := startTime(st.PID)
	return t != 0 && t == st.StartTime
}

// startTime reads field 22 of /proc/PID/stat; 0 if the process is gone or a
// zombie.
func startTime(pid int) uint64 {
	f, ok := stat(pid)
	if !ok || f.state == "Z" {
		return 0
	}
	return f.start
}

// groupLeft reports whether the process group a sandbox's state names
// still has a live member. The group's ID is its leader's PID, which the
// kernel does not reuse while the group has members: unless another
// process now has that PID, any process in that group is the sandbox's.
func groupLeft(st state) bool {
	if f, ok := stat(st.PID); ok && f.start != st.StartTime {
		return false // the PID is reused, so the sandbox's group is gone
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return sameProcess(st)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f, ok := stat(pid); ok && f.pgrp == st.PID && f.state != "Z" {
			return true
		}
	}
	return false
}

type procStat struct {
	state   string // field 3
	pgrp    int    // field 5
	session int    // field 6
	start   uint64 // field 22
}

// stat reads /proc/PID/stat; false if the process is gone.
func stat(pid int) (procStat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); field 5 is f[2], 6 is f[3], 22 is f[19].
	if len(f) < 20 {
		return procStat{}, false
	}
	pgrp, _ := strconv.Atoi(f[2])
	session, _ := strconv.Atoi(f[3])
	start, _ := strconv.ParseUint(f[19], 10, 64)
	return procStat{state: f[0], pgrp: pgrp, session: session, start: start}, true
}
