package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/clustertest"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/store"
)

// testPG is the PostgreSQL server the tests' postgres runs use; nil
// without PostgreSQL's binaries (outside CI).
var testPG *clustertest.Postgres

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	pg, err := clustertest.NewPostgres(context.Background())
	switch {
	case errors.Is(err, clustertest.ErrNoPostgres) && os.Getenv("CI") != "true":
		fmt.Fprintf(os.Stderr, "cluster tests on postgres skipped: %v\n", err)
	case err != nil:
		fmt.Fprintf(os.Stderr, "cluster tests on postgres: %v\n", err)
		return 1
	default:
		defer pg.Close()
		testPG = pg
	}
	return m.Run()
}

// eachDriver runs test on a fresh SQLite store and on a fresh PostgreSQL
// database.
func eachDriver(t *testing.T, test func(t *testing.T, st *store.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		test(t, openStore(t, filepath.Join(t.TempDir(), "stratus.db")))
	})
	t.Run("postgres", func(t *testing.T) {
		if testPG == nil {
			if os.Getenv("CI") == "true" {
				t.Fatal("no PostgreSQL: under CI=true it must be installed (scripts/test installs it)")
			}
			t.Skip("no PostgreSQL binaries")
		}
		test(t, openStore(t, testPG.CreateDB(t)))
	})
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

const (
	testToken  = "secret-token"
	testDomain = "example.test"
)

// testNode is one server of a test cluster: a Cluster behind an
// httptest server that mounts InternalHandler and ServiceForwarder, with
// a fake invoker and a fake "rest of the server" that say which node
// answered.
type testNode struct {
	name string
	c    *Cluster
	srv  *httptest.Server
	db   *faultyDB
	// syncs counts the calls of Sync (the records made durable).
	syncs atomic.Int32

	mu      sync.Mutex
	invoked []invocation // what Local ran
	served  []*http.Request
	changes []store.Change

	stop func() // stops Run and waits for it; nil if not running
}

// invocation is one call of a testNode's Local.
type invocation struct {
	name     string
	req      stratus.Request
	deadline time.Time
	traceID  oteltrace.TraceID
}

// nodeOpts are the knobs of newNode.
type nodeOpts struct {
	ttl      time.Duration // LeaseTTL; default 1 s
	noRun    bool          // do not Run it (a node that died at once)
	health   func() string
	services func(string) bool // Config.Services
	// serviceGC, if set, replaces serviceLeaseGC: how long a gone
	// service's lease is kept.
	serviceGC time.Duration
}

// testLog is a logger to the test's output when STRATUS_TEST_LOG is set,
// else nil.
func testLog(t *testing.T, node string) *slog.Logger {
	if os.Getenv("STRATUS_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", node)
}

// newNode starts node name on st.
func newNode(t *testing.T, st *store.Store, name string, o nodeOpts) *testNode {
	t.Helper()
	if o.ttl == 0 {
		o.ttl = time.Second
	}
	n := &testNode{name: name}
	mux := http.NewServeMux()
	n.srv = httptest.NewServer(mux)
	t.Cleanup(n.srv.Close)
	n.c = newCluster(Config{
		Store: st, Node: name, Address: n.srv.URL, Region: "eu", Version: "test", Token: testToken,
		Heartbeat: 50 * time.Millisecond, DeadAfter: time.Second, LeaseTTL: o.ttl,
		Stats:    func() (int, int) { return 2, 1 },
		Health:   o.health,
		Local:    n.local,
		Sync:     func(context.Context) error { n.syncs.Add(1); return nil },
		Services: o.services,
		Log:      testLog(t, name),
	}, false)
	n.db = &faultyDB{db: n.c.db}
	n.c.db = n.db
	if o.serviceGC > 0 {
		n.c.serviceGC = o.serviceGC
	}
	n.c.OnChange(func(ch store.Change) {
		n.mu.Lock()
		defer n.mu.Unlock()
		n.changes = append(n.changes, ch)
	})
	mux.Handle("/v1/internal/", n.c.InternalHandler())
	mux.Handle("/", n.c.ServiceForwarder(testDomain, http.HandlerFunc(n.serve)))
	if !o.noRun {
		n.start(t)
	} else {
		n.c.joined.Store(true) // a node that joined, then died at once
	}
	return n
}

// start runs n's Cluster until stop or the test's end.
func (n *testNode) start(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.c.Run(ctx) }()
	var once sync.Once
	n.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run of %s: %v", n.name, err)
			}
		})
	}
	t.Cleanup(n.stop)
	eventually.True(t, 10*time.Second, n.name+" joins", n.c.joined.Load)
}

// local is the node's fake invoker: the event says what to do.
func (n *testNode) local(ctx context.Context, name string, req stratus.Request) (*stratus.Response, error) {
	inv := invocation{name: name, req: req, traceID: oteltrace.SpanContextFromContext(ctx).TraceID()}
	inv.deadline, _ = ctx.Deadline()
	n.mu.Lock()
	n.invoked = append(n.invoked, inv)
	n.mu.Unlock()
	switch string(req.Event) {
	case "throttle":
		return nil, fmt.Errorf("function %q: %w", name, stratus.ErrCapacity)
	case "missing":
		return nil, fmt.Errorf("function %q: %w", name, stratus.ErrNotFound)
	case "timeout":
		return nil, fmt.Errorf("function %q: wait for an instance: %w", name, stratus.ErrTimeout)
	case "crash":
		return nil, errors.New("something broke")
	case "fnerror":
		return &stratus.Response{Body: []byte(`{"errorMessage":"boom"}`), ErrorType: "Unhandled",
			Record: stratus.Invocation{RequestID: req.RequestID, Function: name, Outcome: stratus.OutcomeError}}, nil
	}
	return &stratus.Response{
		Body:   []byte(n.name + ":" + name + ":" + string(req.Event)),
		Record: stratus.Invocation{RequestID: req.RequestID, Function: name, Outcome: stratus.OutcomeSuccess, DurationMs: 1.5},
	}, nil
}

// serve is the rest of the node's server: it answers which node served
// what, echoes bodies, streams and upgrades.
func (n *testNode) serve(w http.ResponseWriter, r *http.Request) {
	n.mu.Lock()
	n.served = append(n.served, r.Clone(context.Background()))
	n.mu.Unlock()
	w.Header().Set("X-Node", n.name)
	switch {
	case strings.HasSuffix(r.URL.Path, "/echo"):
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s:%s", n.name, b)
	case strings.HasSuffix(r.URL.Path, "/ws"):
		serveEcho(w, r)
	case strings.HasSuffix(r.URL.Path, "/stream"):
		streamTwo(w, r)
	case strings.HasSuffix(r.URL.Path, "/busy"):
		// A service's own 503 that looks like a receiver's refusal.
		w.Header().Set(headerMoved, "1")
		w.Header().Set(HeaderLeaseEpoch, "7")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "%s: busy", n.name)
	default:
		fmt.Fprintf(w, "%s:%s %s%s", n.name, r.Method, r.Host, r.URL.RequestURI())
	}
}

// invocations returns what n's Local ran.
func (n *testNode) invocations() []invocation {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]invocation(nil), n.invoked...)
}

// servedCount is how many requests reached n's own handler.
func (n *testNode) servedCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.served)
}

// lastServed is the last request n's own handler got.
func (n *testNode) lastServed() *http.Request {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.served) == 0 {
		return nil
	}
	return n.served[len(n.served)-1]
}

// sawChange counts the times n's subscriber got ch.
func (n *testNode) sawChange(ch store.Change) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	k := 0
	for _, got := range n.changes {
		if got == ch {
			k++
		}
	}
	return k
}

// faultyDB is the store with switches that make it fail, and counters.
type faultyDB struct {
	db
	failRenew  atomic.Bool            // renewals fail
	dead       atomic.Bool            // every write fails: the node died
	afterRenew atomic.Pointer[func()] // runs after the store renewed, before the Cluster hears of it
	leaseGets  atomic.Int64           // Lease calls
	acquires   atomic.Int64           // AcquireLease calls
}

var errInjected = errors.New("injected store failure")

func (f *faultyDB) RenewLeases(ctx context.Context, holder string, ttl time.Duration) ([]store.Lease, error) {
	if f.failRenew.Load() || f.dead.Load() {
		return nil, errInjected
	}
	ls, err := f.db.RenewLeases(ctx, holder, ttl)
	if hook := f.afterRenew.Load(); hook != nil {
		(*hook)()
	}
	return ls, err
}

func (f *faultyDB) Heartbeat(ctx context.Context, n store.Node) error {
	if f.dead.Load() {
		return errInjected
	}
	return f.db.Heartbeat(ctx, n)
}

func (f *faultyDB) ReleaseLease(ctx context.Context, name, holder string) error {
	if f.dead.Load() {
		return errInjected
	}
	return f.db.ReleaseLease(ctx, name, holder)
}

func (f *faultyDB) DeleteLease(ctx context.Context, name, holder string) error {
	if f.dead.Load() {
		return errInjected
	}
	return f.db.DeleteLease(ctx, name, holder)
}

func (f *faultyDB) ReleaseLeases(ctx context.Context, holder string) error {
	if f.dead.Load() {
		return errInjected
	}
	return f.db.ReleaseLeases(ctx, holder)
}

func (f *faultyDB) DeleteNode(ctx context.Context, name, incarnation string) error {
	if f.dead.Load() {
		return errInjected
	}
	return f.db.DeleteNode(ctx, name, incarnation)
}

func (f *faultyDB) Lease(ctx context.Context, name string) (store.Lease, bool, error) {
	f.leaseGets.Add(1)
	return f.db.Lease(ctx, name)
}

func (f *faultyDB) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (store.Lease, error) {
	f.acquires.Add(1)
	return f.db.AcquireLease(ctx, name, holder, ttl)
}

func TestClusterSingle(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "stratus.db"))
	c := New(Config{Store: st, Node: "solo", Address: "http://127.0.0.1:1", Heartbeat: 20 * time.Millisecond})
	if !c.Single() {
		t.Fatal("a cluster on SQLite is not Single")
	}
	ctx := t.Context()
	if r, err := c.Route(ctx, "f"); r != nil || err != nil {
		t.Errorf("Route: %v, %v; want here", r != nil, err)
	}
	if !c.Owns(kindFunction, "f") || !c.Owns(kindService, "web") {
		t.Error("Single does not own everything")
	}
	if got := c.Owner(kindService, "web"); got != "solo" {
		t.Errorf("Owner = %q, want solo", got)
	}
	next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	if h := c.ServiceForwarder(testDomain, next); fmt.Sprint(h) != fmt.Sprint(next) {
		t.Error("Single's ServiceForwarder is not next")
	}

	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(rctx) }()
	eventually.True(t, 5*time.Second, "the node's heartbeat", func() bool {
		ns, err := c.Nodes(ctx)
		return err == nil && len(ns) == 1 && ns[0].Name == "solo" && ns[0].Self && ns[0].Alive && ns[0].State == "ready"
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ns, err := st.Nodes(ctx); err != nil || len(ns) != 0 {
		t.Errorf("after Run: nodes %+v, %v; want none", ns, err)
	}
	if ls, err := st.ServiceLeases(ctx); err != nil || len(ls) != 0 {
		t.Errorf("Single took leases: %+v, %v", ls, err)
	}
}

func TestNodes(t *testing.T) {
	eachDriver(t, func(t *testing.T, st *store.Store) {
		ctx := t.Context()
		a := newNode(t, st, "a", nodeOpts{})
		b := newNode(t, st, "b", nodeOpts{health: func() string { return "store: unreachable" }})
		// A node that stopped heartbeating a minute ago.
		if err := st.Heartbeat(ctx, store.Node{Name: "c", Address: "http://127.0.0.1:1", State: "ready",
			HeartbeatAt: time.Now().Add(-time.Minute)}); err != nil {
			t.Fatal(err)
		}
		eventually.True(t, 5*time.Second, "three nodes", func() bool {
			ns, err := a.c.Nodes(ctx)
			return err == nil && len(ns) == 3
		})
		ns, err := a.c.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range []struct {
			name, state string
			alive, self bool
		}{{"a", "ready", true, true}, {"b", "unready: store: unreachable", true, false}, {"c", "ready", false, false}} {
			n := ns[i]
			if n.Name != want.name || n.State != want.state || n.Alive != want.alive || n.Self != want.self {
				t.Errorf("node %d: %+v, want %+v", i, n, want)
			}
			if want.alive && (n.Address == "" || n.Region != "eu" || n.Version != "test" || n.Instances != 2 || n.Replicas != 1 ||
				n.StartedAt.IsZero() || n.HeartbeatAgeSec > 1) {
				t.Errorf("node %s: %+v", n.Name, n)
			}
		}
		if ns[2].HeartbeatAgeSec < 59 {
			t.Errorf("dead node's heartbeat age %v s, want a minute", ns[2].HeartbeatAgeSec)
		}

		// A node that stops deletes its row.
		b.stop()
		if ns, err := a.c.Nodes(ctx); err != nil || len(ns) != 2 || ns[1].Name != "c" {
			t.Errorf("after b stopped: %+v, %v", ns, err)
		}

		// Health says whether the heartbeats reach the store.
		eventually.True(t, 5*time.Second, "Health says the heartbeats reach the store", func() bool { return a.c.Health() == nil })
		a.db.dead.Store(true)
		eventually.True(t, 5*time.Second, "Health says the heartbeats fail", func() bool {
			err := a.c.Health()
			return errors.Is(err, stratus.ErrUnavailable) && strings.Contains(err.Error(), errInjected.Error())
		})
		a.db.dead.Store(false)
		eventually.True(t, 5*time.Second, "Health recovers", func() bool { return a.c.Health() == nil })
		if err := newNode(t, st, "d", nodeOpts{noRun: true}).c.Health(); !errors.Is(err, stratus.ErrUnavailable) {
			t.Errorf("Health before the first heartbeat: %v", err)
		}
	})
}

// TestClusterLeave: a server that begins to stop gives its work away at
// once: its leases are free for the others, its row says stopping, and a
// call forwarded to it meanwhile moves to the new owner.
func TestClusterLeave(t *testing.T) {
	eachDriver(t, func(t *testing.T, st *store.Store) {
		ctx := t.Context()
		a := newNode(t, st, "a", nodeOpts{ttl: time.Minute})
		b := newNode(t, st, "b", nodeOpts{ttl: time.Minute})
		if r, err := a.c.Route(ctx, "f"); r != nil || err != nil {
			t.Fatalf("a takes f: %v, %v", r != nil, err)
		}
		eventually.True(t, 5*time.Second, "b sees a alive", func() bool {
			_, ok, _ := b.c.nodeOf(ctx, "a")
			return ok
		})
		remote := routeTo(t, b, "f")
		a.c.Leave(ctx)
		if a.c.Owns("function", "f") {
			t.Error("a still owns f after Leave")
		}
		// The lease lasts a minute, yet b runs f at once: a freed it.
		resp, err := remote(ctx, "f", stratus.Request{RequestID: "r-1", Event: []byte("hello")})
		if err != nil || string(resp.Body) != "b:f:hello" {
			t.Fatalf("b's call after a left: %+v, %v; want it run by b", resp, err)
		}
		if r, err := b.c.Route(ctx, "f"); r != nil || err != nil {
			t.Errorf("b does not own f after a left: %v, %v", r != nil, err)
		}
		if r, err := a.c.Route(ctx, "g"); err == nil && r == nil {
			t.Error("a, stopping, took a new function")
		}
		eventually.True(t, 5*time.Second, "a's row says stopping", func() bool {
			ns, err := b.c.Nodes(ctx)
			return err == nil && len(ns) == 2 && ns[0].Name == "a" && ns[0].State == "stopping"
		})
	})
}
