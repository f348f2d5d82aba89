package schedule

import (
	"errors"
	"fmt"
	"math/bits"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
)

const (
	minYear = 1970
	maxYear = 2199
)

// field describes one of the six cron fields.
type field struct {
	name      string
	min, max  int
	names     []string // names[i] is value min+i
	letters   string   // letters allowed besides names
	symbols   string   // wildcard characters allowed
	wildcards string   // the wildcards as AWS documents them, for messages
}

var (
	minutesField = field{name: "minutes", min: 0, max: 59, symbols: ",-*/", wildcards: ", - * /"}
	hoursField   = field{name: "hours", min: 0, max: 23, symbols: ",-*/", wildcards: ", - * /"}
	domField     = field{name: "day-of-month", min: 1, max: 31, letters: "LW", symbols: ",-*/?", wildcards: ", - * ? / L W"}
	monthField   = field{name: "month", min: 1, max: 12, symbols: ",-*/", wildcards: ", - * /",
		names: []string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}}
	dowField = field{name: "day-of-week", min: 1, max: 7, letters: "L", symbols: ",-*?#", wildcards: ", - * ? L #",
		names: []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}}
	yearField = field{name: "year", min: minYear, max: maxYear, symbols: ",-*/", wildcards: ", - * /"}
)

// allowed describes the field's values for messages: "0-59", "1-12 or JAN-DEC".
func (f *field) allowed() string {
	s := fmt.Sprintf("%d-%d", f.min, f.max)
	if len(f.names) > 0 {
		s += " or " + f.names[0] + "-" + f.names[len(f.names)-1]
	}
	return s
}

// check rejects characters the field does not allow.
func (f *field) check(s string) error {
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
		case r >= 'A' && r <= 'Z' && (len(f.names) > 0 || strings.ContainsRune(f.letters, r)):
		case strings.ContainsRune(f.symbols, r):
		case strings.ContainsRune(",-*/?#LW", r):
			return fmt.Errorf("%q is not allowed in %s (allowed wildcards: %s)", string(r), f.name, f.wildcards)
		default:
			return fmt.Errorf("unexpected character %q (want %s and the wildcards %s)", string(r), f.allowed(), f.wildcards)
		}
	}
	return nil
}

// value parses a number or a name of the field.
func (f *field) value(s string) (int, error) {
	if n, ok := atoi(s); ok {
		if n < f.min || n > f.max {
			return 0, fmt.Errorf("%d is out of range %s", n, f.allowed())
		}
		return n, nil
	}
	for i, name := range f.names {
		if s == name {
			return f.min + i, nil
		}
	}
	if s == "" {
		return 0, fmt.Errorf("missing value (want %s)", f.allowed())
	}
	return 0, fmt.Errorf("%q is not a valid value (want %s)", s, f.allowed())
}

// list parses comma-separated values, ranges and steps into a set.
func (f *field) list(s string) (valueSet, error) {
	set := valueSet{min: f.min}
	for item := range strings.SplitSeq(s, ",") {
		if err := f.item(item, &set); err != nil {
			return set, err
		}
	}
	return set, nil
}

func (f *field) item(item string, set *valueSet) error {
	if item == "" {
		return errors.New("empty list item")
	}
	rng, stepText, hasStep := strings.Cut(item, "/")
	step := 1
	if hasStep {
		if !strings.ContainsRune(f.symbols, '/') {
			return fmt.Errorf(`"/" is not allowed in %s (allowed wildcards: %s)`, f.name, f.wildcards)
		}
		n, ok := atoi(stepText)
		if !ok || n < 1 || n > f.max-f.min {
			return fmt.Errorf("step %q: want a number from 1 to %d", stepText, f.max-f.min)
		}
		step = n
	}
	lo, hi := f.min, f.max
	if rng != "*" {
		a, b, isRange := strings.Cut(rng, "-")
		var err error
		if lo, err = f.value(a); err != nil {
			return err
		}
		switch {
		case isRange:
			if hi, err = f.value(b); err != nil {
				return err
			}
			if hi < lo {
				return fmt.Errorf("range %q runs backwards: put the smaller value first", rng)
			}
		case !hasStep:
			hi = lo
		}
	}
	for v := lo; v <= hi; v += step {
		set.add(v)
	}
	return nil
}

// atoi parses 1 to 9 decimal digits.
func atoi(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	n := 0
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, false
		}
		n = n*10 + int(r-'0')
	}
	return n, true
}

// valueSet is a set of integers from min to min+255.
type valueSet struct {
	min  int
	bits [4]uint64
}

func (s *valueSet) add(v int) {
	i := v - s.min
	s.bits[i/64] |= 1 << (i % 64)
}

// next returns the smallest member >= v.
func (s *valueSet) next(v int) (int, bool) {
	i := max(v-s.min, 0)
	for w := i / 64; w < len(s.bits); w++ {
		b := s.bits[w]
		if w == i/64 {
			b &= ^uint64(0) << (i % 64)
		}
		if b != 0 {
			return s.min + w*64 + bits.TrailingZeros64(b), true
		}
	}
	return 0, false
}

type domKind int

const (
	domAny            domKind = iota // "?": day-of-week decides
	domSet                           // values, ranges, steps, "*"
	domLast                          // L
	domLastWeekday                   // LW
	domNearestWeekday                // 15W
)

type dowKind int

const (
	dowAny  dowKind = iota // "?": day-of-month decides
	dowSet                 // values, ranges, "*", L (Saturday)
	dowLast                // 6L: the last Friday of the month
	dowNth                 // 3#2: the second Tuesday of the month
)

// cron is a parsed cron expression.
type cron struct {
	fields                        string // canonical: upper case, single spaces
	loc                           *time.Location
	minutes, hours, months, years valueSet

	dom     domKind
	domDays uint64 // domSet: bit d for day d
	domDay  int    // domNearestWeekday

	dow     dowKind
	dowDays uint8        // dowSet: bit w for time.Weekday w
	dowDay  time.Weekday // dowLast, dowNth
	dowNth  int          // dowNth: 1-5
}

func parseCron(in string, loc *time.Location) (*cron, error) {
	fail := func(err error) error {
		return fmt.Errorf("cron %q: %v: %w", in, err, stratus.ErrInvalid)
	}
	fs := strings.Fields(strings.ToUpper(in))
	if len(fs) != 6 {
		return nil, fail(fmt.Errorf("want 6 fields (minutes hours day-of-month month day-of-week year), got %d", len(fs)))
	}
	c := &cron{fields: strings.Join(fs, " "), loc: loc}
	for i, f := range []*field{&minutesField, &hoursField, &domField, &monthField, &dowField, &yearField} {
		s := fs[i]
		err := f.check(s)
		if err == nil {
			switch i {
			case 0:
				c.minutes, err = f.list(s)
			case 1:
				c.hours, err = f.list(s)
			case 2:
				err = c.parseDOM(s)
			case 3:
				c.months, err = f.list(s)
			case 4:
				err = c.parseDOW(s)
			case 5:
				c.years, err = f.list(s)
			}
		}
		if err != nil {
			return nil, fail(fmt.Errorf("%s %q: %v", f.name, s, err))
		}
	}
	switch {
	case c.dom == domAny && c.dow == dowAny:
		return nil, fail(errors.New(`day-of-month and day-of-week cannot both be "?"`))
	case c.dom != domAny && c.dow != dowAny:
		return nil, fail(errors.New(`one of day-of-month and day-of-week must be "?"`))
	}
	return c, nil
}

func (c *cron) parseDOM(s string) error {
	switch {
	case s == "?":
		c.dom = domAny
	case s == "L":
		c.dom = domLast
	case s == "LW":
		c.dom = domLastWeekday
	case strings.HasSuffix(s, "W"):
		n, ok := atoi(s[:len(s)-1])
		if !ok || n < 1 || n > 31 {
			return errors.New("nW takes a single day before W, 1W to 31W (or LW for the last weekday)")
		}
		c.dom, c.domDay = domNearestWeekday, n
	case strings.ContainsAny(s, "LW?"):
		return errors.New(`the wildcards L, LW, nW and ? each stand alone in day-of-month`)
	default:
		set, err := domField.list(s)
		if err != nil {
			return err
		}
		c.dom, c.domDays = domSet, set.bits[0]<<1 // valueSet counts from day 1
	}
	return nil
}

func (c *cron) parseDOW(s string) error {
	switch {
	case s == "?":
		c.dow = dowAny
	case s == "L":
		c.dow, c.dowDays = dowSet, 1<<time.Saturday
	case strings.ContainsAny(s, ",-*/?") && strings.ContainsAny(s, "#L?"):
		if strings.Contains(s, "#") {
			return errors.New(`# takes one day and one week (3#2) and cannot be combined with other values`)
		}
		return errors.New(`the wildcards L, nL and ? each stand alone in day-of-week`)
	case strings.Contains(s, "#"):
		a, b, _ := strings.Cut(s, "#")
		w, err := dowField.value(a)
		if err != nil {
			return err
		}
		k, ok := atoi(b)
		if !ok || k < 1 || k > 5 {
			return fmt.Errorf("week %q after #: want 1 to 5", b)
		}
		c.dow, c.dowDay, c.dowNth = dowNth, time.Weekday(w-1), k
	case strings.HasSuffix(s, "L"):
		w, err := dowField.value(s[:len(s)-1])
		if err != nil {
			return err
		}
		c.dow, c.dowDay = dowLast, time.Weekday(w-1)
	default:
		set, err := dowField.list(s)
		if err != nil {
			return err
		}
		c.dow, c.dowDays = dowSet, uint8(set.bits[0]) // value 1 (SUN) is bit 0 = time.Sunday
	}
	return nil
}

// String returns "cron(fields)".
func (c *cron) String() string { return "cron(" + c.fields + ")" }

// Next returns the first firing strictly after t, in c's location, or the
// zero time if there is none before the end of 2199. It searches field by
// field: a call costs a few steps per month, day or hour it skips, not one
// per minute.
func (c *cron) Next(t time.Time) time.Time {
	lt := t.In(c.loc)
	// Wall-clock times are kept as UTC times, which have no clock changes.
	w := time.Date(lt.Year(), lt.Month(), lt.Day(), lt.Hour(), lt.Minute(), 0, 0, time.UTC).Add(time.Minute)
	for {
		m, ok := c.nextWall(w)
		if !ok {
			return time.Time{}
		}
		// Skip wall times that do not exist and those whose first
		// occurrence is not after t (t in the second pass of a repeated hour).
		at, exists := resolve(m, c.loc)
		if exists && at.After(t) {
			return at
		}
		w = m.Add(time.Minute)
		if !exists {
			// Resume at the first wall time after the gap, which begins the
			// zone period that resolve moved m into.
			if start, _ := at.ZoneBounds(); !start.IsZero() {
				if end := time.Unix(wallUnix(start), 0).UTC(); end.After(w) {
					w = end
				}
			}
		}
	}
}

// nextWall returns the earliest wall-clock minute at or after w that c
// matches. Wall-clock times are carried as UTC times.
func (c *cron) nextWall(w time.Time) (time.Time, bool) {
	y, mo, d := w.Date()
	month, h, mi := int(mo), w.Hour(), w.Minute()
	for {
		if y < minYear {
			y, month, d, h, mi = minYear, 1, 1, 0, 0
		}
		ny, ok := c.years.next(y)
		if !ok {
			return time.Time{}, false
		}
		if ny != y {
			y, month, d, h, mi = ny, 1, 1, 0, 0
		}
		nm, ok := c.months.next(month)
		if !ok {
			y, month, d, h, mi = y+1, 1, 1, 0, 0
			continue
		}
		if nm != month {
			month, d, h, mi = nm, 1, 0, 0
		}
		days := c.days(y, time.Month(month)) &^ (1<<d - 1)
		if days == 0 {
			month, d, h, mi = month+1, 1, 0, 0
			if month > 12 {
				y, month = y+1, 1
			}
			continue
		}
		if nd := bits.TrailingZeros64(days); nd != d {
			d, h, mi = nd, 0, 0
		}
		nh, ok := c.hours.next(h)
		if !ok {
			d, h, mi = d+1, 0, 0 // past the month's end, days() is empty
			continue
		}
		if nh != h {
			h, mi = nh, 0
		}
		nmi, ok := c.minutes.next(mi)
		if !ok {
			h, mi = h+1, 0
			if h > 23 {
				d, h = d+1, 0
			}
			continue
		}
		return time.Date(y, time.Month(month), d, h, nmi, 0, 0, time.UTC), true
	}
}

// days returns the days of month m of year y that c matches, bit d for day d.
func (c *cron) days(y int, m time.Month) uint64 {
	n := daysIn(y, m)
	switch c.dom {
	case domSet:
		return c.domDays & (1<<(n+1) - 2)
	case domLast:
		return 1 << n
	case domLastWeekday:
		return 1 << nearestWeekday(y, m, n, n)
	case domNearestWeekday:
		if c.domDay > n {
			return 0
		}
		return 1 << nearestWeekday(y, m, c.domDay, n)
	}
	first := weekday(y, m, 1)
	switch c.dow {
	case dowSet:
		var days uint64
		for d := 1; d <= n; d++ {
			if c.dowDays&(1<<((int(first)+d-1)%7)) != 0 {
				days |= 1 << d
			}
		}
		return days
	case dowLast:
		return 1 << (n - (int(weekday(y, m, n))-int(c.dowDay)+7)%7)
	case dowNth:
		d := 1 + (int(c.dowDay)-int(first)+7)%7 + 7*(c.dowNth-1)
		if d > n {
			return 0
		}
		return 1 << d
	}
	return 0
}

// nearestWeekday returns the Monday-to-Friday day nearest day d of a month
// of n days, without leaving the month.
func nearestWeekday(y int, m time.Month, d, n int) int {
	switch weekday(y, m, d) {
	case time.Saturday:
		if d == 1 {
			return 3
		}
		return d - 1
	case time.Sunday:
		if d == n {
			return d - 2
		}
		return d + 1
	}
	return d
}

func daysIn(y int, m time.Month) int { return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day() }

func weekday(y int, m time.Month, d int) time.Weekday {
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Weekday()
}
