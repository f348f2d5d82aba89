package httpevent

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files")

var testTime = time.Date(2024, 3, 12, 19, 3, 58, 123e6, time.UTC)

func testMeta() Meta {
	return Meta{RawPath: "/my/path", RequestID: "req-1", APIID: "hello", Time: testTime}
}

// wantEvent is the event for a bare GET of http://example.com/fn/hello/my/path
// from httptest.NewRequest with testMeta.
func wantEvent() events.APIGatewayV2HTTPRequest {
	return events.APIGatewayV2HTTPRequest{
		Version:  "2.0",
		RouteKey: "$default",
		RawPath:  "/my/path",
		Headers: map[string]string{
			"host":              "example.com",
			"x-forwarded-for":   "192.0.2.1",
			"x-forwarded-proto": "http",
			"x-forwarded-port":  "80",
		},
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RouteKey:     "$default",
			AccountID:    "000000000000",
			Stage:        "$default",
			RequestID:    "req-1",
			APIID:        "hello",
			DomainName:   "example.com",
			DomainPrefix: "example",
			Time:         "12/Mar/2024:19:03:58 +0000",
			TimeEpoch:    testTime.UnixMilli(),
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{
				Method:   "GET",
				Path:     "/my/path",
				Protocol: "HTTP/1.1",
				SourceIP: "192.0.2.1",
			},
		},
	}
}

func TestEvent(t *testing.T) {
	tests := []struct {
		name string
		req  func() *http.Request
		body string
		meta func(*Meta, *http.Request)
		want func(*events.APIGatewayV2HTTPRequest)
	}{
		{
			name: "bare GET",
			want: func(*events.APIGatewayV2HTTPRequest) {},
		},
		{
			name: "headers lower-cased, repeated joined by comma",
			req: func() *http.Request {
				r := httptest.NewRequest("GET", "/fn/hello/my/path", nil)
				r.Header.Set("User-Agent", "curl/8.0")
				r.Header.Add("Accept", "text/html")
				r.Header.Add("Accept", "application/json")
				r.Header.Set("X-Custom-Thing", "a, b")
				return r
			},
			want: func(e *events.APIGatewayV2HTTPRequest) {
				e.Headers["user-agent"] = "curl/8.0"
				e.Headers["accept"] = "text/html,application/json"
				e.Headers["x-custom-thing"] = "a, b"
				e.RequestContext.HTTP.UserAgent = "curl/8.0"
			},
		},
		{
			name: "multiple cookie headers become cookies",
			req: func() *http.Request {
				r := httptest.NewRequest("GET", "/fn/hello/my/path", nil)
				r.Header.Add("Cookie", "a=1; b=2")
				r.Header.Add("Cookie", "c=3;d=4;  ;")
				return r
			},
			want: func(e *events.APIGatewayV2HTTPRequest) {
				e.Cookies = []string{"a=1", "b=2", "c=3", "d=4"}
			},
		},
		{
			name: "hop-by-hop headers dropped",
			req: func() *http.Request {
				r := httptest.NewRequest("GET", "/fn/hello/my/path", nil)
				r.Header.Set("Connection", "keep-alive, X-Secret")
				r.Header.Set("X-Secret", "hop")
				r.Header.Set("Keep-Alive", "timeout=5")
				r.Header.Set("Proxy-Authorization", "Basic x")
				r.Header.Set("Te", "trailers")
				r.Header.Set("Upgrade", "h2c")
				r.Header.Set("Transfer-Encoding", "chunked")
				r.Header.Set("X-Kept", "yes")
				return r
			},
			want: func(e *events.APIGatewayV2HTTPRequest) {
				e.Headers["x-kept"] = "yes"
			},
		},
		{
			name: "query parameters",
			req: func() *http.Request {
				return httptest.NewRequest("GET", "/fn/hello/my/path?a=1&b=x+y&a=2&flag&c=%2F%20&bad=%zz&&=novalue&d=", nil)
			},
			want: func(e *events.APIGatewayV2HTTPRequest) {
				e.RawQueryString = "a=1&b=x+y&a=2&flag&c=%2F%20&bad=%zz&&=novalue&d="
				e.QueryStringParameters = map[string]string{
					"a": "1,2", "b": "x y", "flag": "", "c": "/ ", "bad": "%zz", "d": "",
				}
			},
		},
		{
			name: "empty query",
			req: func() *http.Request {
				return httptest.NewRequest("GET", "/fn/hello/my/path?", nil)
			},
			want: func(*events.APIGatewayV2HTTPRequest) {},
		},
		{
			name: "non-UTF-8 path is percent-encoded",
			meta: func(m *Meta, _ *http.Request) { m.RawPath = "/caf\xe9/a b/\x00/é" },
			want: func(e *events.APIGatewayV2HTTPRequest) {
				e.RawPath = "/caf%E9/a%20b/%00/é"
				e.RequestContext.HTTP.Path = e.RawPath
			},
		},
		{
			name: "empty path is slash",
			meta: func(m *Meta, _ *http.Request) { m.RawPath = "" },
			want: func(e *events.APIGatewayV2HTTPRequest) {
				e.RawPath = "/"
				e.RequestContext.HTTP.Path = "/"
			},
		},
		{
			name: "escaped path passes unchanged",
			meta: func(m *Meta, _ *http.Request) { m.RawPath = "/a%2Fb/%E9" },
			want: func(e *events.APIGatewayV2HTTPRequest) {
				e.RawPath = "/a%2Fb/%E9"
				e.RequestContext.HTTP.Path = e.RawPath
			},
		},
		{
			name: "JSON body is text",
			req:  post("application/json; charset=utf-8"),
			body: `{"a":"<b>&"}`,
			want: func(e *events.APIGatewayV2HTTPRequest) {
				setPost(e, "application/json; charset=utf-8")
				e.Body = `{"a":"<b>&"}`
			},
		},
		{
			name: "structured suffix is text",
			req:  post("Application/Vnd.Api+JSON"),
			body: `{}`,
			want: func(e *events.APIGatewayV2HTTPRequest) {
				setPost(e, "Application/Vnd.Api+JSON")
				e.Body = `{}`
			},
		},
		{
			name: "form body is text",
			req:  post("application/x-www-form-urlencoded"),
			body: "a=1&b=2",
			want: func(e *events.APIGatewayV2HTTPRequest) {
				setPost(e, "application/x-www-form-urlencoded")
				e.Body = "a=1&b=2"
			},
		},
		{
			name: "binary body is base64",
			req:  post("image/png"),
			body: "\x89PNG\r\n",
			want: func(e *events.APIGatewayV2HTTPRequest) {
				setPost(e, "image/png")
				e.Body = "iVBORw0K"
				e.IsBase64Encoded = true
			},
		},
		{
			name: "text body that is not UTF-8 is base64",
			req:  post("text/plain; charset=iso-8859-1"),
			body: "caf\xe9",
			want: func(e *events.APIGatewayV2HTTPRequest) {
				setPost(e, "text/plain; charset=iso-8859-1")
				e.Body = "Y2Fm6Q=="
				e.IsBase64Encoded = true
			},
		},
		{
			name: "body without content type is base64",
			req:  post(""),
			body: "hi",
			want: func(e *events.APIGatewayV2HTTPRequest) {
				setPost(e, "")
				e.Body = "aGk="
				e.IsBase64Encoded = true
			},
		},
		{
			name: "HEAD",
			req: func() *http.Request {
				return httptest.NewRequest("HEAD", "/fn/hello/my/path", nil)
			},
			want: func(e *events.APIGatewayV2HTTPRequest) {
				e.RequestContext.HTTP.Method = "HEAD"
			},
		},
		{
			name: "TLS, host with port, an untrusted peer's forwarding headers replaced",
			req: func() *http.Request {
				r := httptest.NewRequest("GET", "https://fn.example.com:8443/fn/hello/my/path", nil)
				r.TLS = &tls.ConnectionState{}
				r.Header.Set("X-Forwarded-For", "203.0.113.7")
				r.Header.Set("X-Forwarded-Proto", "http")
				r.Header.Set("X-Forwarded-Host", "evil.example")
				r.Header.Set("X-Forwarded-Prefix", "/evil")
				r.Header.Set("Forwarded", "for=203.0.113.7")
				return r
			},
			want: func(e *events.APIGatewayV2HTTPRequest) {
				e.Headers["host"] = "fn.example.com:8443"
				e.Headers["x-forwarded-for"] = "192.0.2.1"
				e.Headers["x-forwarded-proto"] = "https"
				e.Headers["x-forwarded-port"] = "8443"

				e.RequestContext.DomainName = "fn.example.com:8443"
				e.RequestContext.DomainPrefix = "fn"
			},
		},
		{
			name: "a trusted proxy's forwarding headers are kept and appended to",
			req: func() *http.Request {
				r := httptest.NewRequest("GET", "/fn/hello/my/path", nil)
				r.Header.Set("X-Forwarded-For", "203.0.113.7")
				r.Header.Set("X-Forwarded-Proto", "https")
				r.Header.Set("X-Forwarded-Port", "443")
				r.Header.Set("X-Forwarded-Host", "app.example")
				r.Header.Set("Forwarded", `for=203.0.113.7;proto=https`)
				return r
			},
			meta: func(m *Meta, r *http.Request) {
				f := Resolve(r, PeerOf(r), "/fn/hello", func(a netip.Addr) bool { return a == netip.MustParseAddr("192.0.2.1") })
				m.Forward = &f
			},
			want: func(e *events.APIGatewayV2HTTPRequest) {
				e.Headers["x-forwarded-for"] = "203.0.113.7, 192.0.2.1"
				e.Headers["x-forwarded-proto"] = "https"
				e.Headers["x-forwarded-port"] = "443"
				e.Headers["x-forwarded-host"] = "app.example"
				e.Headers["x-forwarded-prefix"] = "/fn/hello"
				e.Headers["forwarded"] = "for=203.0.113.7;proto=https, for=192.0.2.1;host=example.com;proto=http"
				e.RequestContext.HTTP.SourceIP = "203.0.113.7"
			},
		},
		{
			name: "meta given",
			meta: func(m *Meta, _ *http.Request) {
				m.AccountID = "123456789012"
				m.Stage = "prod"
				m.DomainName = "127.0.0.1:9000"
				m.Forward = &Forward{Client: "198.51.100.9", For: "198.51.100.9", Proto: "http", Port: "80", Host: "example.com", Forwarded: "for=192.0.2.1;host=example.com;proto=http"}
			},
			want: func(e *events.APIGatewayV2HTTPRequest) {
				e.RequestContext.AccountID = "123456789012"
				e.RequestContext.Stage = "prod"
				e.RequestContext.DomainName = "127.0.0.1:9000"
				e.RequestContext.DomainPrefix = "127.0.0.1"
				e.RequestContext.HTTP.SourceIP = "198.51.100.9"
				e.Headers["x-forwarded-for"] = "198.51.100.9"
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/fn/hello/my/path", nil)
			if tt.req != nil {
				r = tt.req()
			}
			m := testMeta()
			if tt.meta != nil {
				tt.meta(&m, r)
			}
			b, err := Event(r, []byte(tt.body), m)
			if err != nil {
				t.Fatal(err)
			}
			var got events.APIGatewayV2HTTPRequest
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("unmarshal event: %v\n%s", err, b)
			}
			want := wantEvent()
			tt.want(&want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("event mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func post(contentType string) func() *http.Request {
	return func() *http.Request {
		r := httptest.NewRequest("POST", "/fn/hello/my/path", nil)
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		return r
	}
}

func setPost(e *events.APIGatewayV2HTTPRequest, contentType string) {
	e.RequestContext.HTTP.Method = "POST"
	if contentType != "" {
		e.Headers["content-type"] = contentType
	}
}

// TestEventShape pins the whole JSON document, including the members that
// must be absent (authentication, an empty body), against a golden file.
func TestEventShape(t *testing.T) {
	r := httptest.NewRequest("POST", "https://abc.lambda-url.example/fn/hello/my/path?p=1&p=2&q", strings.NewReader(""))
	r.Header.Set("Content-Type", "text/plain")
	r.Header.Set("User-Agent", "test/1.0")
	r.Header.Add("Cookie", "s=1; t=2")
	tests := []struct {
		name string
		body string
	}{
		{"event.golden.json", "hello <world> & all"},
		{"event-nobody.golden.json", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Event(r, []byte(tt.body), testMeta())
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := json.Indent(&out, b, "", "  "); err != nil {
				t.Fatalf("event is not JSON: %v\n%s", err, b)
			}
			out.WriteByte('\n')
			path := filepath.Join("testdata", tt.name)
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			// Compare parsed documents so that member order does not matter.
			var gotV, wantV any
			if err := json.Unmarshal(out.Bytes(), &gotV); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(want, &wantV); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantV, gotV); diff != "" {
				t.Errorf("event mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEventZeroTime(t *testing.T) {
	r := httptest.NewRequest("GET", "/fn/hello", nil)
	before := time.Now().UnixMilli()
	b, err := Event(r, nil, Meta{})
	if err != nil {
		t.Fatal(err)
	}
	var got events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if ms := got.RequestContext.TimeEpoch; ms < before || ms > time.Now().UnixMilli() {
		t.Errorf("timeEpoch = %d, want now", ms)
	}
	if got.RawPath != "/" {
		t.Errorf("rawPath = %q, want /", got.RawPath)
	}
}

func TestIsText(t *testing.T) {
	for ct, want := range map[string]bool{
		"text/plain":                        true,
		"TEXT/HTML; charset=utf-8":          true,
		"application/json":                  true,
		" application/json ;charset=utf-8":  true,
		"application/xml":                   true,
		"application/javascript":            true,
		"application/x-www-form-urlencoded": true,
		"application/ld+json":               true,
		"image/svg+xml":                     true,
		"application/octet-stream":          false,
		"multipart/form-data; boundary=x":   false,
		"":                                  false,
		"text/":                             false,
		"text":                              false,
		"application/+json":                 false,
		"application/jsonx":                 false,
	} {
		if got := isText(ct); got != want {
			t.Errorf("isText(%q) = %v, want %v", ct, got, want)
		}
	}
}

func BenchmarkEvent(b *testing.B) {
	r := httptest.NewRequest("POST", "/fn/hello/items?limit=10&sort=name", nil)
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("User-Agent", "Mozilla/5.0")
	r.Header.Set("Accept", "*/*")
	r.Header.Set("Accept-Encoding", "gzip, deflate, br")
	r.Header.Set("Authorization", "Bearer abc")
	r.Header.Set("Cookie", "session=abc; theme=dark")
	body := []byte(`{"name":"widget","count":3}`)
	m := testMeta()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Event(r, body, m); err != nil {
			b.Fatal(err)
		}
	}
}

// TestEventLargeRepeats guards against work quadratic in the number of
// repeated query keys or Connection tokens: a request of a few hundred
// kilobytes must map in milliseconds, not minutes.
func TestEventLargeRepeats(t *testing.T) {
	query := strings.Repeat("a=1&", 200_000)
	r := httptest.NewRequest("GET", "/fn/hello?"+query, nil)
	r.Header.Set("Connection", strings.Repeat("x-h, ", 50_000))
	for i := range 20_000 {
		r.Header.Set("X-H"+strconv.Itoa(i), "v")
	}
	b, err := Event(r, nil, testMeta())
	if err != nil {
		t.Fatal(err)
	}
	var got events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if n := len(got.QueryStringParameters["a"]); n != 2*200_000-1 {
		t.Errorf("len(a) = %d, want %d", n, 2*200_000-1)
	}
	if len(got.Headers) != 20_000+4 {
		t.Errorf("%d headers, want %d", len(got.Headers), 20_000+4)
	}
}
