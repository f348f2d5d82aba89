package runc

import (
	"io"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// stream copies one output pipe of a sandbox to its writer. The copier
// goroutine and SyncOutput both drain the pipe under mu, so once
// SyncOutput returns, every byte written before it was called has been
// handed to the writer.
//
// It is the process driver's stream, copied as is: both drivers hand a
// pipe to the sandbox and copy from its read end (a candidate for a small
// shared package once a third driver needs it).
type stream struct {
	mu  sync.Mutex
	f   *os.File
	rc  syscall.RawConn
	w   io.Writer
	buf []byte
}

func newStream(f *os.File, w io.Writer) *stream {
	if w == nil {
		w = io.Discard
	}
	rc, _ := f.SyscallConn()
	return &stream{f: f, rc: rc, w: w, buf: make([]byte, 32<<10)}
}

// copy drains the pipe each time it is readable until the write ends
// close.
func (s *stream) copy(wg *sync.WaitGroup) {
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
func (s *stream) drainLocked(fd int) bool {
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
func (s *stream) sync() {
	if s.rc == nil {
		return
	}
	_ = s.rc.Control(func(fd uintptr) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.drainLocked(int(fd))
	})
}
