package eventually_test

import (
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
	msg string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = format
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
