// Package console serves Stratus's web console and keeps its sign-in
// sessions.
//
// The console is a page (GET /) and its assets (GET /ui/PATH), embedded
// in the binary from assets/ and read into memory once, at New: each
// asset's ETag is a hash of its content. The page talks to the server
// only through the public /v1 API, as any script could.
//
// Sessions (sessions.go) replace the bearer token in the browser: one
// sign-in with the token gives an HttpOnly, SameSite=Strict cookie that
// the /v1 routes take in place of the token, for cookie-borne requests
// that pass the same-origin rule of CheckSameOrigin.
//
// Every answer of the console carries Policy, a Content-Security-Policy
// that allows the console's own scripts and styles and nothing inline;
// the path routes of functions and services, which share the console's
// origin, get SandboxPolicy instead (see the gateway), so that what they
// serve runs in an opaque origin.
package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

//go:embed assets
var embedded embed.FS

// Policy is the Content-Security-Policy of every answer of the console:
// its own scripts, styles, images and API calls, nothing inline, no
// frame around it.
const Policy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// SandboxPolicy is the Content-Security-Policy added to the answers of
// the path routes of functions and services (/fn/NAME..., /svc/NAME...)
// while the console is served on their origin: a page served there runs
// in an opaque origin, so that it cannot act with the operator's session
// (it can still run scripts, submit forms, open popups).
const SandboxPolicy = "sandbox allow-scripts allow-forms allow-popups allow-popups-to-escape-sandbox allow-modals " +
	"allow-downloads allow-top-navigation-by-user-activation"

// Header values the answers share; net/http only reads them.
var (
	policyValue    = []string{Policy}
	nosniffValue   = []string{"nosniff"}
	noReferrer     = []string{"no-referrer"}
	denyValue      = []string{"DENY"}
	sameOrigin     = []string{"same-origin"}
	noStoreValue   = []string{"no-store"}
	noCacheValue   = []string{"no-cache"}
	headerPolicy   = http.CanonicalHeaderKey("Content-Security-Policy")
	headerNosniff  = http.CanonicalHeaderKey("X-Content-Type-Options")
	headerReferrer = http.CanonicalHeaderKey("Referrer-Policy")
	headerFrame    = http.CanonicalHeaderKey("X-Frame-Options")
	headerOpener   = http.CanonicalHeaderKey("Cross-Origin-Opener-Policy")
	headerCache    = http.CanonicalHeaderKey("Cache-Control")
)

// asset is one embedded file, ready to serve.
type asset struct {
	name string // its path under assets/
	body []byte
	etag string // a quoted hash of body
}

// Console serves the console's page and assets. It is immutable and safe
// for concurrent use.
type Console struct {
	index  asset
	assets map[string]asset // by path under assets/
	answer v1.Responder
}

// Config configures a Console; its zero value is ready to use.
type Config struct {
	// Log gets the failures answered 5xx; nil discards them.
	Log *slog.Logger
}

// New reads the embedded assets. It fails only if the binary was built
// without assets/index.html.
func New(cfg Config) (*Console, error) {
	return newFrom(embedded, cfg)
}

func newFrom(fsys fs.FS, cfg Config) (*Console, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	c := &Console{assets: make(map[string]asset), answer: v1.Responder{Log: cfg.Log}}
	root, err := fs.Sub(fsys, "assets")
	if err != nil {
		return nil, fmt.Errorf("console assets: %w", err)
	}
	err = fs.WalkDir(root, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(root, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		c.assets[p] = asset{name: p, body: b, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("console assets: %w", err)
	}
	index, ok := c.assets["index.html"]
	if !ok {
		return nil, fmt.Errorf("console assets: no index.html: %w", stratus.ErrNotFound)
	}
	c.index = index
	return c, nil
}

// Route registers the console's routes on mux: GET / (the page) and GET
// /ui/{path...} (the assets).
func (c *Console) Route(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", c.ServeIndex)
	mux.HandleFunc("GET /ui/{path...}", c.ServeAsset)
}

// setSecurityHeaders sets the headers every console answer carries.
// Cross-Origin-Opener-Policy: same-origin puts the console in a browsing
// context group of its own: a page of another origin (a function's page,
// sandboxed in an opaque origin) that opens the console in a popup, or
// that the console opened, keeps no handle on its window.
func setSecurityHeaders(h http.Header) {
	h[headerPolicy] = policyValue
	h[headerNosniff] = nosniffValue
	h[headerReferrer] = noReferrer
	h[headerFrame] = denyValue
	h[headerOpener] = sameOrigin
}

// ServeIndex answers the console's page, never cached (a new binary's
// page names the assets it goes with).
func (c *Console) ServeIndex(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	setSecurityHeaders(h)
	h[headerCache] = noStoreValue
	serve(w, r, c.index)
}

// ServeAsset answers the asset at /ui/{path}: revalidated at each use
// (no-cache), by its ETag. An unknown path is a 404.
func (c *Console) ServeAsset(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	setSecurityHeaders(h)
	a, ok := c.assets[r.PathValue("path")]
	if !ok {
		c.answer.Error(w, r, fmt.Errorf("console asset %q: %w", path.Clean("/ui/"+r.PathValue("path")), stratus.ErrNotFound))
		return
	}
	h[headerCache] = noCacheValue
	serve(w, r, a)
}

// serve answers a, or 304 to a request that names its ETag; the type
// comes from the name's extension.
func serve(w http.ResponseWriter, r *http.Request, a asset) {
	w.Header().Set("Etag", a.etag)
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
}
