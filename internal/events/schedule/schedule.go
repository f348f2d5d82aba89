// Package schedule parses the schedule expressions of Amazon EventBridge
// Scheduler and EventBridge scheduled rules — cron(...), rate(...) and
// at(...) — and computes when they fire. It is pure: no goroutines, no clock,
// no I/O; callers pass every time in.
//
// # Cron
//
// cron(minutes hours day-of-month month day-of-week year) has six fields
// separated by white space:
//
//	field          values            wildcards
//	minutes        0-59              , - * /
//	hours          0-23              , - * /
//	day-of-month   1-31              , - * ? / L W
//	month          1-12 or JAN-DEC   , - * /
//	day-of-week    1-7 or SUN-SAT    , - * ? L #
//	year           1970-2199         , - * /
//
// A comma separates values (JAN,FEB,MAR), a dash gives a range (1-15; the
// smaller value first), an asterisk every value, and a slash a step from a
// start (0/15, */15, 10-40/10 in minutes; a bare start such as 5/10 runs to
// the field's maximum). Exactly one of day-of-month and day-of-week must be
// "?", which means "any". Day-of-week 1 is Sunday and 7 Saturday. Names are
// three letters; the expression is case-insensitive and String upper-cases it.
//
// In day-of-month, L is the last day of the month, 15W the weekday (Monday to
// Friday) nearest the 15th within the same month (a Saturday 1st moves to
// Monday the 3rd, a Sunday last day to the Friday before), and LW (both
// together, as in the Quartz syntax that AWS's cron follows) the last weekday
// of the month. A month without the given day (31W in April) does
// not fire. In day-of-week, L alone is the last day of the week (Saturday),
// 6L the last Friday of the month and 3#2 the second Tuesday (the #-week runs
// 1-5; a month without a fifth such day does not fire). L, W and # each stand
// alone in their field: they take no lists, ranges or steps. Firings are on
// whole minutes; nothing fires after 2199.
//
// # Rate
//
// rate(value unit) fires every value units of elapsed time, value a positive
// integer and unit one of minute, minutes, hour, hours, day, days — singular
// exactly when value is 1, as AWS requires. A rate schedule fires at
// start, start+interval, start+2·interval, ...: ParseRate takes the start (the
// server uses the schedule's creation time); Parse anchors it at the Unix
// epoch, so rate(5 minutes) fires at :00, :05, ... UTC. A day is 24 hours, so
// across a daylight-saving change rate(1 day) moves by an hour on the wall
// clock, as EventBridge Scheduler documents.
//
// # At
//
// at(yyyy-mm-ddThh:mm:ss) fires once, at that wall-clock time in the
// schedule's time zone.
//
// # Time zones and daylight saving time
//
// Cron and at expressions are read on the wall clock of the schedule's
// *time.Location (UTC unless given). Following EventBridge Scheduler's
// documented behaviour, a cron firing whose wall-clock time does not exist
// because the clocks move forward (02:30 on the spring-forward day in
// America/New_York) is skipped, and a wall-clock time that happens twice
// because the clocks move back fires once, at its first occurrence (the
// daylight-time instant). So in New York
//
//	cron(0/30 * * * ? *)
//
// fires at 01:30 EST and then 03:00 EDT on the spring-forward day, and at
// 01:00 and 01:30 EDT and then 02:00 EST on the fall-back day. A one-time
// at() schedule is never lost: a time in a skipped hour fires as long after
// the change as it was meant to be after the last wall time before it (02:30
// fires at 03:30 EDT), and a repeated time fires at its first occurrence.
//
// LoadLocation reads the host's zoneinfo; a binary that must run on hosts
// without one imports time/tzdata in its main package.
//
// # Catch-up
//
// Missed implements the server's catch-up rule: firings missed while the
// server was down collapse into at most one catch-up firing, the latest one
// that was due.
package schedule

import (
	"fmt"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
)

// Schedule is a parsed schedule expression. Its methods are pure and safe for
// concurrent use.
type Schedule interface {
	// Next returns the first firing time strictly after t, in the schedule's
	// location for cron and at (rate ignores locations), or the zero time if
	// there is none. It never blocks.
	Next(t time.Time) time.Time
	// String returns the canonical expression, e.g. "cron(0 12 * * ? *)" or
	// "rate(5 minutes)"; Parse accepts it back.
	String() string
}

// Parse parses an EventBridge schedule expression: "cron(fields)",
// "rate(value unit)" or "at(yyyy-mm-ddThh:mm:ss)". Cron and at expressions
// are evaluated in loc (UTC if nil); a rate is anchored at the Unix epoch (use
// ParseRate to choose its start). Errors wrap stratus.ErrInvalid.
func Parse(expr string, loc *time.Location) (Schedule, error) {
	if loc == nil {
		loc = time.UTC
	}
	s := strings.TrimSpace(expr)
	for _, kind := range []string{"cron", "rate", "at"} {
		if !strings.HasPrefix(s, kind+"(") {
			continue
		}
		if !strings.HasSuffix(s, ")") {
			return nil, fmt.Errorf("schedule expression %q: missing closing parenthesis: %w", expr, stratus.ErrInvalid)
		}
		inner := s[len(kind)+1 : len(s)-1]
		switch kind {
		case "cron":
			return parseCron(inner, loc)
		case "rate":
			return parseRate(inner, time.Unix(0, 0).UTC())
		default:
			return parseAt(inner, loc)
		}
	}
	return nil, fmt.Errorf("schedule expression %q: want cron(minutes hours day-of-month month day-of-week year), rate(value unit) or at(yyyy-mm-ddThh:mm:ss): %w", expr, stratus.ErrInvalid)
}

// ParseCron parses the six fields of a cron expression, as the CLI's --cron
// flag passes them ("0 12 * * ? *"), evaluated in loc (UTC if nil). A value
// wrapped in cron(...) is accepted too. Errors wrap stratus.ErrInvalid.
func ParseCron(fields string, loc *time.Location) (Schedule, error) {
	if loc == nil {
		loc = time.UTC
	}
	return parseCron(unwrap(fields, "cron"), loc)
}

// ParseRate parses the inside of a rate expression, as the CLI's --rate flag
// passes it ("5 minutes"). The schedule fires at start + k·interval for
// k = 0, 1, 2, ... A value wrapped in rate(...) is accepted too. Errors wrap
// stratus.ErrInvalid.
func ParseRate(s string, start time.Time) (Schedule, error) {
	return parseRate(unwrap(s, "rate"), start)
}

// LoadLocation returns the time zone with the given IANA name
// ("Europe/Berlin"); "" means UTC. The server's local zone ("Local") is
// refused so that a schedule means the same on every host. Errors wrap
// stratus.ErrInvalid.
func LoadLocation(tz string) (*time.Location, error) {
	switch tz {
	case "", "UTC":
		return time.UTC, nil
	case "Local":
		return nil, fmt.Errorf("time zone %q: want an IANA name such as Europe/Berlin, not the server's local zone: %w", tz, stratus.ErrInvalid)
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, fmt.Errorf("time zone %q: not a known IANA time zone name (such as America/New_York or UTC): %w", tz, stratus.ErrInvalid)
	}
	return loc, nil
}

// Missed returns the latest firing of s in (last, now] and true, or false if
// there is none. The server uses it after a restart: of all the firings it
// missed while it was down it makes at most one, this one, and then carries
// on with s.Next(now). It calls Next O(log((now-last)/1ns)) times, however
// many firings were missed.
func Missed(s Schedule, last, now time.Time) (time.Time, bool) {
	f := s.Next(last)
	if f.IsZero() || f.After(now) {
		return time.Time{}, false
	}
	// f is a firing in (last, now]. Next is monotonic, so bisect the time
	// axis keeping f a firing <= now and Next(hi) > now (or none).
	hi := now
	for range 256 { // enough for any range of times; guards a non-monotonic Schedule
		n := s.Next(f)
		if n.IsZero() || n.After(now) {
			return f, true
		}
		mid := f.Add(hi.Sub(f) / 2)
		if m := s.Next(mid); !m.IsZero() && !m.After(now) {
			f = m
		} else {
			hi = mid
		}
	}
	return f, true
}

// unwrap strips "kind(" and ")" around s, if both are there.
func unwrap(s, kind string) string {
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, kind+"(") && strings.HasSuffix(t, ")") {
		return t[len(kind)+1 : len(t)-1]
	}
	return s
}
