package runc

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

// The container's PID 1 is the driver's own executable, bind-mounted at
// initPath, not the sandbox's program. A PID 1 gets no signal it has no
// handler for, so a program run as PID 1 would ignore Stop's SIGTERM and
// its own "kill -TERM $$"; it would also have to reap orphans. The init:
//
//   - starts Argv in a session of its own, as the process driver does,
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

func containerInit(argv []string) int {
	status := os.NewFile(statusFD, "status")
	syscall.CloseOnExec(statusFD)
	report := func(format string, args ...any) {
		_, _ = fmt.Fprintf(status, format+"\n", args...)
	}
	if len(argv) == 0 {
		report("err empty argv")
		return 127
	}
	if !waitForGo() {
		return 0
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		report("err %s", oneLine(err.Error()))
		return 127
	}
	stdout, stderr := os.NewFile(outFD, "stdout"), os.NewFile(errFD, "stderr")
	syscall.CloseOnExec(outFD)
	syscall.CloseOnExec(errFD)
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	p, err := os.StartProcess(path, argv, &os.ProcAttr{
		Env:   os.Environ(),
		Files: []*os.File{os.Stdin, stdout, stderr},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		report("err %s", oneLine(err.Error()))
		return 127
	}
	stdout.Close()
	stderr.Close()
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
