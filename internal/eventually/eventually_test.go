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

// fatalRecorder records Fatalf instead of ending the test. True and Nil
// return right after Fatalf, so that they stop polling even with a TB
// whose Fatalf returns; the tests check that they do.
type fatalRecorder struct {
	testing.TB
	calls int
	msg   string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.calls++
	f.msg = fmt.Sprintf(format, args...)
}

func TestTrueFailsAfterTheTimeout(t *testing.T) {
	rec := &fatalRecorder{TB: t}
	start := time.Now()
	polls := 0
	eventually.True(rec, 50*time.Millisecond, "never", func() bool {
		if rec.calls > 0 {
			t.Error("polled again after reporting the failure")
			return true // end the loop, which should have ended
		}
		polls++
		return false
	})
	took := time.Since(start)
	if rec.calls != 1 || rec.msg != "timed out after 50ms waiting for never" {
		t.Fatalf("Fatalf called %d times, last with %q; want once, naming what was awaited", rec.calls, rec.msg)
	}
	if took < 50*time.Millisecond {
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
		if rec.calls > 0 {
			t.Error("polled again after reporting the failure")
			return nil // end the loop, which should have ended
		}
		n++
		return fmt.Errorf("count is %d", n)
	})
	if rec.calls != 1 {
		t.Fatalf("Fatalf called %d times; want once", rec.calls)
	}
	if !strings.Contains(rec.msg, "a count of 3") || !strings.HasSuffix(rec.msg, fmt.Sprintf(": count is %d", n)) {
		t.Fatalf("failure %q; want what was awaited and the last error (count is %d)", rec.msg, n)
	}
}
