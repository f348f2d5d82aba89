package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/functions"
	"github.com/stratus-run/stratus/internal/store"
)

// routeTo returns n's Remote for fn, failing t if fn runs at n.
func routeTo(t *testing.T, n *testNode, fn string) functions.Remote {
	t.Helper()
	r, err := n.c.Route(t.Context(), fn)
	if err != nil || r == nil {
		t.Fatalf("%s's Route(%s): %v, %v; want a Remote", n.name, fn, r != nil, err)
	}
	return r
}

// TestRouteForwards has b forward invocations of a's function to a over
// HTTP: the request arrives whole, with the caller's deadline and trace;
// the answer and the errors' kinds come back; owners are cached.
func TestClusterRouteForwards(t *testing.T) {
	eachDriver(t, func(t *testing.T, st *store.Store) {
		a := newNode(t, st, "a", nodeOpts{})
		b := newNode(t, st, "b", nodeOpts{})
		if r, err := a.c.Route(t.Context(), "f"); r != nil || err != nil {
			t.Fatalf("a takes f: %v, %v", r != nil, err)
		}
		eventually.True(t, 5*time.Second, "b sees a alive", func() bool {
			_, ok, _ := b.c.nodeOf(t.Context(), "a")
			return ok
		})
		remote := routeTo(t, b, "f")

		traceID := oteltrace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
		sc := oteltrace.NewSpanContext(oteltrace.SpanContextConfig{TraceID: traceID, SpanID: oteltrace.SpanID{1}, TraceFlags: oteltrace.FlagsSampled})
		ctx, cancel := context.WithTimeout(oteltrace.ContextWithSpanContext(t.Context(), sc), 7*time.Second)
		defer cancel()
		deadline, _ := ctx.Deadline()
		req := stratus.Request{RequestID: "req-1", Event: []byte("hello"), ClientContext: "Y2M=", CognitoIdentity: "id", Trigger: stratus.TriggerAsync}
		resp, err := remote(ctx, "f:prod", req)
		if err != nil {
			t.Fatal(err)
		}
		want := &stratus.Response{Body: []byte("a:f:prod:hello"),
			Record: stratus.Invocation{RequestID: "req-1", Function: "f:prod", Outcome: stratus.OutcomeSuccess, DurationMs: 1.5}}
		if diff := cmp.Diff(want, resp); diff != "" {
			t.Errorf("answer (-want +got):\n%s", diff)
		}
		got := a.invocations()
		if len(got) != 1 {
			t.Fatalf("a ran %d invocations, want 1", len(got))
		}
		if diff := cmp.Diff(req, got[0].req); diff != "" || got[0].name != "f:prod" {
			t.Errorf("a ran %q (-want +got):\n%s", got[0].name, diff)
		}
		if !got[0].deadline.Equal(deadline) {
			t.Errorf("a's deadline %v, want the caller's %v", got[0].deadline, deadline)
		}
		if got[0].traceID != traceID {
			t.Errorf("a's trace %v, want the caller's %v", got[0].traceID, traceID)
		}
		if len(b.invocations()) != 0 {
			t.Error("b ran an invocation it forwarded")
		}
		// A queued event's record is durable on the owner before the
		// sender, which settles the event on the answer, gets it.
		if n := a.syncs.Load(); n != 1 {
			t.Errorf("a made its records durable %d times for one forwarded async event, want 1", n)
		}

		// Errors keep their kinds and messages; a function's error is an
		// answer.
		for event, kind := range map[string]error{"throttle": stratus.ErrCapacity, "missing": stratus.ErrNotFound, "timeout": stratus.ErrTimeout} {
			_, err := remote(ctx, "f", stratus.Request{RequestID: "r-" + event, Event: []byte(event)})
			if !errors.Is(err, kind) {
				t.Errorf("event %s: %v, want %v", event, err, kind)
			}
			if _, local := a.local(ctx, "f", stratus.Request{Event: []byte(event)}); err == nil || err.Error() != local.Error() {
				t.Errorf("event %s: message %q, want the owner's %q", event, err, local)
			}
		}
		if _, err := remote(ctx, "f", stratus.Request{Event: []byte("crash")}); err == nil || status(err) != http.StatusInternalServerError {
			t.Errorf("an internal error: %v (status %d), want one answered 500", err, status(err))
		}
		resp, err = remote(ctx, "f", stratus.Request{RequestID: "r-fn", Event: []byte("fnerror")})
		if err != nil || resp.ErrorType != "Unhandled" || string(resp.Body) != `{"errorMessage":"boom"}` {
			t.Errorf("a function's error: %+v, %v", resp, err)
		}

		if n := a.syncs.Load(); n != 1 {
			t.Errorf("a made its records durable %d times after sync invocations too, want only the async one's", n)
		}

		// The hot path reads nothing: the owner is cached until its lease
		// expires.
		gets, acquires := b.db.leaseGets.Load(), b.db.acquires.Load()
		for range 50 {
			routeTo(t, b, "f")
		}
		if g, a := b.db.leaseGets.Load()-gets, b.db.acquires.Load()-acquires; g+a > 1 {
			t.Errorf("50 routes read the store %d times and acquired %d times", g, a)
		}
	})
}

// status is the HTTP status err is answered with.
func status(err error) int {
	s, _ := v1.ErrorFrom(err)
	return s
}

// TestEpochFencing checks the internal endpoint: it serves only the
// holder's epoch, refuses a stale one (and never forwards it), and the
// sender of a stale forward finds the new owner and retries.
func TestClusterEpochFencing(t *testing.T) {
	eachDriver(t, func(t *testing.T, st *store.Store) {
		ctx := t.Context()
		a := newNode(t, st, "a", nodeOpts{ttl: time.Minute})
		b := newNode(t, st, "b", nodeOpts{ttl: time.Minute})
		c := newNode(t, st, "c", nodeOpts{ttl: time.Minute})
		if r, err := a.c.Route(ctx, "f"); r != nil || err != nil {
			t.Fatalf("a takes f: %v, %v", r != nil, err)
		}
		l, _, _ := st.Lease(ctx, "function/f")

		post := func(n *testNode, epoch, token string) *http.Response {
			t.Helper()
			hr, _ := http.NewRequestWithContext(ctx, http.MethodPost, n.srv.URL+"/v1/internal/invoke/f", strings.NewReader(`{"requestId":"x","event":"aGk="}`))
			if token != "" {
				hr.Header.Set("Authorization", "Bearer "+token)
			}
			hr.Header.Set(HeaderForwardedBy, "test")
			if epoch != "" {
				hr.Header.Set(HeaderLeaseEpoch, epoch)
			}
			resp, err := http.DefaultClient.Do(hr)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp
		}
		cur, stale := strconv.FormatInt(l.Epoch, 10), strconv.FormatInt(l.Epoch-1, 10)
		for _, tc := range []struct {
			what         string
			n            *testNode
			epoch, token string
			status       int
			moved        bool
		}{
			{"the holder at its epoch", a, cur, testToken, http.StatusOK, false},
			{"the holder at a stale epoch", a, stale, testToken, http.StatusServiceUnavailable, true},
			{"a node that does not hold it", b, cur, testToken, http.StatusServiceUnavailable, true},
			{"no epoch", a, "", testToken, http.StatusBadRequest, false},
			{"no token", a, cur, "", http.StatusUnauthorized, false},
			{"a wrong token", a, cur, "guess", http.StatusUnauthorized, false},
		} {
			resp := post(tc.n, tc.epoch, tc.token)
			if resp.StatusCode != tc.status || (resp.Header.Get(headerMoved) != "") != tc.moved {
				t.Errorf("%s: %s, moved %q; want %d, moved %v", tc.what, resp.Status, resp.Header.Get(headerMoved), tc.status, tc.moved)
			}
		}
		if len(b.invocations()) != 0 || len(c.invocations()) != 0 || len(a.invocations()) != 1 {
			t.Errorf("invocations: a %d, b %d, c %d; want 1, 0, 0", len(a.invocations()), len(b.invocations()), len(c.invocations()))
		}

		// b caches a as f's owner; then f moves to c (a releases it, c
		// takes it). b's forward reaches a, which refuses the stale
		// epoch; b reads the owner again and retries at c.
		eventually.True(t, 5*time.Second, "b sees a and c alive", func() bool {
			_, okA, _ := b.c.nodeOf(ctx, "a")
			_, okC, _ := b.c.nodeOf(ctx, "c")
			return okA && okC
		})
		remote := routeTo(t, b, "f")
		a.c.release(ctx, "function/f", false)
		if r, err := c.c.Route(ctx, "f"); r != nil || err != nil {
			t.Fatalf("c takes f: %v, %v", r != nil, err)
		}
		resp, err := remote(ctx, "f", stratus.Request{RequestID: "r2", Event: []byte("again")})
		if err != nil || string(resp.Body) != "c:f:again" {
			t.Fatalf("a stale forward: %+v, %v; want c's answer", resp, err)
		}
		if n := len(a.invocations()); n != 1 {
			t.Errorf("a ran %d invocations, want still 1", n)
		}
	})
}

// TestForwardToUnreachableOwner has the owner's server refuse
// connections: the sender waits for the owner's lease to expire, then
// takes the function and runs it itself.
func TestClusterForwardToUnreachableOwner(t *testing.T) {
	eachDriver(t, func(t *testing.T, st *store.Store) {
		ctx := t.Context()
		a := newNode(t, st, "a", nodeOpts{})
		b := newNode(t, st, "b", nodeOpts{})
		if r, err := a.c.Route(ctx, "f"); r != nil || err != nil {
			t.Fatalf("a takes f: %v, %v", r != nil, err)
		}
		eventually.True(t, 5*time.Second, "b sees a alive", func() bool {
			_, ok, _ := b.c.nodeOf(ctx, "a")
			return ok
		})
		remote := routeTo(t, b, "f")
		// a dies: its server goes, and its store writes with it.
		a.db.dead.Store(true)
		a.srv.Close()
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		resp, err := remote(rctx, "f", stratus.Request{RequestID: "r", Event: []byte("e")})
		if err != nil || string(resp.Body) != "b:f:e" {
			t.Fatalf("%+v, %v; want b's answer", resp, err)
		}
		if !b.c.Owns(kindFunction, "f") {
			t.Error("b does not own f")
		}
	})
}

// TestInternalInvokeBadBody refuses what is not an invocation.
func TestClusterInternalInvokeBadBody(t *testing.T) {
	st := openStore(t, t.TempDir()+"/stratus.db")
	a := newNode(t, st, "a", nodeOpts{noRun: true, ttl: time.Hour})
	if r, err := a.c.Route(t.Context(), "f"); r != nil || err != nil {
		t.Fatal(r != nil, err)
	}
	epoch, _ := a.c.holds("function/f")
	for body, want := range map[string]int{
		`{"event":`:           http.StatusBadRequest,
		`{"event":"%%%"}`:     http.StatusBadRequest,
		`{"event":"aGk="}`:    http.StatusOK,
		`{"deadline":"soon"}`: http.StatusBadRequest,
	} {
		hr, _ := http.NewRequest(http.MethodPost, a.srv.URL+"/v1/internal/invoke/f", strings.NewReader(body))
		hr.Header.Set("Authorization", "Bearer "+testToken)
		hr.Header.Set(HeaderLeaseEpoch, strconv.FormatInt(epoch, 10))
		resp, err := http.DefaultClient.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		var e v1.Error
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("body %s: %s %+v, want %d", body, resp.Status, e, want)
		}
	}
}

// BenchmarkRoute measures what Route costs an invocation: of a function
// owned here, and of one owned by another node (cached).
func BenchmarkRoute(b *testing.B) {
	st, err := store.Open(context.Background(), b.TempDir()+"/stratus.db")
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	mk := func(name string) *Cluster {
		c := newCluster(Config{Store: st, Node: name, Address: "http://" + name + ".invalid", LeaseTTL: time.Hour, DeadAfter: time.Hour}, false)
		if _, err := c.readNodes(ctx); err != nil {
			b.Fatal(err)
		}
		return c
	}
	for _, n := range []string{"a", "b"} {
		if err := st.Heartbeat(ctx, store.Node{Name: n, Address: "http://" + n + ".invalid"}); err != nil {
			b.Fatal(err)
		}
	}
	a, other := mk("a"), mk("b")
	if r, err := a.Route(ctx, "f"); r != nil || err != nil {
		b.Fatal(r != nil, err)
	}
	b.Run("owned", func(b *testing.B) {
		for b.Loop() {
			if r, err := a.Route(ctx, "f"); r != nil || err != nil {
				b.Fatal(r != nil, err)
			}
		}
	})
	b.Run("remote", func(b *testing.B) {
		for b.Loop() {
			if r, err := other.Route(ctx, "f"); r == nil || err != nil {
				b.Fatal(r != nil, err)
			}
		}
	})
}
