package gateway

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/services"
)

// TestFunctionRouteDropsOriginState: with a PathPolicy, a function's
// answer on /fn/NAME loses its cookies and its Set-Cookie and
// Clear-Site-Data headers, however it set them, and keeps the rest;
// without, they all pass.
func TestFunctionRouteDropsOriginState(t *testing.T) {
	body := `{"statusCode":200,"headers":{"set-cookie":"a=1; Path=/","Clear-Site-Data":"\"cookies\"","x-app":"yes"},` +
		`"multiValueHeaders":{"SET-COOKIE":["b=2","c=3"],"clear-site-data":["\"*\""]},` +
		`"cookies":["stratus_session=EVIL; Path=/v1/; HttpOnly","d=4; Path=/"],"body":"ok"}`
	for _, policy := range []string{testPolicy, ""} {
		inv := &scripted{resp: &stratus.Response{Body: []byte(body)}}
		g := New(Config{Invoker: inv, Queue: noQueue{}, Heads: inv, PathPolicy: policy})
		mux := http.NewServeMux()
		mux.HandleFunc("/fn/{name}/{path...}", g.ServeFunctionURL)
		srv := httptest.NewServer(mux)
		resp, err := http.Get(srv.URL + "/fn/f/x")
		srv.Close()
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		cookies, clear := resp.Header.Values("Set-Cookie"), resp.Header.Values("Clear-Site-Data")
		var wantCookies, wantClear []string
		if policy == "" {
			wantCookies = []string{"b=2", "c=3", "stratus_session=EVIL; Path=/v1/; HttpOnly", "d=4; Path=/"}
			wantClear = []string{`"*"`}
		}
		if resp.StatusCode != 200 || !slices.Equal(cookies, wantCookies) || !slices.Equal(clear, wantClear) {
			t.Errorf("policy %q: %d, Set-Cookie %q, Clear-Site-Data %q; want %q, %q", policy, resp.StatusCode, cookies, clear, wantCookies, wantClear)
		}
		if resp.Header.Get("X-App") != "yes" || (policy != "") != slices.Contains(resp.Header.Values("Content-Security-Policy"), policy) {
			t.Errorf("policy %q: headers %v", policy, resp.Header)
		}
	}
}

// TestServiceRouteDropsOriginState: with a PathPolicy, a replica's
// Set-Cookie and Clear-Site-Data reach no client of /svc/NAME, not even
// in a 103 Early Hints or a 101 Switching Protocols, and the policy is
// on the final answer after a 103; host routes, and path routes without
// a PathPolicy, pass them.
func TestServiceRouteDropsOriginState(t *testing.T) {
	replica := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if r.URL.Path == "/ws" {
			c, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			fmt.Fprint(rw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
				"Set-Cookie: ws=1; Path=/\r\nClear-Site-Data: \"cookies\"\r\n\r\n")
			rw.Flush()
			return
		}
		if r.URL.Path == "/early" {
			h.Set("Link", "</style.css>; rel=preload; as=style")
			h.Set("Set-Cookie", "early=1; Path=/")
			w.WriteHeader(http.StatusEarlyHints)
			h.Del("Link")
			h.Del("Set-Cookie")
		}
		h.Add("Set-Cookie", "stratus_session=EVIL; Path=/v1/; HttpOnly")
		h.Add("Set-Cookie", "big=x; Path=/")
		h.Set("Clear-Site-Data", `"cookies"`)
		h.Set("Content-Type", "text/html")
	}))
	defer replica.Close()
	u, _ := url.Parse(replica.URL)
	for _, policy := range []string{testPolicy, ""} {
		observed := 0
		var mu sync.Mutex
		p := NewServiceProxy(ProxyConfig{Services: oneReplica{
			auth:   map[string]string{"web": stratus.AuthNone},
			target: &services.Target{URL: u, Transport: replica.Client().Transport},
		}, Domain: "apps.test", PathPolicy: policy, Observe: func(string, int, time.Duration) {
			mu.Lock()
			observed++
			mu.Unlock()
		}})
		mux := http.NewServeMux()
		mux.HandleFunc("/svc/{name}/{path...}", p.ServeSvcPath)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if name, ok := p.HostService(r); ok {
				p.ServeHost(w, r, name)
				return
			}
			mux.ServeHTTP(w, r)
		}))
		for _, tc := range []struct{ host, path string }{
			{"", "/svc/web/page"}, {"", "/svc/web/early"}, {"web.apps.test", "/page"}, {"web.apps.test", "/early"},
		} {
			sandboxed := policy != "" && tc.host == ""
			var early []textproto.MIMEHeader
			req, _ := http.NewRequest("GET", srv.URL+tc.path, nil)
			req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
				Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
					early = append(early, h)
					return nil
				},
			}))
			if tc.host != "" {
				req.Host = tc.host
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			what := fmt.Sprintf("policy %q: %s%s", policy, tc.host, tc.path)
			cookies, clear := resp.Header.Values("Set-Cookie"), resp.Header.Values("Clear-Site-Data")
			if sandboxed && (len(cookies) > 0 || len(clear) > 0) {
				t.Errorf("%s: Set-Cookie %q, Clear-Site-Data %q passed", what, cookies, clear)
			}
			if !sandboxed && (len(cookies) != 2 || len(clear) != 1) {
				t.Errorf("%s: Set-Cookie %q, Clear-Site-Data %q, want the replica's", what, cookies, clear)
			}
			if got := slices.Contains(resp.Header.Values("Content-Security-Policy"), testPolicy); got != sandboxed {
				t.Errorf("%s: %d, Content-Security-Policy %q", what, resp.StatusCode, resp.Header.Values("Content-Security-Policy"))
			}
			if strings.HasSuffix(tc.path, "/early") {
				if len(early) != 1 || early[0].Get("Link") == "" {
					t.Fatalf("%s: 1xx answers %v, want the replica's 103", what, early)
				}
				if got := early[0].Values("Set-Cookie"); sandboxed != (len(got) == 0) {
					t.Errorf("%s: the 103's Set-Cookie %q", what, got)
				}
			}
		}
		mu.Lock()
		if observed != 4 {
			t.Errorf("policy %q: %d answers observed, want 4", policy, observed)
		}
		mu.Unlock()
		// A protocol switch (101) on the path route.
		resp := switchProtocols(t, srv.URL, "/svc/web/ws")
		if got := resp.Header.Values("Set-Cookie"); resp.StatusCode != 101 || (policy != "") != (len(got) == 0) || (policy != "") != (resp.Header.Get("Clear-Site-Data") == "") {
			t.Errorf("policy %q: upgrade: %d, Set-Cookie %q, Clear-Site-Data %q", policy, resp.StatusCode, got, resp.Header.Get("Clear-Site-Data"))
		}
		srv.Close()
	}
}

// switchProtocols sends a WebSocket upgrade request for path to the
// server at base and returns the answer's head.
func switchProtocols(t *testing.T, base, path string) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}
