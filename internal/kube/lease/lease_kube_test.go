//go:build kube

package lease

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/cluster"
	"github.com/stratus-run/stratus/internal/clustertest"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/kube"
	"github.com/stratus-run/stratus/internal/kubetest"
	"github.com/stratus-run/stratus/internal/store"
)

// TestLeasesOnKubernetes runs the store's lease cases (internal/store's
// leases_test.go) against Lease objects of a real API server (etcd and
// kube-apiserver only), each case in a namespace of its own, and then
// internal/cluster's ownership scenario with its leases kept there.
func TestLeasesOnKubernetes(t *testing.T) {
	kc := kubetest.StartAPIServer(t)
	newStore := func(t *testing.T, services Services) (*Store, *kube.Client) {
		c := &kube.Client{Config: kc.RESTConfig(), Interface: kc.Client(), Namespace: kc.Namespace(t)}
		return New(c, services), c
	}
	t.Run("lifecycle", func(t *testing.T) {
		s, c := newStore(t, nil)
		testLifecycle(t, s, c)
	})
	t.Run("bad input", func(t *testing.T) {
		s, _ := newStore(t, nil)
		testBadInput(t, s)
	})
	t.Run("delete", func(t *testing.T) {
		s, _ := newStore(t, nil)
		testDelete(t, s)
	})
	t.Run("one winner", func(t *testing.T) {
		s, _ := newStore(t, nil)
		testOneWinner(t, s)
	})
	t.Run("renewals race extensions", func(t *testing.T) {
		s, _ := newStore(t, nil)
		testRenewRacesExtend(t, s)
	})
	t.Run("many leases, odd names", func(t *testing.T) {
		s, c := newStore(t, nil)
		testOddNames(t, s, c)
	})
	t.Run("service leases", func(t *testing.T) {
		st := openSQLite(t)
		s, _ := newStore(t, st)
		testServiceLeases(t, s, st)
	})
	t.Run("cluster", func(t *testing.T) {
		pg := clustertest.StartPostgres(t) // fails under CI=true without PostgreSQL
		st := openStore(t, pg.CreateDB(t))
		s, c := newStore(t, st)
		testCluster(t, s, c, st)
	})
}

// clock is a test clock that stands still until stepped.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Step(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// withClock gives s a clock that stands still at a fixed time.
func withClock(s *Store) *clock {
	c := &clock{t: time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)}
	s.now = c.Now
	return c
}

// object reads the Lease object of lease name.
func object(t *testing.T, c *kube.Client, name string) *coordinationv1.Lease {
	t.Helper()
	r, err := parseName(name)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := c.Interface.CoordinationV1().Leases(c.Namespace).Get(t.Context(), r.object, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get the Lease of %s: %v", name, err)
	}
	return obj
}

func withoutExpiry(l store.Lease) store.Lease {
	l.Expires = time.Time{}
	return l
}

// testLifecycle is the store's TestLeaseLifecycle, step for step, plus
// what the Lease object says at each step.
func testLifecycle(t *testing.T, s *Store, c *kube.Client) {
	ctx := t.Context()
	clk := withClock(s)
	const ttl = 10 * time.Second
	t0 := clk.Now()

	acquire := func(name, holder string) store.Lease {
		t.Helper()
		l, err := s.AcquireLease(ctx, name, holder, ttl)
		if err != nil {
			t.Fatalf("AcquireLease(%s, %s): %v", name, holder, err)
		}
		return l
	}
	want := func(what string, got, want store.Lease) {
		t.Helper()
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", what, diff)
		}
	}
	// spec checks the Lease object of function/f.
	spec := func(what, holder string, epoch int32, acquired, renewed time.Time) {
		t.Helper()
		obj := object(t, c, "function/f")
		got := fmt.Sprintf("holder %v, %v s, acquired %v, renewed %v, transitions %v, labels %v, annotations %v",
			deref(obj.Spec.HolderIdentity), deref(obj.Spec.LeaseDurationSeconds), microUTC(obj.Spec.AcquireTime),
			microUTC(obj.Spec.RenewTime), deref(obj.Spec.LeaseTransitions), obj.Labels, obj.Annotations)
		labels := map[string]string{kube.LabelManaged: kube.Managed, kube.LabelFunction: "f"}
		var wantHolder any // released: none
		if holder != "" {
			labels[kube.LabelNode] = holder
			wantHolder = holder
		}
		wanted := fmt.Sprintf("holder %v, %v s, acquired %v, renewed %v, transitions %v, labels %v, annotations %v",
			wantHolder, int32(ttl/time.Second), acquired, renewed, epoch, labels, map[string]string{AnnotationLease: "function/f"})
		if got != wanted {
			t.Errorf("%s: the Lease object has\n%s\nwant\n%s", what, got, wanted)
		}
	}

	if _, ok, err := s.Lease(ctx, "function/f"); ok || err != nil {
		t.Fatalf("a lease never taken: ok %v, %v", ok, err)
	}
	want("first holder", acquire("function/f", "a"), store.Lease{Name: "function/f", Holder: "a", Epoch: 1, Expires: t0.Add(ttl)})
	spec("first holder", "a", 1, t0, t0)

	// Held: another is refused and told who holds it; nothing changes.
	clk.Step(3 * time.Second)
	want("another, while held", acquire("function/f", "b"), store.Lease{Name: "function/f", Holder: "a", Epoch: 1, Expires: t0.Add(ttl)})
	// The holder extends it: same epoch, same acquire time.
	want("the holder again", acquire("function/f", "a"), store.Lease{Name: "function/f", Holder: "a", Epoch: 1, Expires: clk.Now().Add(ttl)})
	spec("extended", "a", 1, t0, clk.Now())

	// Just before expiry it is still held; at expiry it is free, and a
	// new holder gets the next epoch.
	clk.Step(ttl - time.Nanosecond)
	want("another, a nanosecond before expiry", withoutExpiry(acquire("function/f", "b")), store.Lease{Name: "function/f", Holder: "a", Epoch: 1})
	clk.Step(time.Nanosecond)
	want("another, at expiry", acquire("function/f", "b"), store.Lease{Name: "function/f", Holder: "b", Epoch: 2, Expires: clk.Now().Add(ttl)})
	spec("taken over", "b", 2, clk.Now(), clk.Now())

	// The old holder's renewal does not bring it back; the new one's
	// extends it.
	if got, err := s.RenewLeases(ctx, "a", ttl); err != nil || len(got) != 0 {
		t.Errorf("RenewLeases of the old holder: %v, %v; want none", got, err)
	}
	acquiredAt := clk.Now()
	clk.Step(time.Second)
	got, err := s.RenewLeases(ctx, "b", ttl)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]store.Lease{{Name: "function/f", Holder: "b", Epoch: 2, Expires: clk.Now().Add(ttl)}}, got); diff != "" {
		t.Errorf("RenewLeases of the holder (-want +got):\n%s", diff)
	}
	spec("renewed", "b", 2, acquiredAt, clk.Now())

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
	if err != nil || !ok || l.Holder != "" || l.Epoch != 2 || l.Held(clk.Now()) || !l.Expires.IsZero() {
		t.Errorf("released: %+v, %v, %v; want an object with no holder at epoch 2", l, ok, err)
	}
	spec("released", "", 2, acquiredAt, clk.Now())
	if err := s.ReleaseLease(ctx, "function/f", "b"); err != nil { // idempotent
		t.Errorf("a second release: %v", err)
	}
	if err := s.ReleaseLease(ctx, "function/never", "b"); err != nil {
		t.Errorf("release of a lease without an object: %v", err)
	}
	want("b after its release", acquire("function/f", "b"), store.Lease{Name: "function/f", Holder: "b", Epoch: 3, Expires: clk.Now().Add(ttl)})

	// A holder that let its own lease expire takes it back as a new
	// holding.
	clk.Step(ttl)
	if got, err := s.RenewLeases(ctx, "b", ttl); err != nil || len(got) != 0 {
		t.Errorf("RenewLeases after expiry: %v, %v; want none", got, err)
	}
	want("b after its expiry", acquire("function/f", "b"), store.Lease{Name: "function/f", Holder: "b", Epoch: 4, Expires: clk.Now().Add(ttl)})
	spec("taken back after expiry", "b", 4, clk.Now(), clk.Now())

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

	// A sub-second TTL lasts a whole second.
	l, err = s.AcquireLease(ctx, "function/short", "a", time.Millisecond)
	if err != nil || !l.Expires.Equal(clk.Now().Add(time.Second)) {
		t.Errorf("a lease for 1 ms: %+v, %v; want it to expire a second from now", l, err)
	}
}

// testDelete is internal/store's TestDeleteLease: a lease's object is
// deleted by its holder, or by anyone once it is free (released or
// expired), never while another holds it; a later holding starts again
// at epoch 1.
func testDelete(t *testing.T, s *Store) {
	ctx := t.Context()
	clk := withClock(s)
	const ttl = 10 * time.Second
	acquire := func(name, holder string) store.Lease {
		t.Helper()
		l, err := s.AcquireLease(ctx, name, holder, ttl)
		if err != nil {
			t.Fatalf("AcquireLease(%s, %s): %v", name, holder, err)
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

	acquire("function/f", "a")
	del("function/f", "b")
	if l, ok, _ := s.Lease(ctx, "function/f"); !ok || l.Holder != "a" {
		t.Errorf("a's lease after b's delete: %+v, exists %v; want a's, kept", l, ok)
	}
	del("function/f", "a")
	if exists("function/f") {
		t.Error("a's lease after a's delete: still there")
	}
	del("function/f", "a") // idempotent
	if l := acquire("function/f", "b"); l.Holder != "b" || l.Epoch != 1 {
		t.Errorf("a holding after the delete: %+v; want b's at epoch 1", l)
	}

	acquire("service/s", "a")
	if err := s.ReleaseLease(ctx, "service/s", "a"); err != nil {
		t.Fatal(err)
	}
	del("service/s", "b")
	if exists("service/s") {
		t.Error("a released lease after b's delete: still there")
	}

	acquire("service/e", "a")
	clk.Step(ttl - time.Nanosecond)
	del("service/e", "b")
	if !exists("service/e") {
		t.Error("a's lease a nanosecond before its expiry, after b's delete: gone")
	}
	clk.Step(time.Nanosecond)
	del("service/e", "b")
	if exists("service/e") {
		t.Error("an expired lease after b's delete: still there")
	}

	for _, c := range [][2]string{{"", "a"}, {"service/s", ""}, {"nokind", "a"}} {
		if err := s.DeleteLease(ctx, c[0], c[1]); !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("DeleteLease(%q, %q): %v; want invalid", c[0], c[1], err)
		}
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func microUTC(t *metav1.MicroTime) any {
	if t == nil {
		return nil
	}
	return t.UTC()
}

// testBadInput is the store's TestLeaseRefusesBadInput, with the names
// that are no lease's.
func testBadInput(t *testing.T, s *Store) {
	ctx := t.Context()
	for _, c := range []struct {
		name, holder string
		ttl          time.Duration
	}{
		{"", "a", time.Second},
		{"function/f", "", time.Second},
		{"function/f", "a", 0},
		{"function/f", "a", -time.Second},
		{"function/", "a", time.Second},
		{"node/f", "a", time.Second},
	} {
		if _, err := s.AcquireLease(ctx, c.name, c.holder, c.ttl); !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("AcquireLease(%q, %q, %v): %v, want ErrInvalid", c.name, c.holder, c.ttl, err)
		}
	}
	if _, err := s.RenewLeases(ctx, "", time.Second); !errors.Is(err, stratus.ErrInvalid) {
		t.Errorf("RenewLeases of no holder: %v, want ErrInvalid", err)
	}
	if _, err := s.RenewLeases(ctx, "a", 0); !errors.Is(err, stratus.ErrInvalid) {
		t.Errorf("RenewLeases for 0: %v, want ErrInvalid", err)
	}
	if err := s.ReleaseLeases(ctx, ""); !errors.Is(err, stratus.ErrInvalid) {
		t.Errorf("ReleaseLeases of no holder: %v, want ErrInvalid", err)
	}
	if _, _, err := s.Lease(ctx, "f"); !errors.Is(err, stratus.ErrInvalid) {
		t.Errorf("Lease(f): %v, want ErrInvalid", err)
	}
	if _, ok, _ := s.Lease(ctx, "function/f"); ok {
		t.Error("a refused AcquireLease left an object")
	}
}

// testOneWinner is the store's TestLeaseOneWinner: many nodes take one
// free lease at once, exactly one gets it and every answer names that
// one; and again once it has expired, at the next epoch.
func testOneWinner(t *testing.T, s *Store) {
	ctx := t.Context()
	clk := withClock(s)
	const nodes = 8
	race := func(name string, epoch int64) string {
		var (
			wg   sync.WaitGroup
			got  [nodes]store.Lease
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
				t.Fatalf("%s, node %d: %v", name, i, errs[i])
			}
			if got[i].Epoch != epoch {
				t.Errorf("%s: node %d saw epoch %d, want %d", name, i, got[i].Epoch, epoch)
			}
			winners[got[i].Holder] = true
		}
		if len(winners) != 1 {
			t.Errorf("%s: holders %v, want one", name, winners)
		}
		for w := range winners {
			return w
		}
		return ""
	}
	for round := range 3 {
		race(fmt.Sprintf("function/f%d", round), 1)
	}
	// Taking over an expired lease races too.
	first := race("function/g", 1)
	clk.Step(time.Minute)
	if second := race("function/g", 2); second == "" {
		t.Error("nobody took the expired lease")
	} else {
		t.Logf("function/g went from %s to %s", first, second)
	}
}

// testRenewRacesExtend renews a node's leases while the node extends
// them (AcquireLease) at the same time: the writes conflict, and every
// renewal still finds every lease.
func testRenewRacesExtend(t *testing.T, s *Store) {
	ctx := t.Context()
	names := []string{"function/f", "function/g", "service/s"}
	for _, name := range names {
		if _, err := s.AcquireLease(ctx, name, "a", time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	const rounds = 20
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Go(func() {
			for range rounds {
				if l, err := s.AcquireLease(ctx, name, "a", time.Minute); err != nil || l.Holder != "a" || l.Epoch != 1 {
					t.Errorf("extend %s: %+v, %v", name, l, err)
					return
				}
			}
		})
	}
	for range rounds {
		ls, err := s.RenewLeases(ctx, "a", time.Minute)
		if err != nil || len(ls) != len(names) {
			t.Errorf("RenewLeases while extending: %v, %v; want %d leases", ls, err, len(names))
			break
		}
	}
	wg.Wait()
}

// testOddNames holds leases of workloads and nodes whose names are no
// object names or label values, and more leases than a renewal updates
// at once.
func testOddNames(t *testing.T, s *Store, c *kube.Client) {
	ctx := t.Context()
	const holder, other = "Node_1:8080", "node-2"
	long := strings.Repeat("x", 64)
	odd := []string{"function/My_Fn", "function/_x", "function/" + long, "function/" + long[:63] + "y", "service/-web_"}
	var mine []string
	for i := range 20 {
		mine = append(mine, fmt.Sprintf("function/f%02d", i))
	}
	mine = append(mine, odd...)
	for _, name := range mine {
		if l, err := s.AcquireLease(ctx, name, holder, time.Minute); err != nil || l.Holder != holder || l.Epoch != 1 {
			t.Fatalf("AcquireLease(%s): %+v, %v", name, l, err)
		}
	}
	if _, err := s.AcquireLease(ctx, "function/theirs", other, time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, name := range odd {
		obj := object(t, c, name)
		r, _ := parseName(name)
		if obj.Name != r.object || obj.Annotations[AnnotationLease] != name || obj.Labels[kube.LabelNode] != labelValue(holder) {
			t.Errorf("%s: object %s, annotations %v, labels %v", name, obj.Name, obj.Annotations, obj.Labels)
		}
		if l, ok, err := s.Lease(ctx, name); err != nil || !ok || l.Name != name || l.Holder != holder {
			t.Errorf("Lease(%s): %+v, %v, %v", name, l, ok, err)
		}
	}
	ls, err := s.RenewLeases(ctx, holder, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range ls {
		got = append(got, l.Name)
	}
	wantNames := append([]string(nil), mine...)
	slices.Sort(wantNames)
	if diff := cmp.Diff(wantNames, got); diff != "" {
		t.Errorf("RenewLeases of %s (-want +got):\n%s", holder, diff)
	}

	// An object of a lease's name that keeps another lease is not taken.
	r, _ := parseName("function/clash")
	foreign := r.newObject()
	foreign.Annotations[AnnotationLease] = "function/other"
	if _, err := c.Interface.CoordinationV1().Leases(c.Namespace).Create(ctx, foreign, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AcquireLease(ctx, "function/clash", holder, time.Minute); !errors.Is(err, stratus.ErrConflict) {
		t.Errorf("AcquireLease on another lease's object: %v, want ErrConflict", err)
	}

	if err := s.ReleaseLeases(ctx, holder); err != nil {
		t.Fatal(err)
	}
	for _, name := range append(mine, "function/theirs") {
		l, _, err := s.Lease(ctx, name)
		if wantHolder := map[bool]string{true: other}[name == "function/theirs"]; err != nil || l.Holder != wantHolder {
			t.Errorf("after ReleaseLeases: %s is %+v, %v; want holder %q", name, l, err, wantHolder)
		}
	}
	if ls, err := s.RenewLeases(ctx, holder, time.Minute); err != nil || len(ls) != 0 {
		t.Errorf("RenewLeases after ReleaseLeases: %v, %v", ls, err)
	}
}

// testServiceLeases is the store's TestServiceLeases: the leases of the
// stored services, never-taken ones included, and not those of services
// that are gone.
func testServiceLeases(t *testing.T, s *Store, st *store.Store) {
	ctx := t.Context()
	clk := withClock(s)
	for _, name := range []string{"web", "api"} {
		if _, err := st.PutRevision(ctx, &stratus.Revision{Service: name, Number: 1,
			Config: stratus.ServiceConfig{Image: "app"}, Digest: "sha256:app"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.AcquireLease(ctx, "service/web", "a", time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AcquireLease(ctx, "service/gone", "a", time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AcquireLease(ctx, "function/api", "a", time.Second); err != nil { // a function's, not the service's
		t.Fatal(err)
	}
	got, err := s.ServiceLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Lease{
		{Name: "service/api"},
		{Name: "service/web", Holder: "a", Epoch: 1, Expires: clk.Now().Add(time.Second)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ServiceLeases (-want +got):\n%s", diff)
	}
}

func openSQLite(t *testing.T) *store.Store {
	return openStore(t, filepath.Join(t.TempDir(), "stratus.db"))
}

func openStore(t *testing.T, target string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// testCluster is internal/cluster's ownership scenario (TestClusterOwnerScan,
// TestClusterLeave, takeover at a bigger epoch) on two servers of one
// PostgreSQL store whose leases are Lease objects: a stored service gets
// an owner, a function is taken by the first that routes it and forwarded
// to by the other at the Lease's epoch, renewals keep both, and when the
// owner stops the other takes both over at the next epoch.
func testCluster(t *testing.T, s *Store, c *kube.Client, st *store.Store) {
	ctx := t.Context()
	const ttl = 2 * time.Second
	type node struct {
		name string
		c    *cluster.Cluster
		stop func()
	}
	start := func(name string) *node {
		mux := http.NewServeMux()
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		n := &node{name: name}
		n.c = cluster.New(cluster.Config{
			Store: st, Leases: s, Node: name, Address: srv.URL, Token: "token",
			Heartbeat: 100 * time.Millisecond, DeadAfter: 2 * time.Second, LeaseTTL: ttl,
			Local: func(_ context.Context, fn string, req stratus.Request) (*stratus.Response, error) {
				return &stratus.Response{Body: []byte(name + ":" + fn + ":" + string(req.Event)),
					Record: stratus.Invocation{RequestID: req.RequestID, Function: fn, Outcome: stratus.OutcomeSuccess}}, nil
			},
		})
		if n.c.Single() {
			t.Fatal("a cluster on PostgreSQL is Single")
		}
		mux.Handle("/v1/internal/", n.c.InternalHandler())
		rctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- n.c.Run(rctx) }()
		var once sync.Once
		n.stop = func() {
			once.Do(func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run of %s: %v", name, err)
				}
			})
		}
		t.Cleanup(n.stop)
		eventually.Nil(t, 10*time.Second, name+" heartbeats", n.c.Health)
		return n
	}
	a := start("a")
	b := start("b")

	// A stored service gets an owner through the owner scan.
	if _, err := st.PutRevision(ctx, &stratus.Revision{Service: "web", Number: 1,
		Config: stratus.ServiceConfig{Image: "app"}, Digest: "sha256:app"}); err != nil {
		t.Fatal(err)
	}
	var owner, other *node
	eventually.True(t, 10*time.Second, "an owner of web", func() bool {
		for _, n := range []*node{a, b} {
			if n.c.Owns("service", "web") {
				owner, other = n, map[*node]*node{a: b, b: a}[n]
				return true
			}
		}
		return false
	})
	if obj := object(t, c, "service/web"); deref(obj.Spec.HolderIdentity) != owner.name || deref(obj.Spec.LeaseTransitions) != int32(1) ||
		obj.Labels[kube.LabelNode] != owner.name || deref(obj.Spec.LeaseDurationSeconds) != int32(2) {
		t.Errorf("web's Lease: %+v, labels %v; want %s's at 1, for 2 s", obj.Spec, obj.Labels, owner.name)
	}
	eventually.True(t, 10*time.Second, "the other knows the owner", func() bool { return other.c.Owner("service", "web") == owner.name })

	// The owner takes a function by routing it; the other forwards to it.
	eventually.True(t, 10*time.Second, "the owner takes f", func() bool {
		r, err := owner.c.Route(ctx, "f")
		return r == nil && err == nil
	})
	var resp *stratus.Response
	eventually.Nil(t, 10*time.Second, "the other forwards f to the owner", func() error {
		r, err := other.c.Route(ctx, "f")
		if err != nil || r == nil {
			return fmt.Errorf("route: %v, remote %v", err, r != nil)
		}
		resp, err = r(ctx, "f", stratus.Request{RequestID: "r1", Event: []byte("hi")})
		return err
	})
	if string(resp.Body) != owner.name+":f:hi" {
		t.Errorf("forwarded call answered %q, want %s's", resp.Body, owner.name)
	}

	// Renewals keep the leases past their TTL.
	first := object(t, c, "function/f")
	eventually.True(t, 3*ttl, "renewals", func() bool {
		obj := object(t, c, "function/f")
		return obj.Spec.RenewTime.Sub(first.Spec.AcquireTime.Time) > 2*ttl
	})
	if !owner.c.Owns("function", "f") || !owner.c.Owns("service", "web") {
		t.Fatal("the owner lost a lease while renewing")
	}
	if obj := object(t, c, "function/f"); deref(obj.Spec.LeaseTransitions) != int32(1) || deref(obj.Spec.HolderIdentity) != owner.name {
		t.Errorf("f's Lease after renewals: %+v; want %s's at 1", obj.Spec, owner.name)
	}

	// The owner stops: it releases its Leases, and the other takes both
	// over at once, at the next epoch.
	stopped := time.Now()
	owner.stop()
	eventually.True(t, 10*time.Second, "the other takes web", func() bool { return other.c.Owns("service", "web") })
	eventually.True(t, 10*time.Second, "the other takes f", func() bool {
		r, err := other.c.Route(ctx, "f")
		return r == nil && err == nil
	})
	t.Logf("taken over %v after the owner stopped (the TTL is %v)", time.Since(stopped).Round(time.Millisecond), ttl)
	for _, name := range []string{"service/web", "function/f"} {
		l, ok, err := s.Lease(ctx, name)
		if err != nil || !ok || l.Holder != other.name || l.Epoch != 2 {
			t.Errorf("%s after the takeover: %+v, %v, %v; want %s's at epoch 2", name, l, ok, err, other.name)
		}
	}
	// The other's own stop frees them too.
	other.stop()
	for _, name := range []string{"service/web", "function/f"} {
		if l, _, err := s.Lease(ctx, name); err != nil || l.Holder != "" || l.Epoch != 2 {
			t.Errorf("%s after both stopped: %+v, %v; want no holder at epoch 2", name, l, err)
		}
	}
}
