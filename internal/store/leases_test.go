package store

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
)

// leaseClock is a test clock that stands still until stepped.
type leaseClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *leaseClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *leaseClock) Step(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// withLeaseClock gives s a clock that stands still at a fixed time.
func withLeaseClock(s *Store) *leaseClock {
	c := &leaseClock{t: time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)}
	s.now = c.Now
	return c
}

// TestLeaseLifecycle steps the store's clock through a lease's life: the
// SQL is the same on both drivers, only where now comes from differs, and
// PostgreSQL's clock cannot be stepped (TestLeaseDatabaseClock).
func TestLeaseLifecycle(t *testing.T) {
	sqliteOnly(t, "leases follow the store's clock on SQLite only; PostgreSQL's own clock is TestLeaseDatabaseClock's")
	ctx := t.Context()
	s := openTest(t)
	clk := withLeaseClock(s)
	const ttl = 10 * time.Second
	t0 := clk.Now()

	acquire := func(name, holder string) Lease {
		t.Helper()
		l, err := s.AcquireLease(ctx, name, holder, ttl)
		if err != nil {
			t.Fatalf("AcquireLease(%s, %s): %v", name, holder, err)
		}
		return l
	}
	want := func(what string, got, want Lease) {
		t.Helper()
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", what, diff)
		}
	}

	if _, ok, err := s.Lease(ctx, "function/f"); ok || err != nil {
		t.Fatalf("a lease never taken: ok %v, %v", ok, err)
	}
	want("first holder", acquire("function/f", "a"), Lease{"function/f", "a", 1, t0.Add(ttl)})

	// Held: another is refused and told who holds it; nothing changes.
	clk.Step(3 * time.Second)
	want("another, while held", acquire("function/f", "b"), Lease{"function/f", "a", 1, t0.Add(ttl)})
	// The holder extends it: same epoch.
	want("the holder again", acquire("function/f", "a"), Lease{"function/f", "a", 1, clk.Now().Add(ttl)})

	// Just before expiry it is still held; at expiry it is free, and a
	// new holder gets the next epoch.
	clk.Step(ttl - time.Nanosecond)
	want("another, a nanosecond before expiry", acquire("function/f", "b").withoutExpiry(), Lease{Name: "function/f", Holder: "a", Epoch: 1})
	clk.Step(time.Nanosecond)
	want("another, at expiry", acquire("function/f", "b"), Lease{"function/f", "b", 2, clk.Now().Add(ttl)})

	// The old holder's renewal does not bring it back; the new one's
	// extends it.
	if got, err := s.RenewLeases(ctx, "a", ttl); err != nil || len(got) != 0 {
		t.Errorf("RenewLeases of the old holder: %v, %v; want none", got, err)
	}
	clk.Step(time.Second)
	got, err := s.RenewLeases(ctx, "b", ttl)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Lease{{"function/f", "b", 2, clk.Now().Add(ttl)}}, got); diff != "" {
		t.Errorf("RenewLeases of the holder (-want +got):\n%s", diff)
	}

	// Release frees it at once and keeps its epoch; the next holder,
	// even the same node, gets a new one: epochs never go back.
	if err := s.ReleaseLease(ctx, "function/f", "a"); err != nil { // not a's: no-op
		t.Fatal(err)
	}
	if l, _, _ := s.Lease(ctx, "function/f"); l.Holder != "b" {
		t.Errorf("a release by a non-holder took it from b: %+v", l)
	}
	if err := s.ReleaseLease(ctx, "function/f", "b"); err != nil {
		t.Fatal(err)
	}
	l, ok, err := s.Lease(ctx, "function/f")
	if err != nil || !ok || l.Holder != "" || l.Epoch != 2 || l.Held(clk.Now()) {
		t.Errorf("released: %+v, %v, %v; want a row with no holder at epoch 2", l, ok, err)
	}
	want("b after its release", acquire("function/f", "b"), Lease{"function/f", "b", 3, clk.Now().Add(ttl)})

	// A holder that let its own lease expire takes it back as a new
	// holding.
	clk.Step(ttl)
	if got, err := s.RenewLeases(ctx, "b", ttl); err != nil || len(got) != 0 {
		t.Errorf("RenewLeases after expiry: %v, %v; want none", got, err)
	}
	want("b after its expiry", acquire("function/f", "b"), Lease{"function/f", "b", 4, clk.Now().Add(ttl)})

	// ReleaseLeases frees all of a holder's, and no other's.
	acquire("service/s", "b")
	acquire("service/t", "c")
	if err := s.ReleaseLeases(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	for name, holder := range map[string]string{"function/f": "", "service/s": "", "service/t": "c"} {
		if l, _, err := s.Lease(ctx, name); err != nil || l.Holder != holder {
			t.Errorf("after ReleaseLeases(b): %s is %+v, %v; want holder %q", name, l, err, holder)
		}
	}
}

// withoutExpiry is l with its Expires cleared, for comparisons.
func (l Lease) withoutExpiry() Lease {
	l.Expires = time.Time{}
	return l
}

func TestLeaseRefusesBadInput(t *testing.T) {
	ctx := t.Context()
	s := openTest(t)
	for _, c := range []struct {
		name, holder string
		ttl          time.Duration
	}{
		{"", "a", time.Second},
		{"function/f", "", time.Second},
		{"function/f", "a", 0},
		{"function/f", "a", -time.Second},
	} {
		if _, err := s.AcquireLease(ctx, c.name, c.holder, c.ttl); !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("AcquireLease(%q, %q, %v): %v, want ErrInvalid", c.name, c.holder, c.ttl, err)
		}
	}
	if _, err := s.RenewLeases(ctx, "", time.Second); !errors.Is(err, stratus.ErrInvalid) {
		t.Errorf("RenewLeases of no holder: %v, want ErrInvalid", err)
	}
	if err := s.ReleaseLeases(ctx, ""); !errors.Is(err, stratus.ErrInvalid) {
		t.Errorf("ReleaseLeases of no holder: %v, want ErrInvalid", err)
	}
	if _, ok, _ := s.Lease(ctx, "function/f"); ok {
		t.Error("a refused AcquireLease left a row")
	}
}

// TestLeaseOneWinner has many nodes take one free lease at once: exactly
// one gets it, and every answer names that one.
func TestLeaseOneWinner(t *testing.T) {
	ctx := t.Context()
	s := openTest(t)
	const nodes = 8
	for round := range 3 {
		name := fmt.Sprintf("function/f%d", round)
		var (
			wg   sync.WaitGroup
			got  [nodes]Lease
			errs [nodes]error
		)
		for i := range nodes {
			wg.Go(func() {
				got[i], errs[i] = s.AcquireLease(ctx, name, fmt.Sprintf("n%d", i), time.Minute)
			})
		}
		wg.Wait()
		winners := map[string]bool{}
		for i := range nodes {
			if errs[i] != nil {
				t.Fatalf("node %d: %v", i, errs[i])
			}
			if got[i].Epoch != 1 {
				t.Errorf("node %d saw epoch %d, want 1", i, got[i].Epoch)
			}
			winners[got[i].Holder] = true
		}
		if len(winners) != 1 {
			t.Errorf("round %d: holders %v, want one", round, winners)
		}
	}
}

func TestServiceLeases(t *testing.T) {
	ctx := t.Context()
	s := openTest(t)
	clk := withLeaseClock(s)
	before := leaseTime(s, clk)
	for _, name := range []string{"web", "api"} {
		if err := putService(ctx, s, name, 1); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.AcquireLease(ctx, "service/web", "a", time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AcquireLease(ctx, "service/gone", "a", time.Second); err != nil {
		t.Fatal(err)
	}
	after := leaseTime(s, clk)
	got, err := s.ServiceLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []Lease{
		{Name: "service/api"},
		{Name: "service/web", Holder: "a", Epoch: 1},
	}
	if len(got) == 2 {
		expiresBetween(t, got[1], before.Add(time.Second), after.Add(time.Second))
		got[1] = got[1].withoutExpiry()
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ServiceLeases (-want +got):\n%s", diff)
	}
}

// leaseTime is the time by which s judges leases, as near as a test sees
// it: clk's on SQLite; on PostgreSQL the database's, which runs on this
// machine: its clock, truncated to the microseconds PostgreSQL keeps.
func leaseTime(s *Store, clk *leaseClock) time.Time {
	if s.dialect == dialectPostgres {
		return time.Now().UTC().Round(0).Truncate(time.Microsecond)
	}
	return clk.Now()
}

// expiresBetween fails t unless l expires in [lo, hi] (hi widened by the
// microsecond PostgreSQL's clock rounds to), in UTC.
func expiresBetween(t *testing.T, l Lease, lo, hi time.Time) {
	t.Helper()
	if l.Expires.Before(lo) || l.Expires.After(hi.Add(time.Microsecond)) || l.Expires.Location() != time.UTC {
		t.Errorf("lease %s expires at %v, want a UTC time in [%v, %v]", l.Name, l.Expires, lo, hi)
	}
}

// TestLeaseDatabaseClock: on PostgreSQL, servers whose clocks are an hour
// apart judge a lease by the database's clock: the one behind cannot make
// a lease that expires early, the one ahead cannot take it before it
// expires, and it expires after its ttl of real time.
func TestLeaseDatabaseClock(t *testing.T) {
	postgresOnly(t, "on SQLite one server writes leases, by the store's clock (TestLeaseLifecycle)")
	ctx := t.Context()
	behind := openTest(t)
	ahead := openAt(t, target(t, behind))
	behind.now = func() time.Time { return time.Now().Add(-time.Hour) }
	ahead.now = func() time.Time { return time.Now().Add(time.Hour) }
	const ttl = 2 * time.Second

	lo := leaseTime(behind, nil)
	l, err := behind.AcquireLease(ctx, "function/f", "a", ttl)
	if err != nil {
		t.Fatal(err)
	}
	hi := leaseTime(behind, nil)
	if l.Holder != "a" || l.Epoch != 1 {
		t.Fatalf("first holder: %+v", l)
	}
	expiresBetween(t, l, lo.Add(ttl), hi.Add(ttl))

	// The server ahead is refused while the lease is held, and told who
	// holds it.
	got, err := ahead.AcquireLease(ctx, "function/f", "b", ttl)
	if err != nil {
		t.Fatal(err)
	}
	if got.Holder != "a" || got.Epoch != 1 {
		t.Errorf("the server an hour ahead, while a holds it: %+v, want a's at epoch 1", got)
	}
	// The holder renews by the database's clock too.
	lo = leaseTime(behind, nil)
	ls, err := behind.RenewLeases(ctx, "a", ttl)
	hi = leaseTime(behind, nil)
	if err != nil || len(ls) != 1 {
		t.Fatalf("RenewLeases of the holder: %v, %v; want one", ls, err)
	}
	expiresBetween(t, ls[0], lo.Add(ttl), hi.Add(ttl))

	// Once ttl has passed (real time), the other server takes it at the
	// next epoch, and the old holder's renewal finds nothing.
	eventually.True(t, 10*ttl, "the lease taken by b once expired", func() bool {
		got, err = ahead.AcquireLease(ctx, "function/f", "b", ttl)
		return err == nil && got.Holder == "b"
	})
	if now := time.Now(); got.Epoch != 2 || !ls[0].Expires.Before(now) || !got.Held(now) {
		t.Errorf("taken at %v: %+v, want epoch 2 after a's lease expired at %v", now, got, ls[0].Expires)
	}
	if ls, err := behind.RenewLeases(ctx, "a", ttl); err != nil || len(ls) != 0 {
		t.Errorf("RenewLeases of the old holder: %v, %v; want none", ls, err)
	}
}

// TestDeleteLease: a lease is deleted by its holder, or by anyone once
// it is free (released or expired), never while another holds it; a
// later holding starts again at epoch 1.
func TestDeleteLease(t *testing.T) {
	ctx := t.Context()
	s := openTest(t)
	// On SQLite the store's clock is stepped; PostgreSQL's runs.
	step := func() {}
	if testPG == nil {
		clk := withLeaseClock(s)
		step = func() { clk.Step(time.Second) }
	}
	acquire := func(name, holder string, ttl time.Duration) Lease {
		t.Helper()
		l, err := s.AcquireLease(ctx, name, holder, ttl)
		if err != nil || l.Holder != holder {
			t.Fatalf("AcquireLease(%s, %s): %+v, %v", name, holder, l, err)
		}
		return l
	}
	del := func(name, holder string) {
		t.Helper()
		if err := s.DeleteLease(ctx, name, holder); err != nil {
			t.Fatalf("DeleteLease(%s, %s): %v", name, holder, err)
		}
	}
	exists := func(name string) bool {
		t.Helper()
		_, ok, err := s.Lease(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}

	acquire("function/f", "a", time.Hour)
	if l, err := s.AcquireLease(ctx, "function/f", "b", time.Hour); err != nil || l.Holder != "a" {
		t.Fatalf("b's AcquireLease of a's lease: %+v, %v", l, err)
	}
	del("function/f", "b")
	if l, ok, _ := s.Lease(ctx, "function/f"); !ok || l.Holder != "a" {
		t.Errorf("a's lease after b's delete: %+v, exists %v; want a's, kept", l, ok)
	}
	del("function/f", "a")
	if exists("function/f") {
		t.Error("a's lease after a's delete: still there")
	}
	del("function/f", "a") // idempotent
	if l := acquire("function/f", "b", time.Hour); l.Epoch != 1 {
		t.Errorf("a holding after the delete: epoch %d; want 1", l.Epoch)
	}

	acquire("service/s", "a", time.Hour)
	if err := s.ReleaseLease(ctx, "service/s", "a"); err != nil {
		t.Fatal(err)
	}
	del("service/s", "b")
	if exists("service/s") {
		t.Error("a released lease after b's delete: still there")
	}

	acquire("service/e", "a", time.Millisecond)
	step()
	eventually.True(t, 10*time.Second, "an expired lease deleted by another", func() bool {
		del("service/e", "b")
		return !exists("service/e")
	})

	for _, c := range [][2]string{{"", "a"}, {"service/s", ""}} {
		if err := s.DeleteLease(ctx, c[0], c[1]); !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("DeleteLease(%q, %q): %v; want invalid", c[0], c[1], err)
		}
	}
}
