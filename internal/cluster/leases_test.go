package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/store"
)

// TestTakeoverAfterExpiry has a node take a function and die (it never
// heartbeats or renews): another node that needs the function waits for
// the lease to expire, never takes it early, and gets a bigger epoch.
func TestClusterTakeoverAfterExpiry(t *testing.T) {
	eachDriver(t, func(t *testing.T, st *store.Store) {
		ctx := t.Context()
		a := newNode(t, st, "a", nodeOpts{noRun: true})
		b := newNode(t, st, "b", nodeOpts{})
		if r, err := a.c.Route(ctx, "f"); r != nil || err != nil {
			t.Fatalf("a takes a free function: %v, %v", r != nil, err)
		}
		if !a.c.Owns(kindFunction, "f") || a.c.Owner(kindFunction, "f") != "a" {
			t.Fatal("a does not own what it took")
		}
		first, _, err := st.Lease(ctx, "function/f")
		if err != nil || first.Holder != "a" {
			t.Fatalf("lease %+v, %v", first, err)
		}

		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		r, err := b.c.Route(rctx, "f:prod")
		if r != nil || err != nil {
			t.Fatalf("b's Route once a's lease expired: %v, %v; want here", r != nil, err)
		}
		if now := time.Now(); now.Before(first.Expires) {
			t.Errorf("b took the lease %v before it expired", first.Expires.Sub(now))
		}
		got, _, err := st.Lease(ctx, "function/f")
		if err != nil || got.Holder != "b" || got.Epoch <= first.Epoch {
			t.Errorf("after the takeover: %+v, %v; want b's, epoch > %d", got, err, first.Epoch)
		}
		if a.c.Owns(kindFunction, "f") {
			t.Error("a still owns the function after its deadline")
		}
		if !b.c.Owns(kindFunction, "f") || a.c.Owner(kindFunction, "f") != "" {
			t.Errorf("b owns: %v; a thinks the owner is %q", b.c.Owns(kindFunction, "f"), a.c.Owner(kindFunction, "f"))
		}
	})
}

// TestRenewalFailureStopsOwnerFirst has an owner whose renewals fail: it
// stops owning at its deadline, while the store still gives the lease to
// nobody else, and another node gets it only later, with a bigger epoch.
// The owner's subscribers learn when it gains and loses a service.
func TestClusterRenewalFailureStopsOwnerFirst(t *testing.T) {
	eachDriver(t, func(t *testing.T, st *store.Store) {
		ctx := t.Context()
		const ttl = 5 * time.Second // a margin of 1 s: the test's polls are late by less
		a := newNode(t, st, "a", nodeOpts{ttl: ttl})
		b := newNode(t, st, "b", nodeOpts{ttl: ttl})
		if r, err := a.c.Route(ctx, "f"); r != nil || err != nil {
			t.Fatalf("a takes f: %v, %v", r != nil, err)
		}
		if _, got, err := a.c.acquire(ctx, "service/web"); !got || err != nil {
			t.Fatalf("a takes service web: %v, %v", got, err)
		}
		gained := store.Change{Table: "services", Name: "web"}
		eventually.True(t, 5*time.Second, "a's subscriber learns it has web", func() bool { return a.sawChange(gained) == 1 })
		// Renewals keep it past several TTLs' worth of renewals.
		eventually.True(t, 5*time.Second, "a few renewals", func() bool {
			l, _, _ := st.Lease(ctx, "function/f")
			return l.Expires.After(time.Now().Add(ttl - ttl/5))
		})
		before, _, _ := st.Lease(ctx, "function/f")
		if !a.c.Owns(kindFunction, "f") {
			t.Fatal("a lost f while renewing")
		}
		if r, err := b.c.Route(ctx, "f"); r == nil || err != nil {
			t.Fatalf("b's Route while a owns f: %v, %v; want a Remote", r != nil, err)
		}

		a.db.failRenew.Store(true)
		eventually.True(t, 2*ttl, "a stops owning f", func() bool { return !a.c.Owns(kindFunction, "f") })
		stopped := time.Now()
		l, _, err := st.Lease(ctx, "function/f")
		if err != nil || l.Holder != "a" || !l.Held(stopped) {
			t.Errorf("when a stopped owning f, the store had %+v, %v: free %v already", l, err, stopped.Sub(l.Expires))
		} else {
			t.Logf("a stopped owning f %v before the lease's expiry", l.Expires.Sub(stopped))
		}
		eventually.True(t, 5*time.Second, "a's subscriber learns it lost web", func() bool { return a.sawChange(gained) == 2 })

		eventually.True(t, 3*ttl, "b takes f", func() bool {
			r, err := b.c.Route(ctx, "f")
			return r == nil && err == nil
		})
		if a.c.Owns(kindFunction, "f") {
			t.Error("a owns f again")
		}
		after, _, err := st.Lease(ctx, "function/f")
		if err != nil || after.Holder != "b" || after.Epoch != before.Epoch+1 {
			t.Errorf("after the takeover: %+v, %v; want b's at epoch %d", after, err, before.Epoch+1)
		}

		// Renewals work again: a learns the lease is b's and forwards.
		a.db.failRenew.Store(false)
		eventually.True(t, 5*time.Second, "a forwards f to b", func() bool {
			r, err := a.c.Route(ctx, "f")
			if r == nil || err != nil {
				return false
			}
			resp, err := r(ctx, "f", stratus.Request{RequestID: "r1", Event: []byte("hi")})
			return err == nil && string(resp.Body) == "b:f:hi"
		})
	})
}

// TestOwnerScan stores a service: some node takes it within a heartbeat;
// when that node stops (releasing it), the other one takes it at once.
func TestClusterOwnerScan(t *testing.T) {
	eachDriver(t, func(t *testing.T, st *store.Store) {
		ctx := t.Context()
		nodes := []*testNode{newNode(t, st, "a", nodeOpts{ttl: time.Minute}), newNode(t, st, "b", nodeOpts{ttl: time.Minute})}
		if st.Dialect() == "postgres" {
			for _, n := range nodes { // listening: nothing is missed from here on
				eventually.True(t, 10*time.Second, n.name+" listens", func() bool { return n.sawChange(store.Change{Resync: true}) >= 1 })
			}
		}
		if _, err := st.PutRevision(ctx, &stratus.Revision{Service: "web", Number: 1,
			Config: stratus.ServiceConfig{Image: "app"}, Digest: "sha256:app"}); err != nil {
			t.Fatal(err)
		}
		var owner, other *testNode
		eventually.True(t, 5*time.Second, "an owner of web", func() bool {
			for i, n := range nodes {
				if n.c.Owns(kindService, "web") {
					owner, other = n, nodes[1-i]
					return true
				}
			}
			return false
		})
		web := store.Change{Table: "services", Name: "web"}
		eventually.True(t, 5*time.Second, "the owner's subscriber learns it", func() bool { return owner.sawChange(web) >= 1 })
		if st.Dialect() == "postgres" {
			// Both learn of the revision through the store's notifications.
			for _, n := range nodes {
				eventually.True(t, 5*time.Second, n.name+" hears of the revision", func() bool {
					return n.sawChange(store.Change{Table: "revisions", Name: "web"}) >= 1
				})
			}
		}
		eventually.True(t, 5*time.Second, "the other knows the owner", func() bool { return other.c.Owner(kindService, "web") == owner.name })
		if got := other.c.Owner(kindService, "web"); got != owner.name {
			t.Errorf("Owner(web) = %q, want %q", got, owner.name)
		}

		owner.stop()
		eventually.True(t, 5*time.Second, "the other takes web", func() bool { return other.c.Owns(kindService, "web") })
		if l, _, err := st.Lease(ctx, "service/web"); err != nil || l.Holder != other.name || l.Epoch != 2 {
			t.Errorf("lease %+v, %v; want %s's at epoch 2", l, err, other.name)
		}
	})
}

// TestClusterServiceLeaseDeleted: once a service has left the store for
// a while, its owner deletes its lease.
func TestClusterServiceLeaseDeleted(t *testing.T) {
	eachDriver(t, func(t *testing.T, st *store.Store) {
		ctx := t.Context()
		a := newNode(t, st, "a", nodeOpts{ttl: time.Minute, serviceGC: 100 * time.Millisecond})
		if _, err := st.PutRevision(ctx, &stratus.Revision{Service: "web", Number: 1,
			Config: stratus.ServiceConfig{Image: "app"}, Digest: "sha256:app"}); err != nil {
			t.Fatal(err)
		}
		eventually.True(t, 5*time.Second, "a owns web", func() bool { return a.c.Owns(kindService, "web") })
		if err := st.DeleteService(ctx, "web"); err != nil {
			t.Fatal(err)
		}
		eventually.Nil(t, 5*time.Second, "web's lease deleted", func() error {
			if l, ok, err := st.Lease(ctx, "service/web"); err != nil || ok {
				return fmt.Errorf("lease %+v, exists %v, %v", l, ok, err)
			}
			return nil
		})
		if a.c.Owns(kindService, "web") {
			t.Error("a still owns web")
		}
	})
}

// TestClusterReleaseBeatsRenewal releases a lease while a renewal that
// still found it is on its way back: the renewal does not take it back,
// as another node may hold it already.
func TestClusterReleaseBeatsRenewal(t *testing.T) {
	st := openStore(t, t.TempDir()+"/stratus.db")
	ctx := t.Context()
	a := newNode(t, st, "a", nodeOpts{noRun: true, ttl: time.Minute})
	b := newNode(t, st, "b", nodeOpts{noRun: true, ttl: time.Minute})
	for _, name := range []string{"function/f", "function/g"} {
		if _, got, err := a.c.acquire(ctx, name); !got || err != nil {
			t.Fatal(got, err)
		}
	}
	hook := func() {
		a.c.release(ctx, "function/f", false)
		if _, got, err := b.c.acquire(ctx, "function/f"); !got || err != nil {
			t.Errorf("b takes f once released: %v, %v", got, err)
		}
	}
	a.db.afterRenew.Store(&hook)
	if err := a.c.renew(ctx); err != nil {
		t.Fatal(err)
	}
	if a.c.Owns(kindFunction, "f") || !b.c.Owns(kindFunction, "f") {
		t.Errorf("after the race: a owns f: %v, b owns f: %v; want b only", a.c.Owns(kindFunction, "f"), b.c.Owns(kindFunction, "f"))
	}
	if !a.c.Owns(kindFunction, "g") {
		t.Error("a lost g")
	}
	a.db.afterRenew.Store(nil)
	if err := a.c.renew(ctx); err != nil {
		t.Fatal(err)
	}
	if a.c.Owns(kindFunction, "f") || !a.c.Owns(kindFunction, "g") {
		t.Errorf("a later renewal: a owns f: %v, g: %v", a.c.Owns(kindFunction, "f"), a.c.Owns(kindFunction, "g"))
	}
}
