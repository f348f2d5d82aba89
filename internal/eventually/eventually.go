// Package eventually is the one way tests wait for a condition: they poll
// it, first every millisecond and then less often (up to every 20 ms),
// and fail the test when it has not held within a bound. Tests never sleep
// a fixed time to let something happen.
package eventually

import (
	"testing"
	"time"
)

// maxInterval bounds the pause between two polls.
const maxInterval = 20 * time.Millisecond

// True polls cond until it returns true, and fails t (Fatalf, naming what
// was awaited) when timeout passes first. It returns as soon as cond
// holds; cond runs on the calling goroutine.
func True(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for pause := time.Millisecond; !cond(); pause = min(2*pause, maxInterval) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(pause)
	}
}
