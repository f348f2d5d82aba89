package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/services"
)

const (
	secret = "s3cr3t-T0ken_42"
	jwt    = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYWxsZXIifQ.c2lnbmF0dXJl"
)

func TestStripToken(t *testing.T) {
	tok := NewToken(secret)
	for _, tc := range []struct {
		name string
		in   http.Header
		want http.Header
	}{
		{"no authorization", http.Header{"Accept": {"*/*"}}, http.Header{"Accept": {"*/*"}}},
		{"one value", http.Header{"Authorization": {"Bearer " + secret}}, http.Header{}},
		{"the token second", http.Header{"Authorization": {jwt, "Bearer " + secret}}, http.Header{"Authorization": {jwt}}},
		{"the token first", http.Header{"Authorization": {"Bearer " + secret, "Basic dXNlcjpwdw=="}}, http.Header{"Authorization": {"Basic dXNlcjpwdw=="}}},
		{"the token twice among others", http.Header{"Authorization": {"Bearer " + secret, jwt, "bearer " + secret}}, http.Header{"Authorization": {jwt}}},
		{"lower-case scheme", http.Header{"Authorization": {"bearer " + secret}}, http.Header{}},
		{"upper-case scheme", http.Header{"Authorization": {"BEARER " + secret}}, http.Header{}},
		{"mixed-case scheme", http.Header{"Authorization": {"bEaReR " + secret}}, http.Header{}},
		{"extra spaces and tabs", http.Header{"Authorization": {"  Bearer \t  " + secret + "  "}}, http.Header{}},
		{"another scheme", http.Header{"Authorization": {"Token " + secret}}, http.Header{}},
		{"no scheme", http.Header{"Authorization": {secret}}, http.Header{}},
		{"an auth-param", http.Header{"Authorization": {`Bearer token="` + secret + `"`}}, http.Header{}},
		{"trailing words", http.Header{"Authorization": {"Bearer " + secret + " junk"}}, http.Header{}},
		{"comma list, token last", http.Header{"Authorization": {"Basic dXNlcjpwdw==, Bearer " + secret}}, http.Header{"Authorization": {"Basic dXNlcjpwdw=="}}},
		{"comma list, token first", http.Header{"Authorization": {"Bearer " + secret + "," + jwt}}, http.Header{"Authorization": {jwt}}},
		{"comma list of tokens only", http.Header{"Authorization": {"Bearer " + secret + " , bearer " + secret}}, http.Header{}},
		{"Proxy-Authorization", http.Header{"Proxy-Authorization": {"Bearer " + secret}, "Authorization": {jwt}}, http.Header{"Authorization": {jwt}}},
		{"Proxy-Authorization of the caller's", http.Header{"Proxy-Authorization": {"Basic cHJveHk6cHc="}}, http.Header{"Proxy-Authorization": {"Basic cHJveHk6cHc="}}},
		{"the caller's jwt kept as sent", http.Header{"Authorization": {jwt}}, http.Header{"Authorization": {jwt}}},
		{"a longer word holding the token", http.Header{"Authorization": {"Bearer x" + secret + "y", "Bearer " + secret + ".sig"}}, http.Header{"Authorization": {"Bearer x" + secret + "y", "Bearer " + secret + ".sig"}}},
		{"a name not in canonical form", http.Header{"authorization": {"Bearer " + secret}, "AUTHORIZATION": {jwt}}, http.Header{"AUTHORIZATION": {jwt}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.in.Clone()
			tok.Strip(h)
			if d := cmp.Diff(tc.want, h); d != "" {
				t.Errorf("Strip(%q) (-want +got):\n%s", tc.in, d)
			}
		})
	}
}

func TestStripTokenWithOtherCharacters(t *testing.T) {
	tok := NewToken("my secret, with spaces=")
	h := http.Header{"Authorization": {"Bearer my secret, with spaces=", jwt}}
	if !tok.Authorized(h) {
		t.Error("Authorized: false for a token with spaces and a comma")
	}
	tok.Strip(h)
	if d := cmp.Diff(http.Header{"Authorization": {jwt}}, h); d != "" {
		t.Errorf("Strip (-want +got):\n%s", d)
	}
}

func TestAuthorized(t *testing.T) {
	tok := NewToken(secret)
	for _, tc := range []struct {
		name string
		h    http.Header
		want bool
	}{
		{"the token", http.Header{"Authorization": {"Bearer " + secret}}, true},
		{"lower-case scheme", http.Header{"Authorization": {"bearer " + secret}}, true},
		{"upper-case scheme and spaces", http.Header{"Authorization": {" BEARER   " + secret + " "}}, true},
		{"the token second", http.Header{"Authorization": {jwt, "Bearer " + secret}}, true},
		{"in a comma list", http.Header{"Authorization": {"Basic dXNlcjpwdw==, Bearer " + secret}}, true},
		{"none", http.Header{}, false},
		{"empty", http.Header{"Authorization": {""}}, false},
		{"another token", http.Header{"Authorization": {"Bearer " + secret + "x"}}, false},
		{"a prefix of the token", http.Header{"Authorization": {"Bearer " + secret[:5]}}, false},
		{"the token in another case", http.Header{"Authorization": {"Bearer " + strings.ToUpper(secret)}}, false},
		{"no scheme", http.Header{"Authorization": {secret}}, false},
		{"another scheme", http.Header{"Authorization": {"Basic " + secret}}, false},
		{"scheme only", http.Header{"Authorization": {"Bearer"}}, false},
		{"only in Proxy-Authorization", http.Header{"Proxy-Authorization": {"Bearer " + secret}}, false},
		{"the caller's jwt", http.Header{"Authorization": {jwt}}, false},
	} {
		if got := tok.Authorized(tc.h); got != tc.want {
			t.Errorf("%s: Authorized(%q) = %v, want %v", tc.name, tc.h, got, tc.want)
		}
	}
	if NewToken("").Authorized(http.Header{"Authorization": {"Bearer "}}) {
		t.Error("an empty token authorizes")
	}
}

// fakeFunctions has one function of each auth mode and records the events
// it is invoked with.
type fakeFunctions struct{ events [][]byte }

func (f *fakeFunctions) Head(name string) (*stratus.Version, bool) {
	switch name {
	case "open":
		return &stratus.Version{Function: name, Version: 1, Config: stratus.FunctionConfig{Auth: stratus.AuthNone}}, true
	case "closed":
		return &stratus.Version{Function: name, Version: 1, Config: stratus.FunctionConfig{Auth: stratus.AuthToken}}, true
	}
	return nil, false
}

func (f *fakeFunctions) Invoke(ctx context.Context, name string, req stratus.Request) (*stratus.Response, error) {
	f.events = append(f.events, req.Event)
	return &stratus.Response{Body: []byte(`{"statusCode":200,"body":"ok"}`)}, nil
}

// TestFunctionRouteStripsToken: whatever the function's auth mode, the
// event never holds the server's token, and holds the caller's own
// Authorization values.
func TestFunctionRouteStripsToken(t *testing.T) {
	fns := &fakeFunctions{}
	g := New(Config{Invoker: fns, Queue: noQueue{}, Heads: fns, Token: NewToken(secret), MaxEvent: 1 << 20})
	mux := http.NewServeMux()
	mux.HandleFunc("/fn/{name}", g.ServeFunctionURL)
	mux.HandleFunc("/fn/{name}/{path...}", g.ServeFunctionURL)
	for _, tc := range []struct {
		name, fn string
		auth     []string
		code     int
		want     string // the event's authorization header
	}{
		{"open, the token alone", "open", []string{"Bearer " + secret}, 200, ""},
		{"open, the token behind the caller's", "open", []string{jwt, "bearer " + secret}, 200, jwt},
		{"open, the token in a list", "open", []string{jwt + ", BEARER " + secret}, 200, jwt},
		{"open, the caller's only", "open", []string{jwt}, 200, jwt},
		{"closed, the token", "closed", []string{"Bearer " + secret}, 200, ""},
		{"closed, the token second", "closed", []string{jwt, "Bearer " + secret}, 200, jwt},
		{"closed, without the token", "closed", []string{jwt}, 401, ""},
		{"unknown, without the token", "nope", nil, 401, ""},
		{"unknown, with the token", "nope", []string{"Bearer " + secret}, 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fns.events = nil
			r := httptest.NewRequest("GET", "/fn/"+tc.fn+"/x", nil)
			r.Header["Authorization"] = tc.auth
			r.Header.Set("Proxy-Authorization", "Bearer "+secret)
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, r)
			if w.Code != tc.code {
				t.Fatalf("status %d %s, want %d", w.Code, w.Body, tc.code)
			}
			if tc.code != 200 {
				if len(fns.events) != 0 {
					t.Errorf("the function was invoked")
				}
				return
			}
			if len(fns.events) != 1 {
				t.Fatalf("%d invocations, want 1", len(fns.events))
			}
			ev := string(fns.events[0])
			if strings.Contains(ev, secret) {
				t.Errorf("the event holds the token: %s", ev)
			}
			var e struct {
				Headers map[string]string `json:"headers"`
			}
			if err := json.Unmarshal(fns.events[0], &e); err != nil {
				t.Fatal(err)
			}
			if got := e.Headers["authorization"]; got != tc.want {
				t.Errorf("event authorization header %q, want %q", got, tc.want)
			}
		})
	}
}

// oneReplica serves every service from one replica.
type oneReplica struct {
	auth   map[string]string
	target *services.Target
	h2c    bool // every route speaks h2c
}

func (o oneReplica) H2C(string) bool { return o.h2c }

func (o oneReplica) Acquire(ctx context.Context, name string) (*services.Target, func(), error) {
	return o.target, func() {}, nil
}

func (o oneReplica) Auth(name string) (string, bool) {
	a, ok := o.auth[name]
	return a, ok
}

// TestServiceRoutesStripToken: on the path and host routes, whatever the
// service's auth mode, the container never sees the server's token and
// sees the caller's own Authorization values.
func TestServiceRoutesStripToken(t *testing.T) {
	seen := make(chan http.Header, 1)
	replica := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
	}))
	defer replica.Close()
	u, _ := url.Parse(replica.URL)
	p := NewServiceProxy(ProxyConfig{Services: oneReplica{
		auth:   map[string]string{"open": stratus.AuthNone, "closed": stratus.AuthToken},
		target: &services.Target{URL: u, Transport: replica.Client().Transport},
	}, Token: NewToken(secret), Domain: "apps.test"})
	mux := http.NewServeMux()
	mux.HandleFunc("/svc/{name}/{path...}", p.ServeSvcPath)
	serve := func(w http.ResponseWriter, r *http.Request) {
		if name, ok := p.HostService(r); ok {
			p.ServeHost(w, r, name)
			return
		}
		mux.ServeHTTP(w, r)
	}
	for _, svc := range []string{"open", "closed"} {
		for _, route := range []string{"path", "host"} {
			for _, tc := range []struct {
				name string
				auth []string
				code int
				want []string
			}{
				{"the token alone", []string{"Bearer " + secret}, 200, nil},
				{"the token second", []string{jwt, "bearer " + secret}, 200, []string{jwt}},
				{"the token first", []string{"BEARER " + secret, jwt}, 200, []string{jwt}},
				{"the token in a list", []string{jwt + ",Bearer  " + secret}, 200, []string{jwt}},
				{"the caller's only", []string{jwt}, 200, []string{jwt}},
			} {
				code, want := tc.code, tc.want
				if svc == "closed" && !strings.Contains(strings.Join(tc.auth, ","), secret) {
					code = 401
				}
				t.Run(svc+"/"+route+"/"+tc.name, func(t *testing.T) {
					r := httptest.NewRequest("GET", "/svc/"+svc+"/x", nil)
					if route == "host" {
						r = httptest.NewRequest("GET", "/x", nil)
						r.Host = svc + ".apps.test"
					}
					r.Header["Authorization"] = tc.auth
					r.Header["Proxy-Authorization"] = []string{"Bearer " + secret}
					w := httptest.NewRecorder()
					serve(w, r)
					if w.Code != code {
						t.Fatalf("status %d %s, want %d", w.Code, w.Body, code)
					}
					if code != 200 {
						return
					}
					h := <-seen
					for k, vs := range h {
						if strings.Contains(strings.Join(vs, ","), secret) {
							t.Errorf("the container saw the token in %s: %q", k, vs)
						}
					}
					if d := cmp.Diff(want, h["Authorization"]); d != "" {
						t.Errorf("the container's Authorization (-want +got):\n%s", d)
					}
				})
			}
		}
	}
}
