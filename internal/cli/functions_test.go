package cli

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

var testTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func testFunction() v1.Function {
	return v1.Function{
		Name: "fn", Version: 2, CodeSHA: "abc123", CodeSize: 321, CreatedAt: testTime, UpdatedAt: testTime,
		Config: stratus.FunctionConfig{
			Runtime: "python3", Handler: "app.handler", MemoryMB: 256, TimeoutSec: 10, Auth: stratus.AuthToken,
			MaxConcurrency: 100,
		},
		Instances: v1.Instances{Live: 3, Idle: 2, Busy: 1},
		URL:       "/fn/fn",
	}
}

// deployForm reads the deploy request's form: its config and the names
// in its code zip.
func deployForm(t *testing.T, c call) (stratus.FunctionConfig, []string) {
	t.Helper()
	mt, params, err := mime.ParseMediaType(c.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		t.Fatalf("Content-Type %q", c.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(bytes.NewReader(c.Body), params["boundary"])
	var cfg stratus.FunctionConfig
	var files []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		switch p.FormName() {
		case v1.PartConfig:
			if err := json.Unmarshal(b, &cfg); err != nil {
				t.Fatalf("config part %q: %v", b, err)
			}
		case v1.PartCode:
			zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
			if err != nil {
				t.Fatalf("code part: %v", err)
			}
			for _, f := range zr.File {
				files = append(files, f.Name)
			}
		}
	}
	return cfg, files
}

func TestDeploy(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.py"), []byte("def handler(e, c): return e\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fn := testFunction()
	f := newFakeAPI(t)
	f.on("PUT /v1/functions/fn", jsonReply(201, fn))

	r := f.run("deploy", "fn", dir, "--runtime", "python3", "--handler", "app.handler", "--memory", "256",
		"--timeout", "10", "--env", "A=1", "--env", "B=x=y", "--max-retries", "0", "--auth", "none")
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	c := f.only()
	if c.Method != "PUT" || c.Path != "/v1/functions/fn" || c.Header.Get("Authorization") != "Bearer tok" {
		t.Errorf("request %s %s, Authorization %q", c.Method, c.Path, c.Header.Get("Authorization"))
	}
	cfg, files := deployForm(t, c)
	zero := 0
	want := stratus.FunctionConfig{
		Runtime: "python3", Handler: "app.handler", MemoryMB: 256, TimeoutSec: 10, Auth: stratus.AuthNone,
		Env: map[string]string{"A": "1", "B": "x=y"}, MaxRetries: &zero,
	}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("config sent (-want +got):\n%s", diff)
	}
	if !cmp.Equal(files, []string{"app.py"}) {
		t.Errorf("code zip holds %v, want [app.py]", files)
	}
	if want := "deployed fn version 2 (python3, 321 bytes of code)\nurl: /fn/fn\n"; r.stdout != want {
		t.Errorf("table output %q, want %q", r.stdout, want)
	}

	// From an image: no code part; JSON output.
	f = newFakeAPI(t)
	img := fn
	img.Config = stratus.FunctionConfig{Image: "echo:v1", Runtime: stratus.RuntimeImage}
	f.on("PUT /v1/functions/fn", jsonReply(200, img))
	r = f.run("deploy", "fn", "--image", "echo:v1", "-o", "json")
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	cfg, files = deployForm(t, f.only())
	if cfg.Image != "echo:v1" || files != nil {
		t.Errorf("image deploy sent config %+v and code %v", cfg, files)
	}
	var got v1.Function
	decodeJSON(t, r.stdout, &got)
	if diff := cmp.Diff(img, got); diff != "" {
		t.Errorf("json output (-want +got):\n%s", diff)
	}
}

func TestInvoke(t *testing.T) {
	f := newFakeAPI(t)
	f.on("POST /v1/functions/fn/invoke", reply{status: 200, body: `{"ok":true,"n":1}`,
		header: map[string]string{v1.HeaderRequestID: "req-1"}})
	r := f.run("invoke", "fn", "--data", `{"a":1}`)
	if r.code != ExitOK || r.stdout != "{\"ok\":true,\"n\":1}\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	c := f.only()
	if string(c.Body) != `{"a":1}` || c.Header.Get(v1.HeaderInvocationType) != "" {
		t.Errorf("sent body %q, invocation type %q", c.Body, c.Header.Get(v1.HeaderInvocationType))
	}
	// -o json prints the result indented.
	r = f.run("invoke", "fn", "-o", "json")
	if r.code != ExitOK || r.stdout != "{\n  \"n\": 1,\n  \"ok\": true\n}\n" {
		t.Errorf("json: exit %d, stdout %q", r.code, r.stdout)
	}
	// --data @FILE
	ev := filepath.Join(t.TempDir(), "ev.json")
	os.WriteFile(ev, []byte(`{"from":"file"}`), 0o644)
	if r = f.run("invoke", "fn", "--data", "@"+ev); r.code != ExitOK {
		t.Errorf("--data @file: exit %d %s", r.code, r.stderr)
	}
	if cs := f.requests(); string(cs[len(cs)-1].Body) != `{"from":"file"}` {
		t.Errorf("--data @file sent %q", cs[len(cs)-1].Body)
	}
	// A function error: its body is printed, as it came, and the exit is 1.
	f.on("POST /v1/functions/fn/invoke", reply{status: 200, body: `{"errorType":"ValueError","errorMessage":"boom"}`,
		header: map[string]string{v1.HeaderFunctionError: "Unhandled", v1.HeaderRequestID: "req-2"}})
	r = f.run("invoke", "fn", "-o", "json")
	if r.code != ExitError || !strings.Contains(r.stdout, `"errorMessage":"boom"`) {
		t.Errorf("function error: exit %d, stdout %q", r.code, r.stdout)
	}
}

func TestInvokeAsync(t *testing.T) {
	f := newFakeAPI(t)
	f.on("POST /v1/functions/fn/invoke", jsonReply(202, v1.Accepted{RequestID: "req-9"}))
	r := f.run("invoke", "fn", "--async", "--data", `{"a":1}`)
	if r.code != ExitOK || r.stdout != "req-9\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if c := f.only(); c.Header.Get(v1.HeaderInvocationType) != v1.InvocationEvent {
		t.Errorf("invocation type %q, want Event", c.Header.Get(v1.HeaderInvocationType))
	}
	r = f.run("invoke", "fn", "--async", "-o", "json")
	var got map[string]string
	decodeJSON(t, r.stdout, &got)
	if got["requestId"] != "req-9" {
		t.Errorf("json: %q", r.stdout)
	}
}

func TestLsGetRm(t *testing.T) {
	fn := testFunction()
	f := newFakeAPI(t)
	f.on("GET /v1/functions", jsonReply(200, v1.FunctionList{Functions: []v1.Function{fn}}))
	f.on("GET /v1/functions/fn", jsonReply(200, fn))
	f.on("DELETE /v1/functions/fn", reply{status: 204})

	r := f.run("ls")
	want := [][]string{
		{"NAME", "VERSION", "RUNTIME", "MEMORY", "TIMEOUT", "INSTANCES", "AUTH", "UPDATED"},
		{"fn", "2", "python3", "256", "MB", "10", "s", "3", "token", "2026-01-02", "03:04:05"},
	}
	if diff := cmp.Diff(want, fields(r.stdout)); r.code != ExitOK || diff != "" {
		t.Errorf("ls: exit %d, table (-want +got):\n%s", r.code, diff)
	}
	r = f.run("ls", "-o", "json")
	var list []v1.Function
	decodeJSON(t, r.stdout, &list)
	if diff := cmp.Diff([]v1.Function{fn}, list); diff != "" {
		t.Errorf("ls -o json (-want +got):\n%s", diff)
	}

	r = f.run("get", "fn")
	rows := fields(r.stdout)
	for _, row := range [][]string{{"Name:", "fn"}, {"Memory:", "256", "MB"}, {"Instances:", "3", "live", "(1", "busy,", "2", "idle)"},
		{"Code:", "sha256", "abc123,", "321", "bytes"}, {"Idle", "timeout:", "server", "default"}} {
		if !containsRow(rows, row) {
			t.Errorf("get: no row %v in\n%s", row, r.stdout)
		}
	}
	r = f.run("get", "fn", "-o", "json")
	var got v1.Function
	decodeJSON(t, r.stdout, &got)
	if diff := cmp.Diff(fn, got); diff != "" {
		t.Errorf("get -o json (-want +got):\n%s", diff)
	}

	if r = f.run("rm", "fn"); r.code != ExitOK || r.stdout != "removed fn\n" {
		t.Errorf("rm: exit %d, stdout %q", r.code, r.stdout)
	}
	if r = f.run("rm", "fn", "-o", "json"); r.stdout != "{\n  \"removed\": \"fn\"\n}\n" {
		t.Errorf("rm -o json: %q", r.stdout)
	}
	var methods []string
	for _, c := range f.requests() {
		methods = append(methods, c.Method+" "+c.Path)
	}
	wantCalls := []string{"GET /v1/functions", "GET /v1/functions", "GET /v1/functions/fn", "GET /v1/functions/fn",
		"DELETE /v1/functions/fn", "DELETE /v1/functions/fn"}
	if diff := cmp.Diff(wantCalls, methods); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func containsRow(rows [][]string, row []string) bool {
	for _, r := range rows {
		if cmp.Equal(r, row) {
			return true
		}
	}
	return false
}

func TestLogs(t *testing.T) {
	// Request IDs of requests made in the same millisecond: they differ
	// only in their tail, and the whole ID is printed.
	a, b := "019a0b1c-2d3e-7f40-8123-456789abcdef", "019a0b1c-2d3e-7f41-9fed-cba987654321"
	lines := []stratus.LogLine{
		{ID: 6, Function: "fn", Time: testTime, Instance: "3f2a9c81d07e4b65", Stream: stratus.StreamPlatform, Text: "INIT_START"},
		{ID: 7, Function: "fn", Time: testTime, RequestID: a, Instance: "3f2a9c81d07e4b65", Stream: stratus.StreamStdout, Text: "hello"},
		{ID: 8, Function: "fn", Time: testTime.Add(time.Second), RequestID: b, Stream: stratus.StreamStdout, Text: "again"},
		{ID: 9, Function: "fn", Time: testTime.Add(time.Second), Stream: stratus.StreamPlatform, Text: "no owner"},
	}
	f := newFakeAPI(t)
	// One page of lines, then none: the command pages on after the last.
	f.on("GET /v1/functions/fn/logs", jsonReply(200, v1.LogList{Lines: lines}), jsonReply(200, v1.LogList{Lines: []stratus.LogLine{}}))
	r := f.run("logs", "fn", "--since", "10m", "--request", a)
	want := "2026-01-02T03:04:05.000 3f2a9c81d07e4b65 INIT_START\n" +
		"2026-01-02T03:04:05.000 " + a + " hello\n" +
		"2026-01-02T03:04:06.000 " + b + " again\n" +
		"2026-01-02T03:04:06.000 - no owner\n"
	if r.code != ExitOK || r.stdout != want {
		t.Errorf("exit %d, stdout:\n%s\nwant:\n%s", r.code, r.stdout, want)
	}
	cs := f.requests()
	if len(cs) != 2 {
		t.Fatalf("%d requests, want 2", len(cs))
	}
	q0, _ := url.ParseQuery(cs[0].Query)
	q1, _ := url.ParseQuery(cs[1].Query)
	if q0.Get("since") != "10m0s" || q0.Get("request") != a || q0.Get("after") != "" || q1.Get("after") != "9" {
		t.Errorf("queries %q then %q", cs[0].Query, cs[1].Query)
	}

	f.on("GET /v1/functions/fn/logs", jsonReply(200, v1.LogList{Lines: lines}), jsonReply(200, v1.LogList{Lines: []stratus.LogLine{}}))
	r = f.run("logs", "fn", "-o", "json")
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	var got []stratus.LogLine
	for dec.More() {
		var l stratus.LogLine
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("json output %q: %v", r.stdout, err)
		}
		got = append(got, l)
	}
	if diff := cmp.Diff(lines, got); diff != "" {
		t.Errorf("logs -o json (-want +got):\n%s", diff)
	}

	if r = f.run("logs", "fn", "--since", "-1m"); r.code != ExitUsage {
		t.Errorf("--since -1m: exit %d", r.code)
	}
}

func TestInvocations(t *testing.T) {
	recs := []v1.InvocationRecord{{
		Invocation: stratus.Invocation{
			RequestID: "req-1", Function: "fn", Version: 2, Start: testTime, DurationMs: 12.5, BilledMs: 13,
			MemoryMB: 128, MaxMemoryMB: 40, InitDurationMs: 80.25, Cold: true, Outcome: "error", ErrorType: "ValueError",
			Trigger: stratus.TriggerHTTP, CPUMs: 7.5, Arch: stratus.ArchX86,
		},
		Usage: stratus.Usage{Requests: 1, CPUSeconds: 0.0075, CostUSD: 0.0000002, EnergyWh: 0.000012, CarbonG: 0.0000034},
	}, {
		// A record of an older server: no trigger.
		Invocation: stratus.Invocation{RequestID: "req-0", Function: "fn", Version: 1, Start: testTime, DurationMs: 1, BilledMs: 1,
			MemoryMB: 128, MaxMemoryMB: 30, Outcome: "success"},
	}}
	f := newFakeAPI(t)
	f.on("GET /v1/functions/fn/invocations", jsonReply(200, v1.InvocationList{Invocations: recs}))
	r := f.run("invocations", "fn", "--limit", "5", "--request", "req-1")
	want := [][]string{
		{"REQUEST", "ID", "START", "TRIGGER", "DURATION", "BILLED", "MEMORY", "MAX", "USED", "INIT", "CPU-MS", "WH", "GCO2E", "OUTCOME", "ERROR"},
		{"req-1", "2026-01-02T03:04:05.000", "http", "12.50", "ms", "13", "ms", "128", "MB", "40", "MB", "80.25", "ms", "7.5", "0.000012", "0.0000034", "error", "ValueError"},
		{"req-0", "2026-01-02T03:04:05.000", "-", "1.00", "ms", "1", "ms", "128", "MB", "30", "MB", "-", "0.0", "0", "0", "success"},
	}
	if diff := cmp.Diff(want, fields(r.stdout)); r.code != ExitOK || diff != "" {
		t.Errorf("exit %d, table (-want +got):\n%s", r.code, diff)
	}
	if q, _ := url.ParseQuery(f.only().Query); q.Get("limit") != "5" || q.Get("request") != "req-1" {
		t.Errorf("query %v", q)
	}
	r = f.run("invocations", "fn", "-o", "json")
	var got []v1.InvocationRecord
	decodeJSON(t, r.stdout, &got)
	if diff := cmp.Diff(recs, got); diff != "" {
		t.Errorf("json (-want +got):\n%s", diff)
	}
}

func TestInvocation(t *testing.T) {
	st := stratus.AsyncStatus{RequestID: "req-3", Function: "fn", State: stratus.AsyncRetrying, Attempt: 2,
		EnqueuedAt: testTime, UpdatedAt: testTime, ErrorType: "ValueError", ErrorMessage: "boom"}
	f := newFakeAPI(t)
	f.on("GET /v1/invocations/req-3", jsonReply(200, st))
	r := f.run("invocation", "req-3")
	rows := fields(r.stdout)
	if !containsRow(rows, []string{"State:", stratus.AsyncRetrying, "(attempt", "2)"}) || !containsRow(rows, []string{"Error:", "ValueError:", "boom"}) {
		t.Errorf("exit %d, table:\n%s", r.code, r.stdout)
	}
	if strings.Contains(r.stdout, "Destination") {
		t.Errorf("a destination shown before the outcome was sent:\n%s", r.stdout)
	}
	r = f.run("invocation", "req-3", "-o", "json")
	var got stratus.AsyncStatus
	decodeJSON(t, r.stdout, &got)
	if diff := cmp.Diff(st, got); diff != "" {
		t.Errorf("json (-want +got):\n%s", diff)
	}

	done := stratus.AsyncStatus{RequestID: "req-4", Function: "fn", State: stratus.AsyncFailed, Attempt: 3,
		EnqueuedAt: testTime, UpdatedAt: testTime, ErrorType: "ValueError", ErrorMessage: "boom",
		Destination: "function:dlq", DestinationState: stratus.AsyncDestinationDelivered}
	f.on("GET /v1/invocations/req-4", jsonReply(200, done))
	r = f.run("invocation", "req-4")
	if rows := fields(r.stdout); !containsRow(rows, []string{"Destination:", "function:dlq", "(delivered)"}) {
		t.Errorf("exit %d, table without the destination:\n%s", r.code, r.stdout)
	}
	r = f.run("invocation", "req-4", "-o", "json")
	var raw map[string]any
	decodeJSON(t, r.stdout, &raw)
	if raw["destination"] != "function:dlq" || raw["destinationState"] != "delivered" {
		t.Errorf("json %s: want destination function:dlq, destinationState delivered", r.stdout)
	}
}
