package e2e

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
)

// lambdaError is Lambda's error object as a function error returns it.
type lambdaError struct {
	ErrorMessage string   `json:"errorMessage"`
	ErrorType    string   `json:"errorType"`
	StackTrace   []string `json:"stackTrace"`
}

// wantFunctionError checks that an invoke answered a function error: 200,
// X-Amz-Function-Error set and Lambda's error object as the body.
func wantFunctionError(t *testing.T, resp *http.Response, body []byte) lambdaError {
	t.Helper()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Amz-Function-Error") == "" {
		t.Fatalf("function error: status %d, X-Amz-Function-Error %q, body %s", resp.StatusCode, resp.Header.Get("X-Amz-Function-Error"), body)
	}
	return decode[lambdaError](t, body)
}

// wantOK checks that an invoke succeeded and returns its request ID.
func wantOK(t *testing.T, resp *http.Response, body []byte) string {
	t.Helper()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Amz-Function-Error") != "" {
		t.Fatalf("invoke: status %d, X-Amz-Function-Error %q, body %s", resp.StatusCode, resp.Header.Get("X-Amz-Function-Error"), body)
	}
	id := resp.Header.Get("X-Amzn-Requestid")
	if id == "" {
		t.Fatalf("invoke answered no X-Amzn-Requestid header")
	}
	return id
}

const pythonApp = `import json
import os


def handler(event, context):
    if event.get("fail"):
        return fail(event["fail"])
    print("python saw " + json.dumps(event, sort_keys=True))
    return {
        "event": event,
        "requestId": context.aws_request_id,
        "functionName": context.function_name,
        "functionVersion": context.function_version,
        "memory": context.memory_limit_in_mb,
        "arn": context.invoked_function_arn,
        "logGroup": context.log_group_name,
        "logStream": context.log_stream_name,
        "remainingMs": context.get_remaining_time_in_millis(),
        "cwd": os.getcwd(),
        "handlerEnv": os.environ.get("_HANDLER"),
        "greeting": os.environ.get("GREETING"),
    }


def fail(message):
    raise ValueError(message)
`

// TestPythonFunction deploys a Python handler (a top-level module and one
// in a subfolder), and checks its result, its context object, an exception
// and a module that cannot be imported.
func TestPythonFunction(t *testing.T) {
	needTool(t, "python3")
	s := startServer(t)
	code := writeFiles(t, map[string]string{
		"app.py":     pythonApp,
		"lib/sub.py": "def handle(event, context):\n    return {'from': 'lib/sub', 'x': event.get('x'), 'requestId': context.aws_request_id}\n",
		"broken.py":  "import module_that_does_not_exist_xyz\n\ndef handler(event, context):\n    return 1\n",
		"helper.txt": "not python",
	})
	out := s.mustCLI("deploy", "py", "--runtime", "python3", "--handler", "app.handler", "--memory", "192", "--timeout", "7", "--env", "GREETING=hello", code)
	if !strings.Contains(out, "deployed py version 1 (python3") {
		t.Fatalf("deploy printed %q", out)
	}

	resp, body := s.invoke("py", `{"k":"v","n":2}`)
	id := wantOK(t, resp, body)
	type pyAnswer struct {
		Event           map[string]any `json:"event"`
		RequestID       string         `json:"requestId"`
		FunctionName    string         `json:"functionName"`
		FunctionVersion string         `json:"functionVersion"`
		Memory          int            `json:"memory"`
		ARN             string         `json:"arn"`
		LogGroup        string         `json:"logGroup"`
		LogStream       string         `json:"logStream"`
		RemainingMs     int64          `json:"remainingMs"`
		Cwd             string         `json:"cwd"`
		HandlerEnv      string         `json:"handlerEnv"`
		Greeting        string         `json:"greeting"`
	}
	a := decode[pyAnswer](t, body)
	if a.Event["k"] != "v" || a.Event["n"] != float64(2) {
		t.Errorf("event = %v, want k=v n=2", a.Event)
	}
	if a.RequestID != id {
		t.Errorf("context.aws_request_id = %q, X-Amzn-Requestid = %q", a.RequestID, id)
	}
	if a.FunctionName != "py" || a.FunctionVersion != "$LATEST" || a.Memory != 192 || a.LogGroup != "/aws/lambda/py" || a.LogStream == "" {
		t.Errorf("context = %+v", a)
	}
	if !strings.HasSuffix(a.ARN, ":function:py") {
		t.Errorf("invoked_function_arn = %q", a.ARN)
	}
	if a.RemainingMs <= 0 || a.RemainingMs > 7000 {
		t.Errorf("get_remaining_time_in_millis() = %d, want in (0, 7000]", a.RemainingMs)
	}
	if a.HandlerEnv != "app.handler" || a.Greeting != "hello" {
		t.Errorf("_HANDLER %q GREETING %q", a.HandlerEnv, a.Greeting)
	}
	if resp.Header.Get("X-Stratus-Cold-Start") != "true" {
		t.Errorf("first invoke: X-Stratus-Cold-Start = %q, want true", resp.Header.Get("X-Stratus-Cold-Start"))
	}

	// The CLI prints the result.
	got := decode[pyAnswer](t, []byte(s.mustCLI("invoke", "py", "--data", `{"via":"cli"}`)))
	if got.Event["via"] != "cli" || got.RequestID == "" || got.RequestID == id {
		t.Errorf("cli invoke answered %+v", got)
	}

	// An exception is Lambda's error object.
	resp, body = s.invoke("py", `{"fail":"bad value"}`)
	e := wantFunctionError(t, resp, body)
	if e.ErrorType != "ValueError" || e.ErrorMessage != "bad value" {
		t.Errorf("error = %+v, want ValueError / bad value", e)
	}
	if st := strings.Join(e.StackTrace, ""); !strings.Contains(st, "app.py") || !strings.Contains(st, "in fail") || !strings.Contains(st, "raise ValueError(message)") {
		t.Errorf("stackTrace does not show the handler's frames: %q", e.StackTrace)
	}
	if st := strings.Join(e.StackTrace, ""); strings.Contains(st, "bootstrap.py") {
		t.Errorf("stackTrace shows the runtime's own frames: %q", e.StackTrace)
	}
	r := s.cli("invoke", "py", "--data", `{"fail":"bad value"}`)
	if r.Code == 0 || !strings.Contains(r.Stdout, `"errorType": "ValueError"`) && !strings.Contains(r.Stdout, `"errorType":"ValueError"`) {
		t.Errorf("cli invoke of a failing handler: exit %d stdout %q", r.Code, r.Stdout)
	}
	// The instance survives a handler exception.
	resp, body = s.invoke("py", `{"after":"error"}`)
	wantOK(t, resp, body)
	if resp.Header.Get("X-Stratus-Cold-Start") != "false" {
		t.Errorf("after a handler exception the next invoke was cold: the instance did not survive")
	}

	// A module in a subfolder, named with a slash or with dots.
	for name, h := range map[string]string{"subslash": "lib/sub.handle", "subdot": "lib.sub.handle"} {
		s.mustCLI("deploy", name, "--runtime", "python3", "--handler", h, code)
		resp, body = s.invoke(name, `{"x":42}`)
		id := wantOK(t, resp, body)
		sub := decode[map[string]any](t, body)
		if sub["from"] != "lib/sub" || sub["x"] != float64(42) || sub["requestId"] != id {
			t.Errorf("handler %s answered %s", h, body)
		}
	}

	// A module that fails to import: the runtime's init error.
	s.mustCLI("deploy", "broken", "--runtime", "python3", "--handler", "broken.handler", code)
	resp, body = s.invoke("broken", `{}`)
	e = wantFunctionError(t, resp, body)
	if e.ErrorType != "Runtime.ImportModuleError" || !strings.HasPrefix(e.ErrorMessage, "Unable to import module 'broken': ") ||
		!strings.Contains(e.ErrorMessage, "module_that_does_not_exist_xyz") {
		t.Errorf("import error = %+v", e)
	}
	r = s.cli("invoke", "broken")
	if r.Code == 0 || !strings.Contains(r.Stdout, "Unable to import module 'broken'") {
		t.Errorf("cli invoke of a broken module: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	// A handler function the module lacks.
	s.mustCLI("deploy", "nohandler", "--runtime", "python3", "--handler", "app.nothing_here", code)
	resp, body = s.invoke("nohandler", `{}`)
	e = wantFunctionError(t, resp, body)
	if e.ErrorType != "Runtime.HandlerNotFound" || !strings.Contains(e.ErrorMessage, "nothing_here") {
		t.Errorf("missing handler function: %+v", e)
	}
}

const nodeCJS = `exports.handler = async (event, context) => {
  console.log('cjs saw ' + JSON.stringify(event));
  if (event.fail) throw new TypeError(event.fail);
  return { style: 'cjs-async', event, requestId: context.awsRequestId, functionName: context.functionName,
    memory: context.memoryLimitInMB, arn: context.invokedFunctionArn, remainingMs: context.getRemainingTimeInMillis() };
};
`

const nodeCallback = `exports.handler = function (event, context, callback) {
  setTimeout(() => {
    if (event.fail) return callback(new RangeError(event.fail));
    callback(null, { style: 'callback', n: event.n, requestId: context.awsRequestId });
  }, 5);
};
`

const nodeMJS = `import { basename } from 'node:path';
export const handler = async (event, context) => {
  if (event.fail) {
    const e = new Error(event.fail);
    e.name = 'CustomError';
    throw e;
  }
  return { style: 'mjs', file: basename(import.meta.url), n: event.n, requestId: context.awsRequestId };
};
`

const nodeTypeModule = `export async function handler(event, context) {
  return { style: 'type-module', isESM: typeof require === 'undefined', n: event.n, requestId: context.awsRequestId };
}
`

// TestNodeFunction deploys Node handlers: CommonJS (async and callback
// style), an ES module (.mjs) and a .js file in a "type": "module" package,
// and checks their results and thrown errors.
func TestNodeFunction(t *testing.T) {
	needTool(t, "node")
	s := startServer(t)
	code := writeFiles(t, map[string]string{
		"index.js":         nodeCJS,
		"cb.js":            nodeCallback,
		"esm.mjs":          nodeMJS,
		"mod/package.json": `{"type": "module"}`,
		"mod/handler.js":   nodeTypeModule,
		"missing-dep.js":   "const x = require('./no-such-file');\nexports.handler = async () => x;\n",
		"package.json":     `{"name": "fn", "version": "1.0.0"}`,
	})
	s.mustCLI("deploy", "node", "--runtime", "nodejs", "--handler", "index.handler", "--memory", "256", code)
	resp, body := s.invoke("node", `{"n":1}`)
	id := wantOK(t, resp, body)
	type nodeAnswer struct {
		Style        string         `json:"style"`
		Event        map[string]any `json:"event"`
		RequestID    string         `json:"requestId"`
		FunctionName string         `json:"functionName"`
		Memory       any            `json:"memory"`
		ARN          string         `json:"arn"`
		RemainingMs  int64          `json:"remainingMs"`
		N            int            `json:"n"`
		File         string         `json:"file"`
		IsESM        bool           `json:"isESM"`
	}
	a := decode[nodeAnswer](t, body)
	if a.Style != "cjs-async" || a.Event["n"] != float64(1) || a.RequestID != id || a.FunctionName != "node" ||
		!strings.HasSuffix(a.ARN, ":function:node") || a.RemainingMs <= 0 {
		t.Errorf("CommonJS async handler answered %s (request %s)", body, id)
	}
	if m, ok := a.Memory.(string); ok && m != "256" || !ok && a.Memory != float64(256) {
		t.Errorf("context.memoryLimitInMB = %v, want 256", a.Memory)
	}

	resp, body = s.invoke("node", `{"fail":"wrong type"}`)
	e := wantFunctionError(t, resp, body)
	if e.ErrorType != "TypeError" || e.ErrorMessage != "wrong type" {
		t.Errorf("thrown TypeError = %+v", e)
	}
	if len(e.StackTrace) == 0 || !strings.HasPrefix(e.StackTrace[0], "TypeError: wrong type") || !strings.Contains(strings.Join(e.StackTrace, "\n"), "index.js") {
		t.Errorf("stackTrace = %q, want the error line and the handler's frame", e.StackTrace)
	}
	if strings.Contains(strings.Join(e.StackTrace, "\n"), "bootstrap.mjs") {
		t.Errorf("stackTrace shows the runtime's own frames: %q", e.StackTrace)
	}

	cases := []struct {
		name, handler, style string
	}{
		{"cb", "cb.handler", "callback"},
		{"esm", "esm.handler", "mjs"},
		{"typemod", "mod/handler.handler", "type-module"},
	}
	for _, c := range cases {
		s.mustCLI("deploy", c.name, "--runtime", "nodejs", "--handler", c.handler, code)
		resp, body := s.invoke(c.name, `{"n":7}`)
		id := wantOK(t, resp, body)
		a := decode[nodeAnswer](t, body)
		if a.Style != c.style || a.N != 7 || a.RequestID != id {
			t.Errorf("%s (%s) answered %s", c.name, c.handler, body)
		}
		switch c.name {
		case "esm":
			if a.File != "esm.mjs" {
				t.Errorf(".mjs handler ran from %q", a.File)
			}
		case "typemod":
			if !a.IsESM {
				t.Errorf(".js in a \"type\": \"module\" package was loaded as CommonJS")
			}
		}
	}

	resp, body = s.invoke("cb", `{"fail":"out of range"}`)
	e = wantFunctionError(t, resp, body)
	if e.ErrorType != "RangeError" || e.ErrorMessage != "out of range" || len(e.StackTrace) == 0 {
		t.Errorf("callback(error) = %+v", e)
	}
	resp, body = s.invoke("esm", `{"fail":"custom"}`)
	e = wantFunctionError(t, resp, body)
	if e.ErrorType != "CustomError" || e.ErrorMessage != "custom" || !strings.Contains(strings.Join(e.StackTrace, "\n"), "esm.mjs") {
		t.Errorf("ES module error = %+v", e)
	}

	s.mustCLI("deploy", "missingdep", "--runtime", "nodejs", "--handler", "missing-dep.handler", code)
	resp, body = s.invoke("missingdep", `{}`)
	e = wantFunctionError(t, resp, body)
	if e.ErrorType != "Runtime.ImportModuleError" || !strings.Contains(e.ErrorMessage, "no-such-file") {
		t.Errorf("require of a missing file = %+v", e)
	}
}

// bashBootstrap is a custom runtime written in bash with curl, after the
// example in AWS's documentation. It answers with the Runtime API headers
// it saw; an event with "fail" posts an error instead.
const bashBootstrap = `#!/bin/bash
set -euo pipefail
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
HEADERS="$(mktemp)"
trap 'rm -f "$HEADERS"' EXIT
hdr() { { grep -i "^$1:" "$HEADERS" || true; } | head -n 1 | cut -d' ' -f2- | tr -d '\r\n'; }
echo "bash runtime started in $PWD"
while true; do
  EVENT=$(curl -sS -D "$HEADERS" "$API/invocation/next")
  REQUEST_ID=$(hdr Lambda-Runtime-Aws-Request-Id)
  echo "bash handling $REQUEST_ID: $EVENT"
  if [[ "$EVENT" == *'"fail"'* ]]; then
    curl -sS -o /dev/null -X POST "$API/invocation/$REQUEST_ID/error" \
      -H 'Lambda-Runtime-Function-Error-Type: Bash.Failure' \
      -d '{"errorMessage":"bash says no","errorType":"Bash.Failure","stackTrace":["bootstrap line 1"]}'
    continue
  fi
  COGNITO=$(hdr Lambda-Runtime-Cognito-Identity)
  COGNITO=${COGNITO//\"/\\\"}
  RESPONSE="{\"bash\":true,\"event\":$EVENT,\"requestId\":\"$REQUEST_ID\",\"deadlineMs\":\"$(hdr Lambda-Runtime-Deadline-Ms)\",\"arn\":\"$(hdr Lambda-Runtime-Invoked-Function-Arn)\",\"trace\":\"$(hdr Lambda-Runtime-Trace-Id)\",\"clientContext\":\"$(hdr Lambda-Runtime-Client-Context)\",\"cognito\":\"$COGNITO\",\"fn\":\"$AWS_LAMBDA_FUNCTION_NAME\"}"
  curl -sS -o /dev/null -X POST "$API/invocation/$REQUEST_ID/response" -d "$RESPONSE"
done
`

// TestBashBootstrap runs a bash bootstrap that uses curl against the
// Runtime API (the provided runtime), with a success and an error.
func TestBashBootstrap(t *testing.T) {
	needTool(t, "bash")
	needTool(t, "curl")
	s := startServer(t)
	code := writeFiles(t, map[string]string{"bootstrap": bashBootstrap})
	// A bash bootstrap forks some twenty processes per invocation: at
	// 128 MB (7 % of a CPU) that takes seconds on a busy machine.
	out := s.mustCLI("deploy", "sh", "--runtime", "provided", "--timeout", "10", "--memory", "1024", code)
	if !strings.Contains(out, "deployed sh version 1 (provided") {
		t.Fatalf("deploy printed %q", out)
	}
	clientContext := base64.StdEncoding.EncodeToString([]byte(`{"custom":{"k":"v"}}`))
	resp, body := s.do("POST", "/v1/functions/sh/invoke", []byte(`{"hello":"bash"}`), true,
		"X-Amz-Client-Context", clientContext, "X-Stratus-Cognito-Identity", `{"cognitoIdentityId":"id-1"}`)
	id := wantOK(t, resp, body)
	type bashAnswer struct {
		Bash          bool              `json:"bash"`
		Event         map[string]string `json:"event"`
		RequestID     string            `json:"requestId"`
		DeadlineMs    string            `json:"deadlineMs"`
		ARN           string            `json:"arn"`
		Trace         string            `json:"trace"`
		ClientContext string            `json:"clientContext"`
		Cognito       string            `json:"cognito"`
		Fn            string            `json:"fn"`
	}
	a := decode[bashAnswer](t, body)
	if !a.Bash || a.Event["hello"] != "bash" || a.RequestID != id || a.Fn != "sh" {
		t.Errorf("bash answered %s (request %s)", body, id)
	}
	if len(a.DeadlineMs) < 13 || !strings.HasSuffix(a.ARN, ":function:sh") || !strings.HasPrefix(a.Trace, "Root=1-") {
		t.Errorf("Runtime API headers: deadline %q arn %q trace %q", a.DeadlineMs, a.ARN, a.Trace)
	}
	if a.ClientContext != clientContext || a.Cognito != `{"cognitoIdentityId":"id-1"}` {
		t.Errorf("client context %q cognito identity %q", a.ClientContext, a.Cognito)
	}

	got := s.mustCLI("invoke", "sh", "--data", `{"via":"cli"}`)
	if !strings.Contains(got, `"via":"cli"`) || !strings.Contains(got, `"bash":true`) {
		t.Errorf("cli invoke printed %q", got)
	}

	resp, body = s.invoke("sh", `{"fail":"yes"}`)
	e := wantFunctionError(t, resp, body)
	if e.ErrorType != "Bash.Failure" || e.ErrorMessage != "bash says no" || len(e.StackTrace) != 1 {
		t.Errorf("error posted by bash = %+v", e)
	}
	r := s.cli("invoke", "sh", "--data", `{"fail":"yes"}`)
	if r.Code == 0 || !strings.Contains(r.Stdout, "bash says no") {
		t.Errorf("cli invoke of a failing bash function: exit %d stdout %q", r.Code, r.Stdout)
	}
	// The same bash process answers again after an error.
	resp, body = s.invoke("sh", `{"again":"1"}`)
	wantOK(t, resp, body)
	if resp.Header.Get("X-Stratus-Cold-Start") != "false" {
		t.Errorf("after an error the bash runtime was restarted")
	}
}
