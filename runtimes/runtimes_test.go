package runtimes

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
)

// waitFor bounds how long a test waits for a client to answer.
const waitFor = 20 * time.Second

// posted is one request a client sent back to the fake Runtime API.
type posted struct {
	kind      string // "response", "error" or "init"
	id        string
	errorType string // the Lambda-Runtime-Function-Error-Type header
	body      []byte
}

type errorBody struct {
	ErrorMessage string   `json:"errorMessage"`
	ErrorType    string   `json:"errorType"`
	StackTrace   []string `json:"stackTrace"`
}

// invocation is what the fake API answers one next request with.
type invocation struct {
	header http.Header
	event  string
}

// fakeAPI is a Runtime API that hands out the invocations sent to its next
// channel and reports what the client posts back on posts.
type fakeAPI struct {
	srv   *httptest.Server
	next  chan invocation
	posts chan posted
	quit  chan struct{}
	conns atomic.Int32 // TCP connections the client opened
	seq   int
}

// newFakeAPI starts a fake Runtime API that closes connections idle for
// longer than idle (0: never).
func newFakeAPI(t testing.TB, idle time.Duration) *fakeAPI {
	api := &fakeAPI{
		next:  make(chan invocation),
		posts: make(chan posted, 16),
		quit:  make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", func(w http.ResponseWriter, r *http.Request) {
		select {
		case inv := <-api.next:
			for k, v := range inv.header {
				w.Header()[k] = v
			}
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, inv.event)
		case <-r.Context().Done():
		case <-api.quit:
			http.Error(w, "shutting down", http.StatusInternalServerError)
		}
	})
	post := func(kind string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			p := posted{kind: kind, id: r.PathValue("id"), errorType: r.Header.Get("Lambda-Runtime-Function-Error-Type"), body: body}
			select {
			case api.posts <- p:
			case <-api.quit:
			}
			w.WriteHeader(http.StatusAccepted)
			io.WriteString(w, `{"status":"OK"}`)
		}
	}
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", post("response"))
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", post("error"))
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", post("init"))

	api.srv = httptest.NewUnstartedServer(mux)
	api.srv.Config.IdleTimeout = idle
	api.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			api.conns.Add(1)
		}
	}
	api.srv.Start()
	t.Cleanup(func() {
		close(api.quit)
		api.srv.Close()
	})
	return api
}

// invoke hands the client one event and returns what it posted back.
func (api *fakeAPI) invoke(t testing.TB, event string, headers map[string]string) posted {
	t.Helper()
	api.seq++
	id := fmt.Sprintf("req-%d", api.seq)
	h := http.Header{}
	h.Set("Lambda-Runtime-Aws-Request-Id", id)
	h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10))
	h.Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:000000000000:function:fn")
	for k, v := range headers {
		h.Set(k, v)
	}
	select {
	case api.next <- invocation{header: h, event: event}:
	case p := <-api.posts:
		t.Fatalf("client posted %s %s (%s) instead of asking for invocation %s", p.kind, p.body, p.errorType, id)
	case <-time.After(waitFor):
		t.Fatalf("client did not ask for invocation %s", id)
	}
	p := api.wait(t)
	if p.id != id {
		t.Fatalf("client answered %s %q for invocation %q", p.kind, p.id, id)
	}
	return p
}

// wait returns the client's next post.
func (api *fakeAPI) wait(t testing.TB) posted {
	t.Helper()
	select {
	case p := <-api.posts:
		return p
	case <-time.After(waitFor):
		t.Fatal("client posted nothing")
		return posted{}
	}
}

// lockedBuffer collects a child's output.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// needInterpreter skips the test when the runtime's interpreter is missing,
// unless running in CI, where every runtime must be tested.
func needInterpreter(t testing.TB, runtime string) {
	t.Helper()
	if _, err := Command(runtime, t.TempDir()); err != nil {
		if !errors.Is(err, stratus.ErrUnavailable) {
			t.Fatal(err)
		}
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

// startFunction writes files into a code directory and runs the shipped
// client of runtime on it with _HANDLER=handler against a fresh fake API.
func startFunction(t testing.TB, runtime string, files map[string]string, handler string) *fakeAPI {
	t.Helper()
	return startFunctionIdle(t, runtime, files, handler, 0)
}

// startFunctionIdle is startFunction with a Runtime API that closes idle
// connections after idle.
func startFunctionIdle(t testing.TB, runtime string, files map[string]string, handler string, idle time.Duration) *fakeAPI {
	t.Helper()
	needInterpreter(t, runtime)
	code, clients := t.TempDir(), t.TempDir()
	for name, content := range files {
		p := filepath.Join(code, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := Install(clients); err != nil {
		t.Fatal(err)
	}
	argv, err := Command(runtime, clients)
	if err != nil {
		t.Fatal(err)
	}

	api := newFakeAPI(t, idle)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = code
	cmd.Env = append(os.Environ(),
		"AWS_LAMBDA_RUNTIME_API="+api.srv.Listener.Addr().String(),
		"_HANDLER="+handler,
		"LAMBDA_TASK_ROOT="+code,
		"AWS_LAMBDA_FUNCTION_NAME=fn",
		"AWS_LAMBDA_FUNCTION_VERSION=7",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256",
		"AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/fn",
		"AWS_LAMBDA_LOG_STREAM_NAME=stream-1",
	)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", argv[0], out.String())
		}
	})
	return api
}

func wantResponse(t *testing.T, p posted, want any) {
	t.Helper()
	if p.kind != "response" {
		t.Fatalf("client posted %s %s (%s), want a response", p.kind, p.body, p.errorType)
	}
	var got any
	if err := json.Unmarshal(p.body, &got); err != nil {
		t.Fatalf("response %q: %v", p.body, err)
	}
	wantJSON, _ := json.Marshal(want)
	var wantV any
	json.Unmarshal(wantJSON, &wantV)
	if diff := cmp.Diff(wantV, got); diff != "" {
		t.Errorf("response (-want +got):\n%s", diff)
	}
}

// wantError checks an error post: its kind, type (header and body), message
// and that the stack trace mentions stackHas ("" for an empty trace).
func wantError(t *testing.T, p posted, kind, errorType, message, stackHas string) {
	t.Helper()
	if p.kind != kind {
		t.Fatalf("client posted %s %s, want %s", p.kind, p.body, kind)
	}
	var got errorBody
	if err := json.Unmarshal(p.body, &got); err != nil {
		t.Fatalf("error body %q: %v", p.body, err)
	}
	if got.ErrorType != errorType || p.errorType != errorType {
		t.Errorf("errorType %q, header %q; want %q", got.ErrorType, p.errorType, errorType)
	}
	if got.ErrorMessage != message {
		t.Errorf("errorMessage %q, want %q", got.ErrorMessage, message)
	}
	if got.StackTrace == nil {
		t.Errorf("stackTrace missing from %s", p.body)
	}
	if stackHas != "" && !strings.Contains(strings.Join(got.StackTrace, "\n"), stackHas) {
		t.Errorf("stackTrace %q does not mention %q", got.StackTrace, stackHas)
	}
	for _, line := range got.StackTrace {
		if strings.Contains(line, "bootstrap.") {
			t.Errorf("stackTrace shows the runtime client: %q", got.StackTrace)
			break
		}
	}
}

var mobileHeaders = map[string]string{
	"Lambda-Runtime-Trace-Id":         "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Sampled=1",
	"Lambda-Runtime-Cognito-Identity": `{"cognitoIdentityId":"id-1","cognitoIdentityPoolId":"pool-1"}`,
	"Lambda-Runtime-Client-Context":   `{"custom":{"k":"v"},"env":{"platform":"x"},"client":{"app_title":"app"}}`,
}

const pythonApp = `import os
import time

def echo(event, context):
    return {"event": event, "n": 1.5, "none": None}

def ctx(event, context):
    return {
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "aws_request_id": context.aws_request_id,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining_ok": 50000 < context.get_remaining_time_in_millis() <= 60000,
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
        "identity": [context.identity.cognito_identity_id, context.identity.cognito_identity_pool_id],
        "client_custom": context.client_context and context.client_context.custom,
        "client_app": context.client_context and context.client_context.client.app_title,
    }

def fail(event, context):
    check(event["n"])

def check(n):
    raise ValueError("bad value %d" % n)

def unmarshalable(event, context):
    return {"x": object()}

def noop(event, context):
    return None

def slow(event, context):
    time.sleep(event)
    return event
`

func TestPython(t *testing.T) {
	t.Parallel()
	files := map[string]string{
		"app.py":         pythonApp,
		"pkg/sub/mod.py": "def fn(event, context):\n    print('hello from mod')\n    return [event, __name__]\n",
		"broken.py":      "import does_not_exist\n",
	}

	t.Run("json in and out, several invocations on one connection", func(t *testing.T) {
		t.Parallel()
		api := startFunction(t, stratus.RuntimePython3, files, "app.echo")
		for i := range 5 {
			p := api.invoke(t, fmt.Sprintf(`{"i":%d,"s":"é"}`, i), nil)
			wantResponse(t, p, map[string]any{"event": map[string]any{"i": i, "s": "é"}, "n": 1.5, "none": nil})
		}
		if n := api.conns.Load(); n != 1 {
			t.Errorf("client opened %d connections for 5 invocations, want 1 (keep-alive)", n)
		}
	})

	t.Run("context", func(t *testing.T) {
		t.Parallel()
		api := startFunction(t, stratus.RuntimePython3, files, "app.ctx")
		wantResponse(t, api.invoke(t, `{}`, mobileHeaders), map[string]any{
			"function_name":        "fn",
			"function_version":     "7",
			"invoked_function_arn": "arn:aws:lambda:us-east-1:000000000000:function:fn",
			"memory_limit_in_mb":   256,
			"aws_request_id":       "req-1",
			"log_group_name":       "/aws/lambda/fn",
			"log_stream_name":      "stream-1",
			"remaining_ok":         true,
			"trace":                mobileHeaders["Lambda-Runtime-Trace-Id"],
			"identity":             []string{"id-1", "pool-1"},
			"client_custom":        map[string]any{"k": "v"},
			"client_app":           "app",
		})
		// Without the optional headers the trace id goes away and there is
		// no client context.
		wantResponse(t, api.invoke(t, `{}`, nil), map[string]any{
			"function_name":        "fn",
			"function_version":     "7",
			"invoked_function_arn": "arn:aws:lambda:us-east-1:000000000000:function:fn",
			"memory_limit_in_mb":   256,
			"aws_request_id":       "req-2",
			"log_group_name":       "/aws/lambda/fn",
			"log_stream_name":      "stream-1",
			"remaining_ok":         true,
			"trace":                nil,
			"identity":             []any{nil, nil},
			"client_custom":        nil,
			"client_app":           nil,
		})
	})

	t.Run("module in a subfolder", func(t *testing.T) {
		t.Parallel()
		api := startFunction(t, stratus.RuntimePython3, files, "pkg/sub/mod.fn")
		wantResponse(t, api.invoke(t, `"x"`, nil), []any{"x", "pkg.sub.mod"})
	})

	t.Run("exception, then the process still serves", func(t *testing.T) {
		t.Parallel()
		api := startFunction(t, stratus.RuntimePython3, files, "app.fail")
		wantError(t, api.invoke(t, `{"n":42}`, nil), "error", "ValueError", "bad value 42", `app.py", line 27, in check`)
		wantError(t, api.invoke(t, `{}`, nil), "error", "KeyError", "'n'", `app.py", line 24, in fail`)
	})

	t.Run("result that is not JSON", func(t *testing.T) {
		t.Parallel()
		api := startFunction(t, stratus.RuntimePython3, files, "app.unmarshalable")
		p := api.invoke(t, `{}`, nil)
		wantError(t, p, "error", "Runtime.MarshalError", "Unable to marshal response: Object of type object is not JSON serializable", "")
	})

	t.Run("connection closed by the server while the handler runs", func(t *testing.T) {
		t.Parallel()
		api := startFunctionIdle(t, stratus.RuntimePython3, files, "app.slow", 100*time.Millisecond)
		for range 2 {
			wantResponse(t, api.invoke(t, `0.3`, nil), 0.3)
		}
		if n := api.conns.Load(); n < 2 {
			t.Errorf("client used %d connection(s); the server should have closed the first", n)
		}
	})

	for _, tc := range []struct {
		handler, errorType, message string
	}{
		{"nomod.handler", "Runtime.ImportModuleError", "Unable to import module 'nomod': No module named 'nomod'"},
		{"broken.handler", "Runtime.ImportModuleError", "Unable to import module 'broken': No module named 'does_not_exist'"},
		{"app.nope", "Runtime.HandlerNotFound", "Handler 'nope' missing on module 'app'"},
		{"app", "Runtime.MalformedHandlerName", "Bad handler 'app': not enough values to unpack (expected 2, got 1)"},
	} {
		t.Run("init error "+tc.handler, func(t *testing.T) {
			t.Parallel()
			api := startFunction(t, stratus.RuntimePython3, files, tc.handler)
			wantError(t, api.wait(t), "init", tc.errorType, tc.message, "")
		})
	}
}

const nodeContext = `(event, context) => ({
  functionName: context.functionName,
  functionVersion: context.functionVersion,
  invokedFunctionArn: context.invokedFunctionArn,
  memoryLimitInMB: context.memoryLimitInMB,
  awsRequestId: context.awsRequestId,
  logGroupName: context.logGroupName,
  logStreamName: context.logStreamName,
  remainingOK: context.getRemainingTimeInMillis() > 50000 && context.getRemainingTimeInMillis() <= 60000,
  trace: process.env._X_AMZN_TRACE_ID ?? null,
  identity: context.identity ?? null,
  clientContext: context.clientContext ?? null,
  waits: context.callbackWaitsForEmptyEventLoop,
  methods: [typeof context.done, typeof context.succeed, typeof context.fail],
})`

var nodeFiles = map[string]string{
	"index.js": `
exports.echo = async (event) => ({ event, n: 1.5, none: null });
exports.ctx = async ` + nodeContext + `;
exports.nested = { deeper: { fn: async () => 'nested' } };
exports.fails = async (event) => { check(event.n); };
function check(n) { throw new TypeError('bad value ' + n); }
exports.throwsString = async () => { throw 'plain'; };
exports.callback = (event, context, callback) => { setTimeout(() => callback(null, { via: 'callback', event }), 1); };
exports.callbackError = (event, context, callback) => { callback(new RangeError('out of range')); };
exports.succeed = (event, context) => { setImmediate(() => context.succeed('succeeded')); };
exports.sync = (event) => { console.log('no answer'); };
exports.circular = async () => { const o = {}; o.o = o; return o; };
exports.crash = (event, context, callback) => { setTimeout(() => { throw new Error('late'); }, 1); };
exports.reject = async () => { Promise.reject(new Error('forgotten')); await new Promise((r) => setTimeout(r, 50)); };
exports.slow = async (event) => { const end = Date.now() + event * 1000; while (Date.now() < end); return event; };
`,
	"cjs/mod.cjs": `module.exports = { handler: (event, context, cb) => cb(null, ['cjs', event]) };`,
	"esm/mod.mjs": `const value = await Promise.resolve('esm');
export const handler = async (event) => [value, event];`,
	"typed/package.json": `{"type": "module"}`,
	"typed/lib/app.js":   `export async function handler(event, context) { return ['typed', context.functionName, event]; }`,
	"broken.js":          `require('does-not-exist');`,
	"syntax.js":          `exports.handler = async () => {`,
	"throws.js":          `throw new Error('init failed');`,
}

func TestNode(t *testing.T) {
	t.Parallel()

	t.Run("json in and out, several invocations on one connection", func(t *testing.T) {
		t.Parallel()
		api := startFunction(t, stratus.RuntimeNodejs, nodeFiles, "index.echo")
		for i := range 5 {
			p := api.invoke(t, fmt.Sprintf(`{"i":%d,"s":"é"}`, i), nil)
			wantResponse(t, p, map[string]any{"event": map[string]any{"i": i, "s": "é"}, "n": 1.5, "none": nil})
		}
		if n := api.conns.Load(); n != 1 {
			t.Errorf("client opened %d connections for 5 invocations, want 1 (keep-alive)", n)
		}
	})

	t.Run("context", func(t *testing.T) {
		t.Parallel()
		api := startFunction(t, stratus.RuntimeNodejs, nodeFiles, "index.ctx")
		want := map[string]any{
			"functionName":       "fn",
			"functionVersion":    "7",
			"invokedFunctionArn": "arn:aws:lambda:us-east-1:000000000000:function:fn",
			"memoryLimitInMB":    "256",
			"awsRequestId":       "req-1",
			"logGroupName":       "/aws/lambda/fn",
			"logStreamName":      "stream-1",
			"remainingOK":        true,
			"trace":              mobileHeaders["Lambda-Runtime-Trace-Id"],
			"identity":           map[string]any{"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"},
			"clientContext":      map[string]any{"custom": map[string]any{"k": "v"}, "env": map[string]any{"platform": "x"}, "client": map[string]any{"app_title": "app"}},
			"waits":              true,
			"methods":            []string{"function", "function", "function"},
		}
		wantResponse(t, api.invoke(t, `{}`, mobileHeaders), want)
		want["awsRequestId"], want["trace"], want["identity"], want["clientContext"] = "req-2", nil, nil, nil
		wantResponse(t, api.invoke(t, `{}`, nil), want)
	})

	for _, tc := range []struct {
		name, handler, event string
		want                 any
	}{
		{"commonjs .cjs with callback", "cjs/mod.handler", `1`, []any{"cjs", 1}},
		{"es module .mjs with top-level await", "esm/mod.handler", `2`, []any{"esm", 2}},
		{"es module .js in a type module package", "typed/lib/app.handler", `3`, []any{"typed", "fn", 3}},
		{"nested handler property", "index.nested.deeper.fn", `{}`, "nested"},
		{"callback called later", "index.callback", `"e"`, map[string]any{"via": "callback", "event": "e"}},
		{"context.succeed", "index.succeed", `{}`, "succeeded"},
		{"no answer: null once the event loop is empty", "index.sync", `{}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			api := startFunction(t, stratus.RuntimeNodejs, nodeFiles, tc.handler)
			for range 2 {
				wantResponse(t, api.invoke(t, tc.event, nil), tc.want)
			}
		})
	}

	t.Run("errors, then the process still serves", func(t *testing.T) {
		t.Parallel()
		api := startFunction(t, stratus.RuntimeNodejs, nodeFiles, "index.fails")
		wantError(t, api.invoke(t, `{"n":42}`, nil), "error", "TypeError", "bad value 42", "at check (")
		wantError(t, api.invoke(t, `{"n":43}`, nil), "error", "TypeError", "bad value 43", "TypeError: bad value 43")
	})

	t.Run("connection closed by the server while the handler runs", func(t *testing.T) {
		t.Parallel()
		api := startFunctionIdle(t, stratus.RuntimeNodejs, nodeFiles, "index.slow", 100*time.Millisecond)
		for range 2 {
			wantResponse(t, api.invoke(t, `0.3`, nil), 0.3)
		}
		if n := api.conns.Load(); n < 2 {
			t.Errorf("client used %d connection(s); the server should have closed the first", n)
		}
	})

	t.Run("uncaught exception fails the invocation", func(t *testing.T) {
		t.Parallel()
		api := startFunction(t, stratus.RuntimeNodejs, nodeFiles, "index.crash")
		wantError(t, api.invoke(t, `{}`, nil), "error", "Error", "late", "index.js")
	})

	t.Run("unhandled rejection fails the invocation", func(t *testing.T) {
		t.Parallel()
		api := startFunction(t, stratus.RuntimeNodejs, nodeFiles, "index.reject")
		wantError(t, api.invoke(t, `{}`, nil), "error", "Runtime.UnhandledPromiseRejection", "Error: forgotten", "index.js")
	})

	for _, tc := range []struct {
		handler, errorType, message, stackHas string
	}{
		{"index.throwsString", "string", "plain", ""},
		{"index.callbackError", "RangeError", "out of range", "index.js"},
		{"index.circular", "Runtime.MarshalError", "Unable to stringify response body: Converting circular structure to JSON", ""},
	} {
		t.Run("error "+tc.handler, func(t *testing.T) {
			t.Parallel()
			api := startFunction(t, stratus.RuntimeNodejs, nodeFiles, tc.handler)
			p := api.invoke(t, `{}`, nil)
			if tc.errorType == "Runtime.MarshalError" {
				// V8 describes the cycle after the first line; keep that.
				var b errorBody
				json.Unmarshal(p.body, &b)
				b.ErrorMessage, _, _ = strings.Cut(b.ErrorMessage, "\n")
				p.body, _ = json.Marshal(b)
			}
			wantError(t, p, "error", tc.errorType, tc.message, tc.stackHas)
		})
	}

	for _, tc := range []struct {
		handler, errorType, message string
	}{
		{"missing.handler", "Runtime.ImportModuleError", "Error: Cannot find module 'missing'"},
		{"index.nope", "Runtime.HandlerNotFound", "index.nope is undefined or not exported"},
		{"index", "Runtime.MalformedHandlerName", "Bad handler index"},
		{"throws.handler", "Error", "init failed"},
	} {
		t.Run("init error "+tc.handler, func(t *testing.T) {
			t.Parallel()
			api := startFunction(t, stratus.RuntimeNodejs, nodeFiles, tc.handler)
			wantError(t, api.wait(t), "init", tc.errorType, tc.message, "")
		})
	}

	for _, tc := range []struct {
		handler, errorType, messagePrefix string
	}{
		{"broken.handler", "Runtime.ImportModuleError", "Error: Cannot find module 'does-not-exist'"},
		{"syntax.handler", "Runtime.UserCodeSyntaxError", "SyntaxError: "},
	} {
		t.Run("init error "+tc.handler, func(t *testing.T) {
			t.Parallel()
			api := startFunction(t, stratus.RuntimeNodejs, nodeFiles, tc.handler)
			p := api.wait(t)
			var b errorBody
			if err := json.Unmarshal(p.body, &b); err != nil {
				t.Fatalf("error body %q: %v", p.body, err)
			}
			if p.kind != "init" || b.ErrorType != tc.errorType || !strings.HasPrefix(b.ErrorMessage, tc.messagePrefix) {
				t.Errorf("client posted %s %s, want init %s %q…", p.kind, p.body, tc.errorType, tc.messagePrefix)
			}
		})
	}
}

func TestInstall(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "clients")
	for range 2 { // idempotent
		if err := Install(dir); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"python/bootstrap.py", "nodejs/bootstrap.mjs"} {
		want, err := clients.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the embedded client", name)
		}
	}
	// An older copy is replaced and no temporary files are left behind.
	old := filepath.Join(dir, "python", "bootstrap.py")
	if err := os.WriteFile(old, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Install(dir); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(old); string(got) == "old" {
		t.Error("Install kept an older copy")
	}
	for _, sub := range []string{"python", "nodejs"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 {
			t.Errorf("%s holds %d files, want 1", sub, len(entries))
		}
	}
}

func TestCommand(t *testing.T) {
	if _, err := Command("ruby", "/x"); !errors.Is(err, stratus.ErrInvalid) {
		t.Errorf("Command(ruby) = %v, want ErrInvalid", err)
	}
	t.Run("missing interpreter", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		_, err := Command(stratus.RuntimeNodejs, "/x")
		if !errors.Is(err, stratus.ErrUnavailable) || !strings.Contains(err.Error(), `"node"`) {
			t.Errorf("Command(nodejs) with an empty PATH = %v, want ErrUnavailable naming node", err)
		}
	})
	for _, tc := range []struct {
		runtime string
		want    []string
	}{
		{stratus.RuntimePython3, []string{"python3", "-u", "/opt/stratus/python/bootstrap.py"}},
		{stratus.RuntimeNodejs, []string{"node", "/opt/stratus/nodejs/bootstrap.mjs"}},
	} {
		t.Run(tc.runtime, func(t *testing.T) {
			needInterpreter(t, tc.runtime)
			got, err := Command(tc.runtime, "/opt/stratus")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Command(%s) (-want +got):\n%s", tc.runtime, diff)
			}
		})
	}
}

// BenchmarkRoundTrip measures one no-op invocation through each client:
// the next long poll answered, the handler called, the response posted. The
// "go" case is a minimal Go client in this process: what the fake API and
// loopback cost by themselves.
func BenchmarkRoundTrip(b *testing.B) {
	b.Run("go", func(b *testing.B) {
		var wg sync.WaitGroup
		b.Cleanup(wg.Wait) // runs after the fake API has stopped
		api := newFakeAPI(b, 0)
		base := "http://" + api.srv.Listener.Addr().String() + "/2018-06-01/runtime"
		wg.Go(func() {
			for {
				r, err := http.Get(base + "/invocation/next")
				if err != nil {
					return
				}
				io.Copy(io.Discard, r.Body)
				r.Body.Close()
				if r.StatusCode != http.StatusOK {
					return
				}
				id := r.Header.Get("Lambda-Runtime-Aws-Request-Id")
				r, err = http.Post(base+"/invocation/"+id+"/response", "application/json", strings.NewReader("null"))
				if err != nil {
					return
				}
				io.Copy(io.Discard, r.Body)
				r.Body.Close()
			}
		})
		for b.Loop() {
			api.invoke(b, `{}`, nil)
		}
	})
	for _, tc := range []struct{ runtime, handler string }{
		{stratus.RuntimePython3, "app.noop"},
		{stratus.RuntimeNodejs, "index.noop"},
	} {
		b.Run(tc.runtime, func(b *testing.B) {
			files := map[string]string{
				"app.py":   "def noop(event, context):\n    return None\n",
				"index.js": "exports.noop = async () => null;\n",
			}
			api := startFunction(b, tc.runtime, files, tc.handler)
			api.invoke(b, `{}`, nil) // warm up
			for b.Loop() {
				api.invoke(b, `{}`, nil)
			}
		})
	}
}
