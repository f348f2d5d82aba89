package schedule

import (
	"errors"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the tests' zones, even on a host without /usr/share/zoneinfo

	"github.com/stratus-run/stratus"
)

func TestParseValid(t *testing.T) {
	tests := []struct {
		expr, want string
	}{
		// Every wildcard of every field.
		{"cron(0 12 * * ? *)", "cron(0 12 * * ? *)"},
		{"cron(0 10 * * ? *)", "cron(0 10 * * ? *)"},
		{"cron(15 12 * * ? *)", "cron(15 12 * * ? *)"},
		{"cron(0 18 ? * MON-FRI *)", "cron(0 18 ? * MON-FRI *)"},
		{"cron(0 8 1 * ? *)", "cron(0 8 1 * ? *)"},
		{"cron(0/15 * * * ? *)", "cron(0/15 * * * ? *)"},
		{"cron(0/10 * ? * MON-FRI *)", "cron(0/10 * ? * MON-FRI *)"},
		{"cron(0/5 8-17 ? * MON-FRI *)", "cron(0/5 8-17 ? * MON-FRI *)"},
		{"cron(0 9 ? * 2#1 *)", "cron(0 9 ? * 2#1 *)"},
		{"cron(*/7 * * * ? *)", "cron(*/7 * * * ? *)"},
		{"cron(10-40/10 1,2,3 * * ? *)", "cron(10-40/10 1,2,3 * * ? *)"},
		{"cron(0 */6 * * ? *)", "cron(0 */6 * * ? *)"},
		{"cron(0 0 1-15/2 * ? *)", "cron(0 0 1-15/2 * ? *)"},
		{"cron(0 0 L * ? *)", "cron(0 0 L * ? *)"},
		{"cron(0 0 LW * ? *)", "cron(0 0 LW * ? *)"},
		{"cron(0 0 15W * ? *)", "cron(0 0 15W * ? *)"},
		{"cron(0 0 1W * ? *)", "cron(0 0 1W * ? *)"},
		{"cron(0 0 1 JAN,FEB,MAR ? *)", "cron(0 0 1 JAN,FEB,MAR ? *)"},
		{"cron(0 0 1 jan-jun ? *)", "cron(0 0 1 JAN-JUN ? *)"},
		{"cron(0 0 1 */3 ? *)", "cron(0 0 1 */3 ? *)"},
		{"cron(0 0 1 2/2 ? *)", "cron(0 0 1 2/2 ? *)"},
		{"cron(0 0 ? * 1,7 *)", "cron(0 0 ? * 1,7 *)"},
		{"cron(0 0 ? * SUN,SAT *)", "cron(0 0 ? * SUN,SAT *)"},
		{"cron(0 0 ? * 2-6 *)", "cron(0 0 ? * 2-6 *)"},
		{"cron(0 0 ? * * *)", "cron(0 0 ? * * *)"},
		{"cron(0 0 ? * L *)", "cron(0 0 ? * L *)"},
		{"cron(0 0 ? * 6L *)", "cron(0 0 ? * 6L *)"},
		{"cron(0 0 ? * FRIL *)", "cron(0 0 ? * FRIL *)"},
		{"cron(0 0 ? * 6#3 *)", "cron(0 0 ? * 6#3 *)"},
		{"cron(0 0 ? * FRI#5 *)", "cron(0 0 ? * FRI#5 *)"},
		{"cron(0 0 1 1 ? 1970)", "cron(0 0 1 1 ? 1970)"},
		{"cron(0 0 1 1 ? 2199)", "cron(0 0 1 1 ? 2199)"},
		{"cron(0 0 1 1 ? 2020-2030)", "cron(0 0 1 1 ? 2020-2030)"},
		{"cron(0 0 1 1 ? 2020,2024,2028)", "cron(0 0 1 1 ? 2020,2024,2028)"},
		{"cron(0 0 1 1 ? 2030/5)", "cron(0 0 1 1 ? 2030/5)"},
		{"cron(0 0 1 1 ? */10)", "cron(0 0 1 1 ? */10)"},
		{"cron(00 09 01 01 ? *)", "cron(00 09 01 01 ? *)"},
		{"cron(59 23 31 12 ? *)", "cron(59 23 31 12 ? *)"},
		// White space is free; the canonical form has single spaces.
		{"  cron( 0   12 *\t* ? * )  ", "cron(0 12 * * ? *)"},
		{"rate(1 minute)", "rate(1 minute)"},
		{"rate(5 minutes)", "rate(5 minutes)"},
		{"rate(1 hour)", "rate(1 hour)"},
		{"rate(12 hours)", "rate(12 hours)"},
		{"rate(1 day)", "rate(1 day)"},
		{"rate(7 days)", "rate(7 days)"},
		{"rate(  15   minutes )", "rate(15 minutes)"},
		{"rate(036500 days)", "rate(36500 days)"},
		{"at(2025-01-31T09:30:00)", "at(2025-01-31T09:30:00)"},
		{"at(2024-02-29T23:59:59)", "at(2024-02-29T23:59:59)"},
	}
	for _, tt := range tests {
		s, err := Parse(tt.expr, time.UTC)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.expr, err)
			continue
		}
		if got := s.String(); got != tt.want {
			t.Errorf("Parse(%q).String() = %q, want %q", tt.expr, got, tt.want)
		}
		again, err := Parse(s.String(), time.UTC)
		if err != nil || again.String() != tt.want {
			t.Errorf("Parse(%q) = %v, %v; want it to re-parse", s.String(), again, err)
		}
	}
}

func TestParseInvalid(t *testing.T) {
	tests := []struct {
		expr, want string // want: a part of the message
	}{
		{"", "want cron(minutes hours day-of-month month day-of-week year), rate(value unit) or at(yyyy-mm-ddThh:mm:ss)"},
		{"0 12 * * ? *", "want cron("},
		{"CRON(0 12 * * ? *)", "want cron("},
		{"cron (0 12 * * ? *)", "want cron("},
		{"cron(0 12 * * ? *", "missing closing parenthesis"},
		{"cron()", "want 6 fields"},
		{"cron(0 12 * * ?)", "want 6 fields (minutes hours day-of-month month day-of-week year), got 5"},
		{"cron(0 0 12 * * ? *)", "got 7"},
		{"cron(0 12 * * * *)", `cron "0 12 * * * *": one of day-of-month and day-of-week must be "?": invalid`},
		{"cron(0 12 1 * MON *)", `one of day-of-month and day-of-week must be "?"`},
		{"cron(0 12 ? * ? *)", `day-of-month and day-of-week cannot both be "?"`},
		{"cron(60 * * * ? *)", `minutes "60": 60 is out of range 0-59`},
		{"cron(0 24 * * ? *)", `hours "24": 24 is out of range 0-23`},
		{"cron(0 0 0 * ? *)", `day-of-month "0": 0 is out of range 1-31`},
		{"cron(0 0 32 * ? *)", `day-of-month "32": 32 is out of range 1-31`},
		{"cron(0 0 1 13 ? *)", `month "13": 13 is out of range 1-12 or JAN-DEC`},
		{"cron(0 0 1 0 ? *)", `month "0": 0 is out of range`},
		{"cron(0 0 ? * 0 *)", `day-of-week "0": 0 is out of range 1-7 or SUN-SAT`},
		{"cron(0 0 ? * 8 *)", `day-of-week "8": 8 is out of range`},
		{"cron(0 0 1 1 ? 1969)", `year "1969": 1969 is out of range 1970-2199`},
		{"cron(0 0 1 1 ? 2200)", `year "2200": 2200 is out of range`},
		{"cron(0 0 1 FOO ? *)", `month "FOO": "FOO" is not a valid value (want 1-12 or JAN-DEC)`},
		{"cron(0 0 ? * MONDAY *)", `"MONDAY" is not a valid value`},
		{"cron(0 0 ? * JAN *)", `"JAN" is not a valid value (want 1-7 or SUN-SAT)`},
		{"cron(0 0 1 MON ? *)", `"MON" is not a valid value (want 1-12 or JAN-DEC)`},
		{"cron(? 0 1 * ? *)", `"?" is not allowed in minutes (allowed wildcards: , - * /)`},
		{"cron(0 ? 1 * ? *)", `"?" is not allowed in hours`},
		{"cron(0 0 1 ? ? *)", `"?" is not allowed in month`},
		{"cron(0 0 1 * ? ?)", `"?" is not allowed in year`},
		{"cron(L 0 1 * ? *)", `"L" is not allowed in minutes`},
		{"cron(0 L 1 * ? *)", `"L" is not allowed in hours`},
		{"cron(0 0 1 * ? L)", `"L" is not allowed in year`},
		{"cron(0 0 1W * ? 2020W)", `"W" is not allowed in year`},
		{"cron(0 0 ? * 1W *)", `day-of-week "1W": "1W" is not a valid value (want 1-7 or SUN-SAT)`},
		{"cron(0 0 1#2 * ? *)", `"#" is not allowed in day-of-month (allowed wildcards: , - * ? / L W)`},
		{"cron(0#1 0 1 * ? *)", `"#" is not allowed in minutes`},
		{"cron(0 0 ? * 1/2 *)", `"/" is not allowed in day-of-week (allowed wildcards: , - * ? L #)`},
		{"cron(0 0 ? * */2 *)", `"/" is not allowed in day-of-week`},
		{"cron(0 0 1 * ? 20x0)", `unexpected character "X"`},
		{"cron(0 0 1 * ? é)", `unexpected character`},
		{"cron(0 0 1-15, * ? *)", "empty list item"},
		{"cron(,0 0 1 * ? *)", "empty list item"},
		{"cron(0 0 1 * ? 2030-2020)", `range "2030-2020" runs backwards`},
		{"cron(0 22-2 * * ? *)", `range "22-2" runs backwards`},
		{"cron(0 0 ? * FRI-MON *)", `range "FRI-MON" runs backwards`},
		{"cron(5- 0 1 * ? *)", "missing value (want 0-59)"},
		{"cron(-5 0 1 * ? *)", "missing value"},
		{"cron(1-2-3 0 1 * ? *)", `"2-3" is not a valid value`},
		{"cron(*-5 0 1 * ? *)", `"*" is not a valid value`},
		{"cron(0/0 0 1 * ? *)", `step "0": want a number from 1 to 59`},
		{"cron(0/60 0 1 * ? *)", `step "60": want a number from 1 to 59`},
		{"cron(0/ 0 1 * ? *)", `step "": want a number`},
		{"cron(0/x 0 1 * ? *)", `unexpected character "X"`},
		{"cron(0 0/24 1 * ? *)", `step "24": want a number from 1 to 23`},
		{"cron(0 0 1 1/12 ? *)", `step "12": want a number from 1 to 11`},
		{"cron(0 0 1 * ? 1970/230)", `step "230": want a number from 1 to 229`},
		{"cron(1234567890 0 1 * ? *)", `"1234567890" is not a valid value`},
		{"cron(0 0 W * ? *)", "W takes a single day before W, 1W to 31W"},
		{"cron(0 0 0W * ? *)", "W takes a single day"},
		{"cron(0 0 32W * ? *)", "W takes a single day"},
		{"cron(0 0 1,15W * ? *)", "W takes a single day"},
		{"cron(0 0 1-5W * ? *)", "W takes a single day"},
		{"cron(0 0 15W,20 * ? *)", "L, LW, nW and ? each stand alone in day-of-month"},
		{"cron(0 0 1,L * ? *)", "L, LW, nW and ? each stand alone in day-of-month"},
		{"cron(0 0 L-3 * ? *)", "each stand alone in day-of-month"},
		{"cron(0 0 WL * ? *)", "each stand alone in day-of-month"},
		{"cron(0 0 5L * ? *)", "each stand alone in day-of-month"},
		{"cron(0 0 ?,1 * MON *)", "each stand alone in day-of-month"},
		{"cron(0 0 ? * 3#1,6#3 *)", "# takes one day and one week (3#2) and cannot be combined with other values"},
		{"cron(0 0 ? * 1-3#2 *)", "# takes one day and one week"},
		{"cron(0 0 ? * 3#0 *)", `week "0" after #: want 1 to 5`},
		{"cron(0 0 ? * 3#6 *)", `week "6" after #: want 1 to 5`},
		{"cron(0 0 ? * 3# *)", `week "" after #`},
		{"cron(0 0 ? * #2 *)", "missing value (want 1-7 or SUN-SAT)"},
		{"cron(0 0 ? * 8#2 *)", "8 is out of range 1-7"},
		{"cron(0 0 ? * 3#2#1 *)", `week "2#1" after #`},
		{"cron(0 0 ? * 1,6L *)", "L, nL and ? each stand alone in day-of-week"},
		{"cron(0 0 ? * 8L *)", "8 is out of range 1-7"},
		{"cron(0 0 ? * LL *)", `"L" is not a valid value`},
		{"cron(0 0 ? * L#2 *)", `"L" is not a valid value`},
		{"rate()", "want a value and a unit, as in 5 minutes"},
		{"rate(5)", "want a value and a unit"},
		{"rate(5 minutes later)", "want a value and a unit"},
		{"rate(0 minutes)", `value "0": want a positive integer`},
		{"rate(-5 minutes)", `value "-5": want a positive integer`},
		{"rate(1.5 hours)", `value "1.5": want a positive integer`},
		{"rate(five minutes)", `value "five"`},
		{"rate(5 seconds)", `unit "seconds": want minute, minutes, hour, hours, day or days`},
		{"rate(5 Minutes)", `unit "Minutes"`},
		{"rate(1 weeks)", `unit "weeks"`},
		{"rate(1 minutes)", `use "minute" for a value of 1`},
		{"rate(1 hours)", `use "hour" for a value of 1`},
		{"rate(1 days)", `use "day" for a value of 1`},
		{"rate(5 minute)", `use "minutes" for a value greater than 1`},
		{"rate(5 hour)", `use "hours" for a value greater than 1`},
		{"rate(2 day)", `use "days" for a value greater than 1`},
		{"rate(36501 days)", "interval longer than 36500 days"},
		{"rate(999999999 minutes)", "interval longer than 36500 days"},
		{"at()", "want a date and time as yyyy-mm-ddThh:mm:ss"},
		{"at(2025-01-31)", "yyyy-mm-ddThh:mm:ss"},
		{"at(2025-01-31 09:30:00)", "yyyy-mm-ddThh:mm:ss"},
		{"at(2025-01-31T09:30)", "yyyy-mm-ddThh:mm:ss"},
		{"at(2025-01-31T09:30:00Z)", "yyyy-mm-ddThh:mm:ss"},
		{"at(2025-01-31T09:30:00.5)", "yyyy-mm-ddThh:mm:ss"},
		{"at(2025-02-30T09:30:00)", "yyyy-mm-ddThh:mm:ss"},
		{"at(2025-1-31T09:30:00)", "yyyy-mm-ddThh:mm:ss"},
		{"at(2025-01-31T24:00:00)", "yyyy-mm-ddThh:mm:ss"},
	}
	for _, tt := range tests {
		s, err := Parse(tt.expr, time.UTC)
		if err == nil {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tt.expr, s, tt.want)
			continue
		}
		if !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("Parse(%q) error %q does not wrap stratus.ErrInvalid", tt.expr, err)
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) error %q, want it to contain %q", tt.expr, err, tt.want)
		}
		if msg := err.Error(); msg != "" && strings.ToLower(msg[:1]) != msg[:1] {
			t.Errorf("Parse(%q) error %q starts with a capital", tt.expr, err)
		}
	}
}

func TestParseCronAndRateHelpers(t *testing.T) {
	c, err := ParseCron("0 12 * * ? *", nil)
	if err != nil || c.String() != "cron(0 12 * * ? *)" {
		t.Fatalf("ParseCron = %v, %v", c, err)
	}
	if c, err := ParseCron("cron(0 12 * * ? *)", time.UTC); err != nil || c.String() != "cron(0 12 * * ? *)" {
		t.Errorf("ParseCron(cron(...)) = %v, %v", c, err)
	}
	_, err = ParseCron("0 12 * * *", time.UTC)
	if !errors.Is(err, stratus.ErrInvalid) || err.Error() != `cron "0 12 * * *": want 6 fields (minutes hours day-of-month month day-of-week year), got 5: invalid` {
		t.Errorf("ParseCron(5 fields) error = %v", err)
	}
	_, err = ParseCron("0 12 * * * *", time.UTC)
	if err == nil || err.Error() != `cron "0 12 * * * *": one of day-of-month and day-of-week must be "?": invalid` {
		t.Errorf("ParseCron(no ?) error = %v", err)
	}

	start := time.Date(2024, 5, 1, 10, 0, 30, 0, time.UTC)
	r, err := ParseRate("5 minutes", start)
	if err != nil || r.String() != "rate(5 minutes)" {
		t.Fatalf("ParseRate = %v, %v", r, err)
	}
	if got := r.Next(start); !got.Equal(start.Add(5 * time.Minute)) {
		t.Errorf("Next(start) = %v", got)
	}
	if r, err := ParseRate("rate(1 hour)", start); err != nil || r.String() != "rate(1 hour)" {
		t.Errorf("ParseRate(rate(...)) = %v, %v", r, err)
	}
	_, err = ParseRate("5 minute", start)
	if err == nil || err.Error() != `rate "5 minute": use "minutes" for a value greater than 1: invalid` {
		t.Errorf("ParseRate(5 minute) error = %v", err)
	}
}

func TestParseNilLocationIsUTC(t *testing.T) {
	s, err := Parse("cron(0 12 * * ? *)", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
	if got := s.Next(want.Add(-time.Hour)); !got.Equal(want) || got.Location() != time.UTC {
		t.Errorf("Next = %v, want %v", got, want)
	}
}

func TestLoadLocation(t *testing.T) {
	for _, tz := range []string{"", "UTC", "Etc/UTC", "America/New_York", "Europe/Berlin", "Asia/Kathmandu"} {
		loc, err := LoadLocation(tz)
		if err != nil || loc == nil {
			t.Errorf("LoadLocation(%q) = %v, %v", tz, loc, err)
		}
	}
	if loc, _ := LoadLocation(""); loc != time.UTC {
		t.Errorf(`LoadLocation("") = %v, want UTC`, loc)
	}
	for _, tz := range []string{"Local", "Mars/Olympus_Mons", "EST5EDT6", "../etc/passwd", "/etc/localtime", "europe/berlin "} {
		loc, err := LoadLocation(tz)
		if !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("LoadLocation(%q) = %v, %v; want an error wrapping stratus.ErrInvalid", tz, loc, err)
		}
	}
}
