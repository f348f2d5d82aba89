package schedule

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
)

// maxRate bounds a rate's interval so that its arithmetic cannot overflow.
const maxRate = 36500 * 24 * time.Hour

var rateUnits = map[string]time.Duration{
	"minute": time.Minute, "minutes": time.Minute,
	"hour": time.Hour, "hours": time.Hour,
	"day": 24 * time.Hour, "days": 24 * time.Hour,
}

// rate fires at start + k·every, k >= 0.
type rate struct {
	value int
	unit  string // singular
	every time.Duration
	start time.Time
}

func parseRate(in string, start time.Time) (*rate, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("rate %q: %s: %w", in, fmt.Sprintf(format, args...), stratus.ErrInvalid)
	}
	fs := strings.Fields(in)
	if len(fs) != 2 {
		return nil, fail("want a value and a unit, as in 5 minutes")
	}
	value, ok := atoi(fs[0])
	if !ok || value < 1 {
		return nil, fail("value %q: want a positive integer", fs[0])
	}
	unit, ok := rateUnits[fs[1]]
	if !ok {
		return nil, fail("unit %q: want minute, minutes, hour, hours, day or days", fs[1])
	}
	singular := strings.TrimSuffix(fs[1], "s")
	switch plural := singular != fs[1]; {
	case value == 1 && plural:
		return nil, fail("use %q for a value of 1", singular)
	case value > 1 && !plural:
		return nil, fail("use %q for a value greater than 1", singular+"s")
	}
	if time.Duration(value) > maxRate/unit {
		return nil, fail("interval longer than %d days", maxRate/(24*time.Hour))
	}
	return &rate{value: value, unit: singular, every: time.Duration(value) * unit, start: start}, nil
}

// String returns "rate(value unit)".
func (r *rate) String() string {
	unit := r.unit
	if r.value > 1 {
		unit += "s"
	}
	return fmt.Sprintf("rate(%d %s)", r.value, unit)
}

// Next returns the first start + k·interval strictly after t (start itself
// if t is before it), in the start's location.
func (r *rate) Next(t time.Time) time.Time {
	if t.Before(r.start) {
		return r.start
	}
	// Whole seconds first: t.Sub saturates beyond 292 years.
	every := int64(r.every / time.Second)
	ds := t.Unix() - r.start.Unix() // >= 0
	if ds > math.MaxInt64/2 {
		return time.Time{}
	}
	k := ds / every
	if ds == k*every && t.Nanosecond() < r.start.Nanosecond() {
		k-- // t is just before firing k
	}
	// k = floor((t - start) / every); the next firing is k+1.
	return time.Unix(r.start.Unix()+(k+1)*every, int64(r.start.Nanosecond())).In(r.start.Location())
}

const atLayout = "2006-01-02T15:04:05"

// once is an at() schedule: it fires once.
type once struct {
	wall time.Time // the wall-clock time, as a UTC time
	at   time.Time
}

func parseAt(in string, loc *time.Location) (*once, error) {
	s := strings.TrimSpace(in)
	w, err := time.Parse(atLayout, s)
	if err != nil || w.Format(atLayout) != s { // Parse accepts fractions of a second
		return nil, fmt.Errorf("at %q: want a date and time as yyyy-mm-ddThh:mm:ss, e.g. 2025-01-31T09:30:00: %w", in, stratus.ErrInvalid)
	}
	t, _ := resolve(w, loc)
	return &once{wall: w, at: t}, nil
}

// String returns "at(yyyy-mm-ddThh:mm:ss)".
func (a *once) String() string { return "at(" + a.wall.Format(atLayout) + ")" }

// Next returns the schedule's one firing if it is after t, or the zero time.
func (a *once) Next(t time.Time) time.Time {
	if a.at.After(t) {
		return a.at
	}
	return time.Time{}
}

// resolve returns the first instant whose wall clock in loc reads w (w's
// fields, read as a UTC time) and true. If no instant does, because w falls
// in a gap where the clocks moved forward, it returns the instant as far after
// the change as w is after the last wall time before it, and false.
func resolve(w time.Time, loc *time.Location) (time.Time, bool) {
	if loc == time.UTC {
		return w, true
	}
	x := w.Unix()
	u := time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), 0, loc)
	if wallUnix(u) == x {
		// time.Date may pick either occurrence of a repeated time: walk back
		// through earlier zone periods while they also show w.
		for {
			start, _ := u.ZoneBounds()
			if start.IsZero() {
				return u, true
			}
			_, off := start.Add(-time.Nanosecond).Zone()
			e := time.Unix(x-int64(off), 0).In(loc)
			if !e.Before(start) || wallUnix(e) != x {
				return u, true
			}
			u = e
		}
	}
	start, end := u.ZoneBounds()
	for _, change := range []time.Time{start, end} {
		if change.IsZero() {
			continue
		}
		_, before := change.Add(-time.Nanosecond).Zone()
		_, after := change.Zone()
		if lo, hi := change.Unix()+int64(before), change.Unix()+int64(after); lo <= x && x < hi {
			return time.Unix(x-int64(before), 0).In(loc), false
		}
	}
	return u, false
}

// wallUnix returns t's wall clock in its location as seconds since the epoch.
func wallUnix(t time.Time) int64 {
	_, off := t.Zone()
	return t.Unix() + int64(off)
}
