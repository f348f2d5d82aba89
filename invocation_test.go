package stratus_test

import (
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stratus-run/stratus"
)

func TestNewRequestIDIsAUUIDv7(t *testing.T) {
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
		// An ID's time runs ahead of the clock by a millisecond per
		// 2,049 IDs made within one (the other tests make bursts), so by
		// far less than a second here; the exact time is idClock's test.
		sec, nsec := u.Time().UnixTime()
		if ms := sec*1000 + nsec/1e6; ms < before || ms > after+1000 {
			t.Fatalf("%q holds %d ms; made between %d and %d", id, ms, before, after)
		}
	}
}

// TestNewRequestIDsSortInCreationOrder makes IDs back to back, many
// within each millisecond: each sorts after the one made before it.
func TestNewRequestIDsSortInCreationOrder(t *testing.T) {
	prev := stratus.NewRequestID()
	for i := range 10_000 {
		id := stratus.NewRequestID()
		if id <= prev {
			t.Fatalf("ID %d, %q, does not sort after the one before, %q", i, id, prev)
		}
		prev = id
	}
}

// TestNewRequestIDsSortInCreationOrderConcurrently makes IDs on several
// goroutines at once. Each goroutine's IDs increase, no two are the same,
// and with each call made under a shared lock, all the IDs increase in
// the order of the calls.
func TestNewRequestIDsSortInCreationOrderConcurrently(t *testing.T) {
	const goroutines, each = 8, 2000
	for _, locked := range []bool{false, true} {
		name := "free calls"
		if locked {
			name = "calls under a lock"
		}
		t.Run(name, func(t *testing.T) {
			var (
				mu  sync.Mutex
				all []string // in call order when locked
				wg  sync.WaitGroup
			)
			own := make([][]string, goroutines)
			for g := range goroutines {
				wg.Go(func() {
					for range each {
						if locked {
							mu.Lock()
						}
						id := stratus.NewRequestID()
						if !locked {
							mu.Lock()
						}
						all = append(all, id)
						mu.Unlock()
						own[g] = append(own[g], id)
					}
				})
			}
			wg.Wait()
			for g, ids := range own {
				for i := 1; i < len(ids); i++ {
					if ids[i] <= ids[i-1] {
						t.Fatalf("goroutine %d: ID %d, %q, does not sort after its previous one, %q", g, i, ids[i], ids[i-1])
					}
				}
			}
			seen := make(map[string]bool, len(all))
			for _, id := range all {
				if seen[id] {
					t.Fatalf("%q made twice", id)
				}
				seen[id] = true
			}
			if len(seen) != goroutines*each {
				t.Fatalf("%d IDs made; want %d", len(seen), goroutines*each)
			}
			if !locked {
				return
			}
			for i := 1; i < len(all); i++ {
				if all[i] <= all[i-1] {
					t.Fatalf("ID %d in call order, %q, does not sort after the one before, %q", i, all[i], all[i-1])
				}
			}
		})
	}
}
