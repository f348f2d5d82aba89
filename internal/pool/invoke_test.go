package pool

import (
	"encoding/json"
	"errors"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
)

// One invocation: its answer, record, platform lines, timeout, crash and
// init failures.

func TestColdThenWarm(t *testing.T) {
	e := newEnv(t, opts{})
	e.deploy("fn", 1, nil)

	cold := e.mustInvoke("fn", map[string]any{"op": "echo"})
	ec := e.success(cold)
	r := cold.Record
	if !r.Cold || r.InitDurationMs <= 0 {
		t.Errorf("first invocation: cold %v, init %.2f ms; want a cold start with its init duration", r.Cold, r.InitDurationMs)
	}
	if r.Function != "fn" || r.Version != 1 || r.MemoryMB != 256 || r.Instance == "" || r.ErrorType != "" {
		t.Errorf("record %+v", r)
	}
	// Lambda bills a cold start's init (since August 2025).
	if r.BilledMs < 1 || r.BilledMs != max(1, int64(math.Ceil(r.DurationMs+r.InitDurationMs))) {
		t.Errorf("billed %d ms for %.3f ms after an init of %.3f ms, want both rounded up to 1 ms steps, at least 1", r.BilledMs, r.DurationMs, r.InitDurationMs)
	}
	if r.MaxMemoryMB < 1 {
		t.Errorf("max memory used %d MB, want > 0", r.MaxMemoryMB)
	}
	e.checkPlatformLines(r)

	// What the instance got: Lambda's environment, the code as working
	// dir, the Runtime API headers.
	codeDir, _ := filepath.EvalSymlinks(e.codeDir)
	wantEnv := map[string]string{
		"AWS_LAMBDA_FUNCTION_NAME": "fn", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256", "AWS_REGION": "local", "AWS_DEFAULT_REGION": "local",
		"LAMBDA_TASK_ROOT": e.codeDir, "LAMBDA_RUNTIME_DIR": "/opt/stratus-runtimes", "_HANDLER": "bootstrap",
		"TZ": ":UTC", "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/fn", "V": "1",
	}
	for k, v := range wantEnv {
		if ec.Env[k] != v {
			t.Errorf("instance env %s = %q, want %q", k, ec.Env[k], v)
		}
	}
	if s := ec.Env["AWS_LAMBDA_LOG_STREAM_NAME"]; !strings.HasSuffix(s, "/[$LATEST]"+r.Instance) {
		t.Errorf("AWS_LAMBDA_LOG_STREAM_NAME = %q, want it to end in /[$LATEST]%s", s, r.Instance)
	}
	if ec.Dir != codeDir {
		t.Errorf("working dir %q, want %q", ec.Dir, codeDir)
	}
	if ec.ARN != "arn:aws:lambda:local:000000000000:function:fn" {
		t.Errorf("function ARN %q", ec.ARN)
	}
	if !strings.HasPrefix(ec.Trace, "Root=1-") {
		t.Errorf("trace ID %q", ec.Trace)
	}
	dl, _ := strconv.ParseInt(ec.Deadline, 10, 64)
	if want := r.Start.Add(30 * time.Second).UnixMilli(); dl != want {
		t.Errorf("deadline %d, want start + 30 s = %d", dl, want)
	}

	warm := e.mustInvoke("fn", map[string]any{"op": "echo"})
	wc := e.success(warm)
	if warm.Record.Cold || warm.Record.InitDurationMs != 0 {
		t.Errorf("second invocation: cold %v, init %.2f ms; want warm with no init duration", warm.Record.Cold, warm.Record.InitDurationMs)
	}
	if warm.Record.Instance != r.Instance || wc.PID != ec.PID {
		t.Errorf("second invocation ran on %s (pid %d), want the warm %s (pid %d)", warm.Record.Instance, wc.PID, r.Instance, ec.PID)
	}
	if wr := warm.Record; wr.BilledMs != max(1, int64(math.Ceil(wr.DurationMs))) {
		t.Errorf("billed %d ms for %.3f ms, want the duration rounded up to 1 ms steps, at least 1", wr.BilledMs, wr.DurationMs)
	}
	e.checkPlatformLines(warm.Record)
	if got := e.gauges("fn"); got != (stratus.InstanceStats{Live: 1, Idle: 1}) {
		t.Errorf("Stats = %+v, want one idle instance", got)
	}

	// The instance's output is captured line by line and tied to the
	// invocation in flight.
	p := e.mustInvoke("fn", map[string]any{"op": "print", "text": "hello from the function"})
	e.success(p)
	for _, stream := range []string{"stdout", "stderr"} {
		e.waitFor(stream+" line", func() bool { return len(e.sink.linesOf(p.Record.RequestID, stream)) == 1 })
		l := e.sink.linesOf(p.Record.RequestID, stream)[0]
		if l.Text != "hello from the function" || l.Instance != r.Instance || l.Function != "fn" {
			t.Errorf("%s line %+v", stream, l)
		}
	}
}

func TestTimeout(t *testing.T) {
	e := newEnv(t, opts{})
	e.deploy("fn", 1, func(c *stratus.FunctionConfig) { c.TimeoutSec = 1 })
	first := e.success(e.mustInvoke("fn", map[string]any{"op": "echo"}))

	resp := e.mustInvoke("fn", block(e.gate())) // never opened
	r := resp.Record
	if resp.ErrorType != "Sandbox.Timedout" || r.Outcome != stratus.OutcomeTimeout || r.ErrorType != "Sandbox.Timedout" {
		t.Errorf("error %q, outcome %q, record error %q; want Sandbox.Timedout, timeout", resp.ErrorType, r.Outcome, r.ErrorType)
	}
	var obj struct {
		ErrorMessage string `json:"errorMessage"`
		ErrorType    string `json:"errorType"`
	}
	if err := json.Unmarshal(resp.Body, &obj); err != nil || !strings.HasSuffix(obj.ErrorMessage, r.RequestID+" Task timed out after 1.00 seconds") {
		t.Errorf("body %s, want Lambda's timeout message", resp.Body)
	}
	if r.DurationMs < 1000 || r.BilledMs < 1000 {
		t.Errorf("duration %.2f ms, billed %d ms; want at least the timeout", r.DurationMs, r.BilledMs)
	}
	lines := e.sink.linesOf(r.RequestID, "platform")
	if len(lines) != 3 || !strings.HasSuffix(lines[2].Text, "\tStatus: timeout") {
		t.Errorf("platform lines %+v, want a REPORT with Status: timeout", lines)
	}
	// The instance is dropped and its process stopped.
	e.gone(first.PID)
	e.waitStats("fn", stratus.InstanceStats{})
	next := e.mustInvoke("fn", map[string]any{"op": "echo"})
	if !next.Record.Cold || next.Record.Instance == r.Instance {
		t.Errorf("after a timeout: cold %v on %s, want a new instance", next.Record.Cold, next.Record.Instance)
	}
}

func TestCrashReplaced(t *testing.T) {
	e := newEnv(t, opts{})
	e.deploy("fn", 1, nil)
	first := e.mustInvoke("fn", map[string]any{"op": "echo"})
	pid := e.success(first).PID

	resp := e.mustInvoke("fn", map[string]any{"op": "exit", "code": 3})
	if resp.ErrorType != "Runtime.ExitError" || resp.Record.Outcome != stratus.OutcomeCrash {
		t.Errorf("error %q, outcome %q; want Runtime.ExitError, crash", resp.ErrorType, resp.Record.Outcome)
	}
	if !strings.Contains(string(resp.Body), `"errorMessage":"Runtime exited with error: exit status 3"`) {
		t.Errorf("body %s", resp.Body)
	}
	e.checkPlatformLines(resp.Record)
	e.gone(pid)
	e.waitStats("fn", stratus.InstanceStats{})
	next := e.mustInvoke("fn", map[string]any{"op": "echo"})
	if !next.Record.Cold || next.Record.Instance == first.Record.Instance {
		t.Errorf("after a crash: cold %v on %s, want a new instance", next.Record.Cold, next.Record.Instance)
	}

	// A function error is not a crash: the instance stays.
	ferr := e.mustInvoke("fn", map[string]any{"op": "error", "text": "bad input"})
	if ferr.ErrorType != "TestError" || ferr.Record.Outcome != stratus.OutcomeError || ferr.Record.Instance != next.Record.Instance {
		t.Errorf("function error: %q %q on %s", ferr.ErrorType, ferr.Record.Outcome, ferr.Record.Instance)
	}
	if again := e.mustInvoke("fn", map[string]any{"op": "echo"}); again.Record.Instance != next.Record.Instance {
		t.Errorf("after a function error ran on %s, want %s", again.Record.Instance, next.Record.Instance)
	}
}

func TestInitFailures(t *testing.T) {
	for _, tc := range []struct {
		mode, errType, msg string
		initTimeout        time.Duration // short only where it is the failure
	}{
		{"error", "Runtime.HandlerNotFound", "cannot load the handler", 30 * time.Second},
		{"exit", "Runtime.ExitError", "Runtime exited with error: exit status 2", 30 * time.Second},
		{"hang", "Runtime.InitTimeout", "runtime did not ask for an invocation within 500ms of starting", 500 * time.Millisecond},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			e := newEnv(t, opts{initTimeout: tc.initTimeout})
			e.deploy("fn", 1, func(c *stratus.FunctionConfig) { c.Env["RT_INIT"] = tc.mode })
			resp := e.mustInvoke("fn", map[string]any{"op": "echo"})
			var obj struct {
				ErrorMessage string `json:"errorMessage"`
				ErrorType    string `json:"errorType"`
			}
			_ = json.Unmarshal(resp.Body, &obj)
			if resp.ErrorType != tc.errType || obj.ErrorType != tc.errType || obj.ErrorMessage != tc.msg {
				t.Errorf("got %q %s, want %s: %s", resp.ErrorType, resp.Body, tc.errType, tc.msg)
			}
			r := resp.Record
			if !r.Cold || r.Outcome != stratus.OutcomeCrash || r.ErrorType != tc.errType || r.BilledMs < 1 {
				t.Errorf("record %+v", r)
			}
			if _, n := e.sink.recordOf(r.RequestID); n != 1 {
				t.Errorf("%d records, want 1", n)
			}
			e.waitStats("fn", stratus.InstanceStats{})
			e.waitFor("no process", func() bool { return len(e.procs()) == 0 })
		})
	}
}

func TestUnknownFunction(t *testing.T) {
	e := newEnv(t, opts{})
	if _, _, err := e.invoke("nope", map[string]any{}); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("err = %v, want ErrNotFound", err)
	}
}
