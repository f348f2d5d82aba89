package lambdaapi

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

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

// withBody is a request with body, its Content-Length length (-1:
// unknown).
func withBody(method, path, body string, length int64) (*http.Request, *watchedBody) {
	r := httptest.NewRequest(method, path, nil)
	wb := &watchedBody{r: strings.NewReader(body)}
	r.Body, r.ContentLength = wb, length
	return r, wb
}

// TestBodyNotReadBeforeAuthentication: a request without the token or a
// signature that passes the checks needing no body is refused before a
// byte of its body is read.
func TestBodyNotReadBeforeAuthentication(t *testing.T) {
	var verified []byte
	ta := newTestAPI(t, func(c *Config) {
		c.Precheck = func(r *http.Request) error {
			switch {
			case strings.Contains(r.Header.Get("Authorization"), "Credential=UNKNOWN"):
				return &sigv4.Error{Code: sigv4.CodeUnrecognizedClient, Message: "The security token included in the request is invalid."}
			case strings.Contains(r.Header.Get("Authorization"), "Credential=BROKEN"):
				return errors.New("key store is down")
			}
			return nil
		}
		c.Verify = func(r *http.Request, body []byte) error {
			verified = body
			return nil
		}
	})
	body := `{"FunctionName":"f"}`
	for _, tc := range []struct {
		name, auth, typ string
		status          int
	}{
		{"nothing", "", "MissingAuthenticationTokenException", 403},
		{"another token", "Bearer nope", "UnrecognizedClientException", 403},
		{"unknown key", "AWS4-HMAC-SHA256 Credential=UNKNOWN/x, SignedHeaders=host, Signature=00", sigv4.CodeUnrecognizedClient, 403},
		{"key store down", "AWS4-HMAC-SHA256 Credential=BROKEN/x, SignedHeaders=host, Signature=00", "ServiceException", 500},
	} {
		r, wb := withBody("POST", "/2015-03-31/functions", body, DefaultMaxBody)
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		w := httptest.NewRecorder()
		ta.ServeHTTP(w, r)
		wantError(t, w, tc.status, tc.typ)
		if wb.read != 0 {
			t.Errorf("%s: %d bytes of the body read before refusing it", tc.name, wb.read)
		}
	}

	// A signature that passes the pre-check is verified over the body.
	r, wb := withBody("GET", "/2015-03-31/functions", "{}", 2)
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=GOOD/x, SignedHeaders=host, Signature=00")
	w := httptest.NewRecorder()
	ta.ServeHTTP(w, r)
	if w.Code != 200 || wb.read != 2 || string(verified) != "{}" {
		t.Errorf("a signed request: %d %s, read %d, verified %q", w.Code, w.Body, wb.read, verified)
	}
}

// TestBodyLimitByOperation: an Invoke's body is bounded by MaxPayload,
// the code uploads' by MaxBody and any other operation's by maxSmallBody;
// a Content-Length over the bound is answered 413 without reading.
func TestBodyLimitByOperation(t *testing.T) {
	const maxBody, maxPayload = 4 * maxSmallBody, 2 * maxSmallBody
	ta := newTestAPI(t, func(c *Config) { c.MaxBody, c.MaxPayload = maxBody, maxPayload })
	ta.createPython(t, "f", nil)
	for _, tc := range []struct {
		method, path string
		limit        int64
		typ          string
	}{
		{"PUT", "/2015-03-31/functions/f/configuration", maxSmallBody, "RequestEntityTooLargeException"},
		{"POST", "/2015-03-31/functions/f/versions", maxSmallBody, "RequestEntityTooLargeException"},
		{"POST", "/2015-03-31/functions/f/invocations", maxPayload, "RequestTooLargeException"},
		{"POST", "/2015-03-31/functions", maxBody, "RequestEntityTooLargeException"},
		{"PUT", "/2015-03-31/functions/f/code", maxBody, "RequestEntityTooLargeException"},
	} {
		// One byte over, with no length: read up to the bound.
		r, _ := withBody(tc.method, tc.path, strings.Repeat(" ", int(tc.limit)+1), -1)
		r.Header.Set("Authorization", "Bearer "+testToken)
		w := httptest.NewRecorder()
		ta.ServeHTTP(w, r)
		wantError(t, w, 413, tc.typ)

		// A length over the bound: not read at all.
		r, wb := withBody(tc.method, tc.path, "{}", tc.limit+1)
		r.Header.Set("Authorization", "Bearer "+testToken)
		w = httptest.NewRecorder()
		ta.ServeHTTP(w, r)
		wantError(t, w, 413, tc.typ)
		if wb.read != 0 {
			t.Errorf("%s %s: %d bytes read of a body whose length is over the bound", tc.method, tc.path, wb.read)
		}

		// At the bound: not refused for its size.
		r, _ = withBody(tc.method, tc.path, strings.Repeat(" ", int(tc.limit)), tc.limit)
		r.Header.Set("Authorization", "Bearer "+testToken)
		w = httptest.NewRecorder()
		ta.ServeHTTP(w, r)
		if w.Code == 413 {
			t.Errorf("%s %s: a body at the bound answered 413 %s", tc.method, tc.path, w.Body)
		}
	}
}

// TestBodyNotSizedByContentLength: a Content-Length is not memory
// reserved before the bytes arrive.
func TestBodyNotSizedByContentLength(t *testing.T) {
	ta := newTestAPI(t)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 4 {
		r, _ := withBody("POST", "/2015-03-31/functions", "{}", DefaultMaxBody)
		r.Header.Set("Authorization", "Bearer "+testToken)
		ta.ServeHTTP(httptest.NewRecorder(), r)
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 8<<20 {
		t.Errorf("4 requests of 2 bytes claiming %d allocated %d bytes", DefaultMaxBody, got)
	}
}

// TestReadBody: the body is read whole whatever its Content-Length says
// (exact, unknown, or less than sent), and never past the bound.
func TestReadBody(t *testing.T) {
	a := newTestAPI(t, func(c *Config) { c.MaxPayload = 1000 })
	op := &operation{Name: "Invoke"}
	for _, tc := range []struct {
		name   string
		body   string
		length int64
		want   string
		err    string
	}{
		{"exact length", `{"a":1}`, 7, `{"a":1}`, ""},
		{"unknown length", strings.Repeat("x", 700), -1, strings.Repeat("x", 700), ""},
		{"short length", strings.Repeat("y", 600), 2, strings.Repeat("y", 600), ""},
		{"empty", "", 0, "", ""},
		{"at the bound", strings.Repeat("z", 1000), 1000, strings.Repeat("z", 1000), ""},
		{"over the bound, short length", strings.Repeat("z", 1001), 10, "", "RequestTooLargeException"},
		{"over the bound, no length", strings.Repeat("z", 1001), -1, "", "RequestTooLargeException"},
	} {
		r, _ := withBody("POST", "/2015-03-31/functions/f/invocations", tc.body, tc.length)
		got, err := a.readBody(&call{r: r, op: op})
		if tc.err != "" {
			var e *Error
			if !errors.As(err, &e) || e.Type != tc.err {
				t.Errorf("%s: got %q, %v; want %s", tc.name, got, err, tc.err)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: got %d bytes, %v; want %d bytes", tc.name, len(got), err, len(tc.want))
		}
	}
}
