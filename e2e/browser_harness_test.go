package e2e

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/stratus-run/stratus/internal/eventually"
)

// TestBrowserHarness checks the browser harness itself against pages
// of its own: it sees console errors, uncaught exceptions, CSP
// violations and the requests with their raw headers.
func TestBrowserHarness(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ok", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "c", Value: "v", Path: "/"})
		w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; connect-src 'self'")
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(`<!doctype html><title>ok</title><p id="p">hello world</p><script src="/ok.js"></script>`))
	})
	mux.HandleFunc("GET /ok.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		_, _ = w.Write([]byte(`fetch('/api', {method: 'POST', headers: {'X-Test': '1'}}).then(() => { document.getElementById('p').textContent = 'fetched'; });`))
	})
	mux.HandleFunc("POST /api", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("GET /bad", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'self'")
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(`<!doctype html><title>bad</title><script>console.log("inline ran")</script><script src="/bad.js"></script>`))
	})
	mux.HandleFunc("GET /bad.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		_, _ = w.Write([]byte(`console.error("expected console error"); throw new Error("expected exception");`))
	})
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)

	b := newBrowser(t)
	b.run(chromedp.Navigate(ts.URL + "/ok"))
	b.waitText("#p", "fetched")
	if got := b.problemsSoFar(); len(got) > 0 {
		t.Errorf("a clean page reported %q", got)
	}
	i := slices.IndexFunc(b.requests(), func(r observedRequest) bool { return strings.HasSuffix(r.URL, "/api") })
	if i < 0 {
		t.Fatalf("requests() has no POST /api: %+v", b.requests())
	}
	api := b.requests()[i]
	if api.Method != "POST" || api.Header("x-test") != "1" || api.Header("cookie") != "c=v" || api.Status != 204 {
		t.Errorf("POST /api observed as %+v", api)
	}
	b.shot("ok")

	b.run(chromedp.Navigate(ts.URL + "/bad"))
	b.waitText("title", "bad")
	want := []string{"expected console error", "expected exception", "CSP violation", "script-src"}
	for _, w := range want {
		b.allowErrors(w)
	}
	for _, w := range want[:3] {
		eventually.True(t, 10*time.Second, "the harness reports "+w, func() bool {
			return strings.Contains(strings.Join(b.problemsSoFar(), "\n"), w)
		})
	}
}
