package eventually_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/eventually"
)

func TestTrueReturnsOnceTheConditionHolds(t *testing.T) {
	var n atomic.Int32
	eventually.True(t, 5*time.Second, "the third poll", func() bool { return n.Add(1) >= 3 })
	if got := n.Load(); got != 3 {
		t.Fatalf("cond ran %d times; want 3", got)
	}
}

// fatalRecorder records Fatalf instead of ending the test.
type fatalRecorder struct {
	testing.TB
	msg, args string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = format
	f.args = fmt.Sprintf(format, args...)
}

func TestTrueFailsAfterTheTimeout(t *testing.T) {
	rec := &fatalRecorder{TB: t}
	start := time.Now()
	polls := 0
	// Fatalf does not stop the loop here, so cond ends it once reported.
	eventually.True(rec, 50*time.Millisecond, "never", func() bool {
		polls++
		return rec.msg != ""
	})
	if rec.msg == "" {
		t.Fatal("no failure reported")
	}
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Fatalf("failed after %s; want at least the 50ms timeout", took)
	}
	if polls < 3 {
		t.Fatalf("polled %d times in 50ms; want several", polls)
	}
}

func TestNilReportsTheLastError(t *testing.T) {
	rec := &fatalRecorder{TB: t}
	n := 0
	eventually.Nil(rec, 20*time.Millisecond, "a count of 3", func() error {
		if rec.msg != "" {
			return nil // reported: end the loop Fatalf did not stop
		}
		n++
		return fmt.Errorf("count is %d", n)
	})
	if !strings.Contains(rec.args, "a count of 3") || !strings.Contains(rec.args, fmt.Sprintf("count is %d", n)) {
		t.Fatalf("failure %q; want what was awaited and the last error (count is %d)", rec.args, n)
	}
}
