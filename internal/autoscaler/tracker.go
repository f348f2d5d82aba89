package autoscaler

import (
	"sync"
	"time"
)

// Tracker counts a revision's requests in flight and reports their
// time-weighted average between samples, so that requests shorter than
// the sampling interval still count as traffic. The zero value is ready to
// use. It is safe for concurrent use.
type Tracker struct {
	mu       sync.Mutex
	begun    bool
	inflight int
	from     time.Time // start of the current sampling period
	at       time.Time // latest time seen
	area     float64   // request-seconds in flight since from
}

// advance accounts for the requests in flight up to now; t.mu is held.
func (t *Tracker) advance(now time.Time) {
	if !t.begun {
		t.begun, t.from, t.at = true, now, now
		return
	}
	if now.After(t.at) {
		t.area += float64(t.inflight) * now.Sub(t.at).Seconds()
		t.at = now
	}
}

// Begin records a request starting at now.
func (t *Tracker) Begin(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.advance(now)
	t.inflight++
}

// End records a request ending at now. An End without a Begin is ignored.
func (t *Tracker) End(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.advance(now)
	if t.inflight > 0 {
		t.inflight--
	}
}

// InFlight returns the requests in flight.
func (t *Tracker) InFlight() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.inflight
}

// Sample returns the average requests in flight since the previous Sample
// (or the first call), weighted by time, and starts a new period. When no
// time has passed it returns the requests in flight now. The result is
// meant for Scaler.Record.
func (t *Tracker) Sample(now time.Time) float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.advance(now)
	avg := float64(t.inflight)
	if span := t.at.Sub(t.from).Seconds(); span > 0 {
		avg = t.area / span
	}
	t.from, t.area = t.at, 0
	return avg
}
