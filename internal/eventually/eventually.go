// Package eventually is the one way tests wait for a condition: they poll
// it, first every millisecond and then less often (up to every 20 ms),
// and fail the test when it has not held within a bound. Tests never sleep
// a fixed time to let something happen.
package eventually

import (
	"errors"
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
	Nil(t, timeout, what, func() error {
		if !cond() {
			return errNotYet
		}
		return nil
	})
}

var errNotYet = errors.New("not yet")

// Nil polls check until it returns nil, and fails t when timeout passes
// first, naming what was awaited and check's last error (so that the
// failure shows the last state seen). It returns as soon as check passes;
// check runs on the calling goroutine.
func Nil(t testing.TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for pause := time.Millisecond; ; pause = min(2*pause, maxInterval) {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			if err == errNotYet {
				t.Fatalf("timed out after %s waiting for %s", timeout, what)
			} else {
				t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
			}
			return
		}
		time.Sleep(pause)
	}
}
