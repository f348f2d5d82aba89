package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Lambda's environment variables as libraries read them (issue 17, item
// 1): AWS_LAMBDA_INITIALIZATION_TYPE and AWS_EXECUTION_ENV as Lambda sets
// them for each runtime, and Powertools for AWS Lambda's Logger, from npm,
// pinned (testdata/lambdaenv/package-lock.json), reporting cold starts.

// powertoolsVersion is the Logger's version testdata/lambdaenv pins.
const powertoolsVersion = "2.36.0"

// powertoolsModules installs testdata/lambdaenv's package-lock.json
// (npmModules) and returns the node_modules folder, once it holds the
// Logger at powertoolsVersion. Without npm it fails under CI=true, else
// skips.
func powertoolsModules(t *testing.T) string {
	t.Helper()
	needTool(t, "npm")
	modules, err := npmModules("lambdaenv")
	if err != nil {
		t.Fatal(err)
	}
	var logger struct {
		Version string `json:"version"`
	}
	b, err := os.ReadFile(filepath.Join(modules, "@aws-lambda-powertools", "logger", "package.json"))
	if err == nil {
		err = json.Unmarshal(b, &logger)
	}
	if err != nil || logger.Version != powertoolsVersion {
		t.Fatalf("testdata/lambdaenv installs the Logger at %q (%v), want %s", logger.Version, err, powertoolsVersion)
	}
	return modules
}

// powertoolsApp logs one line with Powertools' Logger, with the Lambda
// context added as its docs say, and answers with its environment.
const powertoolsApp = `'use strict';
const { Logger } = require('@aws-lambda-powertools/logger');
const logger = new Logger({ serviceName: 'lambdaenv' });
exports.handler = async (event, context) => {
  logger.addContext(context);
  logger.info('invoked');
  return { ...process.env };
};
`

// envApp answers with a Python function's environment.
const envApp = `import os


def handler(event, context):
    return dict(os.environ)
`

// hostRuntimeID is Lambda's identifier of the host's interpreter of a
// runtime family, from its own --version: what AWS_EXECUTION_ENV names
// when a function was deployed with the family only.
func hostRuntimeID(t *testing.T, interp string) string {
	t.Helper()
	out, err := exec.Command(interp, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v", interp, err)
	}
	if m := regexp.MustCompile(`^Python (3\.[0-9]+)\.`).FindStringSubmatch(string(out)); m != nil {
		return "python" + m[1]
	}
	if m := regexp.MustCompile(`^v([0-9]+)\.`).FindStringSubmatch(string(out)); m != nil {
		return "nodejs" + m[1] + ".x"
	}
	t.Fatalf("%s --version: %q", interp, out)
	return ""
}

// TestLambdaEnvRuntimes: a Python, a Node.js and a provided.al2023
// function see AWS_EXECUTION_ENV and AWS_LAMBDA_INITIALIZATION_TYPE as
// Lambda sets them, the per-invocation trace ID, and none of the variables
// Lambda sets only for features Stratus does not have.
func TestLambdaEnvRuntimes(t *testing.T) {
	needTool(t, "python3")
	needTool(t, "node")
	envecho, err := buildStatic("lambdaenv/envecho", filepath.Join(t.TempDir(), "envecho", "bootstrap"))
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "--console=false")
	s.mustCLI("deploy", "py", "--runtime", "python3", "--handler", "app.handler", writeFiles(t, map[string]string{"app.py": envApp}))
	s.mustCLI("deploy", "node", "--runtime", "nodejs", "--handler", "index.handler",
		writeFiles(t, map[string]string{"index.js": "exports.handler = async () => ({ ...process.env });\n"}))
	s.mustCLI("deploy", "al2023", "--runtime", "provided.al2023", filepath.Dir(envecho))
	for _, tc := range []struct {
		fn, execEnv string // "" for none
	}{
		{"py", "AWS_Lambda_" + hostRuntimeID(t, "python3")},
		{"node", "AWS_Lambda_" + hostRuntimeID(t, "node")},
		{"al2023", ""},
	} {
		resp, body := s.invoke(tc.fn, `{}`)
		wantOK(t, resp, body)
		env := decode[map[string]string](t, body)
		if got, ok := env["AWS_EXECUTION_ENV"]; got != tc.execEnv || ok != (tc.execEnv != "") {
			t.Errorf("%s: AWS_EXECUTION_ENV = %q (set %v), want %q", tc.fn, got, ok, tc.execEnv)
		}
		if got := env["AWS_LAMBDA_INITIALIZATION_TYPE"]; got != "on-demand" {
			t.Errorf("%s: AWS_LAMBDA_INITIALIZATION_TYPE = %q, want on-demand", tc.fn, got)
		}
		if got := env["_X_AMZN_TRACE_ID"]; !strings.HasPrefix(got, "Root=1-") {
			t.Errorf("%s: _X_AMZN_TRACE_ID = %q during an invocation", tc.fn, got)
		}
		for k, want := range map[string]string{"TZ": ":UTC", "LANG": "en_US.UTF-8", "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR", "AWS_LAMBDA_FUNCTION_NAME": tc.fn} {
			if env[k] != want {
				t.Errorf("%s: %s = %q, want %q", tc.fn, k, env[k], want)
			}
		}
		for _, k := range []string{"AWS_LAMBDA_LOG_FORMAT", "AWS_LAMBDA_LOG_LEVEL", "AWS_LAMBDA_MAX_CONCURRENCY", "AWS_XRAY_DAEMON_ADDRESS", "_AWS_XRAY_DAEMON_ADDRESS"} {
			if v, ok := env[k]; ok {
				t.Errorf("%s: %s = %q, want it unset (see internal/pool/lambdaenv.go)", tc.fn, k, v)
			}
		}
	}

	// The names Lambda reserves are refused at deploy.
	for _, k := range []string{"AWS_EXECUTION_ENV", "AWS_LAMBDA_INITIALIZATION_TYPE"} {
		r := s.cli("deploy", "py", "--runtime", "python3", "--handler", "app.handler", "--env", k+"=x", writeFiles(t, map[string]string{"app.py": envApp}))
		if r.Code == 0 || !strings.Contains(r.Stderr, k) || !strings.Contains(r.Stderr, "reserved") {
			t.Errorf("deploy with --env %s=x: exit %d, stderr %q; want it refused as reserved", k, r.Code, r.Stderr)
		}
	}
}

// TestLambdaEnvPowertoolsColdStart: Powertools' Logger, unchanged, logs
// cold_start true on a function's first invoke and false on its second,
// as `stratus logs` shows them; on an instance kept by --min-instances
// (provisioned-concurrency) its first invoke is no cold start, as in
// Stratus's own record.
func TestLambdaEnvPowertoolsColdStart(t *testing.T) {
	needTool(t, "node")
	modules := powertoolsModules(t)
	code := writeFiles(t, map[string]string{"pt.js": powertoolsApp})
	if err := os.CopyFS(filepath.Join(code, "node_modules"), os.DirFS(modules)); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "--console=false")
	s.mustCLI("deploy", "pt", "--runtime", "nodejs", "--handler", "pt.handler", "--memory", "512", "--timeout", "30", code)
	s.mustCLI("deploy", "ptwarm", "--runtime", "nodejs", "--handler", "pt.handler", "--memory", "512", "--timeout", "30", "--min-instances", "1", code)

	type step struct {
		fn        string
		wantCold  bool
		wantInit  string
		requestID string
	}
	steps := []*step{
		{fn: "pt", wantCold: true, wantInit: "on-demand"},
		{fn: "pt", wantCold: false, wantInit: "on-demand"},
	}
	for _, st := range steps {
		resp, body := s.invoke(st.fn, `{}`)
		st.requestID = wantOK(t, resp, body)
		if got := resp.Header.Get("X-Stratus-Cold-Start") == "true"; got != st.wantCold {
			t.Errorf("%s %s: X-Stratus-Cold-Start %q, want %v", st.fn, st.requestID, resp.Header.Get("X-Stratus-Cold-Start"), st.wantCold)
		}
		if env := decode[map[string]string](t, body); env["AWS_LAMBDA_INITIALIZATION_TYPE"] != st.wantInit {
			t.Errorf("%s: AWS_LAMBDA_INITIALIZATION_TYPE = %q, want %q", st.fn, env["AWS_LAMBDA_INITIALIZATION_TYPE"], st.wantInit)
		}
	}
	s.waitInstances("ptwarm", 1, 0)
	warm := &step{fn: "ptwarm", wantCold: false, wantInit: "provisioned-concurrency"}
	resp, body := s.invoke(warm.fn, `{}`)
	warm.requestID = wantOK(t, resp, body)
	if resp.Header.Get("X-Stratus-Cold-Start") == "true" {
		t.Errorf("ptwarm: the first invoke on a --min-instances instance was a cold start")
	}
	if env := decode[map[string]string](t, body); env["AWS_LAMBDA_INITIALIZATION_TYPE"] != warm.wantInit {
		t.Errorf("ptwarm: AWS_LAMBDA_INITIALIZATION_TYPE = %q, want %q", env["AWS_LAMBDA_INITIALIZATION_TYPE"], warm.wantInit)
	}
	steps = append(steps, warm)

	// What the Logger wrote, as `stratus logs NAME -o json` gives it: one
	// JSON line per invoke, under its request ID.
	for _, st := range steps {
		var found int
		dec := json.NewDecoder(strings.NewReader(s.mustCLI("logs", st.fn, "--request", st.requestID, "-o", "json")))
		for dec.More() {
			var l struct {
				RequestID string `json:"requestId"`
				Stream    string `json:"stream"`
				Text      string `json:"text"`
			}
			if err := dec.Decode(&l); err != nil {
				t.Fatalf("stratus logs -o json: %v", err)
			}
			var pl struct {
				Message   string `json:"message"`
				ColdStart *bool  `json:"cold_start"`
				Function  string `json:"function_name"`
				RequestID string `json:"function_request_id"`
				Service   string `json:"service"`
			}
			if l.Stream != "stdout" || json.Unmarshal([]byte(l.Text), &pl) != nil || pl.Message != "invoked" {
				continue
			}
			found++
			if pl.ColdStart == nil || *pl.ColdStart != st.wantCold {
				t.Errorf("%s %s: Logger wrote cold_start %s, want %v: %s", st.fn, st.requestID, boolOrNil(pl.ColdStart), st.wantCold, l.Text)
			}
			if pl.Function != st.fn || pl.RequestID != st.requestID || l.RequestID != st.requestID || pl.Service != "lambdaenv" {
				t.Errorf("%s %s: Logger line %s (log line of request %q)", st.fn, st.requestID, l.Text, l.RequestID)
			}
		}
		if found != 1 {
			t.Errorf("%s %s: %d Logger lines in stratus logs, want 1\n%s", st.fn, st.requestID, found, s.mustCLI("logs", st.fn))
		}
	}
}

// boolOrNil prints a *bool's value, or nil.
func boolOrNil(b *bool) string {
	if b == nil {
		return "nil"
	}
	return fmt.Sprint(*b)
}
