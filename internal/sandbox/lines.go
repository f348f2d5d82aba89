package sandbox

import (
	"bytes"
	"sync"
)

// LineWriter splits an output stream into lines and hands each to Emit,
// without its line ending; a line longer than 256 KiB is cut into
// pieces. It is the Stdout or Stderr of a Spec.
type LineWriter struct {
	Emit func(line string)
	// Allow, if set, is asked before each line is copied for Emit, with
	// the line's length in bytes; a line it refuses is dropped without
	// being copied. It is how output beyond a bound costs no memory.
	Allow func(n int) bool

	mu  sync.Mutex
	buf []byte
}

// MaxLine is the longest line LineWriter emits whole.
const MaxLine = 256 << 10

// Write implements io.Writer.
func (w *LineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			for len(w.buf) >= MaxLine {
				w.emit(w.buf[:MaxLine])
				w.buf = append(w.buf[:0], w.buf[MaxLine:]...)
			}
			break
		}
		line := p[:i]
		if len(w.buf) > 0 {
			w.buf = append(w.buf, line...)
			line = w.buf
		}
		w.emit(bytes.TrimSuffix(line, []byte("\r")))
		w.buf = w.buf[:0]
		p = p[i+1:]
	}
	return n, nil
}

// emit hands line to Emit if Allow lets it.
func (w *LineWriter) emit(line []byte) {
	if w.Allow != nil && !w.Allow(len(line)) {
		return
	}
	w.Emit(string(line))
}

// Close emits a last unterminated line.
func (w *LineWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = nil
	}
	return nil
}
