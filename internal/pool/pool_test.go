package pool

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/sandbox"
	"github.com/stratus-run/stratus/internal/sandbox/process"
	"github.com/stratus-run/stratus/internal/sandbox/sandboxtest"
)

// rtBin is the test runtime (testdata/rt), built once in TestMain.
var rtBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pooltest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	rtBin = filepath.Join(dir, "rt")
	build := exec.Command("go", "build", "-o", rtBin, "./testdata/rt")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build the test runtime: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// sink collects what the Manager emits.
type sink struct {
	mu      sync.Mutex
	lines   []stratus.LogLine
	records []stratus.Invocation
}

func (s *sink) Log(l stratus.LogLine) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, l)
}

func (s *sink) Record(r stratus.Invocation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records = append(s.records, r)
}

// linesOf returns the lines tied to reqID of one stream ("" for all), as
// the store shows them: a report line reads as END and REPORT.
func (s *sink) linesOf(reqID, stream string) []stratus.LogLine {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []stratus.LogLine
	for _, l := range s.lines {
		if l.RequestID != reqID {
			continue
		}
		if l.Stream == stratus.StreamReport {
			end := l
			end.Stream, end.Text = stratus.StreamPlatform, "END RequestId: "+l.RequestID
			l.Stream = stratus.StreamPlatform
			if stream == "" || stream == stratus.StreamPlatform {
				out = append(out, end, l)
			}
			continue
		}
		if stream == "" || l.Stream == stream {
			out = append(out, l)
		}
	}
	return out
}

func (s *sink) recordOf(reqID string) (stratus.Invocation, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var r stratus.Invocation
	n := 0
	for _, x := range s.records {
		if x.RequestID == reqID {
			r = x
			n++
		}
	}
	return r, n
}

// clock is a Config.Now the test steps forward.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Step(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type opts struct {
	maxInstances int
	throttleWait time.Duration
	queueSize    int
	idleTimeout  time.Duration
	initTimeout  time.Duration
	fakeClock    bool
	// maxPrepared > 0 turns create-ahead on, with the preparer driver.
	maxPrepared int
	// record: the preparer driver records the calls even without
	// create-ahead.
	record bool
	// maxCreating is Config.MaxCreating; 0 means 8, so that tests of
	// other things are not held by the cap.
	maxCreating int
}

// env is a Manager running real instances of the test runtime under the
// process driver.
type env struct {
	t       *testing.T
	m       *Manager
	sink    *sink
	drv     *preparer // set with opts.maxPrepared
	clock   *clock    // nil with the real clock
	marker  string    // in every instance's environment
	codeDir string

	cancel   context.CancelFunc
	runDone  chan error
	stopOnce sync.Once
	reqs     atomic.Int64
}

func newEnv(t *testing.T, o opts) *env {
	t.Helper()
	driver, err := process.New(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{
		t: t, sink: &sink{}, codeDir: t.TempDir(),
		marker:  strconv.FormatInt(time.Now().UnixNano(), 36),
		runDone: make(chan error, 1),
	}
	if o.throttleWait == 0 {
		o.throttleWait = 20 * time.Second
	}
	if o.idleTimeout == 0 {
		o.idleTimeout = 5 * time.Minute
	}
	var drv sandbox.Driver = driver
	if o.maxPrepared > 0 || o.record {
		e.drv = newPreparer(driver)
		drv = e.drv
	}
	cfg := Config{
		Driver:       drv,
		MaxPrepared:  o.maxPrepared,
		Command:      func(v *stratus.Version, taskDir, rtDir string) ([]string, error) { return []string{rtBin}, nil },
		CodeDir:      func(sha string) string { return e.codeDir },
		RuntimeDir:   "/opt/stratus-runtimes",
		Region:       "local",
		MaxInstances: o.maxInstances,
		MaxCreating:  cmp.Or(o.maxCreating, 8),
		IdleTimeout:  o.idleTimeout,
		ThrottleWait: o.throttleWait,
		QueueSize:    o.queueSize,
		InitTimeout:  o.initTimeout,
		StopGrace:    2 * time.Second,
		Sink:         e.sink,
		Log:          slog.New(slog.DiscardHandler),
	}
	if o.fakeClock {
		e.clock = &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
		cfg.Now = e.clock.Now
	}
	e.m = New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go func() { e.runDone <- e.m.Run(ctx, time.Hour) }() // the test calls Reap itself
	t.Cleanup(func() {
		e.stop()
		if e.drv != nil {
			if left := e.drv.preparedLeft(); len(left) > 0 {
				t.Errorf("prepared sandboxes left after Run returned: %v", left)
			}
		}
		if left := sandboxtest.Processes(e.markerEnv()); len(left) > 0 {
			t.Errorf("processes left after Run returned: %s", sandboxtest.Describe(left))
			for _, pid := range left {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	return e
}

func (e *env) markerEnv() string { return "POOLTEST=" + e.marker }

// stop ends Run and waits for it to return.
func (e *env) stop() {
	e.stopOnce.Do(func() {
		e.cancel()
		select {
		case err := <-e.runDone:
			if err != nil {
				e.t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			e.t.Errorf("Run did not return within 30s of its context ending")
		}
	})
}

func (e *env) version(name string, ver int, mod func(c *stratus.FunctionConfig)) *stratus.Version {
	c := stratus.FunctionConfig{
		Runtime: stratus.RuntimeProvidedAL2023, Handler: "bootstrap", MemoryMB: 256, TimeoutSec: 30,
		MaxConcurrency: 10, Auth: stratus.AuthToken,
		Env: map[string]string{"POOLTEST": e.marker, "V": strconv.Itoa(ver)},
	}
	if mod != nil {
		mod(&c)
	}
	return &stratus.Version{Function: name, Version: ver, Config: c, CodeSHA: "sha-" + name}
}

func (e *env) deploy(name string, ver int, mod func(c *stratus.FunctionConfig)) *stratus.Version {
	v := e.version(name, ver, mod)
	e.m.Deploy(v)
	return v
}

func (e *env) newReqID() string { return fmt.Sprintf("req-%d", e.reqs.Add(1)) }

func (e *env) invoke(name string, ev map[string]any) (*stratus.Response, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	id := e.newReqID()
	b, _ := json.Marshal(ev)
	resp, err := e.m.Invoke(ctx, name, stratus.Request{RequestID: id, Event: b})
	return resp, id, err
}

func (e *env) mustInvoke(name string, ev map[string]any) *stratus.Response {
	e.t.Helper()
	resp, id, err := e.invoke(name, ev)
	if err != nil {
		e.t.Fatalf("Invoke %s (%s): %v", name, id, err)
	}
	return resp
}

// success checks that resp is a successful echo and returns it.
func (e *env) success(resp *stratus.Response) echo {
	e.t.Helper()
	if resp.ErrorType != "" || resp.Record.Outcome != stratus.OutcomeSuccess {
		e.t.Fatalf("invocation %s: error %q, outcome %q: %s", resp.Record.RequestID, resp.ErrorType, resp.Record.Outcome, resp.Body)
	}
	var ec echo
	if err := json.Unmarshal(resp.Body, &ec); err != nil {
		e.t.Fatalf("invocation %s: body %s: %v", resp.Record.RequestID, resp.Body, err)
	}
	return ec
}

// echo is what testdata/rt answers.
type echo struct {
	PID      int               `json:"pid"`
	Deadline string            `json:"deadline"`
	ARN      string            `json:"arn"`
	Trace    string            `json:"trace"`
	Dir      string            `json:"dir"`
	Env      map[string]string `json:"env"`
}

type invResult struct {
	resp *stratus.Response
	id   string
	err  error
	took time.Duration
}

// goInvoke invokes in the background.
func (e *env) goInvoke(name string, ev map[string]any) <-chan invResult {
	ch := make(chan invResult, 1)
	go func() {
		t0 := time.Now()
		resp, id, err := e.invoke(name, ev)
		ch <- invResult{resp, id, err, time.Since(t0)}
	}()
	return ch
}

func (e *env) await(ch <-chan invResult) invResult {
	e.t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(60 * time.Second):
		e.t.Fatal("invocation did not return within 60s")
		return invResult{}
	}
}

// gate returns a path an invocation {"op":"block"} waits on: the runtime
// creates gate+".in" when it is there and goes on once gate exists.
func (e *env) gate() string { return filepath.Join(e.t.TempDir(), "gate") }

func block(gate string) map[string]any { return map[string]any{"op": "block", "gate": gate} }

// atGate waits until an invocation waits on gate.
func (e *env) atGate(gate string) {
	e.t.Helper()
	e.waitFor("an invocation at "+gate, func() bool {
		_, err := os.Stat(gate + ".in")
		return err == nil
	})
}

// open lets the invocations waiting on gate go on, once one is there.
func (e *env) open(gate string) {
	e.t.Helper()
	e.atGate(gate)
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	eventually.True(e.t, 30*time.Second, what, cond)
}

func (e *env) waitStats(name string, want stratus.InstanceStats) {
	e.t.Helper()
	e.waitFor(fmt.Sprintf("%s to have %+v", name, want), func() bool { return e.m.Stats(name) == want })
}

// waiters is the number of invocations of name waiting for an instance.
func (e *env) waiters(name string) int {
	e.m.mu.Lock()
	defer e.m.mu.Unlock()
	if p := e.m.pools[name]; p != nil {
		return len(p.waiters)
	}
	return 0
}

func (e *env) procs() []int { return sandboxtest.Processes(e.markerEnv()) }

// gone waits until process pid has ended.
func (e *env) gone(pid int) {
	e.t.Helper()
	e.waitFor(fmt.Sprintf("process %d to end", pid), func() bool {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return true
		}
		s := string(b)
		return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])[0] == "Z"
	})
}

func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])[0] != "Z"
}

var (
	reportWarm = regexp.MustCompile(`^REPORT RequestId: (\S+)\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\tMemory Size: 256 MB\tMax Memory Used: \d+ MB$`)
	reportCold = regexp.MustCompile(`^REPORT RequestId: (\S+)\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\tMemory Size: 256 MB\tMax Memory Used: \d+ MB\tInit Duration: \d+\.\d\d ms$`)
)

// checkPlatformLines checks the START, END and REPORT lines of reqID.
func (e *env) checkPlatformLines(r stratus.Invocation) {
	e.t.Helper()
	lines := e.sink.linesOf(r.RequestID, "platform")
	var texts []string
	for _, l := range lines {
		texts = append(texts, l.Text)
		if l.Function != r.Function || l.Instance != r.Instance {
			e.t.Errorf("platform line %q: function %q instance %q, want %q %q", l.Text, l.Function, l.Instance, r.Function, r.Instance)
		}
	}
	if len(texts) != 3 {
		e.t.Fatalf("platform lines of %s: %q, want START, END, REPORT", r.RequestID, texts)
	}
	if want := "START RequestId: " + r.RequestID + " Version: $LATEST"; texts[0] != want {
		e.t.Errorf("line 1 = %q, want %q", texts[0], want)
	}
	if want := "END RequestId: " + r.RequestID; texts[1] != want {
		e.t.Errorf("line 2 = %q, want %q", texts[1], want)
	}
	re := reportWarm
	if r.Cold {
		re = reportCold
	}
	if !re.MatchString(texts[2]) {
		e.t.Errorf("REPORT line %q does not match %s", texts[2], re)
	}
	want := fmt.Sprintf("Billed Duration: %d ms", r.BilledMs)
	if !strings.Contains(texts[2], want) {
		e.t.Errorf("REPORT line %q, want %q", texts[2], want)
	}
	got, n := e.sink.recordOf(r.RequestID)
	if n != 1 || got != r {
		e.t.Errorf("records of %s: %d, last %+v; want exactly the response's %+v", r.RequestID, n, got, r)
	}
}

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
	if r.BilledMs < 1 || r.BilledMs != max(1, int64(math.Ceil(r.DurationMs))) {
		t.Errorf("billed %d ms for %.3f ms, want the duration rounded up to 1 ms steps, at least 1", r.BilledMs, r.DurationMs)
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
	if warm.Record.BilledMs < 1 {
		t.Errorf("billed %d ms, want at least 1", warm.Record.BilledMs)
	}
	e.checkPlatformLines(warm.Record)
	if got := e.m.Stats("fn"); got != (stratus.InstanceStats{Live: 1, Idle: 1}) {
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

func TestMostRecentlyUsedFirst(t *testing.T) {
	e := newEnv(t, opts{})
	e.deploy("fn", 1, nil)
	g1, g2 := e.gate(), e.gate()
	c1 := e.goInvoke("fn", block(g1))
	c2 := e.goInvoke("fn", block(g2))
	e.atGate(g1)
	e.atGate(g2)
	if got := e.m.Stats("fn"); got != (stratus.InstanceStats{Live: 2, Busy: 2}) {
		t.Fatalf("Stats = %+v, want two busy instances", got)
	}
	e.open(g1)
	first := e.await(c1)
	e.open(g2)
	second := e.await(c2)
	for _, r := range []invResult{first, second} {
		if r.err != nil || !r.resp.Record.Cold {
			t.Fatalf("%s: err %v, record %+v; want a cold start", r.id, r.err, r.resp.Record)
		}
	}
	older, newer := first.resp.Record.Instance, second.resp.Record.Instance
	if older == newer {
		t.Fatalf("both invocations ran on %s", older)
	}
	// The most recently released instance serves next, again and again.
	for range 3 {
		if got := e.mustInvoke("fn", map[string]any{"op": "echo"}).Record; got.Instance != newer || got.Cold {
			t.Fatalf("invocation ran on %s (cold %v), want the most recently used %s", got.Instance, got.Cold, newer)
		}
	}
	// With that one busy, the other one serves.
	g3 := e.gate()
	c3 := e.goInvoke("fn", block(g3))
	e.atGate(g3)
	if got := e.mustInvoke("fn", map[string]any{"op": "echo"}).Record; got.Instance != older || got.Cold {
		t.Errorf("invocation ran on %s (cold %v), want the idle %s", got.Instance, got.Cold, older)
	}
	e.open(g3)
	if r := e.await(c3); r.err != nil || r.resp.Record.Instance != newer {
		t.Errorf("blocked invocation: %v on %+v", r.err, r.resp)
	}
}

func TestMaxConcurrencyThrottles(t *testing.T) {
	const wait = 300 * time.Millisecond
	e := newEnv(t, opts{throttleWait: wait})
	e.deploy("fn", 1, func(c *stratus.FunctionConfig) { c.MaxConcurrency = 2 })
	g := e.gate()
	busy := []<-chan invResult{e.goInvoke("fn", block(g)), e.goInvoke("fn", block(g))}
	e.waitStats("fn", stratus.InstanceStats{Live: 2, Busy: 2})

	resp, _, err := e.invoke("fn", map[string]any{"op": "echo"})
	if !errors.Is(err, stratus.ErrCapacity) {
		t.Fatalf("third invocation: %+v, %v; want ErrCapacity", resp, err)
	}
	if e.waiters("fn") != 0 {
		t.Errorf("%d waiters left after the throttle", e.waiters("fn"))
	}
	// A throttled call waited its bounded time.
	ch := e.goInvoke("fn", map[string]any{"op": "echo"})
	r := e.await(ch)
	if !errors.Is(r.err, stratus.ErrCapacity) || r.took < wait {
		t.Errorf("throttled call: %v after %s, want ErrCapacity after at least %s", r.err, r.took, wait)
	}
	if got := e.m.Stats("fn"); got.Live != 2 {
		t.Errorf("Stats = %+v, want no instance beyond max concurrency", got)
	}
	e.open(g)
	e.open(g)
	for _, c := range busy {
		if r := e.await(c); r.err != nil {
			t.Errorf("blocked invocation: %v", r.err)
		}
	}
}

func TestQueueSizeBoundsWaiters(t *testing.T) {
	e := newEnv(t, opts{throttleWait: 30 * time.Second, queueSize: 2})
	e.deploy("fn", 1, func(c *stratus.FunctionConfig) { c.MaxConcurrency = 1 })
	g := e.gate()
	busy := e.goInvoke("fn", block(g))
	e.atGate(g)
	waiting := []<-chan invResult{e.goInvoke("fn", map[string]any{"op": "echo"}), e.goInvoke("fn", map[string]any{"op": "echo"})}
	e.waitFor("two waiters", func() bool { return e.waiters("fn") == 2 })

	// The queue is full: one more is refused at once, not after the
	// throttle wait.
	r := e.await(e.goInvoke("fn", map[string]any{"op": "echo"}))
	if !errors.Is(r.err, stratus.ErrCapacity) || r.took > 5*time.Second {
		t.Errorf("invocation beyond the queue: %v after %s, want ErrCapacity at once", r.err, r.took)
	}
	if n := e.waiters("fn"); n != 2 {
		t.Errorf("%d waiters after the refusal, want 2", n)
	}
	e.open(g)
	for _, c := range append(waiting, busy) {
		if r := e.await(c); r.err != nil {
			t.Errorf("queued invocation: %v", r.err)
		}
	}
}

func TestWaiterGetsReleasedInstance(t *testing.T) {
	e := newEnv(t, opts{throttleWait: 30 * time.Second})
	e.deploy("fn", 1, func(c *stratus.FunctionConfig) { c.MaxConcurrency = 1 })
	g := e.gate()
	first := e.goInvoke("fn", block(g))
	e.atGate(g)
	second := e.goInvoke("fn", map[string]any{"op": "echo"})
	e.waitFor("a waiter", func() bool { return e.waiters("fn") == 1 })
	e.open(g)
	r1, r2 := e.await(first), e.await(second)
	if r1.err != nil || r2.err != nil {
		t.Fatalf("errors: %v, %v", r1.err, r2.err)
	}
	if r2.resp.Record.Instance != r1.resp.Record.Instance || r2.resp.Record.Cold {
		t.Errorf("waiter ran on %s (cold %v), want the released %s", r2.resp.Record.Instance, r2.resp.Record.Cold, r1.resp.Record.Instance)
	}
	if got := e.m.Stats("fn"); got != (stratus.InstanceStats{Live: 1, Idle: 1}) {
		t.Errorf("Stats = %+v", got)
	}
}

func TestWaitersServedInOrder(t *testing.T) {
	e := newEnv(t, opts{throttleWait: 30 * time.Second})
	e.deploy("fn", 1, func(c *stratus.FunctionConfig) { c.MaxConcurrency = 1 })
	g := e.gate()
	first := e.goInvoke("fn", block(g))
	e.atGate(g)
	var waiting []<-chan invResult
	var gates []string
	for i := range 3 {
		gi := e.gate()
		gates = append(gates, gi)
		waiting = append(waiting, e.goInvoke("fn", block(gi)))
		e.waitFor("waiter "+strconv.Itoa(i), func() bool { return e.waiters("fn") == i+1 })
	}
	e.open(g)
	e.await(first)
	// Each waiter in turn gets the one instance: the gates open only in
	// the order the waiters came.
	for i, gi := range gates {
		e.open(gi)
		if r := e.await(waiting[i]); r.err != nil {
			t.Fatalf("waiter %d: %v", i, r.err)
		}
	}
}

// TestQueueServedByFirstFreeInstance: a call that finds no idle instance
// takes the first one that comes free, here one whose invocation ends
// while the sandbox started for the call is still being made; that one
// then stays idle.
func TestQueueServedByFirstFreeInstance(t *testing.T) {
	e := newEnv(t, opts{record: true})
	e.deploy("fn", 1, nil)
	g := e.gate()
	first := e.goInvoke("fn", block(g))
	e.atGate(g)
	hold := e.drv.holdStarts()
	second := e.goInvoke("fn", map[string]any{"op": "echo"})
	e.waitFor("a second sandbox being made", func() bool { return len(e.drv.ids("start")) == 2 })
	e.open(g)
	r1, r2 := e.await(first), e.await(second)
	if r1.err != nil || r2.err != nil {
		t.Fatalf("errors: %v, %v", r1.err, r2.err)
	}
	if r2.resp.Record.Instance != r1.resp.Record.Instance || r2.resp.Record.Cold {
		t.Errorf("second call ran on %s (cold %v), want the first call's %s, warm", r2.resp.Record.Instance, r2.resp.Record.Cold, r1.resp.Record.Instance)
	}
	close(hold)
	e.waitFor("the second instance up and idle", func() bool { return e.m.Stats("fn") == stratus.InstanceStats{Live: 2, Idle: 2} })
}

// TestCreationCap: at most MaxCreating sandboxes are made at once; a start
// waits for its turn.
func TestCreationCap(t *testing.T) {
	e := newEnv(t, opts{record: true, maxCreating: 1})
	e.deploy("a", 1, nil)
	e.deploy("b", 1, nil)
	hold := e.drv.holdStarts()
	calls := []<-chan invResult{e.goInvoke("a", map[string]any{"op": "echo"}), e.goInvoke("b", map[string]any{"op": "echo"})}
	e.waitFor("both starts in flight", func() bool {
		e.m.mu.Lock()
		defer e.m.mu.Unlock()
		return e.m.pools["a"].starting == 1 && e.m.pools["b"].starting == 1
	})
	e.waitFor("one sandbox being made", func() bool { return len(e.drv.ids("start")) == 1 })
	if got := e.drv.ids("start"); len(got) != 1 {
		t.Fatalf("sandboxes being made: %v, want one at a time", got)
	}
	close(hold)
	for _, c := range calls {
		if r := e.await(c); r.err != nil || !r.resp.Record.Cold {
			t.Errorf("call: %v (cold %v), want a cold start", r.err, r.resp != nil && r.resp.Record.Cold)
		}
	}
}

// TestSurplusStartDropped: a start that waited for its turn and whose call
// was served meanwhile makes nothing.
func TestSurplusStartDropped(t *testing.T) {
	e := newEnv(t, opts{record: true, maxCreating: 1})
	e.deploy("a", 1, nil)
	e.deploy("b", 1, nil)
	g := e.gate()
	busy := e.goInvoke("a", block(g))
	e.atGate(g)
	// b's start takes the one turn and is held; a's next call queues and
	// its start waits for the turn.
	hold := e.drv.holdStarts()
	other := e.goInvoke("b", map[string]any{"op": "echo"})
	e.waitFor("b's sandbox being made", func() bool { return len(e.drv.ids("start")) == 2 })
	queued := e.goInvoke("a", map[string]any{"op": "echo"})
	e.waitFor("a's start in flight", func() bool {
		e.m.mu.Lock()
		defer e.m.mu.Unlock()
		return e.m.pools["a"].starting == 1
	})
	e.open(g)
	rb, rq := e.await(busy), e.await(queued)
	if rb.err != nil || rq.err != nil {
		t.Fatalf("errors: %v, %v", rb.err, rq.err)
	}
	if rq.resp.Record.Instance != rb.resp.Record.Instance {
		t.Errorf("queued call ran on %s, want the released %s", rq.resp.Record.Instance, rb.resp.Record.Instance)
	}
	close(hold)
	if r := e.await(other); r.err != nil {
		t.Fatal(r.err)
	}
	e.waitFor("a's start to end", func() bool {
		e.m.mu.Lock()
		defer e.m.mu.Unlock()
		return e.m.pools["a"].starting == 0
	})
	if got := e.drv.ids("start"); len(got) != 2 {
		t.Errorf("sandboxes made: %v, want a's first and b's only", got)
	}
	if got := e.m.Stats("a"); got != (stratus.InstanceStats{Live: 1, Idle: 1}) {
		t.Errorf("a: Stats = %+v, want its one instance", got)
	}
}

func TestServerCapEvictsLeastRecentlyUsed(t *testing.T) {
	e := newEnv(t, opts{maxInstances: 2})
	for _, fn := range []string{"a", "b", "c"} {
		e.deploy(fn, 1, nil)
	}
	a := e.success(e.mustInvoke("a", map[string]any{"op": "echo"}))
	b := e.mustInvoke("b", map[string]any{"op": "echo"})
	bEcho := e.success(b)
	// a is the least recently used idle instance: c takes its place.
	c := e.mustInvoke("c", map[string]any{"op": "echo"})
	e.success(c)
	if !c.Record.Cold {
		t.Error("c: want a cold start")
	}
	e.waitStats("a", stratus.InstanceStats{})
	e.gone(a.PID)
	if got := e.m.Total(); got != 2 {
		t.Errorf("Total = %d, want the cap of 2", got)
	}
	if got := e.mustInvoke("b", map[string]any{"op": "echo"}).Record; got.Cold || got.Instance != b.Record.Instance || !alive(bEcho.PID) {
		t.Errorf("b ran on %s (cold %v), want its warm %s", got.Instance, got.Cold, b.Record.Instance)
	}
}

func TestServerCapWaiterGetsSlotOfReleasedInstance(t *testing.T) {
	// At the server's cap with every instance busy, a call of another
	// function waits; when an instance is released, the waiter gets its
	// slot (the idle instance is evicted for it) rather than a 429.
	e := newEnv(t, opts{maxInstances: 1, throttleWait: 30 * time.Second})
	e.deploy("a", 1, nil)
	e.deploy("b", 1, nil)
	g := e.gate()
	busy := e.goInvoke("a", block(g))
	e.atGate(g)
	waiting := e.goInvoke("b", map[string]any{"op": "echo"})
	e.waitFor("a waiter for b", func() bool { return e.waiters("b") == 1 })
	e.open(g)
	if r := e.await(busy); r.err != nil {
		t.Fatalf("a: %v", r.err)
	}
	r := e.await(waiting)
	if r.err != nil {
		t.Fatalf("b waited for the server's cap and got %v (after %s), want an instance once a's was released", r.err, r.took)
	}
	if !r.resp.Record.Cold {
		t.Error("b: want a cold start")
	}
	if got := e.m.Total(); got != 1 {
		t.Errorf("Total = %d, want the cap of 1", got)
	}
}

func TestReapIdle(t *testing.T) {
	e := newEnv(t, opts{fakeClock: true, idleTimeout: 5 * time.Minute})
	e.deploy("plain", 1, nil)
	e.deploy("short", 1, func(c *stratus.FunctionConfig) { c.IdleTimeout = stratus.Duration(time.Minute) })
	e.deploy("warm", 1, func(c *stratus.FunctionConfig) { c.MinInstances = 1 })
	// Deploy starts the provisioned instance.
	e.waitStats("warm", stratus.InstanceStats{Live: 1, Idle: 1})

	// Two instances of plain and warm, one of short.
	for _, fn := range []string{"plain", "warm"} {
		g := e.gate()
		c1, c2 := e.goInvoke(fn, block(g)), e.goInvoke(fn, block(g))
		e.waitStats(fn, stratus.InstanceStats{Live: 2, Busy: 2})
		e.open(g)
		e.open(g)
		e.await(c1)
		e.await(c2)
	}
	e.mustInvoke("short", map[string]any{"op": "echo"})
	e.waitStats("plain", stratus.InstanceStats{Live: 2, Idle: 2})
	e.waitStats("warm", stratus.InstanceStats{Live: 2, Idle: 2})
	if n := len(e.procs()); n != 5 {
		t.Fatalf("%d processes, want 5 instances", n)
	}

	e.clock.Step(59 * time.Second)
	e.m.Reap()
	for fn, want := range map[string]stratus.InstanceStats{"plain": {Live: 2, Idle: 2}, "warm": {Live: 2, Idle: 2}, "short": {Live: 1, Idle: 1}} {
		if got := e.m.Stats(fn); got != want {
			t.Errorf("after 59s idle: %s %+v, want %+v", fn, got, want)
		}
	}
	e.clock.Step(time.Second)
	e.m.Reap()
	e.waitStats("short", stratus.InstanceStats{})
	if got := e.m.Stats("plain"); got != (stratus.InstanceStats{Live: 2, Idle: 2}) {
		t.Errorf("after 1m idle: plain %+v, want both kept (default idle timeout 5m)", got)
	}

	e.clock.Step(4*time.Minute - time.Second)
	e.m.Reap()
	if got := e.m.Stats("plain"); got != (stratus.InstanceStats{Live: 2, Idle: 2}) {
		t.Errorf("after 4m59s idle: plain %+v, want both kept", got)
	}
	e.clock.Step(time.Second)
	e.m.Reap()
	e.waitStats("plain", stratus.InstanceStats{})
	// warm keeps its MinInstances.
	e.waitStats("warm", stratus.InstanceStats{Live: 1, Idle: 1})
	e.waitFor("one process left", func() bool { return len(e.procs()) == 1 })

	// Scale from zero works after a reap.
	if r := e.mustInvoke("plain", map[string]any{"op": "echo"}); !r.Record.Cold {
		t.Error("plain after scale to zero: want a cold start")
	}
	// The provisioned instance serves warm.
	if r := e.mustInvoke("warm", map[string]any{"op": "echo"}); r.Record.Cold {
		t.Error("warm: want the provisioned instance, warm")
	}
}

func TestReapStartsMinInstances(t *testing.T) {
	e := newEnv(t, opts{fakeClock: true})
	e.deploy("fn", 1, func(c *stratus.FunctionConfig) { c.MinInstances = 2 })
	e.waitStats("fn", stratus.InstanceStats{Live: 2, Idle: 2})
	// A provisioned instance serves warm.
	r := e.mustInvoke("fn", map[string]any{"op": "echo"})
	if r.Record.Cold {
		t.Error("want a warm provisioned instance")
	}
	// An instance crashes: Reap starts a new one to keep two.
	crash := e.mustInvoke("fn", map[string]any{"op": "exit", "code": 1})
	if crash.ErrorType != "Runtime.ExitError" {
		t.Fatalf("crash: %q %s", crash.ErrorType, crash.Body)
	}
	e.waitStats("fn", stratus.InstanceStats{Live: 1, Idle: 1})
	e.m.Reap()
	e.waitStats("fn", stratus.InstanceStats{Live: 2, Idle: 2})
	e.waitFor("two processes", func() bool { return len(e.procs()) == 2 })
	// Time passing does not take provisioned instances below the minimum.
	e.clock.Step(24 * time.Hour)
	e.m.Reap()
	if got := e.m.Stats("fn"); got != (stratus.InstanceStats{Live: 2, Idle: 2}) {
		t.Errorf("after a day idle: %+v, want the two provisioned instances", got)
	}
}

func TestDeployNewVersion(t *testing.T) {
	e := newEnv(t, opts{})
	e.deploy("fn", 1, nil)
	g := e.gate()
	busy := e.goInvoke("fn", block(g))
	e.atGate(g)
	idle := e.success(e.mustInvoke("fn", map[string]any{"op": "echo"}))
	if got := e.m.Stats("fn"); got != (stratus.InstanceStats{Live: 2, Idle: 1, Busy: 1}) {
		t.Fatalf("Stats = %+v", got)
	}

	e.deploy("fn", 2, nil)
	// The idle instance of version 1 stops now; the busy one goes on.
	e.gone(idle.PID)
	e.waitStats("fn", stratus.InstanceStats{Live: 1, Busy: 1})

	fresh := e.mustInvoke("fn", map[string]any{"op": "echo"})
	if ec := e.success(fresh); !fresh.Record.Cold || fresh.Record.Version != 2 || ec.Env["V"] != "2" {
		t.Errorf("after deploy: cold %v, version %d, env V=%q; want a new instance of version 2", fresh.Record.Cold, fresh.Record.Version, ec.Env["V"])
	}

	e.open(g)
	r := e.await(busy)
	if r.err != nil {
		t.Fatalf("in-flight invocation: %v", r.err)
	}
	old := e.success(r.resp)
	if r.resp.Record.Version != 1 || old.Env["V"] != "1" {
		t.Errorf("in-flight invocation finished on version %d (env V=%q), want 1", r.resp.Record.Version, old.Env["V"])
	}
	// Released, the old instance stops.
	e.gone(old.PID)
	e.waitStats("fn", stratus.InstanceStats{Live: 1, Idle: 1})
	if again := e.mustInvoke("fn", map[string]any{"op": "echo"}); again.Record.Instance != fresh.Record.Instance {
		t.Errorf("ran on %s, want the version 2 instance %s", again.Record.Instance, fresh.Record.Instance)
	}
}

func TestRemove(t *testing.T) {
	e := newEnv(t, opts{throttleWait: 30 * time.Second})
	e.deploy("fn", 1, func(c *stratus.FunctionConfig) { c.MaxConcurrency = 1 })
	g := e.gate()
	busy := e.goInvoke("fn", block(g))
	e.atGate(g)
	waiting := e.goInvoke("fn", map[string]any{"op": "echo"})
	e.waitFor("a waiter", func() bool { return e.waiters("fn") == 1 })

	e.m.Remove("fn")
	if r := e.await(waiting); !errors.Is(r.err, stratus.ErrNotFound) {
		t.Errorf("waiter: %v, want ErrNotFound", r.err)
	}
	if _, _, err := e.invoke("fn", map[string]any{"op": "echo"}); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("invoke after Remove: %v, want ErrNotFound", err)
	}
	e.open(g)
	r := e.await(busy)
	if r.err != nil {
		t.Fatalf("in-flight invocation: %v", r.err)
	}
	e.gone(e.success(r.resp).PID)
	e.waitFor("no process", func() bool { return len(e.procs()) == 0 })
	e.m.Remove("fn") // idempotent
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

func TestStopAllLeavesNoProcess(t *testing.T) {
	e := newEnv(t, opts{})
	e.deploy("a", 1, func(c *stratus.FunctionConfig) { c.MinInstances = 2 })
	e.deploy("b", 1, nil)
	e.waitStats("a", stratus.InstanceStats{Live: 2, Idle: 2})
	e.mustInvoke("b", map[string]any{"op": "echo"})
	g := e.gate()
	busy := e.goInvoke("b", block(g))
	e.atGate(g)
	if n := len(e.procs()); n != 3 {
		t.Fatalf("%d processes, want 3 instances", n)
	}

	// Stopping: idle instances stop now, the busy one when its
	// invocation ends, and Run returns once nothing is left.
	e.cancel()
	e.waitFor("the idle instances to stop", func() bool { return len(e.procs()) == 1 })
	if _, _, err := e.invoke("a", map[string]any{"op": "echo"}); !errors.Is(err, stratus.ErrUnavailable) {
		t.Errorf("invoke while stopping: %v, want ErrUnavailable", err)
	}
	select {
	case <-e.runDone:
		t.Fatal("Run returned while an invocation was in flight")
	default:
	}
	e.open(g)
	if r := e.await(busy); r.err != nil || r.resp.ErrorType != "" {
		t.Errorf("in-flight invocation: %v %+v, want it to finish", r.err, r.resp)
	}
	e.stop()
	if left := e.procs(); len(left) > 0 {
		t.Errorf("processes left when Run returned: %s", sandboxtest.Describe(left))
	}
	if got := e.m.Total(); got != 0 {
		t.Errorf("Total = %d after Run returned", got)
	}
	e.m.StopAll() // idempotent
}

func TestUnknownFunction(t *testing.T) {
	e := newEnv(t, opts{})
	if _, _, err := e.invoke("nope", map[string]any{}); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("err = %v, want ErrNotFound", err)
	}
}
