package e2e

// Issue 17, items 2 to 5: what the gateway tells functions and services
// of the client (forwarding headers, with and without trusted proxies),
// function host routes and the name space they share with services, the
// generic 502 of public function URLs, and the messages of the 413 and
// of an unknown host.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/eventually"
)

// fidelityEcho is a Python function that answers its event as JSON,
// the length of its body for ?len, and raises at /boom.
const fidelityEcho = `import json

def handler(event, context):
    if event.get("rawQueryString") == "len":
        return {"statusCode": 200, "body": str(len(event.get("body") or ""))}
    if event.get("rawPath") == "/boom":
        raise ValueError("bad thing happened")
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(event)}
`

// fidelityEvent is what the tests read of an echoed event.
type fidelityEvent struct {
	RawPath        string            `json:"rawPath"`
	Headers        map[string]string `json:"headers"`
	RequestContext struct {
		HTTP struct {
			SourceIP string `json:"sourceIp"`
		} `json:"http"`
	} `json:"requestContext"`
}

// fidelityEchoed is what gosvc's /path answers.
type fidelityEchoed struct {
	Path    string      `json:"path"`
	Host    string      `json:"host"`
	Headers http.Header `json:"headers"`
}

// fsend sends a request to s with Host host ("" for the server's
// address) and the headers hdr (name, value pairs); token adds the
// bearer token.
func fsend(t *testing.T, s *server, method, host, path string, body []byte, token bool, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	if token {
		req.Header.Set("Authorization", "Bearer "+s.Token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	return s.roundTrip(req)
}

// startFidelityServer starts a server with args, the echo function
// deployed as "echo" (--auth none) and "priv" (token), and gosvc as the
// service "web" (--auth none, one replica).
func startFidelityServer(t *testing.T, args ...string) *server {
	t.Helper()
	needTool(t, "python3")
	s := startServicesServer(t, args...)
	code := writeFiles(t, map[string]string{"echo.py": fidelityEcho})
	s.mustCLI("deploy", "echo", "--runtime", "python3", "--handler", "echo.handler", "--auth", "none", code)
	s.mustCLI("deploy", "priv", "--runtime", "python3", "--handler", "echo.handler", code)
	s.mustCLI("service", "deploy", "web", "--image", "gosvc:v1", "--auth", "none", "--min", "1")
	return s
}

// spoofed are forwarding headers as a client or a proxy in front sends
// them.
var spoofed = []string{
	"X-Forwarded-For", "203.0.113.7",
	"X-Forwarded-Proto", "https",
	"X-Forwarded-Host", "app.example",
	"X-Forwarded-Port", "443",
	"X-Forwarded-Prefix", "/api",
	"Forwarded", "for=203.0.113.7;proto=https;host=app.example",
}

// TestFidelityForwardingUntrusted: without --trusted-proxies, every
// client's forwarding headers are replaced by what the server saw, for
// functions (event headers and sourceIp) and services (Forwarded
// included), and the prefix a path route cut off is X-Forwarded-Prefix.
func TestFidelityForwardingUntrusted(t *testing.T) {
	s := startFidelityServer(t)
	hostport := strings.TrimPrefix(s.URL, "http://")
	_, port, _ := strings.Cut(hostport, ":")

	resp, body := fsend(t, s, "GET", "", "/fn/echo/a/b", nil, false, spoofed...)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /fn/echo/a/b: %d %s\nserver log:\n%s", resp.StatusCode, body, s.Stderr())
	}
	ev := decode[fidelityEvent](t, body)
	want := map[string]string{
		"x-forwarded-for": "127.0.0.1", "x-forwarded-proto": "http", "x-forwarded-port": port,
		"x-forwarded-prefix": "/fn/echo",
	}
	for k, v := range want {
		if ev.Headers[k] != v {
			t.Errorf("function event header %s = %q, want %q", k, ev.Headers[k], v)
		}
	}
	for _, k := range []string{"forwarded", "x-forwarded-host"} {
		if v, ok := ev.Headers[k]; ok {
			t.Errorf("function event header %s = %q from an untrusted client, want none", k, v)
		}
	}
	if ev.RequestContext.HTTP.SourceIP != "127.0.0.1" || ev.RawPath != "/a/b" {
		t.Errorf("function event sourceIp %q rawPath %q, want 127.0.0.1 /a/b", ev.RequestContext.HTTP.SourceIP, ev.RawPath)
	}

	resp, body = fsend(t, s, "GET", "", "/svc/web/path/x", nil, false, spoofed...)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /svc/web/path/x: %d %s", resp.StatusCode, body)
	}
	got := decode[fidelityEchoed](t, body)
	wantSvc := map[string]string{
		"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": hostport,
		"X-Forwarded-Port": port, "X-Forwarded-Prefix": "/svc/web",
		"Forwarded": `for=127.0.0.1;host="` + hostport + `";proto=http`,
	}
	for k, v := range wantSvc {
		if g := strings.Join(got.Headers[k], ","); g != v {
			t.Errorf("service header %s = %q, want %q", k, g, v)
		}
	}

	// A host route cuts nothing off: no prefix, not even the client's.
	host := "web.localhost:" + port
	resp, body = fsend(t, s, "GET", host, "/path/y", nil, false, spoofed...)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s/path/y: %d %s", host, resp.StatusCode, body)
	}
	got = decode[fidelityEchoed](t, body)
	if p, ok := got.Headers["X-Forwarded-Prefix"]; ok {
		t.Errorf("host route: X-Forwarded-Prefix %q, want none", p)
	}
	if f := strings.Join(got.Headers["Forwarded"], ","); f != `for=127.0.0.1;host="`+host+`";proto=http` {
		t.Errorf("host route: Forwarded %q", f)
	}
	// Forwarded is there when the client sent none (the Knative contract).
	resp, body = fsend(t, s, "GET", "", "/svc/web/path/z", nil, false)
	if got := decode[fidelityEchoed](t, body); resp.StatusCode != 200 || len(got.Headers["Forwarded"]) != 1 {
		t.Errorf("no Forwarded sent: %d, the replica got %q", resp.StatusCode, got.Headers["Forwarded"])
	}
}

// TestFidelityForwardingTrusted: from a --trusted-proxies peer, the
// forwarding headers are kept and appended to, and the client is the
// one the chain names.
func TestFidelityForwardingTrusted(t *testing.T) {
	s := startFidelityServer(t, "--trusted-proxies", "127.0.0.1/32")
	hostport := strings.TrimPrefix(s.URL, "http://")
	own := `for=127.0.0.1;host="` + hostport + `";proto=http`

	resp, body := fsend(t, s, "GET", "", "/fn/echo/a", nil, false, spoofed...)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /fn/echo/a: %d %s", resp.StatusCode, body)
	}
	ev := decode[fidelityEvent](t, body)
	want := map[string]string{
		"x-forwarded-for": "203.0.113.7, 127.0.0.1", "x-forwarded-proto": "https", "x-forwarded-port": "443",
		"x-forwarded-host": "app.example", "x-forwarded-prefix": "/api/fn/echo",
		"forwarded": "for=203.0.113.7;proto=https;host=app.example, " + own,
	}
	for k, v := range want {
		if ev.Headers[k] != v {
			t.Errorf("function event header %s = %q, want %q", k, ev.Headers[k], v)
		}
	}
	if ev.RequestContext.HTTP.SourceIP != "203.0.113.7" {
		t.Errorf("function event sourceIp %q, want the client the proxy names", ev.RequestContext.HTTP.SourceIP)
	}
	// The rightmost untrusted address is the client, not a spoofed one
	// left of it.
	resp, body = fsend(t, s, "GET", "", "/fn/echo/a", nil, false, "X-Forwarded-For", "6.6.6.6, 198.51.100.2")
	if ev := decode[fidelityEvent](t, body); resp.StatusCode != 200 || ev.RequestContext.HTTP.SourceIP != "198.51.100.2" {
		t.Errorf("a chain with a spoofed head: %d sourceIp %q, want 198.51.100.2", resp.StatusCode, ev.RequestContext.HTTP.SourceIP)
	}

	resp, body = fsend(t, s, "GET", "", "/svc/web/path/x", nil, false, spoofed...)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /svc/web/path/x: %d %s", resp.StatusCode, body)
	}
	got := decode[fidelityEchoed](t, body)
	wantSvc := map[string]string{
		"X-Forwarded-For": "203.0.113.7, 127.0.0.1", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "app.example",
		"X-Forwarded-Port": "443", "X-Forwarded-Prefix": "/api/svc/web",
		"Forwarded": "for=203.0.113.7;proto=https;host=app.example, " + own,
	}
	for k, v := range wantSvc {
		if g := strings.Join(got.Headers[k], ","); g != v {
			t.Errorf("service header %s = %q, want %q", k, g, v)
		}
	}

	// A bad --trusted-proxies stops the server at start, naming it.
	r := s.cli("server", "--trusted-proxies", "10.0.0.1/8", "--data", t.TempDir(), "--listen", "127.0.0.1:0")
	if r.Code == 0 || !strings.Contains(r.Stderr, `trusted proxy "10.0.0.1/8"`) || !strings.Contains(r.Stderr, "10.0.0.0/8") {
		t.Errorf("server with a bad --trusted-proxies: exit %d: %s", r.Code, r.Stderr)
	}
}

// TestFidelityFunctionHostRoutes: NAME.<domain> reaches function NAME at
// the root of its URL with its route's auth; functions and services
// share the name space; an unknown host's 404 names it.
func TestFidelityFunctionHostRoutes(t *testing.T) {
	s := startFidelityServer(t)
	_, port, _ := strings.Cut(strings.TrimPrefix(s.URL, "http://"), ":")

	resp, body := fsend(t, s, "POST", "echo.localhost:"+port, "/users/7?x=1", []byte("hi"), false, "Content-Type", "text/plain")
	if resp.StatusCode != 200 {
		t.Fatalf("POST echo.localhost/users/7: %d %s", resp.StatusCode, body)
	}
	ev := decode[fidelityEvent](t, body)
	if ev.RawPath != "/users/7" || ev.Headers["host"] != "echo.localhost:"+port {
		t.Errorf("host route event: rawPath %q host %q", ev.RawPath, ev.Headers["host"])
	}
	if p, ok := ev.Headers["x-forwarded-prefix"]; ok {
		t.Errorf("host route event: x-forwarded-prefix %q, want none", p)
	}
	// The token function's host route wants the token, as /fn/priv.
	resp, body = fsend(t, s, "GET", "priv.localhost:"+port, "/", nil, false)
	wantAPIError(t, resp, body, 401, "UnauthorizedException", "")
	if resp, body := fsend(t, s, "GET", "PRIV.localhost:"+port, "/x", nil, true); resp.StatusCode != 200 || decode[fidelityEvent](t, body).RawPath != "/x" {
		t.Errorf("priv's host route with the token: %d %s", resp.StatusCode, body)
	}
	if resp, body := fsend(t, s, "GET", "web.localhost:"+port, "/path/q", nil, false); resp.StatusCode != 200 || decode[fidelityEchoed](t, body).Path != "/path/q" {
		t.Errorf("the service's host route beside the functions': %d %s", resp.StatusCode, body)
	}

	// One name space: a function may not take a service's name, nor the
	// reverse.
	code := writeFiles(t, map[string]string{"echo.py": fidelityEcho})
	r := s.cli("deploy", "web", "--runtime", "python3", "--handler", "echo.handler", code)
	if r.Code == 0 || !strings.Contains(r.Stderr, "service") || !strings.Contains(r.Stderr, "web") {
		t.Errorf("a function named like a service: exit %d: %s", r.Code, r.Stderr)
	}
	r = s.cli("service", "deploy", "echo", "--image", "gosvc:v1")
	if r.Code == 0 || !strings.Contains(r.Stderr, "function") || !strings.Contains(r.Stderr, "echo") {
		t.Errorf("a service named like a function: exit %d: %s", r.Code, r.Stderr)
	}
	spec, _ := json.Marshal(map[string]any{"image": "gosvc:v1"})
	resp, body = s.do("PUT", "/v1/services/echo", spec, true)
	wantAPIError(t, resp, body, http.StatusConflict, "ResourceConflictException", "function")

	// Host routes are lower case: a name with capitals has none (its
	// /fn route works).
	s.mustCLI("deploy", "Caps", "--runtime", "python3", "--handler", "echo.handler", "--auth", "none", code)
	for _, host := range []string{"Caps.localhost:" + port, "caps.localhost:" + port} {
		resp, body = fsend(t, s, "GET", host, "/x", nil, false)
		wantAPIError(t, resp, body, 404, "ResourceNotFoundException", "host")
	}
	if resp, body := fsend(t, s, "GET", "", "/fn/Caps/x", nil, false); resp.StatusCode != 200 || decode[fidelityEvent](t, body).RawPath != "/x" {
		t.Errorf("/fn/Caps/x: %d %s", resp.StatusCode, body)
	}
	// A service's tag keeps its host (TAG-NAME) from a function of that
	// name, which keeps its /fn route.
	s.mustCLI("service", "traffic", "web", "latest=100", "--tag", "canary=latest")
	s.mustCLI("deploy", "canary-web", "--runtime", "python3", "--handler", "echo.handler", "--auth", "none", code)
	if resp, body := fsend(t, s, "GET", "canary-web.localhost:"+port, "/path/t", nil, false); resp.StatusCode != 200 || decode[fidelityEchoed](t, body).Path != "/path/t" {
		t.Errorf("the tag's host beside a function of its name: %d %s", resp.StatusCode, body)
	}
	if resp, body := fsend(t, s, "GET", "", "/fn/canary-web/t", nil, false); resp.StatusCode != 200 || decode[fidelityEvent](t, body).RawPath != "/t" {
		t.Errorf("/fn/canary-web/t: %d %s", resp.StatusCode, body)
	}
	// A function named like a tag the service does not have takes its host.
	s.mustCLI("deploy", "beta-web", "--runtime", "python3", "--handler", "echo.handler", "--auth", "none", code)
	if resp, body := fsend(t, s, "GET", "beta-web.localhost:"+port, "/b", nil, false); resp.StatusCode != 200 || decode[fidelityEvent](t, body).RawPath != "/b" {
		t.Errorf("beta-web's host: %d %s", resp.StatusCode, body)
	}

	// An unknown host: the 404 names the host.
	resp, body = fsend(t, s, "GET", "nope.localhost:"+port, "/x", nil, true)
	e := wantAPIError(t, resp, body, 404, "ResourceNotFoundException", `host "nope.localhost:`+port+`"`)
	if !strings.Contains(e.Message, `no function or service is named "nope"`) {
		t.Errorf("unknown host: %q", e.Message)
	}
	// Any other path without a route keeps its message.
	resp, body = s.do("GET", "/nowhere", nil, true)
	wantAPIError(t, resp, body, 404, "ResourceNotFoundException", "no route for GET /nowhere")
}

// TestFidelityPublicErrorsAndLimits: a function's failure on a public
// URL is a generic 502, its detail kept in the invocation record and
// answered on the token's routes; the 413 names the invocation payload.
func TestFidelityPublicErrorsAndLimits(t *testing.T) {
	s := startFidelityServer(t)
	_, port, _ := strings.Cut(strings.TrimPrefix(s.URL, "http://"), ":")

	for _, host := range []string{"", "echo.localhost:" + port} {
		path := "/fn/echo/boom"
		if host != "" {
			path = "/boom"
		}
		resp, body := fsend(t, s, "GET", host, path, nil, false)
		if resp.StatusCode != http.StatusBadGateway || string(body) != "Internal Server Error" {
			t.Errorf("public %s%s: %d %q, want 502 Internal Server Error", host, path, resp.StatusCode, body)
		}
		if bytes.Contains(body, []byte("bad thing")) || bytes.Contains(body, []byte("ValueError")) {
			t.Errorf("public %s%s leaks the detail: %s", host, path, body)
		}
		// The record keeps it, under the ID the answer gives.
		id := resp.Header.Get("X-Amzn-Requestid")
		if id == "" {
			t.Fatalf("public %s%s: no request ID", host, path)
		}
		eventually.Nil(t, 10*time.Second, "the failed invocation's record", func() error {
			resp, body := s.do("GET", "/v1/functions/echo/invocations?request="+url.QueryEscape(id), nil, true)
			if resp.StatusCode != 200 || !bytes.Contains(body, []byte("ValueError")) {
				return fmt.Errorf("invocation %s: %d %s", id, resp.StatusCode, body)
			}
			return nil
		})
	}
	// The token's holder gets the detail on the route...
	resp, body := fsend(t, s, "GET", "", "/fn/echo/boom", nil, true)
	wantAPIError(t, resp, body, http.StatusBadGateway, "ValueError", "bad thing happened")
	// ...and on /v1 invoke, as before.
	resp, body = s.invoke("echo", `{"rawPath":"/boom"}`)
	if resp.StatusCode != 200 || resp.Header.Get("X-Amz-Function-Error") != "Unhandled" || !bytes.Contains(body, []byte("bad thing happened")) {
		t.Errorf("/v1 invoke of a failing event: %d %q %s", resp.StatusCode, resp.Header.Get("X-Amz-Function-Error"), body)
	}

	// 4 MiB of binary body is 5.6 MB of base64: under the 6 MiB limit.
	resp, body = fsend(t, s, "POST", "", "/fn/echo?len", make([]byte, 4<<20), false, "Content-Type", "application/octet-stream")
	if resp.StatusCode != 200 || string(body) != "5592408" {
		t.Errorf("a 4 MiB binary body: %d %.200s", resp.StatusCode, body)
	}
	// 5 MiB is 7 MB once encoded: refused, saying what was measured.
	resp, body = fsend(t, s, "POST", "", "/fn/echo?len", make([]byte, 5<<20), false, "Content-Type", "application/octet-stream")
	e := wantAPIError(t, resp, body, http.StatusRequestEntityTooLarge, "RequestTooLargeException", "invocation payload")
	for _, want := range []string{"5242880-byte body", "base64", "limit of 6291456 bytes"} {
		if !strings.Contains(e.Message, want) {
			t.Errorf("413 message %q, want it to say %q", e.Message, want)
		}
	}
	// A body past the limit before encoding says so.
	resp, body = fsend(t, s, "POST", "", "/fn/echo?len", make([]byte, 7<<20), false, "Content-Type", "text/plain")
	wantAPIError(t, resp, body, http.StatusRequestEntityTooLarge, "RequestTooLargeException", "request body is 7340032 bytes, more than the invocation payload limit of 6291456 bytes")
}
