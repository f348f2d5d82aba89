package console

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

func newTestServer(t *testing.T) *httptest.Server {
	t.Helper()
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	c.Route(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// checkSecurityHeaders fails unless h has the headers of every console
// answer.
func checkSecurityHeaders(t *testing.T, what string, h http.Header) {
	t.Helper()
	for k, want := range map[string]string{
		"Content-Security-Policy": Policy,
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
		"X-Frame-Options":         "DENY",
		// No window of another origin keeps a handle on the console's.
		"Cross-Origin-Opener-Policy": "same-origin",
	} {
		if got := h.Values(k); len(got) != 1 || got[0] != want {
			t.Errorf("%s: %s is %q, want %q", what, k, got, want)
		}
	}
}

func TestPolicyAllowsNothingInline(t *testing.T) {
	for directive := range strings.SplitSeq(Policy, ";") {
		if strings.Contains(directive, "unsafe-") || strings.Contains(directive, "*") {
			t.Errorf("the console's policy allows too much: %q", strings.TrimSpace(directive))
		}
	}
	if !strings.Contains(Policy, "script-src 'self';") || !strings.Contains(Policy, "frame-ancestors 'none'") {
		t.Errorf("policy %q", Policy)
	}
	if !strings.HasPrefix(SandboxPolicy, "sandbox ") || strings.Contains(SandboxPolicy, "allow-same-origin") {
		t.Errorf("the path routes' policy must sandbox them into an opaque origin: %q", SandboxPolicy)
	}
}

func TestServeIndex(t *testing.T) {
	srv := newTestServer(t)
	want, err := fs.ReadFile(embedded, "assets/index.html")
	if err != nil {
		t.Fatal(err)
	}
	resp, body := get(t, srv.URL+"/")
	if resp.StatusCode != 200 || body != string(want) {
		t.Fatalf("GET /: %d, %d bytes; want 200 and index.html", resp.StatusCode, len(body))
	}
	checkSecurityHeaders(t, "GET /", resp.Header)
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("GET /: Cache-Control %q, want no-store", cc)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("GET /: Content-Type %q", ct)
	}
	// Only / itself is the page; other paths are not the console's.
	if resp, _ := get(t, srv.URL+"/index.html"); resp.StatusCode != 404 {
		t.Errorf("GET /index.html: %d, want 404", resp.StatusCode)
	}
}

func TestServeAssets(t *testing.T) {
	srv := newTestServer(t)
	n := 0
	err := fs.WalkDir(embedded, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		want, err := fs.ReadFile(embedded, p)
		if err != nil {
			return err
		}
		url := srv.URL + "/ui/" + strings.TrimPrefix(p, "assets/")
		resp, body := get(t, url)
		if resp.StatusCode != 200 || body != string(want) {
			t.Errorf("GET %s: %d, %d bytes; want 200, %d bytes", url, resp.StatusCode, len(body), len(want))
			return nil
		}
		checkSecurityHeaders(t, url, resp.Header)
		if cc := resp.Header.Get("Cache-Control"); cc != "no-cache" {
			t.Errorf("GET %s: Cache-Control %q, want no-cache", url, cc)
		}
		switch {
		case strings.HasSuffix(p, ".js") && !strings.Contains(resp.Header.Get("Content-Type"), "javascript"),
			strings.HasSuffix(p, ".css") && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css"):
			t.Errorf("GET %s: Content-Type %q", url, resp.Header.Get("Content-Type"))
		}
		etag := resp.Header.Get("Etag")
		if len(etag) < 10 || etag[0] != '"' {
			t.Errorf("GET %s: ETag %q", url, etag)
			return nil
		}
		if resp, body := get(t, url, "If-None-Match", etag); resp.StatusCode != 304 || body != "" {
			t.Errorf("GET %s with its ETag: %d %q, want 304", url, resp.StatusCode, body)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 2 {
		t.Fatalf("only %d embedded files", n)
	}
	for _, p := range []string{"/ui/", "/ui/nope.js", "/ui/../console.go", "/ui/js", "/ui/%2e%2e/console.go"} {
		resp, body := get(t, srv.URL+p)
		if resp.StatusCode != 404 {
			t.Errorf("GET %s: %d %s, want 404", p, resp.StatusCode, body)
		}
		if resp.StatusCode == 404 && strings.HasPrefix(p, "/ui/") && resp.Request.URL.Path != "/console.go" {
			checkSecurityHeaders(t, "GET "+p, resp.Header)
		}
	}
	// Writes are not the console's.
	resp, err := http.Post(srv.URL+"/ui/js/app.js", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /ui/js/app.js: %d, want 405", resp.StatusCode)
	}
}

func TestNewWithoutIndex(t *testing.T) {
	if _, err := newFrom(fstest.MapFS{"assets/js/app.js": {Data: []byte("x")}}, Config{}); err == nil {
		t.Error("assets without index.html: no error")
	}
}
