package apiserver

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/console"
	"github.com/stratus-run/stratus/internal/sigv4"
	"github.com/stratus-run/stratus/internal/store"
)

// sessionRig is a server with the console on, whose /v1/keys routes
// stand for every /v1 route (a read, GET, and a write, POST).
type sessionRig struct {
	t    *testing.T
	url  string
	host string // the server's host:port, as the browser's Origin names it
	c    *http.Client
}

func newSessionRig(t *testing.T, dir string, tlsOn bool) *sessionRig {
	t.Helper()
	st, err := store.Open(t.Context(), filepath.Join(dir, "stratus.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys := sigv4.NewKeys(sigv4.KeysConfig{Table: st, SealKeyPath: filepath.Join(dir, sigv4.SealKeyFile)})
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "metrics\n") })
	h := New(Config{Token: "tok", Store: st, Console: true, Keys: KeysConfig{Keys: keys}, Metrics: metrics})
	var srv *httptest.Server
	if tlsOn {
		srv = httptest.NewTLSServer(h)
	} else {
		srv = httptest.NewServer(h)
	}
	t.Cleanup(srv.Close)
	return &sessionRig{t: t, url: srv.URL, host: strings.TrimPrefix(strings.TrimPrefix(srv.URL, "http://"), "https://"), c: srv.Client()}
}

// call sends a request with hdr (name, value pairs) and returns the
// answer and its body.
func (g *sessionRig) call(method, path, body string, hdr ...string) (*http.Response, string) {
	g.t.Helper()
	req, err := http.NewRequest(method, g.url+path, strings.NewReader(body))
	if err != nil {
		g.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := g.c.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// signIn signs in and returns the session cookie as the server set it.
func (g *sessionRig) signIn() *http.Cookie {
	g.t.Helper()
	resp, body := g.call("POST", "/v1/session", `{"token":"tok"}`, console.CSRFHeader, "1", "Content-Type", "application/json")
	if resp.StatusCode != 200 {
		g.t.Fatalf("sign in: %d %s", resp.StatusCode, body)
	}
	var v struct{ ExpiresAt string }
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		g.t.Fatalf("sign in: %s: %v", body, err)
	}
	if at, err := time.Parse(time.RFC3339, v.ExpiresAt); err != nil || time.Until(at) < console.TTL-time.Minute || time.Until(at) > console.TTL+time.Minute {
		g.t.Errorf("sign in: expiresAt %q (%v), want 12 h from now", v.ExpiresAt, err)
	}
	cs := resp.Cookies()
	if len(cs) != 1 || cs[0].Name != console.CookieName {
		g.t.Fatalf("sign in: cookies %v", resp.Header.Values("Set-Cookie"))
	}
	return cs[0]
}

// keyCount lists the access keys with the token.
func (g *sessionRig) keyCount() int {
	g.t.Helper()
	resp, body := g.call("GET", "/v1/keys", "", "Authorization", "Bearer tok")
	var l v1.AccessKeyList
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &l) != nil {
		g.t.Fatalf("list keys: %d %s", resp.StatusCode, body)
	}
	return len(l.Keys)
}

func TestSessionSignIn(t *testing.T) {
	g := newSessionRig(t, t.TempDir(), false)
	for _, tc := range []struct {
		name, body string
		hdr        []string
		code       int
		want       string
	}{
		{"wrong token", `{"token":"nope"}`, []string{console.CSRFHeader, "1"}, 401, "UnauthorizedException"},
		{"no token", `{}`, []string{console.CSRFHeader, "1"}, 401, "UnauthorizedException"},
		{"empty token", `{"token":""}`, []string{console.CSRFHeader, "1"}, 401, "UnauthorizedException"},
		{"the token in a header only", `{}`, []string{console.CSRFHeader, "1", "Authorization", "Bearer tok"}, 401, "UnauthorizedException"},
		{"not JSON", `token=tok`, []string{console.CSRFHeader, "1"}, 400, "must be"},
		{"two objects", `{"token":"tok"}{}`, []string{console.CSRFHeader, "1"}, 400, "one JSON object"},
		{"too large", `{"token":"` + strings.Repeat("t", 5000) + `"}`, []string{console.CSRFHeader, "1"}, 413, "over 4096 bytes"},
		{"no CSRF header", `{"token":"tok"}`, nil, 403, "cross-site request refused"},
		{"cross-site", `{"token":"tok"}`, []string{console.CSRFHeader, "1", "Origin", "http://evil.example"}, 403, "cross-site request refused"},
	} {
		resp, body := g.call("POST", "/v1/session", tc.body, tc.hdr...)
		if resp.StatusCode != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s, want %d %s", tc.name, resp.StatusCode, body, tc.code, tc.want)
		}
		if sc := resp.Header.Values("Set-Cookie"); len(sc) > 0 {
			t.Errorf("%s: a cookie: %q", tc.name, sc)
		}
	}

	// Plain HTTP: the cookie is not Secure.
	resp, _ := g.call("POST", "/v1/session", `{"token":"tok"}`, console.CSRFHeader, "1",
		"Origin", "http://"+g.host, "Sec-Fetch-Site", "same-origin")
	want := "; Path=/v1/; Max-Age=43200; HttpOnly; SameSite=Strict"
	if sc := resp.Header.Get("Set-Cookie"); resp.StatusCode != 200 || !strings.HasPrefix(sc, console.CookieName+"=") || !strings.HasSuffix(sc, want) {
		t.Errorf("sign in: %d, Set-Cookie %q, want ...%s", resp.StatusCode, sc, want)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("sign in: Cache-Control %q", cc)
	}

	// Over TLS, it is.
	tg := newSessionRig(t, t.TempDir(), true)
	resp, _ = tg.call("POST", "/v1/session", `{"token":"tok"}`, console.CSRFHeader, "1", "Origin", "https://"+tg.host)
	want = "; Path=/v1/; Max-Age=43200; HttpOnly; Secure; SameSite=Strict"
	if sc := resp.Header.Get("Set-Cookie"); resp.StatusCode != 200 || !strings.HasSuffix(sc, want) {
		t.Errorf("sign in over TLS: %d, Set-Cookie %q, want ...%s", resp.StatusCode, sc, want)
	}
}

func TestSessionCookieAuth(t *testing.T) {
	dir := t.TempDir()
	g := newSessionRig(t, dir, false)
	c := g.signIn()
	cookie := c.Name + "=" + c.Value
	same := []string{"Cookie", cookie, console.CSRFHeader, "1", "Origin", "http://" + g.host, "Sec-Fetch-Site", "same-origin"}

	if resp, body := g.call("GET", "/v1/session", "", "Cookie", cookie); resp.StatusCode != 200 || !strings.Contains(body, `"expiresAt":"`) {
		t.Errorf("GET /v1/session with the cookie: %d %s", resp.StatusCode, body)
	}
	if resp, body := g.call("GET", "/v1/session", "", "Authorization", "Bearer tok"); resp.StatusCode != 200 || body != "{}" {
		t.Errorf("GET /v1/session with the token: %d %s", resp.StatusCode, body)
	}
	if resp, body := g.call("GET", "/v1/session", ""); resp.StatusCode != 401 {
		t.Errorf("GET /v1/session without: %d %s", resp.StatusCode, body)
	}
	if resp, body := g.call("GET", "/v1/keys", "", "Cookie", cookie); resp.StatusCode != 200 {
		t.Errorf("GET /v1/keys with the cookie: %d %s", resp.StatusCode, body)
	}
	if resp, body := g.call("GET", "/v1/info", "", "Cookie", cookie, "Sec-Fetch-Site", "cross-site"); resp.StatusCode != 200 {
		t.Errorf("a GET needs no same-origin proof: %d %s", resp.StatusCode, body)
	}
	// The first value of a session's form is the one looked up: values
	// of another form before it are passed over, others after it are not
	// looked at.
	forged := c.Name + "=" + strings.Repeat("A", len(c.Value))
	for _, tc := range []struct {
		cookies string
		code    int
	}{
		{c.Name + "=junk; " + c.Name + "=" + c.Value[1:] + "; " + cookie, 200},
		{cookie + "; " + forged, 200},
		{forged + "; " + cookie, 401},
	} {
		if resp, body := g.call("GET", "/v1/keys", "", "Cookie", tc.cookies); resp.StatusCode != tc.code {
			t.Errorf("GET /v1/keys with Cookie %q: %d %s, want %d", tc.cookies, resp.StatusCode, body, tc.code)
		}
	}

	// Refused writes change nothing.
	for _, tc := range []struct {
		name string
		hdr  []string
		code int
	}{
		{"no CSRF header", []string{"Cookie", cookie, "Origin", "http://" + g.host, "Sec-Fetch-Site", "same-origin"}, 403},
		{"foreign Origin", []string{"Cookie", cookie, console.CSRFHeader, "1", "Origin", "http://evil.example"}, 403},
		{"cross-site", []string{"Cookie", cookie, console.CSRFHeader, "1", "Sec-Fetch-Site", "cross-site"}, 403},
		{"same-site", []string{"Cookie", cookie, console.CSRFHeader, "1", "Sec-Fetch-Site", "same-site"}, 403},
		{"a wrong token besides the cookie", append([]string{"Authorization", "Bearer nope"}, same...), 401},
		{"a forged cookie", []string{"Cookie", c.Name + "=" + strings.Repeat("A", len(c.Value)), console.CSRFHeader, "1"}, 401},
	} {
		resp, body := g.call("POST", "/v1/keys", `{"description":"x"}`, tc.hdr...)
		if resp.StatusCode != tc.code {
			t.Errorf("%s: %d %s, want %d", tc.name, resp.StatusCode, body, tc.code)
		}
		if tc.code == 403 && !strings.Contains(body, `"message":"cross-site request refused: `) {
			t.Errorf("%s: body %s", tc.name, body)
		}
	}
	if n := g.keyCount(); n != 0 {
		t.Fatalf("refused requests made %d keys", n)
	}
	if resp, body := g.call("POST", "/v1/keys", `{"description":"x"}`, same...); resp.StatusCode != 201 {
		t.Fatalf("a same-origin POST with the cookie: %d %s", resp.StatusCode, body)
	}
	if n := g.keyCount(); n != 1 {
		t.Fatalf("%d keys, want 1", n)
	}

	// Not on the routes outside /v1.
	if resp, body := g.call("GET", "/metrics", "", "Cookie", cookie); resp.StatusCode != 401 {
		t.Errorf("GET /metrics with the cookie: %d %s", resp.StatusCode, body)
	}
	if resp, _ := g.call("GET", "/metrics", "", "Authorization", "Bearer tok"); resp.StatusCode != 200 {
		t.Errorf("GET /metrics with the token: %d", resp.StatusCode)
	}

	// The session survives a restart: a new server over the same store.
	g2 := newSessionRig(t, dir, false)
	if resp, body := g2.call("GET", "/v1/keys", "", "Cookie", cookie); resp.StatusCode != 200 {
		t.Fatalf("after a restart: %d %s", resp.StatusCode, body)
	}

	// Sign-out: a cross-site one is refused, a same-origin one deletes
	// the session and clears the cookie.
	if resp, _ := g.call("DELETE", "/v1/session", "", "Cookie", cookie); resp.StatusCode != 403 {
		t.Errorf("sign out without the CSRF header: %d", resp.StatusCode)
	}
	resp, body := g.call("DELETE", "/v1/session", "", same...)
	if resp.StatusCode != 204 || resp.Header.Get("Set-Cookie") != console.CookieName+"=; Path=/v1/; Max-Age=0; HttpOnly; SameSite=Strict" {
		t.Fatalf("sign out: %d %s, Set-Cookie %q", resp.StatusCode, body, resp.Header.Get("Set-Cookie"))
	}
	for _, p := range []string{"/v1/keys", "/v1/session"} {
		if resp, body := g.call("GET", p, "", "Cookie", cookie); resp.StatusCode != 401 {
			t.Errorf("GET %s with the old cookie: %d %s", p, resp.StatusCode, body)
		}
	}
}

func TestConsoleOff(t *testing.T) {
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "stratus.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, on := range []bool{true, false} {
		srv := httptest.NewServer(New(Config{Token: "tok", Store: st, Console: on}))
		resp, err := http.Get(srv.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := map[bool]int{true: 200, false: 404}[on]; resp.StatusCode != want {
			t.Errorf("console %v: GET /: %d, want %d", on, resp.StatusCode, want)
		}
		if on && resp.Header.Get("Content-Security-Policy") != console.Policy {
			t.Errorf("GET /: Content-Security-Policy %q", resp.Header.Get("Content-Security-Policy"))
		}
		req, _ := http.NewRequest("POST", srv.URL+"/v1/session", strings.NewReader(`{"token":"tok"}`))
		req.Header.Set(console.CSRFHeader, "1")
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := map[bool]int{true: 200, false: 401}[on]; resp.StatusCode != want || (!on && len(resp.Cookies()) > 0) {
			t.Errorf("console %v: sign in: %d %v, want %d", on, resp.StatusCode, resp.Cookies(), want)
		}
		srv.Close()
	}
}
