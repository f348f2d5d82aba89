package cluster

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/store"
)

// serveEcho upgrades to the "echo" protocol and echoes lines until the
// client closes.
func serveEcho(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") != "echo" {
		http.Error(w, "want Upgrade: echo", http.StatusBadRequest)
		return
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
	rw.Flush()
	for {
		line, err := rw.ReadString('\n')
		if err != nil {
			return
		}
		rw.WriteString(line)
		rw.Flush()
	}
}

// streamRelease holds the second half of streamTwo's answer.
var streamRelease = make(chan struct{})

// streamTwo writes a first line at once and a second once streamRelease
// is closed.
func streamTwo(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, "first\n")
	http.NewResponseController(w).Flush()
	select {
	case <-streamRelease:
	case <-r.Context().Done():
		return
	case <-time.After(10 * time.Second):
	}
	io.WriteString(w, "second\n")
}

// do sends a request to n's server and returns the answer's status, the
// node that answered (X-Node) and its body.
func do(t *testing.T, n *testNode, method, host, path, body string, h http.Header) (int, string, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, n.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Node"), string(b)
}

var withToken = http.Header{"Authorization": {"Bearer " + testToken}}

func TestClusterServiceForwarder(t *testing.T) {
	eachDriver(t, func(t *testing.T, st *store.Store) {
		ctx := t.Context()
		a := newNode(t, st, "a", nodeOpts{ttl: time.Minute})
		b := newNode(t, st, "b", nodeOpts{ttl: time.Minute})

		// A deploy takes the lease of a new service where it lands.
		if code, node, _ := do(t, a, http.MethodPut, "", "/v1/services/web", "{}", withToken); code != http.StatusOK || node != "a" {
			t.Fatalf("deploy at a: %d from %q", code, node)
		}
		if !a.c.Owns(kindService, "web") {
			t.Fatal("a does not own the service deployed there")
		}
		eventually.True(t, 5*time.Second, "b sees a alive", func() bool {
			_, ok, _ := b.c.nodeOf(ctx, "a")
			return ok
		})
		bHost := strings.TrimPrefix(b.srv.URL, "http://")

		for _, c := range []struct {
			what, method, host, path, body string
			h                              http.Header
			node, answer                   string
		}{
			{"a path route", "GET", "", "/svc/web/x?q=1", "", nil, "a", "a:GET " + bHost + "/svc/web/x?q=1"},
			{"a path route to a tag", "GET", "", "/svc/web@canary/x", "", nil, "a", "a:GET " + bHost + "/svc/web@canary/x"},
			{"a host route", "GET", "web.example.test", "/anything", "", nil, "a", "a:GET web.example.test/anything"},
			{"a host route to a tag", "GET", "Canary-Web.Example.Test:8080", "/", "", nil, "a", "a:GET Canary-Web.Example.Test:8080/"},
			{"a service API call", "GET", "", "/v1/services/web/revisions", "", withToken, "a", "a:GET " + bHost + "/v1/services/web/revisions"},
			{"a body", "POST", "", "/svc/web/echo", "payload", nil, "a", "a:payload"},
			{"the service list", "GET", "", "/v1/services", "", withToken, "b", "b:GET " + bHost + "/v1/services"},
			{"a function route", "GET", "", "/fn/web", "", nil, "b", "b:GET " + bHost + "/fn/web"},
			{"an unknown service", "GET", "", "/svc/nope/x", "", nil, "b", "b:GET " + bHost + "/svc/nope/x"},
			{"an unknown host", "GET", "nope.example.test", "/", "", nil, "b", "b:GET nope.example.test/"},
			{"another domain", "GET", "web.elsewhere.test", "/", "", nil, "b", "b:GET web.elsewhere.test/"},
		} {
			code, node, answer := do(t, b, c.method, c.host, c.path, c.body, c.h)
			if code != http.StatusOK || node != c.node || answer != c.answer {
				t.Errorf("%s: %d from %q: %q; want 200 from %q: %q", c.what, code, node, answer, c.node, c.answer)
			}
		}
		// What reached a came forwarded, and a stripped the marks (the
		// client's address among them: a's gateway has it).
		r := a.lastServed()
		if r == nil || r.Header.Get(HeaderForwardedBy) != "" || r.Header.Get(HeaderLeaseEpoch) != "" || r.Header.Get(headerPeer) != "" {
			t.Errorf("a got headers %v", r.Header)
		}

		// A forwarded request is never forwarded again: served by the
		// holder at its epoch, refused elsewhere or at another epoch.
		l, _, _ := st.Lease(ctx, "service/web")
		fwd := func(epoch int64) http.Header {
			return http.Header{HeaderForwardedBy: {"x"}, HeaderLeaseEpoch: {strconv.FormatInt(epoch, 10)}}
		}
		servedA := a.servedCount()
		if code, node, _ := do(t, b, "GET", "", "/svc/web/x", "", fwd(l.Epoch)); code != http.StatusServiceUnavailable || node != "" {
			t.Errorf("a forwarded request at b: %d from %q, want 503 from b's forwarder", code, node)
		}
		if a.servedCount() != servedA {
			t.Error("b forwarded a forwarded request")
		}
		if code, node, _ := do(t, a, "GET", "", "/svc/web/x", "", fwd(l.Epoch)); code != http.StatusOK || node != "a" {
			t.Errorf("a forwarded request at the holder: %d from %q", code, node)
		}
		if code, _, _ := do(t, a, "GET", "", "/svc/web/x", "", fwd(l.Epoch+1)); code != http.StatusServiceUnavailable {
			t.Errorf("a forwarded request at another epoch: %d, want 503", code)
		}

		// A deploy without the token creates no lease (the API answers
		// it); with it, the new service is the deploying node's.
		if code, node, _ := do(t, b, http.MethodPut, "", "/v1/services/other", "{}", nil); code != http.StatusOK || node != "b" {
			t.Errorf("a deploy without the token: %d from %q, want b's own answer", code, node)
		}
		if _, ok, _ := st.Lease(ctx, "service/other"); ok {
			t.Error("a deploy without the token made a lease")
		}
		if code, node, _ := do(t, b, http.MethodPut, "", "/v1/services/fresh", "{}", withToken); code != http.StatusOK || node != "b" || !b.c.Owns(kindService, "fresh") {
			t.Errorf("a new service deployed at b: %d from %q, owned by b: %v", code, node, b.c.Owns(kindService, "fresh"))
		}
	})
}

// TestServiceForwarderStreams checks that answers stream through the
// proxy and upgrades pass.
func TestClusterServiceForwarderStreams(t *testing.T) {
	st := openStore(t, t.TempDir()+"/stratus.db")
	a := newNode(t, st, "a", nodeOpts{ttl: time.Minute})
	b := newNode(t, st, "b", nodeOpts{ttl: time.Minute})
	if _, got, err := a.c.acquire(t.Context(), "service/web"); !got || err != nil {
		t.Fatal(got, err)
	}
	eventually.True(t, 5*time.Second, "b sees a alive", func() bool {
		_, ok, _ := b.c.nodeOf(t.Context(), "a")
		return ok
	})

	// The first line arrives while a still holds the second.
	resp, err := http.Get(b.srv.URL + "/svc/web/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); line != "first\n" || err != nil || resp.Header.Get("X-Node") != "a" {
		t.Fatalf("first line %q, %v from %q", line, err, resp.Header.Get("X-Node"))
	}
	close(streamRelease)
	if line, err := br.ReadString('\n'); line != "second\n" || err != nil {
		t.Fatalf("second line %q, %v", line, err)
	}

	// An upgrade to a protocol of the service's passes both ways.
	conn, err := net.Dial("tcp", strings.TrimPrefix(b.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /svc/web/ws HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
	cr := bufio.NewReader(conn)
	up, err := http.ReadResponse(cr, nil)
	if err != nil || up.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v, %v", up, err)
	}
	for _, msg := range []string{"ping\n", "pong\n"} {
		io.WriteString(conn, msg)
		if got, err := cr.ReadString('\n'); got != msg || err != nil {
			t.Errorf("echo of %q: %q, %v", msg, got, err)
		}
	}
}

// TestServiceForwarderOwnerMoved has b forward to a, whose lease is no
// longer its own: a refuses, and b finds the service free, takes it and
// serves the request itself.
func TestClusterServiceForwarderOwnerMoved(t *testing.T) {
	st := openStore(t, t.TempDir()+"/stratus.db")
	ctx := context.Background()
	a := newNode(t, st, "a", nodeOpts{ttl: time.Minute})
	b := newNode(t, st, "b", nodeOpts{ttl: time.Minute})
	if _, got, err := a.c.acquire(ctx, "service/web"); !got || err != nil {
		t.Fatal(got, err)
	}
	eventually.True(t, 5*time.Second, "b sees a alive", func() bool {
		_, ok, _ := b.c.nodeOf(ctx, "a")
		return ok
	})
	if code, node, _ := do(t, b, "GET", "", "/svc/web/", "", nil); code != http.StatusOK || node != "a" {
		t.Fatalf("before the move: %d from %q", code, node)
	}
	a.c.release(ctx, "service/web", false)
	code, node, answer := do(t, b, "GET", "", "/svc/web/", "", nil)
	if code != http.StatusOK || node != "b" || !b.c.Owns(kindService, "web") {
		t.Errorf("after the move: %d from %q (%q), b owns: %v", code, node, answer, b.c.Owns(kindService, "web"))
	}
}

func TestClusterCandidates(t *testing.T) {
	f := &forwarder{c: &Cluster{cfg: Config{Token: testToken}}, domain: testDomain}
	for _, c := range []struct {
		method, host, path string
		token              bool
		want               []candidate
	}{
		{"GET", "x", "/svc/web", false, []candidate{{lease: "service/web"}}},
		{"GET", "x", "/svc/web@tag/a/b", false, []candidate{{lease: "service/web"}}},
		{"GET", "x", "/svc/", false, nil},
		{"GET", "x", "/svc/bad.name/", false, nil},
		{"GET", "x", "/v1/services", true, nil},
		{"GET", "x", "/v1/services/", true, nil},
		{"PUT", "x", "/v1/services/web", true, []candidate{{lease: "service/web", create: true}}},
		{"PUT", "x", "/v1/services/web", false, []candidate{{lease: "service/web"}}},
		{"PUT", "x", "/v1/services/web/traffic", true, []candidate{{lease: "service/web"}}},
		{"GET", "a-b-c.Example.test:80", "/svc/d", false, []candidate{
			{lease: "service/a-b-c"}, {lease: "service/b-c"}, {lease: "service/c"}, {lease: "service/d"}}},
		{"GET", "-a-.example.test", "/", false, []candidate{{lease: "service/-a-"}}},
		{"GET", "a.b.example.test", "/", false, nil},
		{"GET", ".example.test", "/", false, nil},
		{"GET", "example.test", "/", false, nil},
		{"GET", "x", "/fn/web", false, nil},
	} {
		r := httptestRequest(c.method, c.host, c.path)
		if c.token {
			r.Header.Set("Authorization", "Bearer "+testToken)
		}
		got := f.candidates(r)
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s %s%s: %v, want %v", c.method, c.host, c.path, got, c.want)
		}
	}
}

func httptestRequest(method, host, path string) *http.Request {
	r, err := http.NewRequest(method, "http://placeholder"+path, nil)
	if err != nil {
		panic(err)
	}
	r.Host = host
	return r
}

// FuzzClusterCandidates checks that whatever a request's host and path, its
// candidates name valid services, and a create needs a PUT.
func FuzzClusterCandidates(f *testing.F) {
	f.Add("GET", "web.example.test", "/svc/web@tag/x")
	f.Add("PUT", "a-b.example.test:1", "/v1/services/web")
	f.Add("GET", "x", "/v1/services/a/b")
	fw := &forwarder{c: &Cluster{cfg: Config{}}, domain: testDomain}
	f.Fuzz(func(t *testing.T, method, host, path string) {
		r := &http.Request{Method: method, Host: host, URL: &url.URL{Path: path}, Header: http.Header{}}
		for _, c := range fw.candidates(r) {
			name, ok := strings.CutPrefix(c.lease, "service/")
			if !ok || stratus.ValidName(name) != nil {
				t.Errorf("candidate %q of %q %q", c.lease, host, path)
			}
			if c.create && method != http.MethodPut {
				t.Errorf("a %s creates a lease", method)
			}
		}
	})
}
