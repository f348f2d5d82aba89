package sandbox

import (
	"io"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Output copies one output pipe of a sandbox (its read end) to the
// writer of Spec.Stdout or Spec.Stderr. The copier goroutine (Copy) and
// Sync both drain the pipe under one lock, so once Sync returns, every
// byte written before it was called has been handed to the writer: what
// a driver's SyncOutput needs.
type Output struct {
	mu  sync.Mutex
	f   *os.File
	rc  syscall.RawConn
	w   io.Writer
	buf []byte
}

// NewOutput copies the read end f to w (nil: discard) once Copy runs.
func NewOutput(f *os.File, w io.Writer) *Output {
	if w == nil {
		w = io.Discard
	}
	rc, _ := f.SyscallConn()
	return &Output{f: f, rc: rc, w: w, buf: make([]byte, 32<<10)}
}

// copy drains the pipe each time it is readable until the write ends
// close.
func (s *Output) Copy(wg *sync.WaitGroup) {
	defer wg.Done()
	defer s.f.Close()
	if s.rc == nil {
		_, _ = io.Copy(s.w, s.f)
		return
	}
	_ = s.rc.Read(func(fd uintptr) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.drainLocked(int(fd))
	})
}

// drainLocked reads what the pipe holds now; true at end of file.
func (s *Output) drainLocked(fd int) bool {
	for {
		n, err := unix.Read(fd, s.buf)
		if n > 0 {
			_, _ = s.w.Write(s.buf[:n])
			continue
		}
		switch err {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		return true // n == 0: end of file, or a read error
	}
}

// sync hands everything the pipe holds to the writer.
func (s *Output) Sync() {
	if s.rc == nil {
		return
	}
	_ = s.rc.Control(func(fd uintptr) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.drainLocked(int(fd))
	})
}

// Close closes the pipe without copying; for a sandbox that never started.
func (s *Output) Close() error { return s.f.Close() }
