package runc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// Prepare implements sandbox.Driver: the container is created with its
// network, mounts, cgroup and seccomp filter, and its init runs, waiting
// for Start before it starts the program. That leaves Start a write to a
// pipe and the program's own start.
func (d *Driver) Prepare(ctx context.Context, spec sandbox.Spec) error {
	if len(spec.Argv) == 0 {
		return fmt.Errorf("prepare sandbox %q: empty argv: %w", spec.ID, stratus.ErrInvalid)
	}
	if !validID.MatchString(spec.ID) {
		return fmt.Errorf("prepare sandbox %q: bad id: %w", spec.ID, stratus.ErrInvalid)
	}
	if spec.Dir != "" && !filepath.IsAbs(spec.Dir) {
		return fmt.Errorf("prepare sandbox %q: dir %q is not absolute: %w", spec.ID, spec.Dir, stratus.ErrInvalid)
	}
	if err := checkFS(spec); err != nil {
		return fmt.Errorf("prepare sandbox %q: %w", spec.ID, err)
	}
	if spec.Hostname != "" {
		if err := sandbox.CheckHostname(spec.Hostname); err != nil {
			return fmt.Errorf("prepare sandbox %q: %w", spec.ID, err)
		}
	}
	if u := spec.User; u != nil && (u.UID > maxUserID || u.GID > maxUserID || slices.ContainsFunc(u.Groups, func(g uint32) bool { return g > maxUserID })) {
		return fmt.Errorf("prepare sandbox %q: user %d:%d: ids must be at most %d: %w", spec.ID, u.UID, u.GID, maxUserID, stratus.ErrInvalid)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("prepare sandbox %q: %w", spec.ID, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return fmt.Errorf("prepare sandbox %q: %w", spec.ID, err)
	}
	b := &box{
		cgroup:  d.CgroupPath(spec.ID),
		done:    make(chan struct{}),
		started: make(chan string, 1),
		out:     sandbox.NewOutput(outR, spec.Stdout),
		err:     sandbox.NewOutput(errR, spec.Stderr),
	}
	if spec.MemoryMB > 0 && !d.rootless {
		b.quota = cpuQuota(spec)
		b.inInit = initQuota(spec) != b.quota
	}
	d.mu.Lock()
	if old, ok := d.boxes[spec.ID]; ok && !isDone(old) {
		d.mu.Unlock()
		closeAll(outR, outW, errR, errW)
		return fmt.Errorf("prepare sandbox %q: already running: %w", spec.ID, stratus.ErrConflict)
	}
	if _, err := os.Stat(filepath.Join(d.root, spec.ID)); err == nil {
		d.mu.Unlock()
		closeAll(outR, outW, errR, errW)
		return fmt.Errorf("prepare sandbox %q: a container of an earlier server runs: %w", spec.ID, stratus.ErrConflict)
	}
	d.boxes[spec.ID] = b
	d.mu.Unlock()

	if err := d.prepare(spec, b, outW, errW); err != nil {
		d.mu.Lock()
		if d.boxes[spec.ID] == b {
			delete(d.boxes, spec.ID)
		}
		b.closeCPU()
		d.mu.Unlock()
		return fmt.Errorf("prepare sandbox %q: %w", spec.ID, err)
	}
	return nil
}

// prepare writes the bundle and runs `runc run --detach` with the output
// pipes as its stdio and as fds 4 and 5, which the init hands to the
// program as its stdout and stderr, the status pipe as fd 3 and the go
// pipe as fd 6. runc exits once the init runs; the init is then a child
// of this process (a child subreaper, see New), which its reaper waits
// for.
func (d *Driver) prepare(spec sandbox.Spec, b *box, outW, errW *os.File) error {
	bundle := d.BundleDir(spec.ID)
	closeW := func() { closeAll(outW, errW) }
	netns, addr, err := d.net.setup(spec.ID)
	if err != nil {
		closeW()
		closeAll(b.out, b.err)
		return err
	}
	d.mu.Lock()
	b.addr = addr
	d.mu.Unlock()
	if err := d.writeBundle(bundle, spec, netns, addr); err != nil {
		closeW()
		closeAll(b.out, b.err)
		d.teardownNet(spec.ID)
		return err
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		closeW()
		closeAll(b.out, b.err)
		d.remove(spec.ID)
		return err
	}
	goR, goW, err := os.Pipe()
	if err != nil {
		closeW()
		closeAll(b.out, b.err, statusR, statusW)
		d.remove(spec.ID)
		return err
	}
	pidFile := filepath.Join(bundle, "init.pid")
	cmd := exec.Command(d.runc, "--root", d.root, "--log", filepath.Join(bundle, "runc.log"), "--log-format", "json",
		"run", "--detach", "--pid-file", pidFile, "--bundle", bundle, "--preserve-fds", "4", spec.ID)
	cmd.Stdout, cmd.Stderr = outW, errW
	// The program gets the output pipes themselves (fds 4 and 5, see
	// init.go), so that SyncOutput can wait for what it wrote.
	cmd.ExtraFiles = []*os.File{statusW, outW, errW, goR}
	// A session of its own: a ^C at the server's terminal does not reach
	// runc.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Run()
	closeW()
	closeAll(statusW, goR)
	// The container has its mounts now (or never will): the staged ones
	// can go from the host.
	if uerr := unstage(bundle); uerr != nil {
		d.log.Warn("detach staged mounts", "instance", spec.ID, "err", uerr)
	}
	if err != nil {
		closeAll(b.out, b.err, statusR, goW)
		msg := d.runcError(bundle)
		d.remove(spec.ID)
		return fmt.Errorf("runc run: %s", msg)
	}
	pid := 0
	if raw, err := os.ReadFile(pidFile); err == nil {
		pid, _ = strconv.Atoi(strings.TrimSpace(string(raw)))
	}
	d.mu.Lock()
	b.pid = pid
	d.mu.Unlock()

	var copiers sync.WaitGroup
	copiers.Add(2)
	go b.out.Copy(&copiers)
	go b.err.Copy(&copiers)
	d.mu.Lock()
	b.goW = goW
	d.mu.Unlock()
	go func() {
		status := bufio.NewReader(statusR)
		first, _ := status.ReadString('\n')
		b.started <- first
		rest, _ := io.ReadAll(status)
		statusR.Close()
		ws := reap(pid)
		copiers.Wait()
		d.mu.Lock()
		if b.goW != nil {
			b.goW.Close() // prepared, never started
			b.goW = nil
		}
		b.closeCPU()
		d.mu.Unlock()
		b.exit = exitOf(lastLine(first+string(rest)), ws)
		d.remove(spec.ID)
		close(b.done)
	}()
	return nil
}

// reapStrays reaps the exited children of this process that belong to
// this driver's sandboxes (by their cgroup) and that no reaper waits for:
// orphans of runc's own processes, given to this process as their child
// subreaper. Left unreaped they would pass to the host's init when the
// server exits, which on some hosts never reaps them. Close calls it.
func (d *Driver) reapStrays() {
	self := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ...": comm may hold spaces and parens.
		i := bytes.LastIndexByte(stat, ')')
		f := strings.Fields(string(stat[i+1:]))
		if i < 0 || len(f) < 2 || f[0] != "Z" || f[1] != strconv.Itoa(self) {
			continue
		}
		cg, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		if d.cgPrefix == "" || !strings.Contains(string(cg), d.cgPrefix) {
			continue
		}
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); err == nil {
			d.log.Debug("reaped a stray child", "pid", pid)
		}
	}
}

// reap waits for the container's init, a child of this process once runc
// has exited, and returns how it ended (nil when it cannot tell).
func reap(pid int) *syscall.WaitStatus {
	if pid <= 0 {
		return nil
	}
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil
		}
		return &ws
	}
}

// run tells a prepared sandbox's init to start the program and waits for
// its answer.
func (d *Driver) run(ctx context.Context, id string, b *box) error {
	d.mu.Lock()
	goW := b.goW
	b.goW = nil
	d.mu.Unlock()
	if goW == nil {
		return fmt.Errorf("already started: %w", stratus.ErrConflict)
	}
	_, _ = goW.Write([]byte{'g'})
	goW.Close()
	var first string
	select {
	case first = <-b.started:
	case <-ctx.Done():
		d.kill(ctx, id, "KILL", true)
		<-b.done
		return ctx.Err()
	}
	switch {
	case first == "ok\n":
		return nil
	case strings.HasPrefix(first, "err "):
		<-b.done
		return errors.New(strings.TrimSpace(strings.TrimPrefix(first, "err ")))
	default:
		<-b.done
		return fmt.Errorf("the container ended before the program started (%s)", b.exit)
	}
}

// writeBundle writes the bundle of sandbox spec, whose network namespace
// is netns (none: rootless) and address addr.
func (d *Driver) writeBundle(bundle string, spec sandbox.Spec, netns string, addr netip.Addr) error {
	if err := removeBundle(bundle); err != nil {
		return err
	}
	if err := mkdirReachable(bundle, filepath.Join(bundle, "rootfs")); err != nil {
		return fmt.Errorf("create bundle: %w", err)
	}
	s := bundleSpec(spec, d.exe, d.CgroupPath(spec.ID), netns, d.idBase)
	s.Hostname = hostnameOf(spec, addr, !d.rootless)
	if err := writeHosts(bundle, s.Hostname, addr); err != nil {
		_ = removeBundle(bundle)
		return err
	}
	if d.rootless {
		rootlessSpec(s)
	}
	s.Mounts = append(s.Mounts, specMounts(spec, bundle, d.etc)...)
	if spec.RootFS != "" {
		d.loader.apply(s)
	}
	if err := layoutRoot(bundle, s); err != nil {
		_ = removeBundle(bundle)
		return err
	}
	if !d.rootless {
		if err := stage(bundle, s); err != nil {
			_ = removeBundle(bundle)
			return err
		}
	}
	cfg, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode bundle config: %w", err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), cfg, 0o600); err != nil {
		_ = removeBundle(bundle)
		return fmt.Errorf("write bundle config: %w", err)
	}
	return nil
}

// runcError is the last error runc logged for the bundle.
func (d *Driver) runcError(bundle string) string {
	b, _ := os.ReadFile(filepath.Join(bundle, "runc.log"))
	msg := "exited before the program started"
	for line := range strings.Lines(string(b)) {
		var e struct{ Level, Msg string }
		if json.Unmarshal([]byte(line), &e) == nil && (e.Level == "error" || e.Level == "fatal") {
			msg = e.Msg
		}
	}
	return msg
}

// remove deletes what runc and the driver keep of a container that has
// ended: runc's state and cgroups (`runc run` normally removes them
// itself), the bundle and the network. It runs whatever the caller's
// state (the reaper's, or a failed prepare's cleanup): its only bound is
// killTimeout.
func (d *Driver) remove(id string) {
	if _, err := os.Stat(filepath.Join(d.root, id)); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
		if out, err := d.runcCmd(ctx, "delete", "--force", id); err != nil && !notExist(out) {
			d.log.Warn("delete container", "instance", id, "err", err, "output", strings.TrimSpace(string(out)))
		}
		cancel()
	}
	if err := removeBundle(d.BundleDir(id)); err != nil {
		d.log.Warn("remove bundle", "instance", id, "err", err)
	}
	d.teardownNet(id)
}

// teardownNet removes sandbox id's network. A failure is logged: the
// address file it leaves makes List try again.
func (d *Driver) teardownNet(id string) {
	if err := d.net.teardown(id); err != nil {
		d.log.Warn("tear down sandbox network", "instance", id, "err", err)
	}
}

// exitOf reads the init's last status line; without one (the init was
// killed), the init's wait status.
func exitOf(line string, ws *syscall.WaitStatus) sandbox.Exit {
	var kind string
	var n int
	var oom bool
	if c, _ := fmt.Sscanf(line, "%s %d oom %t", &kind, &n, &oom); c == 3 {
		switch kind {
		case "exit":
			return sandbox.Exit{Code: n}
		case "signal":
			s := syscall.Signal(n)
			return sandbox.Exit{Code: -1, Signal: s.String(), OOM: oom && s == syscall.SIGKILL}
		}
	}
	switch {
	case ws == nil:
		return sandbox.Exit{Code: -1, Signal: "unknown"}
	case ws.Signaled():
		return sandbox.Exit{Code: -1, Signal: ws.Signal().String()}
	}
	code := ws.ExitStatus()
	if code > 128 && code <= 128+64 {
		return sandbox.Exit{Code: -1, Signal: syscall.Signal(code - 128).String()}
	}
	return sandbox.Exit{Code: code}
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
