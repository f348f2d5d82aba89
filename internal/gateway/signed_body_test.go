package gateway

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/sigv4"
)

// watchedBody is a request body that counts the bytes read from it.
type watchedBody struct {
	r    io.Reader
	read int
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.read += n
	return n, err
}

func (b *watchedBody) Close() error { return nil }

// fakePrecheck refuses a credential of UNKNOWN and fails for BROKEN.
func fakePrecheck(r *http.Request) error {
	switch a := r.Header.Get("Authorization"); {
	case strings.Contains(a, "Credential=UNKNOWN"):
		return &sigv4.Error{Code: sigv4.CodeUnrecognizedClient, Message: "unknown key"}
	case strings.Contains(a, "Credential=BROKEN"):
		return errors.New("key store is down")
	}
	return nil
}

// TestSignedRouteChecksBeforeBody: a function route deployed with auth
// "signed" refuses a request without a signature, or whose signature
// fails the checks that need no body, before reading a byte of it.
func TestSignedRouteChecksBeforeBody(t *testing.T) {
	fns := &signedFunctions{}
	var verified []byte
	g := New(Config{Invoker: fns, Queue: noQueue{}, Heads: fns, Token: NewToken(secret),
		Verify:   func(r *http.Request, body []byte) error { verified = body; return nil },
		Precheck: fakePrecheck,
	})
	mux := http.NewServeMux()
	mux.HandleFunc("/fn/{name}", g.ServeFunctionURL)
	const body = `{"order": 42}`
	for _, tc := range []struct {
		name, auth string
		code, read int
	}{
		{"nothing", "", 403, 0},
		{"another token", "Bearer nope", 403, 0},
		{"another scheme", "Basic dXNlcjpwdw==", 403, 0},
		{"unknown key", "AWS4-HMAC-SHA256 Credential=UNKNOWN/x, SignedHeaders=host, Signature=00", 403, 0},
		{"key store down", "AWS4-HMAC-SHA256 Credential=BROKEN/x, SignedHeaders=host, Signature=00", 500, 0},
		{"passes the pre-check", "AWS4-HMAC-SHA256 Credential=GOOD/x, SignedHeaders=host, Signature=00", 200, len(body)},
	} {
		verified, fns.events = nil, nil
		r := httptest.NewRequest("POST", "/fn/iam", nil)
		wb := &watchedBody{r: strings.NewReader(body)}
		r.Body, r.ContentLength = wb, int64(len(body))
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		if w.Code != tc.code || wb.read != tc.read {
			t.Errorf("%s: %d %s, %d bytes read; want %d, %d read", tc.name, w.Code, w.Body, wb.read, tc.code, tc.read)
		}
		if tc.code == 200 && string(verified) != body {
			t.Errorf("%s: verified over %q", tc.name, verified)
		}
	}
}

// TestReadBodyNotSizedByContentLength: a Content-Length is not memory
// reserved before the bytes arrive.
func TestReadBodyNotSizedByContentLength(t *testing.T) {
	g := New(Config{Invoker: &signedFunctions{}, Queue: noQueue{}, Heads: &signedFunctions{}})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 4 {
		r := httptest.NewRequest("POST", "/fn/f", strings.NewReader("{}"))
		r.ContentLength = DefaultMaxEvent
		b, err := g.readBody(r)
		if err != nil || string(b) != "{}" {
			t.Fatalf("readBody: %q %v", b, err)
		}
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 2<<20 {
		t.Errorf("4 bodies of 2 bytes claiming %d allocated %d bytes", DefaultMaxEvent, got)
	}
	// A body as long as it claims, and one longer than the limit.
	r := httptest.NewRequest("POST", "/fn/f", strings.NewReader(strings.Repeat("x", 100<<10)))
	if b, err := g.readBody(r); err != nil || len(b) != 100<<10 {
		t.Errorf("a 100 KiB body: %d bytes, %v", len(b), err)
	}
	r = httptest.NewRequest("POST", "/fn/f", strings.NewReader(strings.Repeat("x", int(DefaultMaxEvent)+1)))
	r.ContentLength = -1
	if _, err := g.readBody(r); err == nil {
		t.Error("a body over the limit: no error")
	}
}

// TestBoundBodiesLambdaUploads: the Lambda API's code uploads get
// UploadTimeout with the token or a signature that passes the pre-check,
// and the read timeout otherwise.
func TestBoundBodiesLambdaUploads(t *testing.T) {
	const good = "AWS4-HMAC-SHA256 Credential=GOOD/x, SignedHeaders=host, Signature=00"
	const unknown = "AWS4-HMAC-SHA256 Credential=UNKNOWN/x, SignedHeaders=host, Signature=00"
	for _, tc := range []struct {
		method, path, auth string
		precheck           func(*http.Request) error
		upload             bool
	}{
		{"POST", "/2015-03-31/functions", "Bearer tok", nil, true},
		{"PUT", "/2015-03-31/functions/f/code", "Bearer tok", nil, true},
		{"PUT", "/2015-03-31/functions/arn:aws:lambda:local:000000000000:function:f/code", "Bearer tok", nil, true},
		{"POST", "/2015-03-31/functions", good, fakePrecheck, true},
		{"PUT", "/2015-03-31/functions/f/code", good, fakePrecheck, true},
		{"POST", "/2015-03-31/functions", unknown, fakePrecheck, false},
		{"POST", "/2015-03-31/functions", "AWS4-HMAC-SHA256 Credential=BROKEN/x", fakePrecheck, false},
		{"POST", "/2015-03-31/functions", good, nil, false},
		{"POST", "/2015-03-31/functions", "", fakePrecheck, false},
		{"POST", "/2015-03-31/functions", "Bearer nope", fakePrecheck, false},
		{"PUT", "/2015-03-31/functions/f/configuration", good, fakePrecheck, false},
		{"POST", "/2015-03-31/functions/f/invocations", "Bearer tok", fakePrecheck, false},
		{"PUT", "/2015-03-31/functions//code", "Bearer tok", nil, false},
		{"PUT", "/2015-03-31/functions/a/b/code", "Bearer tok", nil, false},
		// The native upload takes the token only.
		{"PUT", "/v1/functions/f", good, fakePrecheck, false},
		{"PUT", "/v1/functions/f", "Bearer tok", fakePrecheck, true},
	} {
		r := httptest.NewRequest(tc.method, tc.path, strings.NewReader("x"))
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		var got time.Duration
		h := BoundBodies(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got = r.Body.(*boundBody).limit
		}), time.Second, NewToken("tok"), tc.precheck)
		h.ServeHTTP(httptest.NewRecorder(), r)
		want := time.Second
		if tc.upload {
			want = UploadTimeout
		}
		if got != want {
			t.Errorf("%s %s (auth %q, precheck %v): bound %s, want %s", tc.method, tc.path, tc.auth, tc.precheck != nil, got, want)
		}
	}
}
