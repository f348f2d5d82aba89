package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/httpevent"
	"github.com/stratus-run/stratus/internal/services"
)

// fwdHeaders are the forwarding headers a test looks at.
var fwdHeaders = []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Port", "X-Forwarded-Prefix", "Forwarded", "X-Real-Ip", "Front-End-Https", "X-Stratus-Peer"}

// TestServiceForwardingHeaders: a replica gets the forwarding headers
// of the trust rule (httpevent.Resolve), Forwarded always, and the
// prefix /svc/NAME cut off its path in X-Forwarded-Prefix.
func TestServiceForwardingHeaders(t *testing.T) {
	got := make(chan http.Header, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- r.Header.Clone() }))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	target := &services.Target{URL: u, Transport: srv.Client().Transport}
	f := routedReplicas{
		auth:    map[string]string{"web": stratus.AuthNone},
		targets: map[string]*services.Target{"web": target},
		got:     make(chan string, 1),
	}
	sent := http.Header{
		"X-Forwarded-For": {"203.0.113.7"}, "X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"app.example"},
		"X-Forwarded-Port": {"443"}, "X-Forwarded-Prefix": {"/api"}, "Forwarded": {"for=203.0.113.7;proto=https"},
		"X-Real-Ip": {"203.0.113.7"}, "Front-End-Https": {"on"}, "X-Stratus-Peer": {"1.2.3.4 https 0 00"},
	}
	for _, tc := range []struct {
		name    string
		trusted []netip.Prefix
		path    string
		host    string
		peer    *httpevent.Peer // relayed by another server (WithPeer)
		want    http.Header
	}{{
		name: "untrusted, path route", path: "/svc/web/x", host: "127.0.0.1:8080",
		want: http.Header{
			"X-Forwarded-For": {"192.0.2.1"}, "X-Forwarded-Proto": {"http"}, "X-Forwarded-Host": {"127.0.0.1:8080"},
			"X-Forwarded-Port": {"8080"}, "X-Forwarded-Prefix": {"/svc/web"}, "Forwarded": {`for=192.0.2.1;host="127.0.0.1:8080";proto=http`},
		},
	}, {
		name: "untrusted, host route", path: "/x", host: "web.apps.test",
		want: http.Header{
			"X-Forwarded-For": {"192.0.2.1"}, "X-Forwarded-Proto": {"http"}, "X-Forwarded-Host": {"web.apps.test"},
			"X-Forwarded-Port": {"80"}, "Forwarded": {"for=192.0.2.1;host=web.apps.test;proto=http"},
		},
	}, {
		name: "trusted, path route", path: "/svc/w%65b/x", host: "127.0.0.1:8080", trusted: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
		want: http.Header{
			"X-Forwarded-For": {"203.0.113.7, 192.0.2.1"}, "X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"app.example"},
			"X-Forwarded-Port": {"443"}, "X-Forwarded-Prefix": {"/api/svc/w%65b"},
			"Forwarded": {`for=203.0.113.7;proto=https, for=192.0.2.1;host="127.0.0.1:8080";proto=http`},
			"X-Real-Ip": {"203.0.113.7"}, "Front-End-Https": {"on"},
		},
	}, {
		name: "relayed by another server from a trusted peer", path: "/x", host: "web.apps.test",
		trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		peer:    &httpevent.Peer{Addr: netip.MustParseAddr("10.1.1.1"), TLS: true},
		want: http.Header{
			"X-Forwarded-For": {"203.0.113.7, 10.1.1.1"}, "X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"app.example"},
			"X-Forwarded-Port": {"443"}, "X-Forwarded-Prefix": {"/api"},
			"Forwarded": {"for=203.0.113.7;proto=https, for=10.1.1.1;host=web.apps.test;proto=https"},
			"X-Real-Ip": {"203.0.113.7"}, "Front-End-Https": {"on"},
		},
	}, {
		name: "relayed by another server whose seal did not hold", path: "/x", host: "web.apps.test",
		trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		peer:    &httpevent.Peer{Addr: netip.MustParseAddr("10.1.1.1"), Untrusted: true},
		want: http.Header{
			"X-Forwarded-For": {"10.1.1.1"}, "X-Forwarded-Proto": {"http"}, "X-Forwarded-Host": {"web.apps.test"},
			"X-Forwarded-Port": {"80"}, "Forwarded": {"for=10.1.1.1;host=web.apps.test;proto=http"},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewServiceProxy(ProxyConfig{Services: f, Domain: "apps.test", TrustedProxies: tc.trusted})
			mux := http.NewServeMux()
			mux.HandleFunc("/svc/{name}/{path...}", p.ServeSvcPath)
			r := httptest.NewRequest("GET", tc.path, nil)
			r.Host = tc.host
			for k, v := range sent {
				r.Header[k] = v
			}
			if tc.peer != nil {
				r = r.WithContext(WithPeer(r.Context(), *tc.peer))
			}
			w := httptest.NewRecorder()
			if route, ok := p.HostService(r); ok {
				p.ServeHost(w, r, route)
			} else {
				mux.ServeHTTP(w, r)
			}
			if w.Code != 200 {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			<-f.got
			h := <-got
			gotFwd := http.Header{}
			for _, k := range fwdHeaders {
				if v, ok := h[k]; ok {
					gotFwd[k] = v
				}
			}
			if diff := cmp.Diff(tc.want, gotFwd); diff != "" {
				t.Errorf("forwarding headers (-want +got):\n%s", diff)
			}
		})
	}
}

// hosted is a function "sls" (auth none) and a function "Mixed" that
// keep the events they get.
type hosted struct{ events []eventSeen }

type eventSeen struct {
	RawPath        string            `json:"rawPath"`
	Headers        map[string]string `json:"headers"`
	RequestContext struct {
		HTTP struct {
			SourceIP string `json:"sourceIp"`
		} `json:"http"`
	} `json:"requestContext"`
}

func (h *hosted) Head(name string) (*stratus.Version, bool) {
	if name != "sls" && name != "Mixed" {
		return nil, false
	}
	return &stratus.Version{Function: name, Version: 1, Config: stratus.FunctionConfig{Auth: stratus.AuthNone}}, true
}

func (h *hosted) Invoke(ctx context.Context, name string, req stratus.Request) (*stratus.Response, error) {
	var ev eventSeen
	if err := json.Unmarshal(req.Event, &ev); err != nil {
		return nil, err
	}
	h.events = append(h.events, ev)
	return &stratus.Response{Body: []byte(`{"statusCode":200,"body":"` + name + `"}`)}, nil
}

func TestHostFunction(t *testing.T) {
	fns := &hosted{}
	g := New(Config{Invoker: fns, Queue: noQueue{}, Heads: fns, Domain: "Apps.Test."})
	for _, tc := range []struct{ host, want string }{
		{"sls.apps.test", "sls"},
		{"SLS.apps.test:8080", "sls"},
		{"sls.APPS.TEST.", "sls"},
		// Host routes are lower case: a name with capitals has none.
		{"Mixed.apps.test", ""},
		{"mixed.apps.test", ""},
		{"nope.apps.test", ""},
		{"sls:1.apps.test", ""},
		{"x.sls.apps.test", ""},
		{"apps.test", ""},
		{".apps.test", ""},
		{"sls.apps.test.evil", ""},
		{"slsapps.test", ""},
		{"", ""},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = tc.host
		got, ok := g.HostFunction(r)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("HostFunction(%q) = %q, %v; want %q", tc.host, got, ok, tc.want)
		}
	}
	// Without a domain, no host routes.
	r := httptest.NewRequest("GET", "/", nil)
	r.Host = "sls.localhost"
	if name, ok := New(Config{Invoker: fns, Queue: noQueue{}, Heads: fns}).HostFunction(r); ok {
		t.Errorf("without a domain: %q", name)
	}
}

// TestFunctionRoutesPrefix: /fn/NAME sends its prefix as the client
// escaped it, the host route none, and both give the function the path.
func TestFunctionRoutesPrefix(t *testing.T) {
	fns := &hosted{}
	g := New(Config{Invoker: fns, Queue: noQueue{}, Heads: fns, Domain: "localhost"})
	mux := http.NewServeMux()
	mux.HandleFunc("/fn/{name}", g.ServeFunctionURL)
	mux.HandleFunc("/fn/{name}/{path...}", g.ServeFunctionURL)
	for _, tc := range []struct {
		host, path      string
		rawPath, prefix string
	}{
		{"127.0.0.1:8080", "/fn/sls/a/b?q=1", "/a/b", "/fn/sls"},
		{"127.0.0.1:8080", "/fn/sl%73", "/", "/fn/sl%73"},
		{"sls.localhost:8080", "/a%2Fb/c", "/a%2Fb/c", ""},
	} {
		r := httptest.NewRequest("GET", tc.path, nil)
		r.Host = tc.host
		r.Header.Set("X-Forwarded-Prefix", "/evil")
		w := httptest.NewRecorder()
		if name, ok := g.HostFunction(r); ok {
			g.ServeHost(w, r, name)
		} else {
			mux.ServeHTTP(w, r)
		}
		if w.Code != 200 || w.Body.String() != "sls" {
			t.Fatalf("%s %s: %d %s", tc.host, tc.path, w.Code, w.Body)
		}
		ev := fns.events[len(fns.events)-1]
		if ev.RawPath != tc.rawPath || ev.Headers["x-forwarded-prefix"] != tc.prefix {
			t.Errorf("%s %s: rawPath %q, x-forwarded-prefix %q; want %q, %q", tc.host, tc.path, ev.RawPath, ev.Headers["x-forwarded-prefix"], tc.rawPath, tc.prefix)
		}
	}
}

// TestFunctionEventForwarding: the event's sourceIp and X-Forwarded-For
// follow the trust rule.
func TestFunctionEventForwarding(t *testing.T) {
	for _, tc := range []struct {
		name            string
		trusted         []netip.Prefix
		wantIP, wantXFF string
		wantProto       string
	}{
		{"untrusted", nil, "192.0.2.1", "192.0.2.1", "http"},
		{"trusted", []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}, "203.0.113.7", "203.0.113.7, 192.0.2.1", "https"},
	} {
		fns := &hosted{}
		g := New(Config{Invoker: fns, Queue: noQueue{}, Heads: fns, TrustedProxies: tc.trusted})
		mux := http.NewServeMux()
		mux.HandleFunc("/fn/{name}/{path...}", g.ServeFunctionURL)
		r := httptest.NewRequest("GET", "/fn/sls/x", nil)
		r.Header.Set("X-Forwarded-For", "203.0.113.7")
		r.Header.Set("X-Forwarded-Proto", "https")
		r.Header.Set("X-Real-Ip", "6.6.6.6")
		r.Header.Set("X-Forwarded-Ssl", "on")
		r.Header.Set("X-Stratus-Peer", "6.6.6.6 https 0 00")
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		if w.Code != 200 || len(fns.events) != 1 {
			t.Fatalf("%s: %d %s", tc.name, w.Code, w.Body)
		}
		ev := fns.events[0]
		if ev.RequestContext.HTTP.SourceIP != tc.wantIP || ev.Headers["x-forwarded-for"] != tc.wantXFF || ev.Headers["x-forwarded-proto"] != tc.wantProto {
			t.Errorf("%s: sourceIp %q, x-forwarded-for %q, proto %q; want %q, %q, %q", tc.name, ev.RequestContext.HTTP.SourceIP,
				ev.Headers["x-forwarded-for"], ev.Headers["x-forwarded-proto"], tc.wantIP, tc.wantXFF, tc.wantProto)
		}
		// A proxy's other headers pass from trusted peers only; the
		// cluster's never.
		trusted := tc.trusted != nil
		if (ev.Headers["x-real-ip"] == "6.6.6.6") != trusted || (ev.Headers["x-forwarded-ssl"] == "on") != trusted || ev.Headers["x-stratus-peer"] != "" {
			t.Errorf("%s: x-real-ip %q, x-forwarded-ssl %q, x-stratus-peer %q", tc.name, ev.Headers["x-real-ip"], ev.Headers["x-forwarded-ssl"], ev.Headers["x-stratus-peer"])
		}
	}
}

// TestEncodedEventLimit: the limit applies to the invocation payload,
// the event with its body in base64, and the 413 says so.
func TestEncodedEventLimit(t *testing.T) {
	fns := &hosted{}
	const limit = 64 << 10
	g := New(Config{Invoker: fns, Queue: noQueue{}, Heads: fns, MaxEvent: limit})
	mux := http.NewServeMux()
	mux.HandleFunc("/fn/{name}", g.ServeFunctionURL)
	mux.HandleFunc("POST /v1/functions/{name}/invoke", g.ServeInvoke)
	post := func(path, ct string, n int) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", path, strings.NewReader(strings.Repeat("a", n)))
		r.Header.Set("Content-Type", ct)
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w
	}
	// 50 KiB of bytes: 68 KiB once base64-encoded.
	w := post("/fn/sls", "application/octet-stream", 50<<10)
	var e v1.Error
	_ = json.Unmarshal(w.Body.Bytes(), &e)
	if w.Code != http.StatusRequestEntityTooLarge || !strings.Contains(e.Message, "invocation payload") ||
		!strings.Contains(e.Message, "51200-byte body") || !strings.Contains(e.Message, "limit of 65536 bytes") {
		t.Errorf("a binary body that encodes past the limit: %d %s", w.Code, w.Body)
	}
	// The same as text passes.
	if w := post("/fn/sls", "text/plain", 50<<10); w.Code != 200 {
		t.Errorf("a text body under the limit: %d %s", w.Code, w.Body)
	}
	// A body past the limit before it is encoded.
	w = post("/fn/sls", "text/plain", limit+1)
	_ = json.Unmarshal(w.Body.Bytes(), &e)
	if w.Code != http.StatusRequestEntityTooLarge || !strings.Contains(e.Message, "request body is 65537 bytes, more than the invocation payload limit of 65536 bytes") {
		t.Errorf("a body past the limit: %d %s", w.Code, w.Body)
	}
}

// FuzzHostLabel: HostLabel never panics, and a label it returns is one
// label that, in front of the domain, makes the host it was given.
func FuzzHostLabel(f *testing.F) {
	for _, s := range []string{"sls.localhost", "SLS.LocalHost:8080", "a.b.localhost", ".localhost", "localhost", "[::1]:80", "x@y.localhost", "sls.localhost.", "", "éé.localhost"} {
		f.Add(s, "localhost")
	}
	f.Add("a.apps.example.com", ".apps.example.com.")
	f.Fuzz(func(t *testing.T, host, domain string) {
		label, ok := HostLabel(host, domain)
		if !ok {
			return
		}
		if label == "" || strings.ContainsAny(label, ".@") || label != strings.ToLower(label) {
			t.Fatalf("HostLabel(%q, %q) = %q", host, domain, label)
		}
		if !strings.HasPrefix(strings.ToLower(host), label+".") || !strings.Contains(strings.ToLower(host), strings.ToLower(strings.Trim(domain, "."))) {
			t.Fatalf("HostLabel(%q, %q) = %q: not the host's first label under the domain", host, domain, label)
		}
	})
}
