package cluster

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/store"
)

// TestClusterForwarderGuards: a service's own 503 that carries the
// receiver's refusal header reaches the client once, without it; names
// that are no service cost no store query; a leftover lease of a deleted
// service is not taken; a deploy of a new service still takes its lease.
func TestClusterForwarderGuards(t *testing.T) {
	eachDriver(t, func(t *testing.T, st *store.Store) {
		ctx := t.Context()
		exists := func(name string) bool { return name == "web" || name == "new" }
		a := newNode(t, st, "a", nodeOpts{ttl: time.Minute, services: exists})
		b := newNode(t, st, "b", nodeOpts{ttl: time.Minute, services: exists})
		if _, got, err := a.c.acquire(ctx, "service/web"); !got || err != nil {
			t.Fatal(got, err)
		}
		eventually.True(t, 5*time.Second, "b sees a alive", func() bool {
			_, ok, _ := b.c.nodeOf(ctx, "a")
			return ok
		})

		// The service answers 503 with the refusal's header: once.
		before := a.servedCount()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.srv.URL+"/svc/web/busy", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(headerMoved) != "" || resp.Header.Get(HeaderLeaseEpoch) != "" {
			t.Errorf("the service's 503: %d, headers %v", resp.StatusCode, resp.Header)
		}
		if got := a.servedCount() - before; got != 1 {
			t.Errorf("the owner served the request %d times, want once", got)
		}

		// Names that are no service: no store query, no lease.
		gets, acqs := b.db.leaseGets.Load(), b.db.acquires.Load()
		long := strings.Repeat("a-", 31) + "b"
		for _, host := range []string{long + "." + testDomain, "x-y-z." + testDomain} {
			if code, node, _ := do(t, b, "GET", host, "/", "", nil); code != http.StatusOK || node != "b" {
				t.Errorf("host %s: %d from %q, want b's own handler", host, code, node)
			}
		}
		if code, node, _ := do(t, b, "GET", "", "/svc/nothing/", "", nil); code != http.StatusOK || node != "b" {
			t.Errorf("/svc/nothing: %d from %q", code, node)
		}
		if g, q := b.db.leaseGets.Load()-gets, b.db.acquires.Load()-acqs; g != 0 || q != 0 {
			t.Errorf("requests for unknown names cost %d lease reads and %d acquisitions", g, q)
		}

		// A deleted service's leftover lease (expired) is not taken.
		if _, err := st.AcquireLease(ctx, "service/gone", "a", time.Millisecond); err != nil {
			t.Fatal(err)
		}
		eventually.True(t, 5*time.Second, "the leftover lease expires", func() bool {
			l, _, err := st.Lease(ctx, "service/gone")
			return err == nil && !l.Held(time.Now())
		})
		if code, node, _ := do(t, b, "GET", "", "/svc/gone/", "", nil); code != http.StatusOK || node != "b" {
			t.Errorf("/svc/gone: %d from %q", code, node)
		}
		if l, _, _ := st.Lease(ctx, "service/gone"); l.Holder != "a" || b.c.Owns(kindService, "gone") {
			t.Errorf("the deleted service's lease was taken: %+v", l)
		}

		// A deploy of a service nobody knows yet takes its lease, with
		// the token as the API takes it (scheme in any case).
		h := http.Header{"Authorization": {"bearer  " + testToken}}
		if code, node, _ := do(t, b, http.MethodPut, "", "/v1/services/fresh", "{}", h); code != http.StatusOK || node != "b" || !b.c.Owns(kindService, "fresh") {
			t.Errorf("deploy of a new service: %d from %q, b owns: %v", code, node, b.c.Owns(kindService, "fresh"))
		}
	})
}

// TestClusterUnreachableAnswer: a client whose service's owner cannot be
// reached gets a 503 that names the service, not the owner's address or
// the dial error.
func TestClusterUnreachableAnswer(t *testing.T) {
	st := openStore(t, t.TempDir()+"/stratus.db")
	ctx := t.Context()
	b := newNode(t, st, "b", nodeOpts{ttl: time.Minute})
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close() // its port refuses connections
	if err := st.Heartbeat(ctx, store.Node{Name: "z", Address: dead.URL, State: "ready", Incarnation: "z"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AcquireLease(ctx, "service/web", "z", time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := b.c.readNodes(ctx); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	r := httptest.NewRequestWithContext(rctx, http.MethodGet, "/svc/web/", nil)
	w := httptest.NewRecorder()
	b.c.ServiceForwarder(testDomain, http.NotFoundHandler()).ServeHTTP(w, r)
	body := w.Body.String()
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(body, "the server that runs web cannot be reached; try again") ||
		strings.Contains(body, "127.0.0.1") || strings.Contains(body, "dial") || strings.Contains(body, "node z") {
		t.Errorf("answer %d %s", w.Code, body)
	}
}

// TestClusterNodeAddresses: a node whose address is not an http or https
// URL with a host is unreachable: nothing is forwarded to it.
func TestClusterNodeAddresses(t *testing.T) {
	st := openStore(t, t.TempDir()+"/stratus.db")
	ctx := t.Context()
	b := newNode(t, st, "b", nodeOpts{ttl: time.Minute})
	for name, addr := range map[string]string{
		"ok": "https://10.0.0.7:8080", "ftp": "ftp://10.0.0.7/", "file": "file:///etc/passwd",
		"nohost": "http:///x", "opaque": "http:10.0.0.7", "user": "http://u:p@10.0.0.7/",
	} {
		if err := st.Heartbeat(ctx, store.Node{Name: name, Address: addr, State: "ready", Incarnation: name}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.c.readNodes(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ok", "ftp", "file", "nohost", "opaque", "user"} {
		_, ok, err := b.c.nodeOf(ctx, name)
		if err != nil || ok != (name == "ok") {
			t.Errorf("node %s reachable: %v, %v", name, ok, err)
		}
	}
}

// TestClusterNoRedirects: the forwarding client hands an owner's
// redirect back as its answer, never follows it.
func TestClusterNoRedirects(t *testing.T) {
	st := openStore(t, t.TempDir()+"/stratus.db")
	c := newCluster(Config{Store: st, Node: "a", Address: "http://127.0.0.1:1"}, false)
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/away" {
			t.Error("the client followed a redirect")
		}
		http.Redirect(w, r, "/away", http.StatusFound)
	}))
	defer elsewhere.Close()
	resp, err := c.client.Get(elsewhere.URL + "/here")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Errorf("status %d, want the redirect itself", resp.StatusCode)
	}
}
