package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/eventually"
)

// errAnswer is Lambda's error answer.
type errAnswer struct {
	ErrorMessage string `json:"errorMessage"`
	ErrorType    string `json:"errorType"`
}

// wantFnError checks that c is a function error (200 with
// X-Amz-Function-Error) and returns its error object.
func wantFnError(t *testing.T, c callResult) errAnswer {
	t.Helper()
	if c.Err != nil || c.Status != 200 || c.FunctionError() == "" {
		t.Fatalf("want a function error (200 with X-Amz-Function-Error), got %s", c)
	}
	return decode[errAnswer](t, c.Body)
}

// recordView is what `stratus invocations -o json` shows of one.
type recordView struct {
	RequestID string `json:"requestId"`
	Cold      bool   `json:"cold"`
	Outcome   string `json:"outcome"`
	ErrorType string `json:"errorType"`
}

// waitRecord waits for the record of request id and returns it.
func (s *server) waitRecord(name, id string) recordView {
	s.t.Helper()
	var rec recordView
	eventually.True(s.t, 10*time.Second, "the record of request "+id, func() bool {
		recs := decode[[]recordView](s.t, []byte(s.mustCLI("invocations", name, "--request", id, "-o", "json")))
		if len(recs) == 1 {
			rec = recs[0]
			return true
		}
		return false
	})
	return rec
}

// TestTimeout: an invocation past its timeout answers Lambda's message, is
// recorded as a timeout and its instance is killed; the next call starts a
// new one.
func TestTimeout(t *testing.T) {
	s := startServer(t)
	s.mustCLI("deploy", "slow", "--runtime", "provided", "--timeout", "1", fixture("goecho"))
	for _, ev := range []string{`{"spin":true}`, `{"sleep":5000}`} {
		warm := s.mustInvoke("slow", `{}`)
		p := procOf(t, pidOf(t, warm))

		c := s.tryInvoke("slow", ev)
		e := wantFnError(t, c)
		if !strings.HasSuffix(e.ErrorMessage, "Task timed out after 1.00 seconds") {
			t.Errorf("%s: errorMessage %q, want it to end with Task timed out after 1.00 seconds", ev, e.ErrorMessage)
		}
		if c.Cold() {
			t.Errorf("%s ran on a cold instance; want the warm one", ev)
		}
		if c.Elapsed < time.Second || c.Elapsed > 10*time.Second {
			t.Errorf("%s: answered after %s, want just over the 1s timeout", ev, c.Elapsed)
		}
		if rec := s.waitRecord("slow", c.RequestID()); rec.Outcome != "timeout" {
			t.Errorf("%s: record %+v, want outcome timeout", ev, rec)
		}
		waitGone(t, "the timed out instance", p)

		next := s.mustInvoke("slow", `{}`)
		if !next.Cold() || pidOf(t, next) == p.PID {
			t.Errorf("call after a timeout: %s; want a cold start in a new process (not %d)", next, p.PID)
		}
	}
	out := s.mustCLI("invocations", "slow")
	if strings.Count(out, "timeout") != 2 {
		t.Errorf("stratus invocations shows %d timeouts, want 2:\n%s", strings.Count(out, "timeout"), out)
	}
}

// TestCrash: an instance that exits during an invocation answers
// Runtime.ExitError; the next call runs on a new instance.
func TestCrash(t *testing.T) {
	s := startServer(t)
	s.mustCLI("deploy", "crashy", "--runtime", "provided", fixture("goecho"))
	p := procOf(t, pidOf(t, s.mustInvoke("crashy", `{}`)))

	c := s.tryInvoke("crashy", `{"exit":3}`)
	e := wantFnError(t, c)
	if e.ErrorType != "Runtime.ExitError" || e.ErrorMessage != "Runtime exited with error: exit status 3" {
		t.Errorf("crash answered %+v, want Runtime.ExitError / Runtime exited with error: exit status 3", e)
	}
	if rec := s.waitRecord("crashy", c.RequestID()); rec.Outcome != "crash" || rec.ErrorType != "Runtime.ExitError" {
		t.Errorf("record of the crash: %+v, want outcome crash, error type Runtime.ExitError", rec)
	}
	waitGone(t, "the crashed instance", p)
	s.waitInstances("crashy", 0, 0)

	next := s.mustInvoke("crashy", `{}`)
	if !next.Cold() || pidOf(t, next) == p.PID {
		t.Errorf("call after a crash: %s; want a new instance", next)
	}
	r := s.cli("invoke", "crashy", "--data", `{"exit":3}`)
	if r.Code == 0 || !strings.Contains(r.Stdout, "Runtime exited with error: exit status 3") {
		t.Errorf("stratus invoke of a crash: exit %d, stdout %q", r.Code, r.Stdout)
	}
	s.mustInvoke("crashy", `{}`)
}

// TestInitFailure: a runtime that dies before asking for work, or reports
// its own init error, answers that error, and what it printed is in the
// function's logs.
func TestInitFailure(t *testing.T) {
	s := startServer(t)
	s.mustCLI("deploy", "dies", "--runtime", "provided", writeFiles(t, map[string]string{
		"bootstrap": "#!/bin/sh\necho 'init exploded: DATABASE_URL is not set' >&2\nexit 1\n",
	}))
	s.mustCLI("deploy", "reports", "--runtime", "provided", writeFiles(t, map[string]string{
		"bootstrap": `#!/bin/sh
echo 'loading handler failed' >&2
curl -sS -o /dev/null -X POST -H 'Lambda-Runtime-Function-Error-Type: Runtime.NoSuchHandler' \
  -d '{"errorMessage":"no handler called main.Handle","errorType":"Runtime.NoSuchHandler"}' \
  "http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/init/error"
exit 2
`,
	}))

	for range 2 { // every call tries a new instance
		c := s.tryInvoke("dies", `{}`)
		e := wantFnError(t, c)
		if e.ErrorType != "Runtime.ExitError" || e.ErrorMessage != "Runtime exited with error: exit status 1" {
			t.Errorf("init failure answered %+v, want Runtime.ExitError / Runtime exited with error: exit status 1", e)
		}
		if rec := s.waitRecord("dies", c.RequestID()); rec.Outcome != "crash" || !rec.Cold {
			t.Errorf("record of an init failure: %+v, want a cold crash", rec)
		}
	}
	eventually.True(t, 10*time.Second, "the bootstrap's stderr line in stratus logs", func() bool {
		return strings.Contains(s.mustCLI("logs", "dies"), "init exploded: DATABASE_URL is not set")
	})

	e := wantFnError(t, s.tryInvoke("reports", `{}`))
	if e.ErrorType != "Runtime.NoSuchHandler" || e.ErrorMessage != "no handler called main.Handle" {
		t.Errorf("reported init error answered %+v, want the runtime's own", e)
	}
	eventually.True(t, 10*time.Second, "the runtime's stderr line in stratus logs", func() bool {
		return strings.Contains(s.mustCLI("logs", "reports"), "loading handler failed")
	})
	if r := s.cli("invoke", "dies"); r.Code == 0 {
		t.Errorf("stratus invoke of a function that cannot start exited 0: %q", r.Stdout)
	}
	s.waitInstances("dies", 0, 0)
	s.waitInstances("reports", 0, 0)
}

// TestRestartKeepsFunctions: functions survive a clean stop and start of
// the server on the same data dir.
func TestRestartKeepsFunctions(t *testing.T) {
	s := startServer(t)
	s.mustCLI("deploy", "one", "--runtime", "provided", "--memory", "256", fixture("goecho"))
	s.mustCLI("deploy", "two", "--runtime", "provided", fixture("gonoop"))
	s.mustCLI("deploy", "two", "--runtime", "provided", "--timeout", "7", fixture("gonoop"))
	s.mustInvoke("one", `{}`)
	s.mustInvoke("two", `{}`)

	s.Stop()
	if t.Failed() {
		t.FailNow()
	}
	s.Restart()

	ls := s.mustCLI("ls")
	for _, name := range []string{"one", "two"} {
		if !strings.Contains(ls, name) {
			t.Errorf("stratus ls after restart does not list %s:\n%s", name, ls)
		}
	}
	if v := s.getFn("two"); v.Version != 2 || v.Config.TimeoutSec != 7 {
		t.Errorf("two after restart: version %d timeout %d, want version 2 timeout 7", v.Version, v.Config.TimeoutSec)
	}
	if c := s.mustInvoke("one", `{}`); !c.Cold() {
		t.Errorf("first call after restart was warm: %s", c)
	}
	if c := s.mustInvoke("two", `{}`); string(c.Body) != `{"ok":true}` {
		t.Errorf("two answered %s", c.Body)
	}
	// The history of before the restart is kept.
	eventually.True(t, 10*time.Second, "the records of both calls of one, before and after the restart", func() bool {
		return len(decode[[]recordView](t, []byte(s.mustCLI("invocations", "one", "-o", "json")))) == 2
	})
}

// stubborn is a bash runtime that ignores SIGTERM and keeps a helper
// process; it answers {"pid": its PID, "child": the helper's PID,
// "pidns": their PID namespace}.
const stubborn = `#!/bin/bash
trap '' TERM
sleep 1000 &
CHILD=$!
NS=$(readlink /proc/$$/ns/pid)
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  RESP=$(curl -sS -i "$API/invocation/next") || { sleep 0.2; continue; }
  ID=$(printf '%s\n' "$RESP" | tr -d '\r' | sed -n 's/^lambda-runtime-aws-request-id: *//Ip')
  curl -sS -o /dev/null -X POST "$API/invocation/$ID/response" -d "{\"pid\":$$,\"child\":$CHILD,\"pidns\":\"$NS\"}" || true
done
`

// stubbornProcs invokes a stubborn function and returns its two processes.
func (s *server) stubbornProcs(name string) []procID {
	s.t.Helper()
	c := s.mustInvoke(name, `{}`)
	var a struct {
		PID, Child int
		PIDNS      string
	}
	if err := json.Unmarshal(c.Body, &a); err != nil || a.PID == 0 || a.Child == 0 {
		s.t.Fatalf("stubborn answer: %s", c)
	}
	return []procID{procOf(s.t, hostPID(s.t, a.PIDNS, a.PID)), procOf(s.t, hostPID(s.t, a.PIDNS, a.Child))}
}

// TestServerKillRecovers: after SIGKILL of the server, with instances
// idle and busy, a new server on the same data dir leaves no process of the
// old one and serves every function.
func TestServerKillRecovers(t *testing.T) {
	needTool(t, "curl")
	s := startServer(t)
	s.mustCLI("deploy", "echo", "--runtime", "provided", "--timeout", "60", fixture("goecho"))
	s.mustCLI("deploy", "sh", "--runtime", "provided", writeFiles(t, map[string]string{"bootstrap": stubborn}))

	var old []procID
	for _, c := range s.invokeParallel(2, "echo", `{"sleep":1500}`) {
		if c.Err != nil || c.Status != 200 {
			t.Fatalf("call: %s", c)
		}
		old = append(old, procOf(t, pidOf(t, c)))
	}
	old = append(old, s.stubbornProcs("sh")...)
	busy := s.invokeAsync("echo", `{"sleep":30000}`)
	s.waitInstances("echo", 2, 1) // one busy, one idle
	before := processesUnder(s.Data)
	if len(before) < 4 {
		t.Fatalf("want at least 4 instance processes before the kill, got %v", before)
	}
	// The killed server's instances, prepared sandboxes included; the new
	// server prepares sandboxes of its own.
	killed := map[string]bool{}
	for _, p := range instanceProcesses(s.Data) {
		killed[p.instance] = true
	}

	s.Kill()
	if c := <-busy; c.Err == nil {
		t.Errorf("the call in flight when the server died got an answer: %s", c)
	}
	s.Restart()
	eventually.True(t, 30*time.Second, "no process of the killed server's instances", func() bool {
		for _, p := range instanceProcesses(s.Data) {
			if killed[p.instance] {
				return false
			}
		}
		return true
	})
	for _, p := range old {
		if p.Alive() {
			t.Errorf("process %d of the killed server still runs", p.PID)
		}
	}

	if c := s.mustInvoke("echo", `{}`); !c.Cold() {
		t.Errorf("first call after recovery was warm: %s", c)
	}
	s.stubbornProcs("sh")
	if v := s.getFn("echo"); v.Instances.Live != 1 {
		t.Errorf("echo has %d live instances after recovery and one call, want 1", v.Instances.Live)
	}
}

// TestShutdownDrains: SIGTERM lets the invocation in flight finish, then
// the server exits 0 and leaves no process.
func TestShutdownDrains(t *testing.T) {
	s := startServer(t)
	s.mustCLI("deploy", "slow", "--runtime", "provided", "--timeout", "10", fixture("goecho"))
	s.mustInvoke("slow", `{}`) // an idle instance too
	inflight := s.invokeAsync("slow", `{"sleep":5000}`)
	s.waitInstances("slow", 1, 1)

	// Watch /readyz while the server drains.
	var (
		mu    sync.Mutex
		ready []string
	)
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		client := &http.Client{Timeout: time.Second}
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := client.Get(s.URL + "/readyz")
			status := "refused"
			if err == nil {
				status = fmt.Sprint(resp.StatusCode)
				resp.Body.Close()
			}
			mu.Lock()
			if len(ready) == 0 || ready[len(ready)-1] != status {
				ready = append(ready, status)
			}
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	}()

	start := time.Now()
	s.Stop() // SIGTERM; fails the test on a non-zero exit or a process left
	close(stop)
	<-watched
	c := <-inflight
	if c.Err != nil || c.Status != 200 || c.FunctionError() != "" {
		t.Fatalf("the invocation in flight at SIGTERM: %s\nserver log:\n%s", c, s.Stderr())
	}
	pidOf(t, c)
	if !c.End.After(start) {
		t.Errorf("the invocation ended before SIGTERM; the test did not see a drain")
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("stopping took %s", took)
	}
	mu.Lock()
	t.Logf("/readyz while stopping: %v", ready)
	for _, st := range ready {
		if st != "200" && st != "503" && st != "refused" {
			t.Errorf("/readyz answered %s while the server stopped", st)
		}
	}
	mu.Unlock()
	if !strings.Contains(s.Stderr(), "draining") {
		t.Errorf("the server's log does not say it drained:\n%s", s.Stderr())
	}
}

// TestStubbornInstanceIsKilled: an instance that ignores SIGTERM, and the
// helper process it started, end when its function is removed and when
// the server stops.
func TestStubbornInstanceIsKilled(t *testing.T) {
	needTool(t, "curl")
	s := startServer(t)
	code := writeFiles(t, map[string]string{"bootstrap": stubborn})
	s.mustCLI("deploy", "removed", "--runtime", "provided", code)
	s.mustCLI("deploy", "kept", "--runtime", "provided", code)
	removed := s.stubbornProcs("removed")
	kept := s.stubbornProcs("kept")

	s.mustCLI("rm", "removed")
	waitGone(t, "the removed function's instance and its helper", removed...)
	for _, p := range kept {
		if !p.Alive() {
			t.Fatalf("process %d of another function ended when removed was removed", p.PID)
		}
	}

	s.Stop() // fails the test if a process is left
	for _, p := range kept {
		if p.Alive() {
			t.Errorf("process %d outlived the server", p.PID)
		}
	}
}

// TestRetention: with --retain-invocations 5 --retain-log-lines 20 the
// server keeps at most that many records and lines per function, the
// newest.
func TestRetention(t *testing.T) {
	s := startServer(t, "--retain-invocations", "5", "--retain-log-lines", "20", "--prune-interval", "200ms")
	s.mustCLI("deploy", "busy", "--runtime", "provided", fixture("goecho"))
	s.mustCLI("deploy", "quiet", "--runtime", "provided", fixture("goecho"))
	var last string
	for i := range 30 {
		last = s.mustInvoke("busy", fmt.Sprintf(`{"print":"line %d"}`, i)).RequestID()
	}
	s.mustInvoke("quiet", `{"print":"only line"}`)

	type logLine struct {
		RequestID string `json:"requestId"`
		Text      string `json:"text"`
	}
	var recs []recordView
	var lines []logLine
	defer func() {
		if t.Failed() {
			t.Logf("last seen: %d records, %d log lines:\n%+v\n%+v\nserver log:\n%s", len(recs), len(lines), recs, lines, s.Stderr())
		}
	}()
	eventually.True(t, 30*time.Second, "at most 5 records and 20 log lines of busy", func() bool {
		recs = decode[[]recordView](t, []byte(s.mustCLI("invocations", "busy", "--limit", "1000", "-o", "json")))
		lines = nil
		dec := json.NewDecoder(strings.NewReader(s.mustCLI("logs", "busy", "-o", "json")))
		for dec.More() {
			var l logLine
			if err := dec.Decode(&l); err != nil {
				t.Fatalf("stratus logs -o json: %v", err)
			}
			lines = append(lines, l)
		}
		// Wait for the newest to be stored, and the rest pruned.
		return len(recs) <= 5 && len(lines) <= 20 && len(recs) > 0 && recs[0].RequestID == last &&
			slices.ContainsFunc(lines, func(l logLine) bool { return strings.HasPrefix(l.Text, "REPORT RequestId: "+last) })
	})
	if len(recs) != 5 {
		t.Errorf("kept %d records, want the newest 5", len(recs))
	}
	if len(lines) != 20 {
		t.Errorf("kept %d log lines, want the newest 20", len(lines))
	}
	// 30 calls of 4 lines each (START, the printed line, END, REPORT): the
	// newest 20 are about those of the last 5 calls.
	for _, l := range lines {
		var i int
		if _, err := fmt.Sscanf(l.Text, "line %d", &i); err == nil && i < 20 {
			t.Errorf("an old line survived pruning: %q", l.Text)
		}
	}
	// A quiet function keeps its own history.
	if recs := decode[[]recordView](t, []byte(s.mustCLI("invocations", "quiet", "-o", "json"))); len(recs) != 1 {
		t.Errorf("quiet has %d records, want 1", len(recs))
	}
	if !strings.Contains(s.mustCLI("logs", "quiet"), "only line") {
		t.Errorf("quiet lost its log line to busy's pruning")
	}
}
