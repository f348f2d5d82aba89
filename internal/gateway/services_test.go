package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/logtest"
	"github.com/stratus-run/stratus/internal/services"
)

// fakeServices knows a fixed set of services and has no replicas.
type fakeServices map[string]string // name → auth

func (f fakeServices) Acquire(ctx context.Context, name string) (*services.Target, func(), error) {
	return nil, nil, stratus.ErrUnavailable
}

func (f fakeServices) Auth(name string) (string, bool) {
	a, ok := f[name]
	return a, ok
}

func newTestProxy(domain string) *ServiceProxy {
	svcs := fakeServices{"web": stratus.AuthToken, "api-2": stratus.AuthNone}
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
	for _, s := range []string{"web.localhost", "web.localhost:1", "WEB.LOCALHOST", "..localhost", "web..localhost", "[::1]", "web.localhost.:80", "\x00.localhost"} {
		f.Add(s)
	}
	p := newTestProxy("localhost")
	f.Fuzz(func(t *testing.T, host string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = host
		name, ok := p.HostService(r)
		if ok && name != "web" && name != "api-2" {
			t.Fatalf("HostService(%q) = %q", host, name)
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
