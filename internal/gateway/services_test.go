package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stratus-run/stratus"
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
