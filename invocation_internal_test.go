package stratus

import (
	"encoding/hex"
	"strings"
	"testing"
)

// TestIDClock steps the clock through the cases of RFC 9562's method 1:
// a new millisecond, several IDs in one, a clock that goes back, and a
// counter that runs over.
func TestIDClock(t *testing.T) {
	var c idClock
	steps := []struct {
		name    string
		now     int64
		seed    uint16
		ms      int64
		seq     uint16
		setLast uint16 // if set, the counter is put there before the step
	}{
		{name: "first ID: its ms, the seed's low 11 bits", now: 1000, seed: 0xffff, ms: 1000, seq: 0x7ff},
		{name: "same ms: the counter goes up", now: 1000, seed: 0x123, ms: 1000, seq: 0x800},
		{name: "new ms: the counter starts from the seed", now: 1001, seed: 0x005, ms: 1001, seq: 0x005},
		{name: "same ms again", now: 1001, seed: 0x700, ms: 1001, seq: 0x006},
		{name: "clock back: the last ms, the counter goes up", now: 990, seed: 0x700, ms: 1001, seq: 0x007},
		{name: "counter at its top", now: 1001, seed: 0x700, ms: 1001, seq: 0xfff, setLast: 0xffe},
		{name: "counter over: the next ms, from the seed", now: 1001, seed: 0x0a1, ms: 1002, seq: 0x0a1},
		{name: "the clock behind the ms it was pushed to", now: 1001, seed: 0x700, ms: 1002, seq: 0x0a2},
		{name: "the clock catches up: same ms", now: 1002, seed: 0x700, ms: 1002, seq: 0x0a3},
		{name: "the clock passes it", now: 1003, seed: 0x812, ms: 1003, seq: 0x012},
	}
	for _, s := range steps {
		if s.setLast != 0 {
			c.seq = s.setLast
		}
		ms, seq := c.next(s.now, s.seed)
		if ms != s.ms || seq != s.seq {
			t.Fatalf("%s: next(%d, %#x) = %d, %#x; want %d, %#x", s.name, s.now, s.seed, ms, seq, s.ms, s.seq)
		}
	}
}

// TestIDClockNewID checks where an ID holds its time and counter, and
// that IDs made faster than 4,096 a millisecond still increase, their
// time running ahead of the clock.
func TestIDClockNewID(t *testing.T) {
	var c idClock
	const now = 0x0123456789ab
	prev := ""
	for i := range 10_000 {
		id := c.newID(now)
		if i == 0 && !strings.HasPrefix(id, "01234567-89ab-7") {
			t.Fatalf("first ID %q: want the time 01234567-89ab then version 7", id)
		}
		b, err := hex.DecodeString(strings.ReplaceAll(id, "-", ""))
		if err != nil || len(b) != 16 {
			t.Fatalf("%q: not 16 bytes of hex: %v", id, err)
		}
		var ms int64
		for _, x := range b[:6] {
			ms = ms<<8 | int64(x)
		}
		seq := uint16(b[6]&0x0f)<<8 | uint16(b[7])
		if ms != c.ms || seq != c.seq {
			t.Fatalf("%q holds %d ms, counter %#x; the clock gave %d, %#x", id, ms, seq, c.ms, c.seq)
		}
		if b[6]>>4 != 7 || b[8]>>6 != 0b10 {
			t.Fatalf("%q: version %d, variant bits %b; want 7, 10", id, b[6]>>4, b[8]>>6)
		}
		if id <= prev {
			t.Fatalf("ID %d, %q, does not sort after %q", i, id, prev)
		}
		prev = id
	}
	// 10,000 IDs at one clock reading: the counter ran over at least
	// twice (at most 4,096 per ms, at least 2,049) and at most four times.
	if ahead := c.ms - now; ahead < 2 || ahead > 4 {
		t.Errorf("after 10,000 IDs in one ms, the IDs' time is %d ms ahead; want 2 to 4", ahead)
	}
}
