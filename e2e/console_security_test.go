package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	ggcr "github.com/google/go-containerregistry/pkg/v1"

	"github.com/stratus-run/stratus/internal/eventually"
)

// consoleCSP is the Content-Security-Policy every console answer carries.
const consoleCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// sandboxCSP is the policy that the path routes add while the console is on.
const sandboxCSP = "sandbox allow-scripts allow-forms allow-popups allow-popups-to-escape-sandbox allow-modals allow-downloads allow-top-navigation-by-user-activation"

// signInHTTP signs in to s's console with token over HTTP, as the
// console's script does, and returns the answer.
func signInHTTP(s *server, token string) (*http.Response, []byte) {
	s.t.Helper()
	body, _ := json.Marshal(map[string]string{"token": token})
	return s.do("POST", "/v1/session", body, false, "Content-Type", "application/json", "X-Stratus-CSRF", "1",
		"Origin", s.URL, "Sec-Fetch-Site", "same-origin")
}

// sessionCookie signs in to s and returns the "stratus_session=VALUE"
// of the answer's cookie, having checked its attributes.
func sessionCookie(t *testing.T, s *server) string {
	t.Helper()
	resp, body := signInHTTP(s, s.Token)
	if resp.StatusCode != 200 {
		t.Fatalf("sign in: %d %s", resp.StatusCode, body)
	}
	var v struct{ ExpiresAt time.Time }
	if err := json.Unmarshal(body, &v); err != nil || time.Until(v.ExpiresAt) < 11*time.Hour || time.Until(v.ExpiresAt) > 13*time.Hour {
		t.Errorf("sign in: %s (%v), want expiresAt 12 h from now", body, err)
	}
	sc := resp.Header.Values("Set-Cookie")
	if len(sc) != 1 {
		t.Fatalf("sign in: Set-Cookie %q", sc)
	}
	nameValue, attrs, _ := strings.Cut(sc[0], "; ")
	value, ok := strings.CutPrefix(nameValue, "stratus_session=")
	if !ok || len(value) != 43 || strings.Contains(value, s.Token) {
		t.Fatalf("sign in: cookie %q", sc[0])
	}
	// Plain HTTP: no Secure (the unit tests check it over TLS).
	if attrs != "Path=/v1/; Max-Age=43200; HttpOnly; SameSite=Strict" {
		t.Errorf("sign in: cookie attributes %q", attrs)
	}
	return nameValue
}

// TestConsoleSecurity checks the console's sessions and headers over
// HTTP against the real server: what the cookie opens and what it does
// not, sign-out, a restart, the policies of the console and of a
// function's path route.
func TestConsoleSecurity(t *testing.T) {
	needTool(t, "python3")
	s := startServer(t)
	code := writeFiles(t, map[string]string{
		"page.py": `def handler(event, context):
    return {"statusCode": 200,
            "headers": {"content-type": "text/html", "content-security-policy": "frame-ancestors 'none'"},
            "body": "<!doctype html><title>page</title><p id=out>page</p>"}
`,
	})
	s.mustCLI("deploy", "page", "--runtime", "python3", "--handler", "page.handler", "--auth", "none", code)
	s.mustCLI("deploy", "api", "--runtime", "provided.al2023", fixture("goapigw"))

	// A wrong or missing token: 401, no cookie.
	for _, tok := range []string{"", "wrong", s.Token + "x"} {
		resp, body := signInHTTP(s, tok)
		if resp.StatusCode != 401 || len(resp.Header.Values("Set-Cookie")) > 0 {
			t.Errorf("sign in with %q: %d %s, Set-Cookie %q", tok, resp.StatusCode, body, resp.Header.Values("Set-Cookie"))
		}
	}

	cookie := sessionCookie(t, s)
	resp, body := s.do("GET", "/v1/functions", nil, false, "Cookie", cookie)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"name":"page"`) {
		t.Fatalf("GET /v1/functions with the cookie: %d %s", resp.StatusCode, body)
	}
	if resp, body := s.do("GET", "/v1/session", nil, false, "Cookie", cookie); resp.StatusCode != 200 || !strings.Contains(string(body), "expiresAt") {
		t.Errorf("GET /v1/session with the cookie: %d %s", resp.StatusCode, body)
	}

	// The cookie opens /v1 only.
	for _, p := range []string{"/metrics", "/fn/api", "/fn/api/x", "/2015-03-31/functions/", "/2015-03-31/functions/api/invocations"} {
		method := "GET"
		if strings.HasSuffix(p, "/invocations") {
			method = "POST"
		}
		resp, body := s.do(method, p, []byte("{}"), false, "Cookie", cookie, "X-Stratus-CSRF", "1", "Origin", s.URL, "Sec-Fetch-Site", "same-origin")
		if resp.StatusCode != 401 && resp.StatusCode != 403 {
			t.Errorf("%s %s with the cookie: %d %.200s, want 401 or 403", method, p, resp.StatusCode, body)
		}
	}

	// A write with the cookie needs the same-origin proof; a refused one
	// changes nothing.
	for _, hdr := range [][]string{
		{"Cookie", cookie},
		{"Cookie", cookie, "X-Stratus-CSRF", "1", "Origin", "http://evil.example"},
		{"Cookie", cookie, "X-Stratus-CSRF", "1", "Sec-Fetch-Site", "cross-site"},
		{"Cookie", cookie, "X-Stratus-CSRF", "1", "Sec-Fetch-Site", "same-site"},
	} {
		resp, body := s.do("POST", "/v1/topics", []byte(`{"name":"refused"}`), false, append(hdr, "Content-Type", "application/json")...)
		if resp.StatusCode != 403 || !strings.Contains(string(body), "cross-site request refused") {
			t.Errorf("POST /v1/topics with %q: %d %s, want 403", hdr[2:], resp.StatusCode, body)
		}
	}
	if resp, body := s.do("GET", "/v1/topics/refused", nil, true); resp.StatusCode != 404 {
		t.Fatalf("a refused request made its topic: %d %s", resp.StatusCode, body)
	}
	resp, body = s.do("POST", "/v1/topics", []byte(`{"name":"made"}`), false,
		"Cookie", cookie, "Content-Type", "application/json", "X-Stratus-CSRF", "1", "Origin", s.URL, "Sec-Fetch-Site", "same-origin")
	if resp.StatusCode != 201 {
		t.Fatalf("a same-origin POST with the cookie: %d %s", resp.StatusCode, body)
	}

	// The console's page and assets: the policy, and never the token.
	checkConsoleHeaders := func(p string, resp *http.Response) {
		t.Helper()
		if got := resp.Header.Values("Content-Security-Policy"); len(got) != 1 || got[0] != consoleCSP {
			t.Errorf("GET %s: Content-Security-Policy %q", p, got)
		}
		for _, d := range strings.Split(resp.Header.Get("Content-Security-Policy"), ";") {
			if d = strings.TrimSpace(d); strings.HasPrefix(d, "script-src") && strings.Contains(d, "unsafe") {
				t.Errorf("GET %s: %q", p, d)
			}
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("Referrer-Policy") != "no-referrer" ||
			resp.Header.Get("Cross-Origin-Opener-Policy") != "same-origin" {
			t.Errorf("GET %s: headers %v", p, resp.Header)
		}
	}
	resp, body = s.do("GET", "/", nil, false)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "<html") || strings.Contains(string(body), s.Token) {
		t.Fatalf("GET /: %d %.300s", resp.StatusCode, body)
	}
	checkConsoleHeaders("/", resp)
	assets := filepath.Join("..", "internal", "console", "assets")
	n := 0
	err := filepath.WalkDir(assets, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			return err
		}
		rel, _ := filepath.Rel(assets, p)
		want, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		u := "/ui/" + filepath.ToSlash(rel)
		resp, body := s.do("GET", u, nil, false)
		if resp.StatusCode != 200 || string(body) != string(want) {
			t.Errorf("GET %s: %d, %d bytes, want the embedded %d bytes", u, resp.StatusCode, len(body), len(want))
		}
		if strings.Contains(string(body), s.Token) {
			t.Errorf("GET %s: the token is in it", u)
		}
		checkConsoleHeaders(u, resp)
		n++
		return nil
	})
	if err != nil || n < 5 {
		t.Fatalf("the console's assets: %d files, %v", n, err)
	}

	// A function's page on the console's origin runs sandboxed; its own
	// policy stays.
	resp, body = s.do("GET", "/fn/page/", nil, false)
	if got := resp.Header.Values("Content-Security-Policy"); resp.StatusCode != 200 || !slices.Contains(got, sandboxCSP) || !slices.Contains(got, "frame-ancestors 'none'") {
		t.Errorf("GET /fn/page/: %d %s, Content-Security-Policy %q", resp.StatusCode, body, got)
	}

	// The session survives a restart.
	s.Stop()
	s.Restart()
	if resp, body := s.do("GET", "/v1/functions", nil, false, "Cookie", cookie); resp.StatusCode != 200 {
		t.Fatalf("after a restart, GET /v1/functions with the cookie: %d %s", resp.StatusCode, body)
	}

	// Sign-out deletes the session and clears the cookie.
	resp, body = s.do("DELETE", "/v1/session", nil, false, "Cookie", cookie, "X-Stratus-CSRF", "1", "Origin", s.URL)
	if resp.StatusCode != 204 || resp.Header.Get("Set-Cookie") != "stratus_session=; Path=/v1/; Max-Age=0; HttpOnly; SameSite=Strict" {
		t.Fatalf("sign out: %d %s, Set-Cookie %q", resp.StatusCode, body, resp.Header.Get("Set-Cookie"))
	}
	for _, p := range []string{"/v1/functions", "/v1/session"} {
		if resp, body := s.do("GET", p, nil, false, "Cookie", cookie); resp.StatusCode != 401 {
			t.Errorf("after sign-out, GET %s with the old cookie: %d %s", p, resp.StatusCode, body)
		}
	}

	// A new token ends the sessions made under the old one.
	cookie = sessionCookie(t, s)
	s.Stop()
	s.Token = "e2e-another-token-9876543210"
	s.Restart()
	if resp, body := s.do("GET", "/v1/functions", nil, false, "Cookie", cookie); resp.StatusCode != 401 {
		t.Errorf("a session of the old token, after the token changed: %d %s", resp.StatusCode, body)
	}
	if resp, body := s.do("GET", "/v1/functions", nil, false, "Cookie", sessionCookie(t, s)); resp.StatusCode != 200 {
		t.Errorf("a session of the new token: %d %s", resp.StatusCode, body)
	}
}

// TestConsoleSecurityOff: --console=false leaves the console and its
// sessions out.
func TestConsoleSecurityOff(t *testing.T) {
	s := startServer(t, "--console=false")
	if resp, body := s.do("GET", "/", nil, false); resp.StatusCode != 404 {
		t.Errorf("GET /: %d %.200s, want 404", resp.StatusCode, body)
	}
	if resp, body := signInHTTP(s, s.Token); resp.StatusCode == 200 || len(resp.Header.Values("Set-Cookie")) > 0 {
		t.Errorf("sign in: %d %s", resp.StatusCode, body)
	}
}

// TestConsoleSecurityBrowser checks, in Chromium, that the console's
// calls carry the session and never the token, that a cross-site page
// cannot act with the session, and that a function's page served on the
// console's origin cannot either.
func TestConsoleSecurityBrowser(t *testing.T) {
	needTool(t, "python3")
	s := startServer(t)
	code := writeFiles(t, map[string]string{
		"page.py": `def handler(event, context):
    return {"statusCode": 200, "headers": {"content-type": "text/html"}, "body": """<!doctype html><title>page</title><p id=out>running</p>
<script>
(async () => {
  const out = [];
  try { out.push('cookie:' + JSON.stringify(document.cookie)); } catch (e) { out.push('cookie:blocked'); }
  try { const r = await fetch('/v1/functions', {credentials: 'include'}); out.push('read:' + r.status); } catch (e) { out.push('read:failed'); }
  try { const r = await fetch('/v1/topics', {method: 'POST', credentials: 'include', headers: {'Content-Type': 'application/json', 'X-Stratus-CSRF': '1'}, body: '{"name":"from-page"}'}); out.push('write:' + r.status); } catch (e) { out.push('write:failed'); }
  document.getElementById('out').textContent = 'done ' + out.join(' ');
})();
</script>"""}
`,
	})
	s.mustCLI("deploy", "page", "--runtime", "python3", "--handler", "page.handler", "--auth", "none", code)

	b := newBrowser(t)
	// A wrong token: refused in place.
	b.run(
		chromedp.Navigate(s.URL+"/"),
		chromedp.WaitVisible(testid("signin-token")),
		chromedp.SendKeys(testid("signin-token"), "not-the-token"),
		chromedp.Click(testid("signin-submit")),
		chromedp.WaitVisible(testid("signin-error")),
	)
	b.shot("wrong-token")
	b.signIn(s)
	b.waitText("main h1", "")
	b.shot("signed-in")

	// Every API call carries the session and the CSRF header, none the
	// token; no URL and no page holds the token.
	eventually.True(t, 30*time.Second, "the console calls /v1 with its session", func() bool {
		for _, r := range b.requests() {
			if strings.Contains(r.URL, "/v1/") && !strings.HasSuffix(r.URL, "/v1/session") && r.Status == 200 {
				return true
			}
		}
		return false
	})
	for _, r := range b.requests() {
		if strings.Contains(r.URL, s.Token) {
			t.Errorf("the token is in a URL: %s", r.URL)
		}
		if r.Header("Authorization") != "" {
			t.Errorf("%s %s carries an Authorization header", r.Method, r.URL)
		}
		if !strings.HasPrefix(r.URL, s.URL+"/v1/") {
			continue
		}
		if r.Header("X-Stratus-CSRF") != "1" {
			t.Errorf("%s %s: no X-Stratus-CSRF: 1", r.Method, r.URL)
		}
		signIn := r.Method == "POST" && r.URL == s.URL+"/v1/session"
		if !signIn && r.Status != 401 && !strings.Contains(r.Header("Cookie"), "stratus_session=") {
			t.Errorf("%s %s (%d) carries no session: headers %v", r.Method, r.URL, r.Status, r.Headers)
		}
	}
	for _, expr := range []string{"document.documentElement.outerHTML", "JSON.stringify(localStorage)", "JSON.stringify(sessionStorage)", "document.cookie", "location.href"} {
		if v := browserGet(b, chromedp.Evaluate[string](expr)); strings.Contains(v, s.Token) {
			t.Errorf("%s holds the token", expr)
		}
	}

	// A cross-site page (http://localhost:PORT is another site than
	// http://127.0.0.1:PORT) posts a form and two fetches to the API.
	target := s.URL + "/v1/topics"
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><title>elsewhere</title>
<form id="f" method="POST" action="%[1]s" enctype="text/plain"><input name='{"name":"from-form","x":"' value='"}'></form>
<p id="out">running</p>
<script>
(async () => {
  const out = [];
  try { const r = await fetch(%[2]q, {method: 'POST', mode: 'no-cors', credentials: 'include', headers: {'Content-Type': 'text/plain'}, body: '{"name":"from-simple-fetch"}'}); out.push('simple:' + r.type); } catch (e) { out.push('simple:failed'); }
  try { const r = await fetch(%[2]q, {method: 'POST', credentials: 'include', headers: {'Content-Type': 'application/json', 'X-Stratus-CSRF': '1'}, body: '{"name":"from-cors-fetch"}'}); out.push('cors:' + r.status); } catch (e) { out.push('cors:failed'); }
  document.getElementById('out').textContent = 'done ' + out.join(' ');
})();
</script>`, target, target)
	}))
	t.Cleanup(evil.Close)
	elsewhere := strings.Replace(evil.URL, "127.0.0.1", "localhost", 1)
	b.run(chromedp.Navigate(elsewhere + "/"))
	b.waitText("#out", "done")
	text := browserGet(b, chromedp.Text(chromedp.CSS("#out")))
	t.Logf("cross-site page: %s", text)
	if strings.Contains(text, "cors:2") {
		t.Errorf("a cross-site page read the API's answer: %s", text)
	}
	// Submitted after the evaluation returns: the navigation it starts
	// ends the page's context.
	browserGet(b, chromedp.Evaluate[bool](`setTimeout(() => document.getElementById('f').submit(), 0), true`))
	eventually.True(t, 30*time.Second, "the cross-site form's POST is answered", func() bool {
		for _, r := range b.requests() {
			if r.URL == target && r.Method == "POST" && r.Status != 0 {
				return true
			}
		}
		return false
	})
	// A record only: the page the form navigated to may still be
	// loading, which can stall a screenshot (seen once in a fresh-clone
	// run); what is checked is the POST's answer below.
	b.shotIfOpen("cross-site-form")
	for _, r := range b.requests() {
		if r.URL != target || r.Method != "POST" {
			continue
		}
		t.Logf("cross-site POST %s: %d, Cookie %q, Origin %q, Sec-Fetch-Site %q", r.URL, r.Status, r.Header("Cookie"), r.Header("Origin"), r.Header("Sec-Fetch-Site"))
		if r.Status != 0 && r.Status != 401 && r.Status != 403 {
			t.Errorf("a cross-site POST was answered %d", r.Status)
		}
		if strings.Contains(r.Header("Cookie"), "stratus_session") {
			t.Errorf("a cross-site POST carried the session (status %d)", r.Status)
		}
	}
	for _, name := range []string{"from-form", "from-simple-fetch", "from-cors-fetch"} {
		if resp, body := s.do("GET", "/v1/topics/"+name, nil, true); resp.StatusCode != 404 {
			t.Errorf("a cross-site request made topic %s: %d %s", name, resp.StatusCode, body)
		}
	}

	// A function's page on the console's own origin runs in an opaque
	// origin: no cookie, no API answer, no write.
	b.run(chromedp.Navigate(s.URL + "/fn/page/"))
	if origin := browserGet(b, chromedp.Evaluate[string](`String(window.origin)`)); origin != "null" {
		t.Errorf("a function's page runs in origin %q, want an opaque one (null)", origin)
	}
	b.waitText("#out", "done")
	text = browserGet(b, chromedp.Text(chromedp.CSS("#out")))
	t.Logf("function's page: %s", text)
	if !strings.Contains(text, "read:failed") || !strings.Contains(text, "write:failed") || strings.Contains(text, "stratus_session") {
		t.Errorf("a function's page acted on the API: %s", text)
	}
	if resp, body := s.do("GET", "/v1/topics/from-page", nil, true); resp.StatusCode != 404 {
		t.Errorf("a function's page made a topic: %d %s", resp.StatusCode, body)
	}
	b.shot("function-page")
	// A popup of the console that the function's page opens is a browsing
	// context group of its own (Cross-Origin-Opener-Policy): the page's
	// handle on it reads as closed.
	popup := browserGet(b, chromedp.Evaluate[string](`(async () => {
  const w = window.open('/', '_blank');
  if (!w) return 'blocked';
  // A background tab's timers may be slowed down: the bound is in time.
  for (const end = Date.now() + 15000; Date.now() < end; ) {
    if (w.closed) return 'severed';
    await new Promise(r => setTimeout(r, 50));
  }
  return 'kept';
})()`, chromedp.EvalAwaitPromise, func(p *runtime.EvaluateParams) { p.UserGesture = new(true) }))
	if popup != "severed" {
		t.Errorf("a function's page opened the console in a popup: its handle was %s, want severed", popup)
	}

	// Sign out from the console: its session is gone.
	b.run(chromedp.Navigate(s.URL + "/"))
	b.run(chromedp.WaitVisible(testid("signout")), chromedp.Click(testid("signout")), chromedp.WaitVisible(testid("signin-token")))
	var last string
	for _, r := range b.requests() {
		if c := r.Header("Cookie"); strings.Contains(c, "stratus_session=") {
			last = c
		}
	}
	if last == "" {
		t.Fatal("no request carried the session")
	}
	for part := range strings.SplitSeq(last, "; ") {
		if strings.HasPrefix(part, "stratus_session=") {
			if resp, body := s.do("GET", "/v1/functions", nil, false, "Cookie", part); resp.StatusCode != 401 {
				t.Errorf("after sign-out, the browser's old session: %d %s", resp.StatusCode, body)
			}
		}
	}
	b.shot("signed-out")
}

// jarCookies are what the "jar" function and service set: a session
// cookie of the console's name and path (of a session's form, so that
// it would be looked up), and a large cookie for the whole host.
var jarCookies = []string{
	"stratus_session=" + strings.Repeat("A", 43) + "; Path=/v1/; HttpOnly",
	"big=" + strings.Repeat("x", 4000) + "; Path=/",
}

// jarService is a service that answers every request with jarCookies
// and Clear-Site-Data.
const jarService = `package main

import (
	"net/http"
	"os"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		for _, c := range []string{%q, %q} {
			w.Header().Add("Set-Cookie", c)
		}
		w.Header().Set("Clear-Site-Data", ` + "`" + `"cookies"` + "`" + `)
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("jar"))
	})
	if err := http.ListenAndServe(":"+port, nil); err != nil {
		panic(err)
	}
}
`

// jarImageTar builds jarService into an image tagged tag and returns its
// `docker save` tarball.
func jarImageTar(t *testing.T, tag string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), fmt.Appendf(nil, jarService, jarCookies[0], jarCookies[1]), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-ldflags=-s -w", "-o", "jar", "main.go")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GO111MODULE=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the jar service: %v\n%s", err, out)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "jar"))
	if err != nil {
		t.Fatal(err)
	}
	layer, err := layerOf([]layerFile{
		{Name: "app/", Mode: 0o755},
		{Name: "app/jar", Mode: 0o755, Body: bin},
		{Name: "etc/", Mode: 0o755},
		{Name: "etc/passwd", Mode: 0o644, Body: []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n")},
		{Name: "etc/group", Mode: 0o644, Body: []byte("root:x:0:\nnogroup:x:65534:\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	return writeImageTar(t, imageOf(t, ggcr.Config{
		Entrypoint: []string{"/app/jar"}, ExposedPorts: map[string]struct{}{"8080/tcp": {}}, Env: []string{"PATH=/app"},
	}, layer), tag)
}

// TestConsoleSecurityCookies: while the console is on, a function (jar)
// or a service (jarsvc) answering on its path route (/fn/NAME, /svc/NAME) sets no
// cookie on the console's host and clears none of its data, and the
// operator's session keeps working in a browser that visited them; on
// the service's host route (its own origin), and with --console=false,
// the cookies pass as the workload set them.
func TestConsoleSecurityCookies(t *testing.T) {
	needTool(t, "python3")
	needTool(t, "runc")
	code := writeFiles(t, map[string]string{
		"jar.py": fmt.Sprintf(`def handler(event, context):
    return {"statusCode": 200,
            "headers": {"content-type": "text/plain", "Set-Cookie": "h=1; Path=/", "Clear-Site-Data": "\"cookies\""},
            "cookies": [%q, %q],
            "body": "jar"}
`, jarCookies[0], jarCookies[1]),
	})
	image := jarImageTar(t, "jar:v1")
	for _, on := range []bool{true, false} {
		s := startServer(t, append(append([]string{}, fastServices...), fmt.Sprintf("--console=%v", on))...)
		s.mustCLI("deploy", "jar", "--runtime", "python3", "--handler", "jar.handler", "--auth", "none", code)
		s.mustCLI("image", "import", image)
		s.mustCLI("service", "deploy", "jarsvc", "--image", "jar:v1", "--auth", "none", "--min", "1")

		check := func(route string, resp *http.Response, body []byte, wantCookies []string, wantClear, sandboxed bool) {
			t.Helper()
			what := fmt.Sprintf("console %v: %s", on, route)
			if resp.StatusCode != 200 || string(body) != "jar" {
				t.Fatalf("%s: %d %.200s", what, resp.StatusCode, body)
			}
			if got := resp.Header.Values("Set-Cookie"); !slices.Equal(got, wantCookies) {
				t.Errorf("%s: Set-Cookie %.300q, want %.300q", what, got, wantCookies)
			}
			if got := resp.Header.Get("Clear-Site-Data"); (got != "") != wantClear {
				t.Errorf("%s: Clear-Site-Data %q", what, got)
			}
			if got := slices.Contains(resp.Header.Values("Content-Security-Policy"), sandboxCSP); got != sandboxed {
				t.Errorf("%s: Content-Security-Policy %q", what, resp.Header.Values("Content-Security-Policy"))
			}
		}
		fnCookies := append([]string{"h=1; Path=/"}, jarCookies...)
		if on {
			fnCookies = nil
		}
		resp, body := s.do("GET", "/fn/jar/", nil, false)
		check("/fn/jar/", resp, body, fnCookies, !on, on)
		svcCookies := jarCookies
		if on {
			svcCookies = nil
		}
		eventually.True(t, 30*time.Second, "the jarsvc service answers", func() bool {
			resp, _ := s.do("GET", "/svc/jarsvc/", nil, false)
			return resp.StatusCode == 200
		})
		resp, body = s.do("GET", "/svc/jarsvc/", nil, false)
		check("/svc/jarsvc/", resp, body, svcCookies, !on, on)
		// The host route is the service's own origin: its cookies pass.
		req, err := http.NewRequest("GET", s.URL+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "jarsvc.localhost"
		hresp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(hresp.Body)
		hresp.Body.Close()
		check("jarsvc.localhost/", hresp, body, jarCookies, true, false)
		if !on {
			continue
		}

		// In a browser: after a visit to both path routes the console's
		// session is the browser's only cookie for the API, unchanged,
		// and the console still works with it.
		cookie := sessionCookie(t, s)
		if resp, body := s.do("GET", "/v1/functions", nil, false, "Cookie", cookie); resp.StatusCode != 200 {
			t.Fatalf("GET /v1/functions with the cookie: %d %s", resp.StatusCode, body)
		}
		b := newBrowser(t)
		b.signIn(s)
		before := browserCookies(b, s.URL+"/v1/functions", s.URL+"/")
		if len(before) != 1 || before[0].Name != "stratus_session" {
			t.Fatalf("signed in: cookies %v", before)
		}
		for _, p := range []string{"/fn/jar/", "/svc/jarsvc/", "/fn/jar/v1/", "/svc/jarsvc/v1/"} {
			b.run(chromedp.Navigate(s.URL + p))
			b.waitText("body", "jar")
		}
		after := browserCookies(b, s.URL+"/v1/functions", s.URL+"/")
		if len(after) != 1 || after[0].Name != "stratus_session" || after[0].Value != before[0].Value {
			for _, c := range after {
				t.Errorf("after the path routes: cookie %s=%.40s; Path=%s", c.Name, c.Value, c.Path)
			}
		}
		b.run(chromedp.Navigate(s.URL+"/"), chromedp.WaitVisible(testid("signout")))
		b.shot("signed-in-after-path-routes")
	}
}

// browserCookies returns the browser's cookies for urls.
func browserCookies(b *browser, urls ...string) []*network.Cookie {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStep)
	defer cancel()
	var out []*network.Cookie
	err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		r, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: urls})
		if err != nil {
			return err
		}
		out = r.Cookies
		return nil
	}))
	if err != nil {
		b.t.Fatalf("read cookies: %v", err)
	}
	return out
}
