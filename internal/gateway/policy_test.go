package gateway

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/services"
)

const testPolicy = "sandbox allow-scripts"

// TestFunctionRoutePolicy: with a PathPolicy, every answer of /fn/NAME
// carries it, besides the function's own policy, which can neither
// replace nor remove it; without, the function's headers are as it set
// them.
func TestFunctionRoutePolicy(t *testing.T) {
	body := `{"statusCode":200,"headers":{"content-type":"text/html","Content-Security-Policy":"default-src *"},` +
		`"multiValueHeaders":{"content-security-policy":["img-src *"]},"body":"<p>hi</p>"}`
	for _, policy := range []string{testPolicy, ""} {
		inv := &scripted{resp: &stratus.Response{Body: []byte(body)}}
		g := New(Config{Invoker: inv, Queue: noQueue{}, Heads: inv, PathPolicy: policy})
		mux := http.NewServeMux()
		mux.HandleFunc("/fn/{name}", g.ServeFunctionURL)
		mux.HandleFunc("/fn/{name}/{path...}", g.ServeFunctionURL)
		srv := httptest.NewServer(mux)
		for _, path := range []string{"/fn/f", "/fn/f/page", "/fn/nope"} {
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got := resp.Header.Values("Content-Security-Policy")
			var want []string
			if policy != "" {
				want = append(want, policy)
			}
			if path != "/fn/nope" {
				want = append(want, "img-src *") // multiValueHeaders replace headers' value
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("policy %q: GET %s: %d, Content-Security-Policy %q, want %q", policy, path, resp.StatusCode, got, want)
			}
		}
		srv.Close()
	}
}

// TestServiceRoutePolicy: with a PathPolicy, /svc/NAME answers carry it
// besides the replica's own; host routes carry only the replica's.
func TestServiceRoutePolicy(t *testing.T) {
	replica := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'")
		w.Header().Set("Content-Type", "text/html")
	}))
	defer replica.Close()
	u, _ := url.Parse(replica.URL)
	p := NewServiceProxy(ProxyConfig{Services: oneReplica{
		auth:   map[string]string{"web": stratus.AuthNone},
		target: &services.Target{URL: u, Transport: replica.Client().Transport},
	}, Domain: "apps.test", PathPolicy: testPolicy})
	mux := http.NewServeMux()
	mux.HandleFunc("/svc/{name}", p.ServeSvcPath)
	mux.HandleFunc("/svc/{name}/{path...}", p.ServeSvcPath)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if name, ok := p.HostService(r); ok {
			p.ServeHost(w, r, name)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	defer srv.Close()
	for _, tc := range []struct {
		host, path string
		want       []string
	}{
		{"", "/svc/web/index.html", []string{"default-src 'self'", testPolicy}},
		{"", "/svc/web", []string{"default-src 'self'", testPolicy}},
		{"", "/svc/nope/", []string{testPolicy}},
		{"web.apps.test", "/index.html", []string{"default-src 'self'"}},
	} {
		req, _ := http.NewRequest("GET", srv.URL+tc.path, nil)
		if tc.host != "" {
			req.Host = tc.host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := resp.Header.Values("Content-Security-Policy")
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s%s: %d, Content-Security-Policy %q, want %q", tc.host, tc.path, resp.StatusCode, got, tc.want)
		}
	}
}

// BenchmarkFunctionRoutePolicy measures what the PathPolicy costs a
// function route's request (off: a nil check; on: one header set, and
// the answer written through a pooled statusWriter that drops
// Set-Cookie and Clear-Site-Data: no allocation more than off).
func BenchmarkFunctionRoutePolicy(b *testing.B) {
	for _, bc := range []struct{ name, policy string }{{"off", ""}, {"on", testPolicy}} {
		b.Run(bc.name, func(b *testing.B) {
			inv := &scripted{resp: &stratus.Response{Body: []byte(`{"statusCode":200,"body":"ok"}`)}}
			g := New(Config{Invoker: inv, Queue: noQueue{}, Heads: inv, PathPolicy: bc.policy})
			mux := http.NewServeMux()
			mux.HandleFunc("/fn/{name}/{path...}", g.ServeFunctionURL)
			r := httptest.NewRequest("GET", "/fn/f/x", nil)
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				mux.ServeHTTP(w, r)
				if w.Code != 200 {
					b.Fatal(w.Code)
				}
			}
		})
	}
}
