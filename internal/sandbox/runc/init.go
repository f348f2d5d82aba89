package runc

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/stratus-run/stratus/internal/sandbox"
)

// The container's PID 1 is the driver's own executable, bind-mounted at
// initPath, not the sandbox's program. A PID 1 gets no signal it has no
// handler for, so a program run as PID 1 would ignore Stop's SIGTERM and
// its own "kill -TERM $$"; it would also have to reap orphans. The init:
//
//   - runs as a uid of its own (initID) and makes itself undumpable, so
//     that the program can neither ptrace nor signal it nor open its
//     descriptors in /proc (the status pipe among them); it empties the
//     bounding set of the thread that starts the program, so that the
//     program has no capability even as the sandbox's root;
//   - waits for the go byte (fd 6) when its second argument is "on-go";
//     with "ahead" (Spec.StartAhead) it starts the program at once and
//     hands it the go pipe as fd 3, named by sandbox.StartFDEnv;
//   - starts Argv as its user (the first argument, "uid:gid[:groups]")
//     in a session of its own, as the process driver does,
//     with the driver's output pipes (fds 4 and 5) as its stdout and
//     stderr, not the copies runc makes of them;
//   - forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to
//     that session's process group;
//   - reaps every orphan, and when the program ends, exits with it (the
//     kernel then kills what is left in the PID namespace);
//   - reports on fd 3 (a pipe the driver passes through runc) "started",
//     and at the end exactly how the program ended: exit code or signal,
//     and whether the cgroup's OOM killer fired. runc itself only knows
//     128+N, which cannot tell "exit 137" from SIGKILL.
//
// Status lines: "ok", "err MESSAGE", then "exit N oom B" or "signal N oom B".
func init() {
	if len(os.Args) > 0 && os.Args[0] == initPath {
		os.Exit(containerInit(os.Args[1:]))
	}
}

// The status pipe, and the output pipes the program gets as its stdout
// and stderr.
const (
	statusFD = 3
	outFD    = 4
	errFD    = 5
	// goFD is the go pipe: the init waits for a byte on it before it
	// starts the program (a prepared sandbox). EOF without one, or a
	// signal meanwhile, ends the init.
	goFD = 6
)

func containerInit(args []string) int {
	status := os.NewFile(statusFD, "status")
	syscall.CloseOnExec(statusFD)
	report := func(format string, args ...any) {
		_, _ = fmt.Fprintf(status, format+"\n", args...)
	}
	// Whatever runs on this thread from here on (the program's fork among
	// it) has the bounding set dropped below.
	runtime.LockOSThread()
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_DUMPABLE, 0, 0); e != 0 {
		report("err undumpable: %s", e)
		return 127
	}
	if len(args) < 3 {
		report("err empty argv")
		return 127
	}
	cred, err := parseUser(args[0])
	if err != nil {
		report("err %s", oneLine(err.Error()))
		return 127
	}
	mode, argv := args[1], args[2:]
	env := os.Environ()
	files := []*os.File{os.Stdin, nil, nil}
	switch mode {
	case startOnGo:
		if !waitForGo() {
			return 0
		}
	case startAheadOf:
		files = append(files, os.NewFile(goFD, "go"))
		env = append(env, sandbox.StartFDEnv+"=3")
	default:
		report("err bad start mode %q", mode)
		return 127
	}
	if err := dropBounding(); err != nil {
		report("err %s", oneLine(err.Error()))
		return 127
	}
	// A path is left to the exec, which runs as the program's user: the
	// init's own uid may not search the folders of a file that the
	// program's user alone may run. Only a bare name is looked up in PATH.
	path := argv[0]
	if !strings.Contains(path, "/") {
		if path, err = exec.LookPath(path); err != nil {
			report("err %s", oneLine(err.Error()))
			return 127
		}
	}
	stdout, stderr := os.NewFile(outFD, "stdout"), os.NewFile(errFD, "stderr")
	syscall.CloseOnExec(outFD)
	syscall.CloseOnExec(errFD)
	files[1], files[2] = stdout, stderr
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	p, err := os.StartProcess(path, argv, &os.ProcAttr{
		Env:   env,
		Files: files,
		Sys:   &syscall.SysProcAttr{Setsid: true, Credential: cred},
	})
	if err != nil {
		report("err %s", oneLine(err.Error()))
		return 127
	}
	for _, f := range files[1:] {
		f.Close()
	}
	pid := p.Pid
	report("ok")
	go func() {
		for s := range sigs {
			_ = syscall.Kill(-pid, s.(syscall.Signal))
		}
	}()
	for {
		var ws syscall.WaitStatus
		wpid, err := syscall.Wait4(-1, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			report("err wait: %s", oneLine(err.Error()))
			return 127
		}
		if wpid != pid {
			continue // an orphan
		}
		oom := ooms() > 0
		if ws.Signaled() {
			report("signal %d oom %t", int(ws.Signal()), oom)
			return 128 + int(ws.Signal())
		}
		report("exit %d oom %t", ws.ExitStatus(), oom)
		return ws.ExitStatus()
	}
}

// parseUser reads the init's "uid:gid[:g1,g2...]" argument; "-" keeps
// the init's own ids (nil), as a rootless sandbox has no others.
func parseUser(a string) (*syscall.Credential, error) {
	if a == sameUser {
		return nil, nil
	}
	parts := strings.Split(a, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return nil, fmt.Errorf("bad user %q", a)
	}
	id := func(s string) (uint32, error) {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil || n > maxUserID {
			return 0, fmt.Errorf("bad user %q", a)
		}
		return uint32(n), nil
	}
	uid, err := id(parts[0])
	if err != nil {
		return nil, err
	}
	gid, err := id(parts[1])
	if err != nil {
		return nil, err
	}
	c := &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}
	if len(parts) == 3 && parts[2] != "" {
		for g := range strings.SplitSeq(parts[2], ",") {
			n, err := id(g)
			if err != nil {
				return nil, err
			}
			c.Groups = append(c.Groups, n)
		}
	}
	return c, nil
}

// dropBounding empties the calling thread's capability bounding,
// ambient and inheritable sets, which the program forked from it
// inherits: even as uid 0 it execs with no capability. The init keeps its
// own permitted and effective ones (it got them as ambient ones from runc,
// the only way a non-root uid keeps capabilities across exec).
func dropBounding() error {
	last := 63
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			last = n
		}
	}
	for c := 0; c <= last; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && err != unix.EINVAL {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("clear inheritable capabilities: %w", err)
	}
	return nil
}

// waitForGo waits for the driver's go byte. It reports false when the
// driver gave up on the sandbox instead: the pipe closed, or a signal
// came (a PID 1 ignores the signals it does not handle).
func waitForGo() bool {
	g := os.NewFile(goFD, "go")
	syscall.CloseOnExec(goFD)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Reset(syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	read := make(chan bool, 1)
	go func() {
		var b [1]byte
		n, _ := g.Read(b[:])
		g.Close()
		read <- n == 1
	}()
	select {
	case ok := <-read:
		return ok
	case <-sigs:
		return false
	}
}

// ooms is the number of OOM kills in the container's memory cgroup (the
// kernel counts one before it sends the victim SIGKILL).
func ooms() int {
	for _, f := range []string{"/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for line := range bytes.Lines(b) {
			if rest, ok := bytes.CutPrefix(line, []byte("oom_kill ")); ok {
				var n int
				_, _ = fmt.Sscan(string(rest), &n)
				return n
			}
		}
	}
	return 0
}

func oneLine(s string) string { return string(bytes.ReplaceAll([]byte(s), []byte("\n"), []byte(" "))) }
