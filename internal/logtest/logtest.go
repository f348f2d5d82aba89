// Package logtest is how tests read back what a component logged: a
// slog.Handler that keeps every record it is given.
package logtest

import (
	"context"
	"log/slog"
	"sync"
)

// Recorder is a slog.Handler that keeps every record, at every level. It
// is safe for concurrent use; its zero value is ready. Attributes added
// with WithAttrs are kept on the records handled through the returned
// handler; groups are ignored.
type Recorder struct {
	mu    sync.Mutex
	recs  []slog.Record
	attrs []slog.Attr // of this view; shared store through root
	root  *Recorder   // nil for the Recorder itself
}

// Logger returns a logger writing to h.
func (h *Recorder) Logger() *slog.Logger { return slog.New(h) }

// Enabled reports true: every level is kept.
func (h *Recorder) Enabled(context.Context, slog.Level) bool { return true }

// WithAttrs returns a handler that adds attrs to each record and keeps it
// in h.
func (h *Recorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &Recorder{attrs: append(append([]slog.Attr(nil), h.attrs...), attrs...), root: h.store()}
}

// WithGroup returns h: groups are not kept.
func (h *Recorder) WithGroup(string) slog.Handler { return h }

// Handle keeps a copy of r, its attributes after the handler's (from
// WithAttrs), in the order slog's handlers give them.
func (h *Recorder) Handle(_ context.Context, r slog.Record) error {
	rec := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	rec.AddAttrs(h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		rec.AddAttrs(a)
		return true
	})
	s := h.store()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recs = append(s.recs, rec)
	return nil
}

// Records returns the records kept so far, oldest first.
func (h *Recorder) Records() []slog.Record {
	s := h.store()
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]slog.Record(nil), s.recs...)
}

func (h *Recorder) store() *Recorder {
	if h.root != nil {
		return h.root
	}
	return h
}

// Attrs returns r's attributes by key, their values as text. Of two
// attributes with the same key, the later one is kept: a record's own
// over its logger's (With).
func Attrs(r slog.Record) map[string]string {
	m := make(map[string]string, r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.String()
		return true
	})
	return m
}
