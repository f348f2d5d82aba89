package lambdaapi

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sigv4"
)

const testToken = "s3cret-token"

// testAPI is an API over a fake Functions and queue, called in memory.
type testAPI struct {
	*API
	fns   *fakeFunctions
	queue *fakeQueue
}

func newTestAPI(t *testing.T, mod ...func(*Config)) *testAPI {
	t.Helper()
	ta := &testAPI{fns: newFake(), queue: &fakeQueue{}}
	cfg := Config{Functions: ta.fns, Queue: ta.queue, Region: "eu-test-1", AccountID: "123456789012", Token: testToken, Arch: stratus.ArchX86}
	for _, m := range mod {
		m(&cfg)
	}
	ta.API = New(cfg)
	return ta
}

// do sends a request with the token; body is marshalled unless it is a
// string or []byte.
func (ta *testAPI) do(t *testing.T, method, path string, body any, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	var b []byte
	switch v := body.(type) {
	case nil:
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	r := httptest.NewRequest(method, path, bytes.NewReader(b))
	r.Header.Set("Authorization", "Bearer "+testToken)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	ta.ServeHTTP(w, r)
	return w
}

// decodeInto reads w's JSON body into v, failing unless w has status.
func decodeInto(t *testing.T, w *httptest.ResponseRecorder, status int, v any) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d; body %s", w.Code, status, w.Body)
	}
	if v != nil {
		if err := json.Unmarshal(w.Body.Bytes(), v); err != nil {
			t.Fatalf("body %s: %v", w.Body, err)
		}
	}
}

// wantError checks that w is a Lambda error of type typ with status.
func wantError(t *testing.T, w *httptest.ResponseRecorder, status int, typ string) map[string]string {
	t.Helper()
	if w.Code != status || w.Header().Get("X-Amzn-ErrorType") != typ {
		t.Fatalf("answer %d %q, want %d %s; body %s", w.Code, w.Header().Get("X-Amzn-ErrorType"), status, typ, w.Body)
	}
	var body map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("error body %s: %v", w.Body, err)
	}
	if body["Type"] != "User" && body["Type"] != "Service" {
		t.Errorf("error body %s: Type is neither User nor Service", w.Body)
	}
	if body["Message"] == "" && body["message"] == "" {
		t.Errorf("error body %s has no message", w.Body)
	}
	if w.Header().Get("X-Amzn-RequestId") == "" {
		t.Error("no X-Amzn-RequestId")
	}
	return body
}

// testZip is a zip holding one file.
func testZip(t *testing.T, name, content string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, err := zw.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write([]byte(content))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// createPython makes function name (python3.12) through the API.
func (ta *testAPI) createPython(t *testing.T, name string, extra map[string]any) functionConfiguration {
	t.Helper()
	req := map[string]any{
		"FunctionName": name, "Runtime": "python3.12", "Handler": "app.handler",
		"Role": "arn:aws:iam::123456789012:role/r",
		"Code": map[string]any{"ZipFile": base64.StdEncoding.EncodeToString(testZip(t, "app.py", "def handler(e, c): return e"))},
	}
	for k, v := range extra {
		req[k] = v
	}
	var out functionConfiguration
	decodeInto(t, ta.do(t, "POST", "/2015-03-31/functions", req), http.StatusCreated, &out)
	return out
}

func TestAuthentication(t *testing.T) {
	var verified []byte
	ta := newTestAPI(t, func(c *Config) {
		c.Verify = func(r *http.Request, body []byte) error {
			verified = body
			if strings.Contains(r.Header.Get("Authorization"), "Credential=BAD") {
				return &sigv4.Error{Code: "InvalidSignatureException", Message: "signature does not match"}
			}
			if strings.Contains(r.Header.Get("Authorization"), "Credential=BROKEN") {
				return errors.New("key store is down")
			}
			return nil
		}
	})
	send := func(auth string, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/2015-03-31/functions", strings.NewReader(body))
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		ta.ServeHTTP(w, r)
		return w
	}
	wantError(t, send("", ""), 403, "MissingAuthenticationTokenException")
	wantError(t, send("Bearer nope", ""), 403, "UnrecognizedClientException")
	if w := send("bearer  "+testToken+" ", ""); w.Code != 200 {
		t.Errorf("the token: %d %s", w.Code, w.Body)
	}
	wantError(t, send("AWS4-HMAC-SHA256 Credential=BAD/x, SignedHeaders=host, Signature=00", "{}"), 403, "InvalidSignatureException")
	if string(verified) != "{}" {
		t.Errorf("Verify got body %q, want the request's", verified)
	}
	wantError(t, send("AWS4-HMAC-SHA256 Credential=BROKEN/x, SignedHeaders=host, Signature=00", ""), 500, "ServiceException")
	if w := send("AWS4-HMAC-SHA256 Credential=GOOD/x, SignedHeaders=host, Signature=00", ""); w.Code != 200 {
		t.Errorf("a good signature: %d %s", w.Code, w.Body)
	}
	// Unknown paths are not told apart before authentication.
	r := httptest.NewRequest("GET", "/2015-03-31/nothing", nil)
	w := httptest.NewRecorder()
	ta.ServeHTTP(w, r)
	wantError(t, w, 403, "MissingAuthenticationTokenException")

	noVerify := newTestAPI(t)
	r = httptest.NewRequest("GET", "/2015-03-31/functions", nil)
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=X/x, SignedHeaders=host, Signature=00")
	w = httptest.NewRecorder()
	noVerify.ServeHTTP(w, r)
	wantError(t, w, 403, "UnrecognizedClientException")
}

func TestUnsupportedAndUnknownOperations(t *testing.T) {
	ta := newTestAPI(t)
	for _, tc := range []struct{ method, path, op string }{
		{"GET", "/2018-10-31/layers", "ListLayers"},
		{"GET", "/2018-10-31/layers?find=LayerVersion&Arn=x", "GetLayerVersionByArn"},
		{"POST", "/2015-03-31/event-source-mappings", "CreateEventSourceMapping"},
		{"POST", "/2015-03-31/functions/f/policy", "AddPermission"},
		{"GET", "/2019-09-30/functions/f/provisioned-concurrency?List=ALL", "ListProvisionedConcurrencyConfigs"},
		{"GET", "/2019-09-30/functions/f/provisioned-concurrency?Qualifier=1", "GetProvisionedConcurrencyConfig"},
	} {
		if _, ok := handlers[tc.op]; ok {
			continue
		}
		body := wantError(t, ta.do(t, tc.method, tc.path, nil), 400, "UnsupportedOperationException")
		if want := tc.op + " is not supported by Stratus"; body["Message"] != want {
			t.Errorf("%s %s: message %q, want %q", tc.method, tc.path, body["Message"], want)
		}
	}
	wantError(t, ta.do(t, "GET", "/2015-03-31/nothing", nil), 404, "UnknownOperationException")
	wantError(t, ta.do(t, "PATCH", "/2015-03-31/functions/f", nil), 404, "UnknownOperationException")
	wantError(t, ta.do(t, "GET", "/2015-03-31/functions/f/aliases/a/b", nil), 404, "UnknownOperationException")
}

func TestErrorShape(t *testing.T) {
	ta := newTestAPI(t)
	// The model spells ResourceNotFoundException's message "Message" and
	// InvalidParameterValueException's "message".
	body := wantError(t, ta.do(t, "GET", "/2015-03-31/functions/nope", nil), 404, "ResourceNotFoundException")
	if body["Message"] == "" || body["Type"] != "User" {
		t.Errorf("ResourceNotFoundException body %v", body)
	}
	body = wantError(t, ta.do(t, "GET", "/2015-03-31/functions/bad%20name", nil), 400, "InvalidParameterValueException")
	if body["message"] == "" {
		t.Errorf("InvalidParameterValueException body %v", body)
	}
	wantError(t, ta.do(t, "POST", "/2015-03-31/functions", "{not json"), 400, "InvalidRequestContentException")

	for _, tc := range []struct {
		err    error
		typ    string
		status int
	}{
		{stratus.ErrNotFound, "ResourceNotFoundException", 404},
		{stratus.ErrInvalid, "InvalidParameterValueException", 400},
		{stratus.ErrConflict, "ResourceConflictException", 409},
		{stratus.ErrCapacity, "TooManyRequestsException", 429},
		{stratus.ErrTooLarge, "RequestEntityTooLargeException", 413},
		{stratus.ErrUnavailable, "ServiceException", 503},
		{errors.New("boom"), "ServiceException", 500},
	} {
		e := errorFrom(&operation{Name: "CreateFunction"}, tc.err)
		if e.Type != tc.typ || e.status() != tc.status {
			t.Errorf("%v: %s %d, want %s %d", tc.err, e.Type, e.status(), tc.typ, tc.status)
		}
	}
	if e := errorFrom(&operation{Name: "Invoke"}, stratus.ErrTooLarge); e.Type != "RequestTooLargeException" || e.status() != 413 {
		t.Errorf("Invoke too large: %s %d", e.Type, e.status())
	}
}

func TestBodyLimit(t *testing.T) {
	ta := newTestAPI(t, func(c *Config) { c.MaxBody, c.MaxPayload = 100, 100 })
	wantError(t, ta.do(t, "POST", "/2015-03-31/functions", strings.Repeat(" ", 101)), 413, "RequestEntityTooLargeException")
	wantError(t, ta.do(t, "POST", "/2015-03-31/functions/f/invocations", strings.Repeat(" ", 101)), 413, "RequestTooLargeException")
}
