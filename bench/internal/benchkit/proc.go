package benchkit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is a child process a bench started. Whoever starts it calls Stop.
type Proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd.Wait returned
}

// StartProc starts argv with env (nil: the bench's environment) in dir
// ("" for the bench's), its stdout and stderr appended to the file
// logPath. The child runs in a process group of its own and is killed if
// the bench dies (parent-death signal).
func StartProc(argv, env []string, dir, logPath string) (*Proc, error) {
	p, _, err := start(context.Background(), argv, env, dir, logPath, "")
	return p, err
}

// StartProcLine is StartProc that then waits, until ctx ends, for a line
// of the child's stdout containing marker, and returns what follows the
// marker on that line. Every stdout line goes to the log as well.
func StartProcLine(ctx context.Context, argv, env []string, dir, logPath, marker string) (*Proc, string, error) {
	return start(ctx, argv, env, dir, logPath, marker)
}

func start(ctx context.Context, argv, env []string, dir, logPath, marker string) (*Proc, string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, "", err
	}
	cmd.Stderr = lf
	var out io.Reader
	if marker == "" {
		cmd.Stdout = lf
	} else if out, err = cmd.StdoutPipe(); err != nil {
		lf.Close()
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, "", fmt.Errorf("start %s: %w", filepath.Base(argv[0]), err)
	}
	p := &Proc{cmd: cmd, done: make(chan struct{})}
	// Wait returns once the child has exited, even if a descendant of
	// it still holds its stdout, and then closes the pipe.
	go p.wait()
	if marker == "" {
		lf.Close() // the child has its own descriptor
		return p, "", nil
	}
	type found struct {
		rest string
		err  error
	}
	ch := make(chan found, 1)
	go func() {
		// Copy stdout to the log and report the marker's line once,
		// until the pipe closes.
		defer lf.Close()
		sc := bufio.NewScanner(out)
		seen := false
		for sc.Scan() {
			l := sc.Text()
			fmt.Fprintln(lf, l)
			if i := strings.Index(l, marker); i >= 0 && !seen {
				seen = true
				ch <- found{rest: l[i+len(marker):]}
			}
		}
		if !seen {
			ch <- found{err: errors.New("process ended before saying " + strconv.Quote(marker))}
		}
	}()
	select {
	case f := <-ch:
		if f.err != nil {
			p.Stop(time.Second)
			return nil, "", fmt.Errorf("start %s (log %s): %w", filepath.Base(argv[0]), logPath, f.err)
		}
		return p, f.rest, nil
	case <-ctx.Done():
		p.Stop(time.Second)
		return nil, "", fmt.Errorf("start %s (log %s): %w", filepath.Base(argv[0]), logPath, ctx.Err())
	}
}

func (p *Proc) wait() {
	_ = p.cmd.Wait()
	close(p.done)
}

// PID is the child's process ID.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Stop sends SIGTERM, then SIGKILL to the process group after grace, and
// waits for the process. It reports whether the process ended within
// grace. It blocks until the process is gone.
func (p *Proc) Stop(grace time.Duration) bool {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
		<-p.done
		return false
	}
}
