package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/logtest"
	"github.com/stratus-run/stratus/internal/services"
)

// fakeServices knows a fixed set of routes (services and NAME@TAG) and
// has no replicas.
type fakeServices map[string]string // route → auth

func (f fakeServices) Acquire(ctx context.Context, name string) (*services.Target, func(), error) {
	return nil, nil, stratus.ErrUnavailable
}

func (f fakeServices) Auth(name string) (string, bool) {
	a, ok := f[name]
	return a, ok
}

func newTestProxy(domain string) *ServiceProxy {
	svcs := fakeServices{"web": stratus.AuthToken, "api-2": stratus.AuthNone, "web@canary": stratus.AuthToken, "web@old-1": stratus.AuthNone, "2@x-api": stratus.AuthNone, "2": stratus.AuthNone}
	return NewServiceProxy(ProxyConfig{Services: svcs, Token: NewToken("t"), Domain: domain})
}

func TestHostService(t *testing.T) {
	p := newTestProxy("apps.example.com")
	for _, tc := range []struct {
		host string
		want string
	}{
		{"web.apps.example.com", "web"},
		{"web.apps.example.com:8080", "web"},
		{"WEB.Apps.Example.com", "web"},
		{"api-2.apps.example.com", "api-2"},
		{"nope.apps.example.com", ""},
		{"apps.example.com", ""},
		{".apps.example.com", ""},
		{"a.web.apps.example.com", ""},
		{"web.example.com", ""},
		{"web.apps.example.com.evil.org", ""},
		{"[::1]:8080", ""},
		{"", ""},
		// Tags: TAG-NAME.
		{"canary-web.apps.example.com", "web@canary"},
		{"Canary-Web.apps.example.com:80", "web@canary"},
		{"old-1-web.apps.example.com", "web@old-1"},
		// A known service's unknown tag routes, to be answered 404.
		{"nope-web.apps.example.com", "web@nope"},
		{"y-api-2.apps.example.com", "api-2@y"},
		// A tag a service has wins over an unknown one.
		{"x-api-2.apps.example.com", "2@x-api"},
		{"-web.apps.example.com", ""},
		{"web-.apps.example.com", ""},
		{"canary-nope.apps.example.com", ""},
		{"web@canary.apps.example.com", ""},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = tc.host
		got, ok := p.HostService(r)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("HostService(%q) = %q, %v; want %q", tc.host, got, ok, tc.want)
		}
	}
}

func TestServeAuthAndErrors(t *testing.T) {
	p := newTestProxy("localhost")
	for _, tc := range []struct {
		name, path, auth string
		code             int
	}{
		{"token service without token", "/svc/web/x", "", 401},
		{"unknown service without token", "/svc/nope/x", "", 401},
		{"unknown service", "/svc/nope/x", "Bearer t", 404},
		{"no replica", "/svc/web/x", "Bearer t", 503},
		{"open service", "/svc/api-2/", "", 503},
		{"tag", "/svc/web@canary/x", "Bearer t", 503},
		{"tag without token", "/svc/web@canary/x", "", 401},
		{"open tag of a token service", "/svc/web@old-1/", "", 503},
		{"unknown tag", "/svc/web@nope/x", "Bearer t", 404},
		{"unknown tag without token", "/svc/web@nope/x", "", 401},
		{"unknown tag of an open service", "/svc/api-2@nope", "", 404},
	} {
		mux := http.NewServeMux()
		mux.HandleFunc("/svc/{name}", p.ServeSvcPath)
		mux.HandleFunc("/svc/{name}/{path...}", p.ServeSvcPath)
		r := httptest.NewRequest("GET", tc.path, nil)
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		if w.Code != tc.code || !strings.Contains(w.Body.String(), `"code"`) {
			t.Errorf("%s: %d %s, want %d with an error body", tc.name, w.Code, w.Body, tc.code)
		}
	}
}

// FuzzHostService: any Host header gives a known service or none, and
// never panics.
func FuzzHostService(f *testing.F) {
	for _, s := range []string{"web.localhost", "canary-web.localhost", "a-b-web.localhost", "x-api-2.localhost:9", "web.localhost:1", "WEB.LOCALHOST", "..localhost", "web..localhost", "[::1]", "web.localhost.:80", "\x00.localhost"} {
		f.Add(s)
	}
	p := newTestProxy("localhost")
	f.Fuzz(func(t *testing.T, host string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = host
		route, ok := p.HostService(r)
		name, _, _ := strings.Cut(route, "@")
		if ok != (route != "") || ok && name != "web" && name != "api-2" && name != "2" {
			t.Fatalf("HostService(%q) = %q, %v", host, route, ok)
		}
	})
}

// TestServicePaths: on /svc/NAME/PATH the replica sees /PATH, escaped as
// sent; on a host route, the path as sent.
func TestServicePaths(t *testing.T) {
	seen := make(chan string, 1)
	replica := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.URL.RequestURI()
	}))
	defer replica.Close()
	u, _ := url.Parse(replica.URL)
	p := NewServiceProxy(ProxyConfig{Services: oneReplica{
		auth:   map[string]string{"web": stratus.AuthNone},
		target: &services.Target{URL: u, Transport: replica.Client().Transport},
	}, Domain: "apps.test"})
	mux := http.NewServeMux()
	mux.HandleFunc("/svc/{name}", p.ServeSvcPath)
	mux.HandleFunc("/svc/{name}/{path...}", p.ServeSvcPath)
	for _, tc := range []struct {
		host, path, want string
	}{
		{"", "/svc/web/a/b?x=1", "/a/b?x=1"},
		{"", "/svc/web/", "/"},
		{"", "/svc/web", "/"},
		{"", "/svc/web/a%2Fb/c", "/a%2Fb/c"},
		{"", "/svc/web/a%20b", "/a%20b"},
		{"web.apps.test", "/svc/web/a%2Fb?y", "/svc/web/a%2Fb?y"},
		{"web.apps.test", "/", "/"},
	} {
		r := httptest.NewRequest("GET", tc.path, nil)
		w := httptest.NewRecorder()
		if tc.host != "" {
			r.Host = tc.host
			p.ServeHost(w, r, "web")
		} else {
			mux.ServeHTTP(w, r)
		}
		if w.Code != 200 {
			t.Errorf("%s%s: status %d %s", tc.host, tc.path, w.Code, w.Body)
			continue
		}
		if got := <-seen; got != tc.want {
			t.Errorf("%s%s: the replica saw %q, want %q", tc.host, tc.path, got, tc.want)
		}
	}
}

// TestServiceReplicaDownLogsClientPath: a replica that does not answer
// is a 502, logged under the client's method and path (not the
// replica's) and under the request ID the answer carries.
func TestServiceReplicaDownLogsClientPath(t *testing.T) {
	replica := httptest.NewServer(http.NotFoundHandler())
	u, _ := url.Parse(replica.URL)
	transport := replica.Client().Transport
	replica.Close()
	h := &logtest.Recorder{}
	p := NewServiceProxy(ProxyConfig{Services: oneReplica{
		auth:   map[string]string{"web": stratus.AuthNone},
		target: &services.Target{URL: u, Transport: transport},
	}, Domain: "apps.test", Log: h.Logger()})
	mux := http.NewServeMux()
	mux.HandleFunc("/svc/{name}/{path...}", p.ServeSvcPath)
	for _, tc := range []struct{ host, path string }{
		{"", "/svc/web/x/y"},
		{"web.apps.test", "/x/y"},
	} {
		before := len(h.Records())
		r := httptest.NewRequest("POST", tc.path, strings.NewReader("body"))
		r.Header.Set(v1.HeaderClientRequestID, "client-7")
		w := httptest.NewRecorder()
		if tc.host != "" {
			r.Host = tc.host
			p.ServeHost(w, r, "web")
		} else {
			mux.ServeHTTP(w, r)
		}
		if w.Code != http.StatusBadGateway || w.Header().Get(v1.HeaderRequestID) != "client-7" {
			t.Errorf("%s: %d, %s %q; want 502 under the client's ID", tc.path, w.Code, v1.HeaderRequestID, w.Header().Get(v1.HeaderRequestID))
		}
		recs := h.Records()[before:]
		if len(recs) != 1 {
			t.Fatalf("%s: %d lines logged, want 1", tc.path, len(recs))
		}
		got := logtest.Attrs(recs[0])
		if got["path"] != tc.path || got["method"] != "POST" || got["status"] != "502" || got["req_id"] != "client-7" {
			t.Errorf("%s: logged %v; want the client's path, method and ID", tc.path, got)
		}
	}
}

// routedReplicas gives each route its own target, and records the routes
// acquired.
type routedReplicas struct {
	auth    map[string]string
	targets map[string]*services.Target
	got     chan string
}

func (f routedReplicas) Acquire(ctx context.Context, route string) (*services.Target, func(), error) {
	t, ok := f.targets[route]
	if !ok {
		return nil, nil, fmt.Errorf("no target for %q: %w", route, stratus.ErrNotFound)
	}
	f.got <- route
	return t, func() {}, nil
}

func (f routedReplicas) Auth(route string) (string, bool) {
	a, ok := f.auth[route]
	return a, ok
}

// replicaNamed starts a replica that answers its name and the path it
// saw.
func replicaNamed(t *testing.T, name string) *services.Target {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", name, r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return &services.Target{URL: u, Transport: srv.Client().Transport}
}

// TestTagRoutes: /svc/NAME@TAG/PATH and TAG-NAME.<domain> reach the tag's
// route, NAME's own routes its split; an unknown tag is a 404 naming it.
func TestTagRoutes(t *testing.T) {
	f := routedReplicas{
		auth:    map[string]string{"web": stratus.AuthNone, "web@canary": stratus.AuthNone},
		targets: map[string]*services.Target{"web": replicaNamed(t, "split"), "web@canary": replicaNamed(t, "canary")},
		got:     make(chan string, 1),
	}
	var observed []string
	p := NewServiceProxy(ProxyConfig{Services: f, Domain: "apps.test", Observe: func(name string, status int, d time.Duration) {
		observed = append(observed, fmt.Sprint(name, " ", status))
	}})
	mux := http.NewServeMux()
	mux.HandleFunc("/svc/{name}", p.ServeSvcPath)
	mux.HandleFunc("/svc/{name}/{path...}", p.ServeSvcPath)
	serve := func(host, path string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", path, nil)
		w := httptest.NewRecorder()
		if host != "" {
			r.Host = host
			route, ok := p.HostService(r)
			if !ok {
				t.Fatalf("host %s: no route", host)
			}
			p.ServeHost(w, r, route)
			return w
		}
		mux.ServeHTTP(w, r)
		return w
	}
	for _, tc := range []struct{ host, path, route, body string }{
		{"", "/svc/web/a", "web", "split /a"},
		{"", "/svc/web@canary/a/b", "web@canary", "canary /a/b"},
		{"", "/svc/web@canary", "web@canary", "canary /"},
		{"canary-web.apps.test", "/a", "web@canary", "canary /a"},
		{"web.apps.test", "/a", "web", "split /a"},
	} {
		w := serve(tc.host, tc.path)
		if w.Code != 200 || w.Body.String() != tc.body {
			t.Errorf("%s%s: %d %q, want %q", tc.host, tc.path, w.Code, w.Body, tc.body)
			continue
		}
		if got := <-f.got; got != tc.route {
			t.Errorf("%s%s: acquired %q, want %q", tc.host, tc.path, got, tc.route)
		}
	}
	for _, tc := range []struct{ host, path string }{{"", "/svc/web@nope/a"}, {"nope-web.apps.test", "/a"}} {
		w := serve(tc.host, tc.path)
		if w.Code != 404 || !strings.Contains(w.Body.String(), `has no tag \"nope\"`) {
			t.Errorf("%s%s: %d %s, want 404 naming the tag", tc.host, tc.path, w.Code, w.Body)
		}
	}
	// Observed as the service's.
	if len(observed) != 7 || observed[1] != "web 200" || observed[6] != "web 404" {
		t.Errorf("observed %q", observed)
	}
}

// TestServiceTimeout: a request without an answer within its revision's
// timeout gets 504.
func TestServiceTimeout(t *testing.T) {
	replica := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	defer replica.Close()
	u, _ := url.Parse(replica.URL)
	var status int
	p := NewServiceProxy(ProxyConfig{Services: oneReplica{
		auth:   map[string]string{"web": stratus.AuthNone},
		target: &services.Target{URL: u, Transport: replica.Client().Transport, Timeout: 100 * time.Millisecond},
	}, Observe: func(_ string, s int, _ time.Duration) { status = s }})
	mux := http.NewServeMux()
	mux.HandleFunc("/svc/{name}/{path...}", p.ServeSvcPath)
	r := httptest.NewRequest("GET", "/svc/web/slow", nil)
	w := httptest.NewRecorder()
	start := time.Now()
	mux.ServeHTTP(w, r)
	if w.Code != http.StatusGatewayTimeout || !strings.Contains(w.Body.String(), "no answer within 100ms") || status != 504 {
		t.Errorf("%d %s (observed %d), want 504 saying the timeout", w.Code, w.Body, status)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the timeout took %s", took)
	}
}

// movedReplicas is an open service whose traffic moved, after the
// request was admitted, to a revision that needs the token: Acquire
// refuses a request marked as without it, as services.Manager does.
type movedReplicas struct{ target *services.Target }

func (f movedReplicas) Acquire(ctx context.Context, route string) (*services.Target, func(), error) {
	if services.NoToken(ctx) {
		return nil, nil, fmt.Errorf("service %q: revision web-00002: %w", route, services.ErrTokenRequired)
	}
	return f.target, func() {}, nil
}

func (f movedReplicas) Auth(route string) (string, bool) { return stratus.AuthNone, route == "web" }

// TestServiceWithoutTokenReachesOnlyOpenRevisions: a request admitted
// without the token to a service that was open gets 401 when its traffic
// now goes to a revision that needs the token; one with the token gets
// through, the token stripped.
func TestServiceWithoutTokenReachesOnlyOpenRevisions(t *testing.T) {
	p := NewServiceProxy(ProxyConfig{Services: movedReplicas{replicaNamed(t, "web-00002")}, Token: NewToken("t"), Domain: "localhost"})
	mux := http.NewServeMux()
	mux.HandleFunc("/svc/{name}/{path...}", p.ServeSvcPath)
	for _, tc := range []struct {
		auth string
		code int
	}{{"", http.StatusUnauthorized}, {"Bearer t", http.StatusOK}} {
		r := httptest.NewRequest("GET", "/svc/web/x", nil)
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		if w.Code != tc.code {
			t.Errorf("request with Authorization %q: %d %s, want %d", tc.auth, w.Code, w.Body, tc.code)
		}
	}
}
