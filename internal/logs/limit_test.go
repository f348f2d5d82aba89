package logs

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/eventually"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) step(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type reports struct {
	mu    sync.Mutex
	lines []string
	reqs  []string
}

func (r *reports) report(req, text string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, text)
	r.reqs = append(r.reqs, req)
}

func (r *reports) get() ([]string, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines...), append([]string(nil), r.reqs...)
}

// TestMeterPerInvocation: an invocation stores at most its bound (text
// and line endings), the rest is dropped, and one line says how many when
// it ends; the next invocation starts afresh.
func TestMeterPerInvocation(t *testing.T) {
	c := &clock{now: time.Unix(1e9, 0)}
	l := NewLimiter(LimiterConfig{PerInvocation: 10 << 10, Now: c.Now})
	var r reports
	m := l.Meter("f", true, r.report)
	stored := 0
	for range 100 {
		if m.Allow("req-1", 1023) {
			stored++
		}
	}
	if stored != 10 {
		t.Errorf("%d lines of 1 KiB stored within 10 KiB, want 10", stored)
	}
	if got, _ := r.get(); len(got) != 0 {
		t.Fatalf("reported before the invocation ended: %q", got)
	}
	m.Done("req-1")
	m.Done("req-1")
	got, reqs := r.get()
	if len(got) != 1 || !strings.Contains(got[0], "90 lines (90.0 KiB)") || !strings.Contains(got[0], "--max-output-bytes") || reqs[0] != "req-1" {
		t.Fatalf("reports %q for %q", got, reqs)
	}
	if !m.Allow("req-2", 1023) {
		t.Error("the next invocation's first line was dropped")
	}
	if n := l.Dropped(DropInvocation); n != 90 {
		t.Errorf("Dropped(invocation) = %d, want 90", n)
	}
	// Lines dropped after Done are reported when the next request begins.
	for range 20 {
		m.Allow("req-2", 1023)
	}
	m.Allow("req-3", 1)
	if got, reqs := r.get(); len(got) != 2 || reqs[1] != "req-2" || !strings.Contains(got[1], "11 lines") {
		t.Errorf("reports %q for %q", got, reqs)
	}
	var nilMeter *Meter
	if !nilMeter.Allow("x", 1<<30) {
		t.Error("a nil meter dropped a line")
	}
	nilMeter.Done("x")
}

// TestMeterRate: one bucket per key shared by its meters, a burst of one
// second (at least 256 KiB), refilled with time; rate drops are reported at
// most once per second, and a second after the last one.
func TestMeterRate(t *testing.T) {
	c := &clock{now: time.Unix(1e9, 0)}
	l := NewLimiter(LimiterConfig{BytesPerSecond: 100 << 10, Now: c.Now}) // burst: 256 KiB
	l.every = 50 * time.Millisecond                                       // the trailing report's timer runs on real time
	var r reports
	a := l.Meter("svc", false, r.report)
	b := l.Meter("svc", false, r.report)
	other := l.Meter("other", false, r.report)
	stored := 0
	for i := range 40 {
		m := a
		if i%2 == 1 {
			m = b
		}
		if m.Allow("", 16<<10-1) {
			stored++
		}
	}
	if stored != 16 {
		t.Errorf("%d lines of 16 KiB passed a burst of 256 KiB, want 16", stored)
	}
	if !other.Allow("", 16<<10-1) {
		t.Error("another key's line was dropped")
	}
	c.step(time.Second) // 100 KiB more
	stored = 0
	for range 10 {
		if a.Allow("", 16<<10-1) {
			stored++
		}
	}
	if stored != 6 {
		t.Errorf("%d lines passed after a second at 100 KiB/s, want 6", stored)
	}
	// 24 + 4 = 28 lines dropped, reported a moment (l.every) after each
	// meter's first drop not yet reported.
	var got []string
	eventually.True(t, 10*time.Second, "reports adding up to 28 lines", func() bool {
		got, _ = r.get()
		total := 0
		for _, s := range got {
			var n int
			if _, err := fmtSscan(s, &n); err == nil {
				total += n
			}
		}
		return total == 28
	})
	for _, s := range got {
		if !strings.Contains(s, "--output-rate") {
			t.Errorf("report %q", s)
		}
	}
	// a: one or two reports; b: one.
	if len(got) > 3 {
		t.Errorf("%d reports for 2 bursts of drops: %q", len(got), got)
	}
	if n := l.Dropped(DropRate); n != 28 {
		t.Errorf("Dropped(rate) = %d, want 28", n)
	}
	// An idle key's bucket is forgotten (it is full again anyway).
	c.step(2 * rateKeyIdle)
	a.Allow("", 1)
	l.mu.Lock()
	n := len(l.buckets)
	l.mu.Unlock()
	if n != 1 {
		t.Errorf("%d buckets kept after a long idle time, want 1", n)
	}
}

// fmtSscan reads the line count of a report ("Output dropped: N lines").
func fmtSscan(s string, n *int) (int, error) {
	return fmt.Sscanf(strings.TrimPrefix(s, "Output dropped: "), "%d", n)
}
