package pool

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
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

	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/sandbox"
	"github.com/stratus-run/stratus/internal/sandbox/process"
	"github.com/stratus-run/stratus/internal/sandbox/sandboxtest"
)

// The test harness: a Manager running real instances of the test runtime
// (testdata/rt) under the process driver, and what the tests read of it.

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
	// stopGrace is Config.StopGrace; 0 means 2 s.
	stopGrace     time.Duration
	driverTimeout time.Duration
	// driver, when set, wraps the process driver in the Manager's driver
	// (instead of the preparer).
	driver func(*process.Driver) sandbox.Driver
	// tracer is Config.Tracer.
	tracer oteltrace.Tracer
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
	driver, err := process.New(process.Config{StateDir: t.TempDir()})
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
	var drv sandbox.Driver = driver
	switch {
	case o.driver != nil:
		drv = o.driver(driver)
	case o.maxPrepared > 0 || o.record:
		e.drv = newPreparer(driver)
		drv = e.drv
	}
	cfg := Config{
		Driver:        drv,
		MaxPrepared:   o.maxPrepared,
		Command:       func(v *stratus.Version, taskDir, rtDir string) ([]string, error) { return []string{rtBin}, nil },
		CodeDir:       func(sha string) string { return e.codeDir },
		RuntimeDir:    "/opt/stratus-runtimes",
		MaxInstances:  o.maxInstances,
		MaxCreating:   cmp.Or(o.maxCreating, 8),
		IdleTimeout:   o.idleTimeout,
		ThrottleWait:  o.throttleWait,
		QueueSize:     o.queueSize,
		InitTimeout:   o.initTimeout,
		StopGrace:     cmp.Or(o.stopGrace, 2*time.Second),
		DriverTimeout: o.driverTimeout,
		ReapEvery:     time.Hour, // the test calls Reap itself
		Sink:          e.sink,
		Tracer:        o.tracer,
	}
	if o.fakeClock {
		e.clock = &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
		cfg.Now = e.clock.Now
	}
	e.m = New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go func() { e.runDone <- e.m.Run(ctx) }()
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

// run runs m until the test ends.
func run(t *testing.T, m *Manager) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
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

// invokeReq invokes with ctx (for its trace context) and trigger.
func (e *env) invokeReq(ctx context.Context, name string, ev map[string]any, trigger string) (*stratus.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	b, _ := json.Marshal(ev)
	return e.m.Invoke(ctx, name, stratus.Request{RequestID: e.newReqID(), Event: b, Trigger: trigger})
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
	e.waitFor(fmt.Sprintf("%s to have %+v", name, want), func() bool { return e.gauges(name) == want })
}

// gauges is Stats of function name without its counters (throttles, cold
// starts, prepare hits and misses): what is there now.
func (e *env) gauges(name string) stratus.InstanceStats {
	s := e.m.Stats(name)
	s.Throttles, s.ColdStarts, s.PrepareHits, s.PrepareMisses = 0, 0, 0, 0
	return s
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

// preparedOf is the prepared instance of function name, nil if none.
func (e *env) preparedOf(name string) *Instance {
	e.m.mu.Lock()
	defer e.m.mu.Unlock()
	if p := e.m.pools[name]; p != nil {
		return p.prepared
	}
	return nil
}

// settled waits until no prepare is in flight and returns the number of
// prepared instances (and places reserved) the Manager counts.
func (e *env) settled() int {
	e.t.Helper()
	var n int
	e.waitFor("no prepare in flight", func() bool {
		e.m.mu.Lock()
		defer e.m.mu.Unlock()
		for _, p := range e.m.pools {
			if p.preparing != nil {
				return false
			}
		}
		n = e.m.prepared
		return true
	})
	return n
}

// waitPrepared waits until function name has a prepared instance, and
// returns its ID.
func (e *env) waitPrepared(name string) string {
	e.t.Helper()
	e.waitFor("a prepared instance of "+name, func() bool { return e.preparedOf(name) != nil })
	return e.preparedOf(name).ID
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
