package pool

import (
	"cmp"
	"context"
	"errors"
	"math"
	"net/http"
	"runtime"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sandbox"
	"github.com/stratus-run/stratus/internal/sandbox/process"
	"github.com/stratus-run/stratus/internal/trace"
)

// What a record holds beyond Lambda's figures (trigger, architecture,
// trace ID, CPU time) and the counters of Stats.

// The process driver reads CPU time cheaply: the pool uses its CPUNanos.
var _ cpuReader = (*process.Driver)(nil)

// A caller's W3C trace context.
const (
	callerTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerParent = "00f067aa0ba902b7"
)

func callerCtx() context.Context {
	return trace.Extract(context.Background(), http.Header{"Traceparent": {"00-" + callerTrace + "-" + callerParent + "-01"}})
}

func TestRecordTriggerArchTrace(t *testing.T) {
	e := newEnv(t, opts{})
	e.deploy("fn", 1, nil)
	arch := map[string]string{"amd64": stratus.ArchX86, "arm64": stratus.ArchArm}[runtime.GOARCH]
	arch = cmp.Or(arch, runtime.GOARCH)
	for i, tc := range []struct {
		name        string
		ctx         context.Context
		trigger     string
		wantTrigger string
		wantTrace   string
		// wantHeader is the runtime's Lambda-Runtime-Trace-Id; "" is a
		// new one (checked for its prefix only).
		wantHeader string
	}{
		{"sync by default", context.Background(), "", stratus.TriggerSync, "", ""},
		{"http", context.Background(), stratus.TriggerHTTP, stratus.TriggerHTTP, "", ""},
		{
			"topic in a caller's trace", callerCtx(), stratus.TriggerTopic, stratus.TriggerTopic, callerTrace,
			// Without a tracer the function's parent is the caller's span.
			"Root=1-" + callerTrace[:8] + "-" + callerTrace[8:] + ";Parent=" + callerParent + ";Sampled=1",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := e.invokeReq(tc.ctx, "fn", map[string]any{"op": "echo"}, tc.trigger)
			if err != nil {
				t.Fatal(err)
			}
			ec := e.success(resp)
			r := resp.Record
			if r.Trigger != tc.wantTrigger || r.Arch != arch || r.TraceID != tc.wantTrace {
				t.Errorf("trigger %q, arch %q, trace %q; want %q, %q, %q", r.Trigger, r.Arch, r.TraceID, tc.wantTrigger, arch, tc.wantTrace)
			}
			switch {
			case tc.wantHeader != "" && ec.Trace != tc.wantHeader:
				t.Errorf("Lambda-Runtime-Trace-Id %q, want %q", ec.Trace, tc.wantHeader)
			case tc.wantHeader == "" && (len(ec.Trace) < 7 || ec.Trace[:7] != "Root=1-"):
				t.Errorf("Lambda-Runtime-Trace-Id %q, want a new X-Ray header", ec.Trace)
			}
			// The process driver's CPU time: the first invocation holds the
			// runtime's start (a Go program uses some CPU to start).
			if i == 0 && (!r.Cold || r.CPUMs <= 0) {
				t.Errorf("cold invocation: cold %v, CPU %.3f ms; want its init's CPU time", r.Cold, r.CPUMs)
			}
			if r.CPUMs < 0 {
				t.Errorf("CPU %.3f ms", r.CPUMs)
			}
			e.checkPlatformLines(r)
		})
	}
}

// TestCPUTime: each record holds the CPU time its instance used since the
// previous one's, the first one its init's, read once per invocation from
// the driver's CPUNanos, or from Stats when the driver has none.
func TestCPUTime(t *testing.T) {
	const init = 7 * time.Millisecond
	for _, tc := range []struct {
		name   string
		reader bool
	}{{"CPUNanos", true}, {"Stats", false}} {
		t.Run(tc.name, func(t *testing.T) {
			var c *cpuCounter
			e := newEnv(t, opts{driver: func(d *process.Driver) sandbox.Driver {
				c = newCPUCounter(d, init)
				if tc.reader {
					return cpuCounterReader{c}
				}
				return c
			}})
			if _, ok := e.m.cfg.Driver.(cpuReader); ok != tc.reader {
				t.Fatalf("driver is a cpuReader: %v, want %v", ok, tc.reader)
			}
			e.deploy("fn", 1, nil)
			cold := e.mustInvoke("fn", map[string]any{"op": "echo"}).Record
			id := cold.Instance
			got := []float64{cold.CPUMs}
			for _, d := range []time.Duration{3 * time.Millisecond, 0, 1500 * time.Microsecond} {
				c.add(id, d)
				r := e.mustInvoke("fn", map[string]any{"op": "echo"}).Record
				if r.Instance != id {
					t.Fatalf("invocation on %s, want the warm %s", r.Instance, id)
				}
				got = append(got, r.CPUMs)
			}
			if want := []float64{7, 3, 0, 1.5}; !gocmp.Equal(got, want) {
				t.Errorf("CPU ms of the invocations %v, want %v", got, want)
			}
			total := 0.0
			for _, ms := range got {
				total += ms
			}
			c.mu.Lock()
			n := c.nanos[id]
			c.mu.Unlock()
			if math.Abs(total-float64(n)/1e6) > 1e-9 {
				t.Errorf("records sum to %.3f ms of CPU, the sandbox used %.3f ms", total, float64(n)/1e6)
			}
			// One read per invocation: CPUNanos, with Stats once a second
			// for the peak memory; Stats alone when there is no CPUNanos.
			stats, cpu := c.reads()
			switch {
			case tc.reader && (cpu != 4 || stats < 1 || stats > 4):
				t.Errorf("%d CPUNanos and %d Stats reads, want 4 CPUNanos and Stats at most once a second", cpu, stats)
			case !tc.reader && (cpu != 0 || stats != 4):
				t.Errorf("%d CPUNanos and %d Stats reads, want 4 of Stats", cpu, stats)
			}
		})
	}
}

// TestBilledDuration: a cold invocation bills its init with its duration,
// as Lambda does since August 2025; a warm one its duration.
func TestBilledDuration(t *testing.T) {
	for _, tc := range []struct {
		dms, initMs float64
		want        int64
	}{
		{0, 0, 1},
		{0.2, 0, 1},
		{1, 0, 1},
		{1.001, 0, 2},
		{12.3, 0, 13},
		{12.3, 100.25, 113},
		{0, 250.5, 251},
		{0.5, 0.5, 1},
		{0.6, 0.5, 2},
	} {
		if got := billedMs(tc.dms, tc.initMs); got != tc.want {
			t.Errorf("billedMs(%v, %v) = %d, want %d", tc.dms, tc.initMs, got, tc.want)
		}
	}
}

func TestStatsCounters(t *testing.T) {
	t.Run("cold starts, starting, waiting", func(t *testing.T) {
		e := newEnv(t, opts{record: true, throttleWait: 30 * time.Second})
		e.deploy("fn", 1, func(c *stratus.FunctionConfig) { c.MaxConcurrency = 1 })
		hold := e.drv.holdStarts()
		first := e.goInvoke("fn", map[string]any{"op": "echo"})
		e.waitFor("a start held", func() bool { return len(e.drv.ids("start")) == 1 })
		want := stratus.InstanceStats{Live: 1, Busy: 1, Starting: 1, Waiting: 1}
		if got := e.m.Stats("fn"); got != want {
			t.Errorf("Stats while starting = %+v, want %+v", got, want)
		}
		close(hold)
		if r := e.await(first); r.err != nil {
			t.Fatal(r.err)
		}
		e.mustInvoke("fn", map[string]any{"op": "echo"}) // warm
		if got, want := e.m.Stats("fn"), (stratus.InstanceStats{Live: 1, Idle: 1, ColdStarts: 1}); got != want {
			t.Errorf("Stats = %+v, want %+v (create-ahead off: no prepare hits nor misses)", got, want)
		}
	})
	t.Run("throttles", func(t *testing.T) {
		// Throttles at the end of ThrottleWait: TestMaxConcurrencyThrottles.
		e := newEnv(t, opts{throttleWait: 30 * time.Second, queueSize: 1})
		e.deploy("fn", 1, func(c *stratus.FunctionConfig) { c.MaxConcurrency = 1 })
		g := e.gate()
		busy := e.goInvoke("fn", block(g))
		e.atGate(g)
		// One waits, one more is refused at once: the queue holds one.
		waiting := e.goInvoke("fn", map[string]any{"op": "echo"})
		e.waitFor("a waiter", func() bool { return e.waiters("fn") == 1 })
		if got := e.m.Stats("fn"); got.Waiting != 1 || got.Throttles != 0 {
			t.Errorf("Stats = %+v, want one waiting, no throttle", got)
		}
		if _, _, err := e.invoke("fn", map[string]any{"op": "echo"}); !errors.Is(err, stratus.ErrCapacity) {
			t.Fatalf("invocation beyond the queue: %v, want ErrCapacity", err)
		}
		if got := e.m.Stats("fn"); got.Waiting != 1 || got.Throttles != 1 {
			t.Errorf("Stats = %+v, want one waiting, one throttle", got)
		}
		e.open(g)
		for _, c := range []<-chan invResult{busy, waiting} {
			if r := e.await(c); r.err != nil {
				t.Fatal(r.err)
			}
		}
		if got, want := e.m.Stats("fn"), (stratus.InstanceStats{Live: 1, Idle: 1, Throttles: 1, ColdStarts: 1}); got != want {
			t.Errorf("Stats = %+v, want %+v", got, want)
		}
		e.sink.mu.Lock()
		n := len(e.sink.records)
		e.sink.mu.Unlock()
		if n != 2 {
			t.Errorf("%d records, want 2: a throttled call is not an invocation", n)
		}
	})
	t.Run("prepare hits and misses", func(t *testing.T) {
		e := newEnv(t, opts{maxPrepared: 5})
		e.drv.fail = errors.New("no room for a prepared sandbox")
		e.deploy("fn", 1, nil)
		e.settled()
		e.mustInvoke("fn", map[string]any{"op": "echo"}) // a miss
		e.drv.mu.Lock()
		e.drv.fail = nil
		e.drv.mu.Unlock()
		e.settled()
		e.deploy("fn", 2, nil)
		e.waitPrepared("fn")
		if r := e.mustInvoke("fn", map[string]any{"op": "echo"}).Record; !r.Cold || r.Version != 2 {
			t.Fatalf("invocation after the deploy: cold %v, version %d; want a cold start of version 2", r.Cold, r.Version)
		}
		got := e.m.Stats("fn")
		if got.ColdStarts != 2 || got.PrepareHits != 1 || got.PrepareMisses != 1 {
			t.Errorf("Stats = %+v, want 2 cold starts: 1 prepare hit, 1 miss", got)
		}
	})
}

func TestAllStats(t *testing.T) {
	e := newEnv(t, opts{})
	if got := e.m.AllStats(); len(got) != 0 {
		t.Errorf("AllStats = %v, want none", got)
	}
	e.deploy("a", 1, nil)
	e.deploy("b", 1, nil)
	e.mustInvoke("a", map[string]any{"op": "echo"})
	want := map[string]stratus.InstanceStats{
		"a": {Live: 1, Idle: 1, ColdStarts: 1},
		"b": {},
	}
	if diff := gocmp.Diff(want, e.m.AllStats()); diff != "" {
		t.Errorf("AllStats (-want +got):\n%s", diff)
	}
	e.m.Remove("b")
	if got := e.m.AllStats(); len(got) != 1 || got["a"] != e.m.Stats("a") {
		t.Errorf("AllStats after Remove(b) = %v, want a's Stats only", got)
	}
}
