package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// apigwEcho is what the goapigw fixture echoes of its event.
type apigwEcho struct {
	Method    string            `json:"method"`
	RawPath   string            `json:"rawPath"`
	RawQuery  string            `json:"rawQuery"`
	Query     map[string]string `json:"query"`
	Cookies   []string          `json:"cookies"`
	Body      string            `json:"body"`
	Base64    bool              `json:"base64"`
	Headers   map[string]string `json:"headers"`
	SourceIP  string            `json:"sourceIp"`
	RequestID string            `json:"requestId"`
	Version   string            `json:"version"`
}

// TestFunctionURL calls an aws-lambda-go function written with
// events.APIGatewayV2HTTPRequest/Response through /fn/NAME and checks the
// event it gets and the HTTP response its result maps to. The console is
// off, as function URLs' cookies pass only then (with the console on,
// TestConsoleSecurityCookies checks that they do not).
func TestFunctionURL(t *testing.T) {
	s := startServer(t, "--console=false")
	s.mustCLI("deploy", "api", "--runtime", "provided.al2023", fixture("goapigw"))

	// A GET with a path, a query, headers and cookies.
	resp, body := s.do("GET", "/fn/api/users/42/profile?a=1&b=two&a=3&empty=", nil, true,
		"X-Custom-Header", "Some Value", "Cookie", "session=abc; theme=dark", "Cookie", "third=3", "Accept", "application/json")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /fn/api/users/42/profile: %d %s", resp.StatusCode, body)
	}
	e := decode[apigwEcho](t, body)
	if e.Version != "2.0" || e.Method != "GET" || e.RawPath != "/users/42/profile" || e.RawQuery != "a=1&b=two&a=3&empty=" {
		t.Errorf("event: version %q method %q rawPath %q rawQueryString %q", e.Version, e.Method, e.RawPath, e.RawQuery)
	}
	if want := map[string]string{"a": "1,3", "b": "two", "empty": ""}; !reflect.DeepEqual(e.Query, want) {
		t.Errorf("queryStringParameters = %v, want %v", e.Query, want)
	}
	if want := []string{"session=abc", "theme=dark", "third=3"}; !reflect.DeepEqual(e.Cookies, want) {
		t.Errorf("cookies = %q, want %q", e.Cookies, want)
	}
	if e.Headers["x-custom-header"] != "Some Value" || e.Headers["accept"] != "application/json" || e.Headers["host"] == "" {
		t.Errorf("headers are not lower-cased or are missing: %v", e.Headers)
	}
	for k := range e.Headers {
		if k != strings.ToLower(k) {
			t.Errorf("header name %q is not lower-cased", k)
		}
		if k == "authorization" {
			t.Errorf("the server's bearer token was passed into the function's event: %q", e.Headers[k])
		}
		if k == "cookie" {
			t.Errorf("the Cookie header stayed in headers; it belongs in cookies")
		}
	}
	if e.SourceIP != "127.0.0.1" {
		t.Errorf("requestContext.http.sourceIp = %q", e.SourceIP)
	}
	if e.Base64 || e.Body != "" {
		t.Errorf("GET without a body: body %q isBase64Encoded %v", e.Body, e.Base64)
	}
	if id := resp.Header.Get("X-Amzn-Requestid"); id == "" || id != e.RequestID {
		t.Errorf("X-Amzn-Requestid %q, requestContext.requestId %q", id, e.RequestID)
	}
	if resp.Header.Get("X-Fn") != "goapigw" || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("response headers not mapped back: %v", resp.Header)
	}

	// rawPath is "/" when nothing follows /fn/NAME.
	for _, p := range []string{"/fn/api", "/fn/api/"} {
		resp, body = s.do("GET", p, nil, true)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", p, resp.StatusCode, body)
		}
		if e := decode[apigwEcho](t, body); e.RawPath != "/" || e.RawQuery != "" || e.Query != nil {
			t.Errorf("GET %s: rawPath %q rawQueryString %q query %v", p, e.RawPath, e.RawQuery, e.Query)
		}
	}

	// A POST with a text body, a status and cookies set by the function.
	resp, body = s.do("POST", "/fn/api/items?status=201&cookie=sid", []byte(`{"name":"widget"}`), true, "Content-Type", "application/json")
	if resp.StatusCode != 201 {
		t.Fatalf("POST: status %d, want the function's 201: %s", resp.StatusCode, body)
	}
	e = decode[apigwEcho](t, body)
	if e.Method != "POST" || e.Body != `{"name":"widget"}` || e.Base64 {
		t.Errorf("POST event: method %q body %q isBase64Encoded %v", e.Method, e.Body, e.Base64)
	}
	if got, want := resp.Header.Values("Set-Cookie"), []string{"sid=1; Path=/", "second=2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Set-Cookie = %q, want %q", got, want)
	}

	// Other methods pass through.
	for _, m := range []string{"PUT", "PATCH", "DELETE", "OPTIONS"} {
		resp, body = s.do(m, "/fn/api/x?status=202", []byte("plain text"), true, "Content-Type", "text/plain")
		if resp.StatusCode != 202 {
			t.Fatalf("%s: status %d %s", m, resp.StatusCode, body)
		}
		if e := decode[apigwEcho](t, body); e.Method != m || e.Body != "plain text" || e.Base64 {
			t.Errorf("%s event: method %q body %q base64 %v", m, e.Method, e.Body, e.Base64)
		}
	}

	// A binary body arrives base64-encoded.
	bin := []byte{0, 1, 2, 'h', 'i', 0x7f}
	resp, body = s.do("POST", "/fn/api/upload", bin, true, "Content-Type", "application/octet-stream")
	if resp.StatusCode != 200 {
		t.Fatalf("binary POST: %d %s", resp.StatusCode, body)
	}
	if e := decode[apigwEcho](t, body); !e.Base64 || e.Body != string(bin) {
		t.Errorf("binary body: isBase64Encoded %v, decoded body %q, want %q", e.Base64, e.Body, bin)
	}
	// Bytes that are not UTF-8 are binary whatever the content type says.
	resp, body = s.do("POST", "/fn/api/upload", []byte{'a', 0xff, 0xfe}, true, "Content-Type", "text/plain")
	if e := decode[apigwEcho](t, body); resp.StatusCode != 200 || !e.Base64 {
		t.Errorf("non-UTF-8 text body: status %d isBase64Encoded %v", resp.StatusCode, e.Base64)
	}

	// A binary result (isBase64Encoded) is decoded for the caller.
	resp, body = s.do("GET", "/fn/api/file?binary=1", nil, true)
	if resp.StatusCode != 200 || !bytes.Equal(body, []byte{0, 1, 2, 255}) || resp.Header.Get("Content-Type") != "application/octet-stream" {
		t.Errorf("binary result: status %d content-type %q body %v", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}

	// The token is required: missing or wrong gives 401 JSON, and the
	// function is not called.
	before := countInvocations(t, s, "api", invokeMark(t, s, "api"))
	for _, hdr := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Authorization", s.Token}} {
		resp, body = s.do("GET", "/fn/api/secret", nil, false, hdr...)
		wantAPIError(t, resp, body, 401, "UnauthorizedException", "token")
	}
	// An unknown function is a 401 without the token (no probing), 404 with it.
	resp, body = s.do("GET", "/fn/nope", nil, false)
	wantAPIError(t, resp, body, 401, "UnauthorizedException", "")
	resp, body = s.do("GET", "/fn/nope/x", nil, true)
	wantAPIError(t, resp, body, 404, "ResourceNotFoundException", "nope")
	// One more invocation, the mark that the count waits for.
	if after := countInvocations(t, s, "api", invokeMark(t, s, "api")); after != before+1 {
		t.Errorf("unauthorised requests invoked the function: %d invocations, was %d and one since", after, before)
	}
}

// countInvocations returns how many invocation records fn has once the
// record of request lastID is stored. An invocation's record is queued
// before its caller gets the answer, and records are stored in the order
// they were queued: every invocation answered before lastID's is counted.
func countInvocations(t *testing.T, s *server, fn, lastID string) int {
	t.Helper()
	s.waitRecord(fn, lastID)
	return len(s.records(fn))
}

// invokeMark invokes fn with an empty event through the invoke API and
// returns the request ID, for countInvocations to wait on.
func invokeMark(t *testing.T, s *server, fn string) string {
	t.Helper()
	resp, body := s.invoke(fn, `{}`)
	id := resp.Header.Get("X-Amzn-Requestid")
	if id == "" {
		t.Fatalf("invoke %s: %d %s, no request ID", fn, resp.StatusCode, body)
	}
	return id
}

// apiError is the native API's JSON error.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// wantAPIError checks an answer is the JSON error {"code","message"} with
// status, code and a message containing msg.
func wantAPIError(t *testing.T, resp *http.Response, body []byte, status int, code, msg string) apiError {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("%s %s: status %d, want %d: %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, status, body)
		return apiError{}
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s %s: error content type %q", resp.Request.Method, resp.Request.URL.Path, ct)
	}
	var e apiError
	if err := jsonStrict(body, &e); err != nil {
		t.Errorf("%s %s: error body %s is not {\"code\",\"message\"}: %v", resp.Request.Method, resp.Request.URL.Path, body, err)
		return e
	}
	if e.Code != code || e.Message == "" || !strings.Contains(e.Message, msg) {
		t.Errorf("%s %s: error %+v, want code %s and a message containing %q", resp.Request.Method, resp.Request.URL.Path, e, code, msg)
	}
	return e
}

// TestFunctionURLPlainResult checks that a result without statusCode is a
// 200 JSON body, that --auth none makes the route public (while the
// control API keeps its token), and that a function error is a 502.
func TestFunctionURLPlainResult(t *testing.T) {
	needTool(t, "python3")
	needTool(t, "node")
	s := startServer(t)
	code := writeFiles(t, map[string]string{
		"plain.py": `def handler(event, context):
    if event["rawPath"] == "/fail":
        raise KeyError("no such thing")
    return {"hello": "world", "path": event["rawPath"], "method": event["requestContext"]["http"]["method"], "auth": event["headers"].get("authorization")}
`,
		"plain.js": "exports.handler = async (event) => ({ from: 'node', list: [1, 2], path: event.rawPath });\n",
		"str.js":   "exports.handler = async () => 'just a string';\n",
	})
	s.mustCLI("deploy", "pub", "--runtime", "python3", "--handler", "plain.handler", "--auth", "none", code)
	s.mustCLI("deploy", "nodepub", "--runtime", "nodejs", "--handler", "plain.handler", "--auth", "none", code)
	s.mustCLI("deploy", "str", "--runtime", "nodejs", "--handler", "str.handler", code)

	resp, body := s.do("GET", "/fn/pub/some/where", nil, false)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("public python route: status %d content-type %q body %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	got := decode[map[string]any](t, body)
	if want := map[string]any{"hello": "world", "path": "/some/where", "method": "GET", "auth": nil}; !reflect.DeepEqual(got, want) {
		t.Errorf("plain result = %v, want %v", got, want)
	}
	resp, body = s.do("POST", "/fn/nodepub", []byte("x"), false)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("public node route: status %d body %s", resp.StatusCode, body)
	}
	if got := decode[map[string]any](t, body); !reflect.DeepEqual(got, map[string]any{"from": "node", "list": []any{1.0, 2.0}, "path": "/"}) {
		t.Errorf("node plain result = %v", got)
	}
	resp, body = s.do("GET", "/fn/str", nil, true)
	if resp.StatusCode != 200 || string(body) != `"just a string"` {
		t.Errorf("string result: status %d body %s, want 200 \"just a string\"", resp.StatusCode, body)
	}

	// --auth none opens the route only: the control API still needs the token.
	resp, body = s.do("POST", "/v1/functions/pub/invoke", []byte(`{"rawPath":"/","requestContext":{"http":{"method":"X"}},"headers":{}}`), false)
	wantAPIError(t, resp, body, 401, "UnauthorizedException", "")
	// A function deployed with the default auth needs the token on its route.
	resp, body = s.do("GET", "/fn/str", nil, false)
	wantAPIError(t, resp, body, 401, "UnauthorizedException", "")

	// A function error on the route is a 502: a JSON error to the token's
	// holder (without it, a function URL's generic body: see
	// fidelity_gateway_test.go).
	resp, body = s.do("GET", "/fn/pub/fail", nil, true)
	if resp.StatusCode != 502 || resp.Header.Get("X-Amz-Function-Error") == "" {
		t.Fatalf("function error on the route: status %d header %q body %s", resp.StatusCode, resp.Header.Get("X-Amz-Function-Error"), body)
	}
	if e := decode[apiError](t, body); e.Code != "KeyError" || !strings.Contains(e.Message, "no such thing") {
		t.Errorf("function error on the route = %+v", e)
	}
}

// jsonStrict decodes b into v, refusing unknown fields and trailing data.
func jsonStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON value")
	}
	return nil
}
