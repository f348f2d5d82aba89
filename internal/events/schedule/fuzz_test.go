package schedule

import (
	"errors"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
)

var fuzzZones = []string{"", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Pacific/Apia", "Asia/Kathmandu"}

func FuzzParse(f *testing.F) {
	seeds := []string{
		"cron(0 12 * * ? *)", "cron(0 10 * * ? *)", "cron(15 12 * * ? *)", "cron(0 18 ? * MON-FRI *)",
		"cron(0 8 1 * ? *)", "cron(0/15 * * * ? *)", "cron(0/10 * ? * MON-FRI *)", "cron(0/5 8-17 ? * MON-FRI *)",
		"cron(0 9 ? * 2#1 *)", "cron(*/7 * * * ? *)", "cron(10-40/10 1,2,3 * * ? *)", "cron(0 0 1-15/2 * ? *)",
		"cron(0 0 L * ? *)", "cron(0 0 LW * ? *)", "cron(0 0 15W * ? *)", "cron(0 0 1W * ? *)", "cron(0 0 31W * ? *)",
		"cron(0 0 1 JAN,FEB,MAR ? *)", "cron(0 0 1 jan-jun ? *)", "cron(0 0 1 */3 ? *)", "cron(0 0 ? * 1,7 *)",
		"cron(0 0 ? * L *)", "cron(0 0 ? * 6L *)", "cron(0 0 ? * FRIL *)", "cron(0 0 ? * 6#3 *)", "cron(0 0 ? * 2#5 *)",
		"cron(0 0 29 2 ? *)", "cron(0 0 30 2 ? *)", "cron(0 0 29 2 ? 2100-2103)", "cron(30 2 ? 3 1#2 *)",
		"cron(0 0 1 1 ? 1970)", "cron(59 23 31 12 ? 2199)", "cron(0 0 1 1 ? 2030/5)", "cron(* * * * ? *)",
		"cron(0 12 * * * *)", "cron(0 12 ? * ? *)", "cron(60 * * * ? *)", "cron(0 0 ? * 3#1,6#3 *)",
		"cron(0 0 ? * 1/2 *)", "cron(0 22-2 * * ? *)", "cron(0/0 0 1 * ? *)", "cron(0 0 1 * ? 20x0)", "cron()",
		"cron(0 12 * * ? *", "cron( 0   12 *\t* ? * )", "rate(1 minute)", "rate(5 minutes)", "rate(1 hour)",
		"rate(12 hours)", "rate(1 day)", "rate(7 days)", "rate(1 minutes)", "rate(5 minute)", "rate(0 minutes)",
		"rate(36501 days)", "rate(5 seconds)", "at(2025-01-31T09:30:00)", "at(2024-03-10T02:30:00)",
		"at(2024-11-03T01:30:00)", "at(2025-01-31T09:30:00.5)", "at(2025-02-30T09:30:00)", "", "(", ")",
	}
	times := []int64{0, 1710054000, 1730613600, 1711846800, 1729990800, 4102444800, 7258118400, -315619200}
	for i, s := range seeds {
		f.Add(s, times[i%len(times)], uint8(i))
	}
	base := time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	span := time.Date(2250, 1, 1, 0, 0, 0, 0, time.UTC).Unix() - base
	locs := make([]*time.Location, len(fuzzZones))
	for i, tz := range fuzzZones {
		locs[i] = mustLoad(f, tz)
	}
	f.Fuzz(func(t *testing.T, expr string, sec int64, zone uint8) {
		loc := locs[int(zone)%len(locs)]
		for _, err := range []error{
			func() error { _, err := ParseCron(expr, loc); return err }(),
			func() error { _, err := ParseRate(expr, time.Unix(sec, 0)); return err }(),
		} {
			if err != nil && !errors.Is(err, stratus.ErrInvalid) {
				t.Fatalf("error %v does not wrap stratus.ErrInvalid", err)
			}
		}
		s, err := Parse(expr, loc)
		if err != nil {
			if !errors.Is(err, stratus.ErrInvalid) {
				t.Fatalf("Parse(%q) error %v does not wrap stratus.ErrInvalid", expr, err)
			}
			return
		}
		again, err := Parse(s.String(), loc)
		if err != nil {
			t.Fatalf("Parse(%q).String() = %q does not parse: %v", expr, s, err)
		}
		if again.String() != s.String() {
			t.Fatalf("String() of %q is %q, then %q", expr, s, again)
		}
		at := time.Unix(base+((sec%span)+span)%span, 0)
		for range 4 {
			n := s.Next(at)
			if n2 := again.Next(at); !n2.Equal(n) {
				t.Fatalf("%q from %v: Next = %v, re-parsed %q gives %v", expr, at, n, s, n2)
			}
			if n.IsZero() {
				break
			}
			if !n.After(at) {
				t.Fatalf("%q from %v: Next = %v, not after", expr, at, n)
			}
			at = n
		}
		last := time.Unix(base+((sec%span)+span)%span, 0)
		now := last.Add(time.Duration(sec%(400*24)) * time.Hour)
		if m, ok := Missed(s, last, now); ok {
			if !m.After(last) || m.After(now) {
				t.Fatalf("%q: Missed(%v, %v) = %v, outside the range", expr, last, now, m)
			}
			if n := s.Next(m); !n.IsZero() && !n.After(now) {
				t.Fatalf("%q: Missed(%v, %v) = %v, but %v is later", expr, last, now, m, n)
			}
		} else if n := s.Next(last); !n.IsZero() && !n.After(now) {
			t.Fatalf("%q: Missed(%v, %v) found none, but %v is due", expr, last, now, n)
		}
	})
}
