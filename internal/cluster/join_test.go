package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/store"
)

// TestClusterNodeNameInUse: a second server under the name of a live
// one refuses to run, and changes nothing of the first one's row or
// leases.
func TestClusterNodeNameInUse(t *testing.T) {
	eachDriver(t, func(t *testing.T, st *store.Store) {
		ctx := t.Context()
		a := newNode(t, st, "a", nodeOpts{ttl: time.Minute})
		if _, got, err := a.c.acquire(ctx, "service/web"); !got || err != nil {
			t.Fatal(got, err)
		}
		before, _, _ := st.Lease(ctx, "service/web")

		twin := newNode(t, st, "a", nodeOpts{ttl: time.Minute, noRun: true})
		twin.c.joined.Store(false)
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		err := twin.c.Run(rctx)
		if !errors.Is(err, stratus.ErrConflict) || !strings.Contains(err.Error(), "node name a is in use by a live server") ||
			!strings.Contains(err.Error(), a.srv.URL) || !strings.Contains(err.Error(), "--node-name") {
			t.Fatalf("Run of a second server named a: %v; want a conflict naming the live one", err)
		}
		if _, _, err := twin.c.acquire(ctx, "function/f"); !errors.Is(err, stratus.ErrUnavailable) {
			t.Errorf("the refused twin took a lease: %v", err)
		}
		ns, err := st.Nodes(ctx)
		if err != nil || len(ns) != 1 || ns[0].Incarnation != a.c.incarnation {
			t.Errorf("a's row after the twin: %+v, %v", ns, err)
		}
		after, _, _ := st.Lease(ctx, "service/web")
		if after.Holder != "a" || after.Epoch != before.Epoch || !a.c.Owns(kindService, "web") {
			t.Errorf("a's lease after the twin: %+v (before %+v), a owns: %v", after, before, a.c.Owns(kindService, "web"))
		}
		// A clean stop of a deletes its own row.
		a.stop()
		if ns, _ := st.Nodes(ctx); len(ns) != 0 {
			t.Errorf("after a stopped: %+v", ns)
		}
	})
}

// TestClusterRestartAfterCrash: a server that restarts under its name
// while the row of its killed previous run is still young waits until
// that row passes for dead, then takes it, and its leases.
func TestClusterRestartAfterCrash(t *testing.T) {
	eachDriver(t, func(t *testing.T, st *store.Store) {
		ctx := t.Context()
		old := store.Node{Name: "k", Address: "http://127.0.0.1:1", State: "ready", Incarnation: "killed", HeartbeatAt: time.Now()}
		if err := st.Heartbeat(ctx, old); err != nil {
			t.Fatal(err)
		}
		k := newNode(t, st, "k", nodeOpts{ttl: time.Minute})
		if waited := time.Since(old.HeartbeatAt); waited < time.Second { // DeadAfter
			t.Errorf("took the row %v after the old run's last heartbeat, before it passed for dead", waited)
		}
		ns, err := st.Nodes(ctx)
		if err != nil || len(ns) != 1 || ns[0].Incarnation != k.c.incarnation || ns[0].Address != k.srv.URL {
			t.Errorf("rows after the restart: %+v, %v", ns, err)
		}
		if _, got, err := k.c.acquire(ctx, "function/f"); !got || err != nil {
			t.Errorf("the restarted node takes a lease: %v, %v", got, err)
		}
	})
}

// TestClusterEvicted: a node whose row another incarnation took (it
// passed for dead, its name was taken over) stops owning, takes nothing
// more, and at its stop leaves the leases and the row under its name,
// which are the other's now.
func TestClusterEvicted(t *testing.T) {
	eachDriver(t, func(t *testing.T, st *store.Store) {
		ctx := t.Context()
		e := newNode(t, st, "e", nodeOpts{ttl: time.Minute})
		if _, got, err := e.c.acquire(ctx, "service/web"); !got || err != nil {
			t.Fatal(got, err)
		}
		ns, err := st.Nodes(ctx)
		if err != nil || len(ns) != 1 {
			t.Fatal(ns, err)
		}
		next := store.Node{Name: "e", Address: "http://127.0.0.1:2", State: "ready", Incarnation: "next"}
		eventually.Nil(t, 5*time.Second, "another incarnation takes e's row", func() error {
			cur, err := st.Nodes(ctx)
			if err != nil {
				return err
			}
			return st.ClaimNode(ctx, next, cur[0])
		})
		eventually.True(t, 5*time.Second, "e stops owning", func() bool {
			return !e.c.Owns(kindService, "web") && e.c.Health() != nil
		})
		// Subscribers hear of the loss after Owns turns false.
		eventually.True(t, 5*time.Second, "e's subscribers hear that it lost the service", func() bool {
			return e.sawChange(store.Change{Table: "services", Name: "web"}) >= 2
		})
		if _, _, err := e.c.acquire(ctx, "function/f"); !errors.Is(err, stratus.ErrUnavailable) {
			t.Errorf("an evicted node takes a lease: %v", err)
		}
		e.stop()
		l, _, err := st.Lease(ctx, "service/web")
		if err != nil || l.Holder != "e" || !l.Held(time.Now()) {
			t.Errorf("the lease under e's name after the evicted one stopped: %+v, %v; want kept", l, err)
		}
		ns, err = st.Nodes(ctx)
		if err != nil || len(ns) != 1 || ns[0].Incarnation != "next" {
			t.Errorf("rows after the evicted one stopped: %+v, %v; want the new incarnation's", ns, err)
		}
	})
}
