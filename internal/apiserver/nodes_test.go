package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/console"
	"github.com/stratus-run/stratus/internal/store"
)

// fakeNodes answers Nodes with nodes, or err.
type fakeNodes struct {
	nodes []v1.Node
	err   error
}

func (f fakeNodes) Nodes(context.Context) ([]v1.Node, error) { return f.nodes, f.err }

// sendTo sends h a request to path with hdr (name, value pairs).
func sendTo(h http.Handler, method, host, path string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, nil)
	r.Host = host
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestNodesRoute(t *testing.T) {
	at := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	nodes := []v1.Node{
		{Name: "a", Address: "http://127.0.0.1:8081", Region: "eu", Version: "dev", State: "ready", Alive: true,
			StartedAt: at.Add(-time.Hour), HeartbeatAt: at, HeartbeatAgeSec: 1.5, Instances: 3, Replicas: 1, Self: true},
		{Name: "b", Address: "http://127.0.0.1:8082", Region: "eu", Version: "dev", State: "ready",
			StartedAt: at.Add(-time.Hour), HeartbeatAt: at.Add(-time.Minute), HeartbeatAgeSec: 61.5},
	}
	s := New(Config{Token: "tok", Nodes: fakeNodes{nodes: nodes}})

	for _, tc := range []struct {
		name string
		hdr  []string
	}{
		{"no token", nil},
		{"wrong token", []string{"Authorization", "Bearer nope"}},
	} {
		if w := sendTo(s, "GET", "127.0.0.1", "/v1/nodes", tc.hdr...); w.Code != 401 || strings.Contains(w.Body.String(), `"nodes"`) {
			t.Errorf("%s: %d %s, want 401", tc.name, w.Code, w.Body)
		}
	}

	w := sendTo(s, "GET", "127.0.0.1", "/v1/nodes", "Authorization", "Bearer tok")
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /v1/nodes: %d %s %s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	var got v1.NodeList
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(v1.NodeList{Nodes: nodes}, got); diff != "" {
		t.Errorf("GET /v1/nodes (-want +got):\n%s", diff)
	}
	// The wire shape: the fields' JSON names, every one present (a dead
	// node's zeros and false included).
	var raw struct {
		Nodes []map[string]any `json:"nodes"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &raw); err != nil || len(raw.Nodes) != 2 {
		t.Fatalf("GET /v1/nodes: %s (%v)", w.Body, err)
	}
	want := []string{"address", "alive", "heartbeatAgeSec", "heartbeatAt", "instances", "name", "region",
		"replicas", "self", "startedAt", "state", "version"}
	for _, n := range raw.Nodes {
		keys := make([]string, 0, len(n))
		for k := range n {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if diff := cmp.Diff(want, keys); diff != "" {
			t.Errorf("node %v's fields (-want +got):\n%s", n["name"], diff)
		}
	}
	if raw.Nodes[1]["alive"] != false || raw.Nodes[1]["heartbeatAt"] != "2026-12-07T02:59:00Z" || raw.Nodes[0]["heartbeatAgeSec"] != 1.5 {
		t.Errorf("GET /v1/nodes: %s", w.Body)
	}

	// No node yet: an empty list, not null.
	empty := New(Config{Token: "tok", Nodes: fakeNodes{}})
	if w := sendTo(empty, "GET", "127.0.0.1", "/v1/nodes", "Authorization", "Bearer tok"); w.Code != 200 || w.Body.String() != `{"nodes":[]}` {
		t.Errorf("no nodes: %d %s", w.Code, w.Body)
	}
	// The source's failure answers by its kind.
	down := New(Config{Token: "tok", Nodes: fakeNodes{err: fmt.Errorf("list nodes: %w", stratus.ErrUnavailable)}})
	if w := sendTo(down, "GET", "127.0.0.1", "/v1/nodes", "Authorization", "Bearer tok"); w.Code != 503 || !strings.Contains(w.Body.String(), `"code":"`+v1.CodeUnavailable+`"`) {
		t.Errorf("store down: %d %s", w.Code, w.Body)
	}
	// Without Nodes the route is out.
	if w := sendTo(New(Config{Token: "tok"}), "GET", "127.0.0.1", "/v1/nodes", "Authorization", "Bearer tok"); w.Code != 404 {
		t.Errorf("without Nodes: %d %s", w.Code, w.Body)
	}
}

// internalRig is a server with the console on, whose Internal handler
// records the paths it gets.
type internalRig struct {
	url  string
	host string

	mu    sync.Mutex
	paths []string
}

func newInternalRig(t *testing.T) *internalRig {
	t.Helper()
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "stratus.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	g := &internalRig{}
	internal := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		g.paths = append(g.paths, r.Method+" "+r.URL.Path)
		g.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})
	srv := httptest.NewServer(New(Config{Token: "tok", Store: st, Console: true, Internal: internal, Nodes: fakeNodes{}}))
	t.Cleanup(srv.Close)
	g.url, g.host = srv.URL, strings.TrimPrefix(srv.URL, "http://")
	return g
}

func (g *internalRig) got() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.paths)
}

func callHTTP(t *testing.T, method, url string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestInternalRoute(t *testing.T) {
	g := newInternalRig(t)
	// A console session: it reads /v1/nodes, but not /v1/internal/.
	req, _ := http.NewRequest("POST", g.url+"/v1/session", strings.NewReader(`{"token":"tok"}`))
	req.Header.Set(console.CSRFHeader, "1")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || len(resp.Cookies()) != 1 {
		t.Fatalf("sign in: %d", resp.StatusCode)
	}
	cookie := resp.Cookies()[0].Name + "=" + resp.Cookies()[0].Value
	sameOrigin := []string{"Cookie", cookie, console.CSRFHeader, "1", "Origin", "http://" + g.host, "Sec-Fetch-Site", "same-origin"}
	if code, body := callHTTP(t, "GET", g.url+"/v1/nodes", sameOrigin...); code != 200 {
		t.Errorf("GET /v1/nodes with a session: %d %s", code, body)
	}

	for _, tc := range []struct {
		name string
		hdr  []string
		code int
	}{
		{"no token", nil, 401},
		{"wrong token", []string{"Authorization", "Bearer nope"}, 401},
		{"a console session", sameOrigin, 401},
		{"the token", []string{"Authorization", "Bearer tok"}, 202},
	} {
		before := len(g.got())
		code, body := callHTTP(t, "POST", g.url+"/v1/internal/invoke/f", tc.hdr...)
		if code != tc.code {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.code)
		}
		if reached := len(g.got()) > before; reached != (tc.code == 202) {
			t.Errorf("%s: the internal handler reached: %v", tc.name, reached)
		}
	}
	// The handler sees the whole path; the catch-all /v1/ does not
	// shadow the prefix, nor the prefix the other routes.
	if diff := cmp.Diff([]string{"POST /v1/internal/invoke/f"}, g.got()); diff != "" {
		t.Errorf("the internal handler got (-want +got):\n%s", diff)
	}
	if code, body := callHTTP(t, "GET", g.url+"/v1/internal/anything", "Authorization", "Bearer tok"); code != 202 {
		t.Errorf("GET /v1/internal/anything: %d %s", code, body)
	}
	if code, body := callHTTP(t, "GET", g.url+"/v1/nodes", "Authorization", "Bearer tok"); code != 200 || body != `{"nodes":[]}` {
		t.Errorf("GET /v1/nodes: %d %s", code, body)
	}

	// Without Internal the prefix is an unknown /v1 path.
	s := New(Config{Token: "tok"})
	if w := sendTo(s, "POST", "127.0.0.1", "/v1/internal/invoke/f", "Authorization", "Bearer tok"); w.Code != 404 {
		t.Errorf("without Internal: %d %s", w.Code, w.Body)
	}
}

func TestWrap(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	wrap := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, r.Host+" "+r.URL.Path)
			mu.Unlock()
			if r.Header.Get("X-Forward") != "" { // the wrapper answers for the server
				w.WriteHeader(http.StatusTeapot)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	s := New(Config{Token: "tok", Store: &store.Store{}, Logs: stubFlusher{}, Nodes: fakeNodes{},
		Services: ServicesConfig{Manager: &trafficManager{}, Domain: "apps.test"}, Wrap: wrap})

	// Before any auth or route: a request without the token, to a host
	// route, to a path route, to a path no route has.
	for _, tc := range []struct{ host, path string }{
		{"web.apps.test", "/some/path"},
		{"127.0.0.1", "/svc/web/x"},
		{"127.0.0.1", "/v1/services/web"},
		{"127.0.0.1", "/nowhere"},
	} {
		if w := sendTo(s, "GET", tc.host, tc.path, "X-Forward", "1"); w.Code != http.StatusTeapot {
			t.Errorf("%s%s: %d %s, want the wrapper's answer", tc.host, tc.path, w.Code, w.Body)
		}
	}
	// What it passes on is served as before: auth, then the route.
	if w := sendTo(s, "GET", "127.0.0.1", "/v1/nodes"); w.Code != 401 {
		t.Errorf("GET /v1/nodes without the token through the wrapper: %d %s", w.Code, w.Body)
	}
	if w := sendTo(s, "GET", "127.0.0.1", "/v1/nodes", "Authorization", "Bearer tok"); w.Code != 200 {
		t.Errorf("GET /v1/nodes through the wrapper: %d %s", w.Code, w.Body)
	}
	want := []string{"web.apps.test /some/path", "127.0.0.1 /svc/web/x", "127.0.0.1 /v1/services/web", "127.0.0.1 /nowhere",
		"127.0.0.1 /v1/nodes", "127.0.0.1 /v1/nodes"}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("the wrapper saw (-want +got):\n%s", diff)
	}
}
