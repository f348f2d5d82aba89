package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/server"
)

func TestMain(m *testing.M) {
	// Tables print times in the local zone.
	time.Local = time.UTC
	os.Exit(m.Run())
}

// call is a request the fake API received.
type call struct {
	Method, Path string
	Query        string
	Header       http.Header
	Body         []byte
}

// reply is an answer of the fake API.
type reply struct {
	status int
	body   string
	header map[string]string
}

// jsonReply answers v as JSON with status.
func jsonReply(status int, v any) reply {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return reply{status: status, body: string(b)}
}

// apiError answers the native API's error.
func apiError(status int, code, msg string) reply {
	return jsonReply(status, v1.Error{Code: code, Message: msg})
}

// fakeAPI is a Stratus API that answers what a test tells it to and
// keeps the requests it gets.
type fakeAPI struct {
	t   *testing.T
	url string

	mu      sync.Mutex
	calls   []call
	replies map[string][]reply // by "METHOD /path"
}

func newFakeAPI(t *testing.T) *fakeAPI {
	t.Helper()
	f := &fakeAPI{t: t, replies: map[string][]reply{}}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

// on sets the replies to route ("METHOD /path"): each request takes the
// next one, the last one repeats.
func (f *fakeAPI) on(route string, rs ...reply) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replies[route] = rs
}

func (f *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.calls = append(f.calls, call{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: body})
	route := r.Method + " " + r.URL.Path
	rs, ok := f.replies[route]
	var rp reply
	if ok {
		rp = rs[0]
		if len(rs) > 1 {
			f.replies[route] = rs[1:]
		}
	}
	f.mu.Unlock()
	if !ok {
		rp = apiError(http.StatusNotFound, v1.CodeNotFound, "the fake API has no reply for "+route)
	}
	for k, v := range rp.header {
		w.Header().Set(k, v)
	}
	if rp.body != "" && w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(rp.status)
	io.WriteString(w, rp.body)
}

// requests returns the requests received so far.
func (f *fakeAPI) requests() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

// only returns the one request received, failing the test otherwise.
func (f *fakeAPI) only() call {
	f.t.Helper()
	cs := f.requests()
	if len(cs) != 1 {
		f.t.Fatalf("%d requests, want 1: %+v", len(cs), cs)
	}
	return cs[0]
}

// result is what a command line printed and its exit code.
type result struct {
	code           int
	stdout, stderr string
}

// run runs the command line args against f, with its token.
func (f *fakeAPI) run(args ...string) result {
	f.t.Helper()
	return runCLI(f.t, f.url, args...)
}

func runCLI(t *testing.T, server string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	environ := []string{"STRATUS_SERVER=" + server, "STRATUS_TOKEN=tok", "STRATUS_DATA=" + t.TempDir()}
	code := Main(context.Background(), args, &stdout, &stderr, environ)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// fields splits out into lines and each line into its fields: a table
// compared without its column widths.
func fields(out string) [][]string {
	var rows [][]string
	for line := range strings.SplitSeq(strings.TrimRight(out, "\n"), "\n") {
		rows = append(rows, strings.Fields(line))
	}
	return rows
}

// decodeJSON decodes out, what -o json printed, into v.
func decodeJSON(t *testing.T, out string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("output %q is not the JSON expected: %v", out, err)
	}
}

func TestHelpListsExitCodes(t *testing.T) {
	r := runCLI(t, "http://127.0.0.1:1", "--help")
	if r.code != ExitOK {
		t.Fatalf("--help: exit %d, stderr %q", r.code, r.stderr)
	}
	for _, want := range []string{"Exit codes:", "0  success", "1  error", "2  usage", "3  try again", v1.CodeTooMany} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("--help does not say %q:\n%s", want, r.stdout)
		}
	}
}

// TestExitCodes checks the exit code of each kind of error: the command
// line's own (nothing sent), the API's by code, and the others.
func TestExitCodes(t *testing.T) {
	functionError := reply{status: 200, body: `{"errorType":"ValueError","errorMessage":"boom"}`,
		header: map[string]string{v1.HeaderFunctionError: "Unhandled", v1.HeaderRequestID: "req-1"}}
	tests := []struct {
		name   string
		args   []string
		route  string
		reply  reply
		code   int
		stderr string
	}{
		// The command line's mistakes: nothing is sent.
		{name: "unknown command", args: []string{"frobnicate"}, code: ExitUsage, stderr: "unknown command"},
		{name: "unknown flag", args: []string{"ls", "--frob"}, code: ExitUsage, stderr: "--frob"},
		{name: "flag without its value", args: []string{"invoke", "f", "--data"}, code: ExitUsage, stderr: "--data"},
		{name: "bad flag value", args: []string{"deploy", "f", ".", "--memory", "lots"}, code: ExitUsage, stderr: "lots"},
		{name: "missing argument", args: []string{"get"}, code: ExitUsage, stderr: "arg"},
		{name: "extra argument", args: []string{"ls", "extra"}, code: ExitUsage, stderr: "extra"},
		{name: "required flag", args: []string{"schedule", "create", "s", "--rate", "5 minutes"}, code: ExitUsage, stderr: "function"},
		{name: "output format", args: []string{"ls", "-o", "yaml"}, code: ExitUsage, stderr: "use table or json"},
		{name: "command's own check", args: []string{"invoke", "f", "--data", "{nope"}, code: ExitUsage, stderr: "not valid JSON"},

		// The API's errors, by code.
		{name: "not found", args: []string{"get", "nope"}, route: "GET /v1/functions/nope",
			reply: apiError(404, v1.CodeNotFound, `function "nope": not found`), code: ExitError, stderr: `function "nope": not found (ResourceNotFoundException)`},
		{name: "invalid", args: []string{"topic", "create", "t"}, route: "POST /v1/topics",
			reply: apiError(400, v1.CodeInvalid, "topic: bad"), code: ExitError, stderr: v1.CodeInvalid},
		{name: "conflict", args: []string{"schedule", "create", "s", "--function", "f", "--rate", "5 minutes"}, route: "POST /v1/schedules",
			reply: apiError(409, v1.CodeConflict, `schedule "s" already exists`), code: ExitError, stderr: "already exists"},
		{name: "unauthorized", args: []string{"ls"}, route: "GET /v1/functions",
			reply: apiError(401, v1.CodeUnauthorized, "missing or wrong bearer token"), code: ExitError, stderr: v1.CodeUnauthorized},
		{name: "too large", args: []string{"invoke", "f"}, route: "POST /v1/functions/f/invoke",
			reply: apiError(413, v1.CodeTooLarge, "event is too large"), code: ExitError, stderr: v1.CodeTooLarge},
		{name: "internal", args: []string{"ls"}, route: "GET /v1/functions",
			reply: apiError(500, v1.CodeInternal, "internal error"), code: ExitError, stderr: v1.CodeInternal},
		{name: "no space", args: []string{"image", "ls"}, route: "GET /v1/images",
			reply: apiError(507, v1.CodeNoSpace, "no space left"), code: ExitError, stderr: v1.CodeNoSpace},
		{name: "too many requests", args: []string{"invoke", "f"}, route: "POST /v1/functions/f/invoke",
			reply: apiError(429, v1.CodeTooMany, "too many requests"), code: ExitRetry, stderr: v1.CodeTooMany},
		{name: "unavailable", args: []string{"ls"}, route: "GET /v1/functions",
			reply: apiError(503, v1.CodeUnavailable, "unavailable"), code: ExitRetry, stderr: v1.CodeUnavailable},
		{name: "timeout", args: []string{"invoke", "f"}, route: "POST /v1/functions/f/invoke",
			reply: apiError(504, v1.CodeTimeout, "timed out"), code: ExitRetry, stderr: v1.CodeTimeout},
		{name: "request timeout", args: []string{"invoke", "f"}, route: "POST /v1/functions/f/invoke",
			reply: apiError(408, v1.CodeRequestTimeout, "request body not received in time"), code: ExitRetry, stderr: v1.CodeRequestTimeout},
		// An answer that is not the API's (a proxy's) has no code of ours.
		{name: "not the API's answer", args: []string{"ls"}, route: "GET /v1/functions",
			reply: reply{status: 503, body: "upstream connect error"}, code: ExitError, stderr: "upstream connect error"},

		// The function's own error.
		{name: "function error", args: []string{"invoke", "f"}, route: "POST /v1/functions/f/invoke",
			reply: functionError, code: ExitError, stderr: "function f returned an error (request req-1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t)
			if tt.route != "" {
				f.on(tt.route, tt.reply)
			}
			r := f.run(tt.args...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.stderr) || !strings.HasPrefix(r.stderr, "error: ") {
				t.Errorf("exit %d, stderr %q; want exit %d saying %q", r.code, r.stderr, tt.code, tt.stderr)
			}
			if n := len(f.requests()); tt.route == "" && n != 0 {
				t.Errorf("a refused command line sent %d requests", n)
			}
		})
	}
}

func TestServerUnreachable(t *testing.T) {
	r := runCLI(t, "http://127.0.0.1:1", "ls")
	if r.code != ExitError || !strings.Contains(r.stderr, "reach stratus server at http://127.0.0.1:1") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestToken checks where the token comes from: --token first, then
// STRATUS_TOKEN, then the data dir's token file.
func TestToken(t *testing.T) {
	f := newFakeAPI(t)
	f.on("GET /v1/functions", jsonReply(200, v1.FunctionList{Functions: []v1.Function{}}))
	data := t.TempDir()
	if err := os.WriteFile(filepath.Join(data, server.TokenFile), []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for _, tc := range []struct {
		args    []string
		environ []string
		want    string
	}{
		{[]string{"ls", "--token", "from-flag"}, []string{"STRATUS_TOKEN=from-env"}, "Bearer from-flag"},
		{[]string{"ls"}, []string{"STRATUS_TOKEN=from-env"}, "Bearer from-env"},
		{[]string{"ls", "--data", data}, nil, "Bearer from-file"},
	} {
		environ := append([]string{"STRATUS_SERVER=" + strings.TrimPrefix(f.url, "http://")}, tc.environ...)
		if code := Main(context.Background(), tc.args, &out, &out, environ); code != ExitOK {
			t.Fatalf("%v: exit %d: %s", tc.args, code, out.String())
		}
		cs := f.requests()
		if got := cs[len(cs)-1].Header.Get("Authorization"); got != tc.want {
			t.Errorf("%v %v: Authorization %q, want %q", tc.args, tc.environ, got, tc.want)
		}
	}
}
