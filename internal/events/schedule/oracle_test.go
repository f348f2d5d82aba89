package schedule

import (
	"math/rand/v2"
	"testing"
	"time"
)

// The oracle walks real instants minute by minute and asks, for each, whether
// its wall clock matches the expression by rules written out separately from
// the implementation's day masks. It is slow, so it skips days that do not
// match.

func has(s valueSet, v int) bool {
	n, ok := s.next(v)
	return ok && n == v
}

func isWeekday(y int, m time.Month, d int) bool {
	wd := time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Weekday()
	return wd != time.Saturday && wd != time.Sunday
}

// oracleDay reports whether c matches day d of month m of year y.
func oracleDay(c *cron, y int, m time.Month, d int) bool {
	if !has(c.years, y) || !has(c.months, int(m)) {
		return false
	}
	last := time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
	wd := time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Weekday()
	switch c.dom {
	case domSet:
		return c.domDays&(1<<d) != 0
	case domLast:
		return d == last
	case domLastWeekday:
		e := last
		for !isWeekday(y, m, e) {
			e--
		}
		return d == e
	case domNearestWeekday:
		// Among the weekdays of the month, the one closest to the target;
		// at equal distance (never happens within a month) the earlier.
		if c.domDay > last || !isWeekday(y, m, d) {
			return false
		}
		dist := func(e int) int { return max(e-c.domDay, c.domDay-e) }
		for e := 1; e <= last; e++ {
			if isWeekday(y, m, e) && (dist(e) < dist(d) || dist(e) == dist(d) && e < d) {
				return false
			}
		}
		return true
	}
	switch c.dow {
	case dowSet:
		return c.dowDays&(1<<wd) != 0
	case dowLast:
		return wd == c.dowDay && d+7 > last
	case dowNth:
		return wd == c.dowDay && (d-1)/7+1 == c.dowNth
	}
	return false
}

// oracleNext returns the first firing after t, looking no further than limit.
func oracleNext(c *cron, t, limit time.Time) time.Time {
	u := t.Truncate(time.Minute).Add(time.Minute)
	for u.Before(limit) {
		w := u.In(c.loc)
		y, m, d := w.Date()
		if !oracleDay(c, y, m, d) {
			// Jump to the next local midnight (which exists in the zones
			// below: they change their clocks at 02:00 or 03:00).
			u = time.Date(y, m, d+1, 0, 0, 0, 0, c.loc)
			continue
		} else if has(c.hours, w.Hour()) && has(c.minutes, w.Minute()) && u.After(t) {
			// The second occurrence of a repeated wall time does not fire.
			// (The zones below move their clocks by at most an hour.)
			if earlier := u.Add(-time.Hour).In(c.loc); earlier.Hour() != w.Hour() || earlier.Minute() != w.Minute() || earlier.Day() != w.Day() {
				return u
			}
		}
		u = u.Add(time.Minute)
	}
	return time.Time{}
}

func TestCronNextAgainstOracle(t *testing.T) {
	exprs := []string{
		"* * * * ? *",
		"0/15 * * * ? *",
		"7,37 */5 * * ? *",
		"0 0 * * ? *",
		"30 2 * * ? *",
		"0/20 1-3 * * ? *",
		"15 1 ? * SUN *",
		"0 12 L * ? *",
		"0 12 LW * ? *",
		"0 9 1W * ? *",
		"0 9 15W * ? *",
		"0 9 30W * ? *",
		"0 9 31W * ? *",
		"0 9 29 2 ? *",
		"0 9 1-7,15 */2 ? *",
		"0 9 5/10 * ? *",
		"0 9 ? * MON-FRI *",
		"30 2 ? * 1,7 *",
		"0 18 ? * 6L *",
		"0 18 ? * 1L *",
		"0 3 ? * L *",
		"0 8 ? * 2#1 *",
		"0 8 ? * 5#5 *",
		"30 2 ? MAR,OCT,NOV 1#2 *",
		"30 2 ? MAR,OCT,NOV 1L *",
		"45 23 31 DEC ? *",
		"0 0 1 1 ? 2025-2027",
	}
	zones := []string{"", "America/New_York", "Europe/Berlin"}
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	const firings, starts = 8, 2
	horizon := 3 * 366 * 24 * time.Hour
	for _, expr := range exprs {
		for _, tz := range zones {
			loc := mustLoad(t, tz)
			s, err := ParseCron(expr, loc)
			if err != nil {
				t.Fatal(err)
			}
			c := s.(*cron)
			for range starts {
				at := base.Add(time.Duration(rng.Int64N(int64(2 * 365 * 24 * time.Hour))))
				at = at.Add(time.Duration(rng.IntN(3)) * 20 * time.Second)
				limit := at.Add(horizon)
				for i := range firings {
					want := oracleNext(c, at, limit)
					got := s.Next(at)
					if want.IsZero() && (got.IsZero() || !got.Before(limit)) {
						break // beyond what the oracle looked at
					}
					if !got.Equal(want) {
						t.Errorf("%s in %q from %v: firing %d = %v, oracle says %v", expr, tz, at, i, got, want)
						break
					}
					if got.IsZero() {
						break
					}
					at = got
				}
			}
		}
	}
}

// Every zone switch in 2024 in New York and Berlin, minute by minute.
func TestCronNextAgainstOracleAroundDST(t *testing.T) {
	days := map[string][]string{
		"America/New_York": {"2024-03-09T20:00:00Z", "2024-11-02T20:00:00Z"},
		"Europe/Berlin":    {"2024-03-30T20:00:00Z", "2024-10-26T20:00:00Z"},
	}
	for tz, starts := range days {
		loc := mustLoad(t, tz)
		for _, expr := range []string{"* * * * ? *", "0/7 * * * ? *", "30 * * * ? *", "0 1-3 * * ? *", "59 1,2 * * ? *"} {
			s, err := ParseCron(expr, loc)
			if err != nil {
				t.Fatal(err)
			}
			for _, from := range starts {
				at := mustTime(t, from)
				end := at.Add(12 * time.Hour)
				for at.Before(end) {
					want := oracleNext(s.(*cron), at, end.Add(24*time.Hour))
					got := s.Next(at)
					if !got.Equal(want) {
						t.Fatalf("%s in %s from %v: Next = %v, oracle says %v", expr, tz, at, got, want)
					}
					at = at.Add(17 * time.Minute) // also start from times inside the gap and the repeat
				}
			}
		}
	}
}
