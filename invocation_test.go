package stratus_test

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stratus-run/stratus"
)

func TestNewRequestIDIsAUUIDv7InTimeOrder(t *testing.T) {
	seen := map[string]bool{}
	prev := ""
	for range 1000 {
		before := time.Now().UnixMilli()
		id := stratus.NewRequestID()
		after := time.Now().UnixMilli()
		u, err := uuid.Parse(id)
		if err != nil {
			t.Fatalf("parse %q: %v", id, err)
		}
		if u.Version() != 7 || u.Variant() != uuid.RFC4122 || u.String() != id {
			t.Fatalf("%q: version %d, variant %v; want a canonical version 7, RFC 9562 variant", id, u.Version(), u.Variant())
		}
		sec, nsec := u.Time().UnixTime()
		if ms := sec*1000 + nsec/1e6; ms < before || ms > after {
			t.Fatalf("%q holds %d ms; made between %d and %d", id, ms, before, after)
		}
		if seen[id] {
			t.Fatalf("%q made twice", id)
		}
		seen[id] = true
		if id[:13] < prev[:min(13, len(prev))] {
			t.Fatalf("%q sorts before the earlier %q", id, prev)
		}
		prev = id
	}
}
