package schedule

import (
	"fmt"
	"testing"
	"time"
)

func mustLoad(t testing.TB, tz string) *time.Location {
	t.Helper()
	loc, err := LoadLocation(tz)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

// checkChain asserts that from `from`, Next returns want[0], then from that
// want[1], and so on; "" is the zero time (no further firing).
func checkChain(t *testing.T, s Schedule, loc *time.Location, from string, want []string) {
	t.Helper()
	at := mustTime(t, from)
	for i, w := range want {
		got := s.Next(at)
		if w == "" {
			if !got.IsZero() {
				t.Errorf("%v from %s: firing %d = %s, want none", s, from, i, got.Format(time.RFC3339))
			}
			return
		}
		wt := mustTime(t, w)
		if !got.Equal(wt) {
			t.Errorf("%v from %s: firing %d = %s, want %s", s, from, i, got.Format(time.RFC3339), w)
			return
		}
		if loc != nil && got.Location() != loc {
			t.Errorf("%v: firing %d in %v, want %v", s, i, got.Location(), loc)
		}
		at = got
	}
}

func TestCronNext(t *testing.T) {
	tests := []struct {
		expr string
		tz   string
		from string
		want []string
	}{
		// Strictly after: a firing at t itself is not returned.
		{"0 12 * * ? *", "", "2024-01-01T12:00:00Z", []string{"2024-01-02T12:00:00Z"}},
		{"0 12 * * ? *", "", "2024-01-01T11:59:59.999Z", []string{"2024-01-01T12:00:00Z", "2024-01-02T12:00:00Z"}},
		{"0 12 * * ? *", "", "2024-01-01T12:00:00.000000001Z", []string{"2024-01-02T12:00:00Z"}},
		{"* * * * ? *", "", "2024-01-01T12:00:30Z", []string{"2024-01-01T12:01:00Z", "2024-01-01T12:02:00Z"}},
		{"* * * * ? *", "", "2024-12-31T23:59:00Z", []string{"2025-01-01T00:00:00Z"}},
		// Steps, ranges, lists.
		{"0/15 * * * ? *", "", "2024-01-01T10:07:00Z", []string{"2024-01-01T10:15:00Z", "2024-01-01T10:30:00Z", "2024-01-01T10:45:00Z", "2024-01-01T11:00:00Z"}},
		{"5/20 * * * ? *", "", "2024-01-01T10:00:00Z", []string{"2024-01-01T10:05:00Z", "2024-01-01T10:25:00Z", "2024-01-01T10:45:00Z", "2024-01-01T11:05:00Z"}},
		{"*/7 * * * ? *", "", "2024-01-01T10:55:00Z", []string{"2024-01-01T10:56:00Z", "2024-01-01T11:00:00Z", "2024-01-01T11:07:00Z"}},
		{"10-40/10 8-9 * * ? *", "", "2024-01-01T08:35:00Z", []string{"2024-01-01T08:40:00Z", "2024-01-01T09:10:00Z", "2024-01-01T09:20:00Z", "2024-01-01T09:30:00Z", "2024-01-01T09:40:00Z", "2024-01-02T08:10:00Z"}},
		{"0 */6 * * ? *", "", "2024-01-01T07:00:00Z", []string{"2024-01-01T12:00:00Z", "2024-01-01T18:00:00Z", "2024-01-02T00:00:00Z"}},
		{"0 0 1-15/7 * ? *", "", "2024-01-01T00:00:00Z", []string{"2024-01-08T00:00:00Z", "2024-01-15T00:00:00Z", "2024-02-01T00:00:00Z"}},
		{"0 0 1 JAN,JUL ? *", "", "2024-01-01T00:00:00Z", []string{"2024-07-01T00:00:00Z", "2025-01-01T00:00:00Z"}},
		{"0 0 1 */3 ? *", "", "2024-01-15T00:00:00Z", []string{"2024-04-01T00:00:00Z", "2024-07-01T00:00:00Z", "2024-10-01T00:00:00Z", "2025-01-01T00:00:00Z"}},
		{"0 9 ? * MON-FRI *", "", "2024-01-05T10:00:00Z", []string{"2024-01-08T09:00:00Z", "2024-01-09T09:00:00Z"}},
		{"0 0 ? * 1,7 *", "", "2024-01-01T00:00:00Z", []string{"2024-01-06T00:00:00Z", "2024-01-07T00:00:00Z", "2024-01-13T00:00:00Z"}},
		{"0 0 ? * SUN *", "", "2024-01-01T00:00:00Z", []string{"2024-01-07T00:00:00Z", "2024-01-14T00:00:00Z"}},
		// Month ends.
		{"0 0 31 * ? *", "", "2024-01-31T00:00:00Z", []string{"2024-03-31T00:00:00Z", "2024-05-31T00:00:00Z", "2024-07-31T00:00:00Z", "2024-08-31T00:00:00Z", "2024-10-31T00:00:00Z"}},
		{"0 0 30 2 ? *", "", "2024-01-01T00:00:00Z", []string{""}},
		{"0 0 31 4,6,9,11 ? *", "", "2024-01-01T00:00:00Z", []string{""}},
		// L in day-of-month, leap years.
		{"0 0 L * ? *", "", "2024-01-31T00:00:00Z", []string{"2024-02-29T00:00:00Z", "2024-03-31T00:00:00Z", "2024-04-30T00:00:00Z"}},
		{"0 0 L 2 ? *", "", "2023-01-01T00:00:00Z", []string{"2023-02-28T00:00:00Z", "2024-02-29T00:00:00Z", "2025-02-28T00:00:00Z"}},
		{"0 0 L 2 ? 2100", "", "2024-01-01T00:00:00Z", []string{"2100-02-28T00:00:00Z", ""}},
		{"0 0 29 2 ? *", "", "2024-03-01T00:00:00Z", []string{"2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"}},
		{"0 0 29 2 ? 2097-2199", "", "2024-01-01T00:00:00Z", []string{"2104-02-29T00:00:00Z"}},
		{"0 0 29 2 ? 2100-2103", "", "2024-01-01T00:00:00Z", []string{""}},
		{"0 0 29 2 ? 2000", "", "1999-01-01T00:00:00Z", []string{"2000-02-29T00:00:00Z", ""}},
		// W: the nearest weekday in the same month.
		{"0 0 15W * ? *", "", "2024-06-01T00:00:00Z", []string{"2024-06-14T00:00:00Z", "2024-07-15T00:00:00Z", "2024-08-15T00:00:00Z", "2024-09-16T00:00:00Z"}},
		{"0 0 1W * ? *", "", "2024-05-15T00:00:00Z", []string{"2024-06-03T00:00:00Z", "2024-07-01T00:00:00Z"}},
		{"0 0 31W * ? *", "", "2024-03-01T00:00:00Z", []string{"2024-03-29T00:00:00Z", "2024-05-31T00:00:00Z", "2024-07-31T00:00:00Z", "2024-08-30T00:00:00Z"}},
		{"0 0 30W 2 ? *", "", "2024-01-01T00:00:00Z", []string{""}},
		{"0 0 LW * ? *", "", "2024-01-01T00:00:00Z", []string{"2024-01-31T00:00:00Z", "2024-02-29T00:00:00Z", "2024-03-29T00:00:00Z", "2024-04-30T00:00:00Z", "2024-05-31T00:00:00Z", "2024-06-28T00:00:00Z"}},
		// # and L in day-of-week.
		{"0 0 ? * 6#3 *", "", "2024-01-01T00:00:00Z", []string{"2024-01-19T00:00:00Z", "2024-02-16T00:00:00Z", "2024-03-15T00:00:00Z"}},
		{"0 0 ? * 2#5 *", "", "2024-01-01T00:00:00Z", []string{"2024-01-29T00:00:00Z", "2024-04-29T00:00:00Z", "2024-07-29T00:00:00Z", "2024-09-30T00:00:00Z", "2024-12-30T00:00:00Z"}},
		{"0 0 ? * MON#1 *", "", "2024-01-01T00:00:00Z", []string{"2024-02-05T00:00:00Z", "2024-03-04T00:00:00Z"}},
		{"0 0 ? * 6L *", "", "2024-01-01T00:00:00Z", []string{"2024-01-26T00:00:00Z", "2024-02-23T00:00:00Z", "2024-03-29T00:00:00Z"}},
		{"0 0 ? * FRIL *", "", "2024-01-01T00:00:00Z", []string{"2024-01-26T00:00:00Z", "2024-02-23T00:00:00Z"}},
		{"0 0 ? * L *", "", "2024-01-01T00:00:00Z", []string{"2024-01-06T00:00:00Z", "2024-01-13T00:00:00Z"}},
		// Year bounds.
		{"0 0 1 1 ? 1970", "", "1960-01-01T00:00:00Z", []string{"1970-01-01T00:00:00Z", ""}},
		{"0 0 1 1 ? 1970", "America/New_York", "1969-06-01T00:00:00Z", []string{"1970-01-01T00:00:00-05:00", ""}},
		{"0 0 1 1 ? 2199", "", "2198-06-01T00:00:00Z", []string{"2199-01-01T00:00:00Z", ""}},
		{"59 23 31 12 ? 2199", "", "2199-12-31T23:58:00Z", []string{"2199-12-31T23:59:00Z", ""}},
		{"* * * * ? *", "", "2199-12-31T23:59:00Z", []string{""}},
		{"* * * * ? *", "", "2500-01-01T00:00:00Z", []string{""}},
		{"0 0 1 1 ? 2030/5", "", "2024-01-01T00:00:00Z", []string{"2030-01-01T00:00:00Z", "2035-01-01T00:00:00Z"}},
		{"0 0 1 1 ? 2020,2024,2028", "", "2020-01-01T00:00:00Z", []string{"2024-01-01T00:00:00Z", "2028-01-01T00:00:00Z", ""}},
		// Time zones without DST changes.
		{"0 12 * * ? *", "Asia/Kathmandu", "2024-01-01T00:00:00Z", []string{"2024-01-01T12:00:00+05:45", "2024-01-02T12:00:00+05:45"}},
		{"0 0 L * ? *", "Asia/Tokyo", "2024-02-28T14:00:00Z", []string{"2024-02-29T00:00:00+09:00", "2024-03-31T00:00:00+09:00"}},

		// America/New_York springs forward on 2024-03-10 at 02:00 EST to 03:00 EDT:
		// 02:xx does not exist that day and is skipped.
		{"30 2 * * ? *", "America/New_York", "2024-03-09T03:00:00-05:00", []string{"2024-03-11T02:30:00-04:00", "2024-03-12T02:30:00-04:00"}},
		{"30 2 * * ? *", "America/New_York", "2024-03-08T03:00:00-05:00", []string{"2024-03-09T02:30:00-05:00", "2024-03-11T02:30:00-04:00"}},
		{"0/30 * * * ? *", "America/New_York", "2024-03-10T01:15:00-05:00", []string{"2024-03-10T01:30:00-05:00", "2024-03-10T03:00:00-04:00", "2024-03-10T03:30:00-04:00"}},
		{"0 12 * * ? *", "America/New_York", "2024-03-09T13:00:00-05:00", []string{"2024-03-10T12:00:00-04:00", "2024-03-11T12:00:00-04:00"}},
		// The second Sunday of March at 02:30 never exists in New York.
		{"30 2 ? 3 1#2 *", "America/New_York", "2024-01-01T00:00:00Z", []string{""}},
		// ...but it does in Berlin, which changes on the last Sunday.
		{"30 2 ? 3 1#2 *", "Europe/Berlin", "2024-01-01T00:00:00Z", []string{"2024-03-10T02:30:00+01:00", "2025-03-09T02:30:00+01:00"}},
		// New York falls back on 2024-11-03 at 02:00 EDT to 01:00 EST: 01:xx
		// happens twice and fires once, at its first (EDT) occurrence.
		{"30 1 * * ? *", "America/New_York", "2024-11-03T00:00:00-04:00", []string{"2024-11-03T01:30:00-04:00", "2024-11-04T01:30:00-05:00"}},
		{"0/30 * * * ? *", "America/New_York", "2024-11-03T00:45:00-04:00", []string{"2024-11-03T01:00:00-04:00", "2024-11-03T01:30:00-04:00", "2024-11-03T02:00:00-05:00", "2024-11-03T02:30:00-05:00"}},
		{"0/30 * * * ? *", "America/New_York", "2024-11-03T01:10:00-05:00", []string{"2024-11-03T02:00:00-05:00"}},
		{"* * * * ? *", "America/New_York", "2024-11-03T01:59:00-04:00", []string{"2024-11-03T02:00:00-05:00"}},
		{"0 12 * * ? *", "America/New_York", "2024-11-02T13:00:00-04:00", []string{"2024-11-03T12:00:00-05:00"}},
		// Far beyond the zone's last listed change, its rule still applies.
		{"30 2 * * ? *", "America/New_York", "2150-03-07T00:00:00Z", []string{"2150-03-07T02:30:00-05:00", "2150-03-09T02:30:00-04:00"}},
		// Europe/Berlin springs forward on 2024-03-31 at 02:00 CET to 03:00 CEST,
		// and falls back on 2024-10-27 at 03:00 CEST to 02:00 CET.
		{"30 2 * * ? *", "Europe/Berlin", "2024-03-30T12:00:00+01:00", []string{"2024-04-01T02:30:00+02:00"}},
		{"0 * * * ? *", "Europe/Berlin", "2024-03-31T01:30:00+01:00", []string{"2024-03-31T03:00:00+02:00", "2024-03-31T04:00:00+02:00"}},
		{"0/15 * * * ? *", "Europe/Berlin", "2024-03-31T01:45:00+01:00", []string{"2024-03-31T03:00:00+02:00"}},
		{"30 2 * * ? *", "Europe/Berlin", "2024-10-26T12:00:00+02:00", []string{"2024-10-27T02:30:00+02:00", "2024-10-28T02:30:00+01:00"}},
		{"0 * * * ? *", "Europe/Berlin", "2024-10-27T01:30:00+02:00", []string{"2024-10-27T02:00:00+02:00", "2024-10-27T03:00:00+01:00", "2024-10-27T04:00:00+01:00"}},
		{"0 * * * ? *", "Europe/Berlin", "2024-10-27T02:30:00+01:00", []string{"2024-10-27T03:00:00+01:00"}},
		{"0 0 ? * L *", "Europe/Berlin", "2024-03-29T12:00:00+01:00", []string{"2024-03-30T00:00:00+01:00", "2024-04-06T00:00:00+02:00"}},
		// Lord Howe Island moves its clocks by 30 minutes.
		{"15 2 * * ? *", "Australia/Lord_Howe", "2024-10-05T12:00:00+10:30", []string{"2024-10-07T02:15:00+11:00"}},
		{"45 1 * * ? *", "Australia/Lord_Howe", "2024-04-06T12:00:00+11:00", []string{"2024-04-07T01:45:00+11:00", "2024-04-08T01:45:00+10:30"}},
		// Samoa skipped 2011-12-30 entirely.
		{"0 12 * * ? *", "Pacific/Apia", "2011-12-29T13:00:00-10:00", []string{"2011-12-31T12:00:00+14:00"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%s/%s", tt.expr, tt.tz, tt.from), func(t *testing.T) {
			loc := mustLoad(t, tt.tz)
			s, err := ParseCron(tt.expr, loc)
			if err != nil {
				t.Fatal(err)
			}
			checkChain(t, s, loc, tt.from, tt.want)
		})
	}
}

func TestRateNext(t *testing.T) {
	ny := mustLoad(t, "America/New_York")
	start := time.Date(2024, 3, 9, 12, 0, 0, 500, ny)
	tests := []struct {
		rate string
		from time.Time
		want []time.Time
	}{
		{"5 minutes", start.Add(-time.Hour), []time.Time{start, start.Add(5 * time.Minute), start.Add(10 * time.Minute)}},
		{"5 minutes", start, []time.Time{start.Add(5 * time.Minute)}},
		{"5 minutes", start.Add(-time.Nanosecond), []time.Time{start}},
		{"5 minutes", start.Add(7 * time.Minute), []time.Time{start.Add(10 * time.Minute)}},
		{"5 minutes", start.Add(10*time.Minute - time.Nanosecond), []time.Time{start.Add(10 * time.Minute)}},
		{"1 minute", start.Add(1000 * time.Hour), []time.Time{start.Add(1000*time.Hour + time.Minute)}},
		{"2 hours", start.Add(3 * time.Hour), []time.Time{start.Add(4 * time.Hour), start.Add(6 * time.Hour)}},
		// A day is 24 hours of elapsed time: across the change to EDT on
		// 2024-03-10, noon EST becomes 13:00 EDT.
		{"1 day", start, []time.Time{time.Date(2024, 3, 10, 13, 0, 0, 500, ny), time.Date(2024, 3, 11, 13, 0, 0, 500, ny)}},
		{"7 days", start.Add(24 * 365 * 200 * time.Hour), []time.Time{start.Add(24 * 7 * (365*200/7 + 1) * time.Hour)}},
	}
	for _, tt := range tests {
		s, err := ParseRate(tt.rate, start)
		if err != nil {
			t.Fatal(err)
		}
		at := tt.from
		for i, want := range tt.want {
			got := s.Next(at)
			if !got.Equal(want) {
				t.Errorf("rate(%s) from %v: firing %d = %v, want %v", tt.rate, tt.from, i, got, want)
				break
			}
			at = got
		}
	}

	// Parse anchors rates at the Unix epoch.
	s, err := Parse("rate(5 minutes)", ny)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Next(mustTime(t, "2024-01-01T10:02:03Z")), mustTime(t, "2024-01-01T10:05:00Z"); !got.Equal(want) {
		t.Errorf("rate(5 minutes).Next = %v, want %v", got, want)
	}
	if got, want := s.Next(mustTime(t, "1960-01-01T00:00:00Z")), time.Unix(0, 0); !got.Equal(want) {
		t.Errorf("rate(5 minutes).Next(1960) = %v, want %v", got, want)
	}
}

func TestAtNext(t *testing.T) {
	tests := []struct {
		expr, tz, want string
	}{
		{"at(2025-01-31T09:30:00)", "", "2025-01-31T09:30:00Z"},
		{"at(2025-01-31T09:30:15)", "Europe/Berlin", "2025-01-31T09:30:15+01:00"},
		{"at(2025-07-31T09:30:00)", "Europe/Berlin", "2025-07-31T09:30:00+02:00"},
		// In the hour skipped in spring, one-time schedules fire after the change...
		{"at(2024-03-10T02:30:00)", "America/New_York", "2024-03-10T03:30:00-04:00"},
		{"at(2024-03-31T02:05:00)", "Europe/Berlin", "2024-03-31T03:05:00+02:00"},
		// ...and in the hour repeated in autumn, at the first occurrence.
		{"at(2024-11-03T01:30:00)", "America/New_York", "2024-11-03T01:30:00-04:00"},
		{"at(2024-10-27T02:30:00)", "Europe/Berlin", "2024-10-27T02:30:00+02:00"},
	}
	for _, tt := range tests {
		loc := mustLoad(t, tt.tz)
		s, err := Parse(tt.expr, loc)
		if err != nil {
			t.Fatal(err)
		}
		want := mustTime(t, tt.want)
		if got := s.Next(want.Add(-24 * time.Hour)); !got.Equal(want) || got.Location() != loc {
			t.Errorf("%s in %q: Next = %v, want %v", tt.expr, tt.tz, got, want)
		}
		if got := s.Next(want.Add(-time.Nanosecond)); !got.Equal(want) {
			t.Errorf("%s in %q: Next just before = %v, want %v", tt.expr, tt.tz, got, want)
		}
		if got := s.Next(want); !got.IsZero() {
			t.Errorf("%s in %q: Next at the firing = %v, want none", tt.expr, tt.tz, got)
		}
		if got := s.Next(want.Add(time.Hour)); !got.IsZero() {
			t.Errorf("%s in %q: Next after = %v, want none", tt.expr, tt.tz, got)
		}
	}
}

func TestMissed(t *testing.T) {
	utc := time.UTC
	hourly, _ := Parse("cron(0 * * * ? *)", utc)
	monthEnd, _ := Parse("cron(0 0 L * ? *)", utc)
	everyMinute, _ := Parse("cron(* * * * ? *)", utc)
	rate, _ := ParseRate("7 minutes", mustTime(t, "2024-01-01T00:00:30Z"))
	once, _ := Parse("at(2024-01-01T12:00:00)", utc)
	ended, _ := Parse("cron(0 0 1 1 ? 2020)", utc)
	tests := []struct {
		name      string
		s         Schedule
		last, now string
		want      string // "" for none
	}{
		{"hourly, none missed", hourly, "2024-01-01T10:00:00Z", "2024-01-01T10:59:59Z", ""},
		{"hourly, last excluded", hourly, "2024-01-01T10:00:00Z", "2024-01-01T10:00:00Z", ""},
		{"hourly, one missed", hourly, "2024-01-01T10:00:00Z", "2024-01-01T11:00:00Z", "2024-01-01T11:00:00Z"},
		{"hourly, several missed", hourly, "2024-01-01T10:00:00Z", "2024-01-01T15:30:00Z", "2024-01-01T15:00:00Z"},
		{"hourly, years missed", hourly, "2020-01-01T10:00:00Z", "2024-06-01T15:30:00Z", "2024-06-01T15:00:00Z"},
		{"every minute, years missed", everyMinute, "1990-01-01T00:00:00Z", "2024-06-01T15:30:59Z", "2024-06-01T15:30:00Z"},
		{"month end", monthEnd, "2024-01-31T00:00:00Z", "2024-04-15T00:00:00Z", "2024-03-31T00:00:00Z"},
		{"rate", rate, "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z", "2024-01-01T00:56:30Z"},
		{"rate, none", rate, "2024-01-01T00:00:30Z", "2024-01-01T00:07:29Z", ""},
		{"at, missed", once, "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", "2024-01-01T12:00:00Z"},
		{"at, not yet", once, "2024-01-01T00:00:00Z", "2024-01-01T11:59:59Z", ""},
		{"at, already fired", once, "2024-01-01T12:00:00Z", "2024-01-02T00:00:00Z", ""},
		{"no firings left", ended, "2021-01-01T00:00:00Z", "2024-01-02T00:00:00Z", ""},
		{"now before last", hourly, "2024-01-01T10:00:00Z", "2024-01-01T08:00:00Z", ""},
	}
	for _, tt := range tests {
		got, ok := Missed(tt.s, mustTime(t, tt.last), mustTime(t, tt.now))
		switch {
		case tt.want == "" && ok:
			t.Errorf("%s: Missed = %v, want none", tt.name, got)
		case tt.want != "" && (!ok || !got.Equal(mustTime(t, tt.want))):
			t.Errorf("%s: Missed = %v, %v; want %s", tt.name, got, ok, tt.want)
		}
	}
}

// countingSchedule counts calls to Next.
type countingSchedule struct {
	Schedule
	calls int
}

func (c *countingSchedule) Next(t time.Time) time.Time { c.calls++; return c.Schedule.Next(t) }

func TestMissedCallsNextFewTimes(t *testing.T) {
	s, _ := Parse("cron(* * * * ? *)", time.UTC)
	c := &countingSchedule{Schedule: s}
	if _, ok := Missed(c, mustTime(t, "1970-01-01T00:00:00Z"), mustTime(t, "2199-01-01T00:00:00Z")); !ok {
		t.Fatal("no firing missed")
	}
	if c.calls > 200 {
		t.Errorf("Missed called Next %d times", c.calls)
	}
}

func BenchmarkCronNext(b *testing.B) {
	ny := mustLoad(b, "America/New_York")
	for _, expr := range []string{"0/5 * * * ? *", "0 0 29 2 ? *", "30 2 ? 3 1#2 *", "0 9 ? * 2#1 *"} {
		s, err := ParseCron(expr, ny)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(expr, func(b *testing.B) {
			at := mustTime(b, "2024-01-01T00:00:00Z")
			for b.Loop() {
				s.Next(at)
			}
		})
	}
}
