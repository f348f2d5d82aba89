package agent

import (
	"context"
	"errors"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxBuffered bounds what one stream holds that no follower has taken:
// when it is full, the pipe is not read, so the program's writes block.
const maxBuffered = 4 << 20

// stream is one of the program's output pipes, read continuously into a
// bounded buffer that one follower at a time takes from.
//
// Lock order: readMu, then mu. readMu is held around each read from the
// pipe and the append of what it returned, so that a holder of readMu
// sees every byte taken from the pipe in the buffer.
type stream struct {
	name string
	r    *os.File // read end
	rc   syscall.RawConn

	readMu sync.Mutex

	mu        sync.Mutex
	buf       []byte // bytes [start, start+len(buf)) of the whole output
	start     int64
	eof       bool          // the pipe has ended (or was closed)
	changed   chan struct{} // closed and replaced at every change
	following bool          // a follower holds the stream
	delivered bool          // a follower has written the stream to its end
}

// newStream makes a pipe and a stream reading its read end; w is the
// write end for the program.
func newStream(name string) (s *stream, w *os.File, err error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	rc, err := r.SyscallConn()
	if err != nil {
		r.Close()
		w.Close()
		return nil, nil, err
	}
	return &stream{name: name, r: r, rc: rc, changed: make(chan struct{})}, w, nil
}

// notify wakes whoever waits on s.changed; s.mu must be held.
func (s *stream) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// readLoop reads the pipe until it ends or is closed.
func (s *stream) readLoop() {
	chunk := make([]byte, 64<<10)
	for {
		s.mu.Lock()
		for len(s.buf) >= maxBuffered && !s.eof {
			ch := s.changed
			s.mu.Unlock()
			<-ch
			s.mu.Lock()
		}
		space, eof := maxBuffered-len(s.buf), s.eof
		s.mu.Unlock()
		if eof {
			return
		}
		var n int
		var rerr error
		err := s.rc.Read(func(fd uintptr) bool {
			s.readMu.Lock()
			defer s.readMu.Unlock()
			n, rerr = unix.Read(int(fd), chunk[:min(space, len(chunk))])
			if rerr == unix.EAGAIN {
				return false
			}
			if n > 0 {
				s.mu.Lock()
				s.buf = append(s.buf, chunk[:n]...)
				s.notify()
				s.mu.Unlock()
			}
			return true
		})
		if rerr == unix.EINTR && err == nil {
			continue
		}
		if err != nil || rerr != nil || n <= 0 {
			s.end()
			return
		}
	}
}

// end marks the stream ended: nothing more comes from the pipe.
func (s *stream) end() {
	s.mu.Lock()
	if !s.eof {
		s.eof = true
		s.notify()
	}
	s.mu.Unlock()
}

// close ends the stream and closes the pipe's read end.
func (s *stream) close() {
	s.end()
	s.r.Close()
}

// drained returns the offset of the end of what the stream holds once the
// pipe has nothing left that was written before the call (FIONREAD is 0
// with no read under way), or the pipe has ended.
func (s *stream) drained(ctx context.Context) (int64, error) {
	for {
		s.readMu.Lock()
		pending := 0
		err := s.rc.Control(func(fd uintptr) {
			pending, _ = unix.IoctlGetInt(int(fd), unix.TIOCINQ) // FIONREAD
		})
		s.mu.Lock()
		end, eof, ch := s.start+int64(len(s.buf)), s.eof, s.changed
		s.mu.Unlock()
		s.readMu.Unlock()
		if eof || err != nil || pending <= 0 {
			return end, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

var errFollowed = errors.New("the stream has a follower already")

// follow claims the stream for one follower; release gives it back.
func (s *stream) follow() (start int64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.following {
		return 0, errFollowed
	}
	s.following = true
	return s.start, nil
}

func (s *stream) release(delivered bool) {
	s.mu.Lock()
	s.following = false
	if delivered {
		s.delivered = true
	}
	s.notify()
	s.mu.Unlock()
}

// next waits for bytes after what was consumed and returns up to max of
// them (a copy); ended says the stream has ended and all of it has been
// consumed.
func (s *stream) next(ctx context.Context, max int) (b []byte, ended bool, err error) {
	s.mu.Lock()
	for len(s.buf) == 0 && !s.eof {
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
		s.mu.Lock()
	}
	defer s.mu.Unlock()
	if len(s.buf) == 0 {
		return nil, true, nil
	}
	n := min(len(s.buf), max)
	return append([]byte(nil), s.buf[:n]...), false, nil
}

// consume drops the first n bytes, which a follower has written out.
func (s *stream) consume(n int) {
	s.mu.Lock()
	s.buf = s.buf[n:]
	if len(s.buf) == 0 {
		s.buf = nil // let a large buffer go
	}
	s.start += int64(n)
	s.notify()
	s.mu.Unlock()
}

// isDelivered reports whether a follower has written the stream to its end.
func (s *stream) isDelivered() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delivered
}
