package pool

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
)

// publishedAs is a copy of v published as number n: what the functions
// service hands the pools for "NAME:N".
func publishedAs(v *stratus.Version, n int, mod func(c *stratus.FunctionConfig)) *stratus.Version {
	c := *v
	c.Number = n
	c.Qualifier = strconv.Itoa(n)
	if mod != nil {
		mod(&c.Config)
	}
	return &c
}

// Each version of a function runs on instances of its own, which say
// what they run as (environment, START line, record), and the ARN they
// are given names what the caller invoked.
func TestVersionsHaveOwnInstances(t *testing.T) {
	e := newEnv(t, opts{})
	v1 := e.version("fn", 1, nil)
	e.deploy("fn", 2, nil)
	e.m.Deploy(publishedAs(v1, 1, nil))

	head := e.success(e.mustInvoke("fn", map[string]any{"op": "echo"}))
	resp, err := e.m.InvokeAs(t.Context(), "fn:1", "live", stratus.Request{RequestID: e.newReqID(), Event: []byte(`{"op":"echo"}`)})
	if err != nil {
		t.Fatal(err)
	}
	one := e.success(resp)
	if head.PID == one.PID {
		t.Errorf("$LATEST and version 1 ran on the same instance (pid %d)", head.PID)
	}
	for _, c := range []struct {
		what          string
		ec            echo
		ver, runsAs   string
		arnSuffix     string
		record        string
		recordVersion int
	}{
		{"$LATEST", head, "2", "$LATEST", ":function:fn", "$LATEST", 2},
		{"version 1", one, "1", "1", ":function:fn:live", "1", 1},
	} {
		if c.ec.Env["V"] != c.ver || c.ec.Env["AWS_LAMBDA_FUNCTION_VERSION"] != c.runsAs {
			t.Errorf("%s: V=%q AWS_LAMBDA_FUNCTION_VERSION=%q, want %q and %q", c.what, c.ec.Env["V"], c.ec.Env["AWS_LAMBDA_FUNCTION_VERSION"], c.ver, c.runsAs)
		}
		if !strings.Contains(c.ec.Env["AWS_LAMBDA_LOG_STREAM_NAME"], "["+c.runsAs+"]") {
			t.Errorf("%s: log stream %q", c.what, c.ec.Env["AWS_LAMBDA_LOG_STREAM_NAME"])
		}
		if !strings.HasSuffix(c.ec.ARN, c.arnSuffix) || !strings.HasPrefix(c.ec.ARN, "arn:aws:lambda:local:"+stratus.DefaultAccountID+":") {
			t.Errorf("%s: ARN %q, want one ending %q", c.what, c.ec.ARN, c.arnSuffix)
		}
	}
	if resp.Record.Qualifier != "1" || resp.Record.Version != 1 {
		t.Errorf("record of version 1: qualifier %q, snapshot %d", resp.Record.Qualifier, resp.Record.Version)
	}
	if start := e.sink.linesOf(resp.Record.RequestID, stratus.StreamPlatform); len(start) == 0 || !strings.HasSuffix(start[0].Text, "Version: 1") {
		t.Errorf("START line of version 1: %+v", start)
	}
	r := e.mustInvoke("fn:1", map[string]any{"op": "echo"})
	if got := e.success(r); got.PID != one.PID || !strings.HasSuffix(got.ARN, ":function:fn:1") {
		t.Errorf("second call of fn:1 ran on pid %d with ARN %q, want pid %d and the qualifier it named", got.PID, got.ARN, one.PID)
	}
	if s := e.m.Stats("fn:1"); s.Live != 1 || s.Idle != 1 {
		t.Errorf("Stats(fn:1) = %+v", s)
	}
	if s := e.m.FunctionStats("fn"); s.Live != 2 || s.ColdStarts != 2 {
		t.Errorf("FunctionStats(fn) = %+v, want both versions' instances", s)
	}
	if all := e.m.AllFunctionStats(); len(all) != 1 || all["fn"].Live != 2 {
		t.Errorf("AllFunctionStats = %+v", all)
	}

	// A new head leaves version 1's instance alone.
	e.deploy("fn", 3, nil)
	if got := e.success(e.mustInvoke("fn:1", map[string]any{"op": "echo"})); got.PID != one.PID {
		t.Errorf("a new head stopped version 1's instance")
	}
	e.m.RemoveVersion("fn:1")
	if _, _, err := e.invoke("fn:1", map[string]any{"op": "echo"}); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("invoke a removed version: %v", err)
	}
	e.gone(one.PID)
	if got := e.success(e.mustInvoke("fn", map[string]any{"op": "echo"})); got.Env["V"] != "3" {
		t.Errorf("head ran V=%s after version 1 went", got.Env["V"])
	}
	e.m.Deploy(publishedAs(v1, 1, nil))
	e.mustInvoke("fn:1", map[string]any{"op": "echo"})
	e.m.Remove("fn")
	for _, k := range []string{"fn", "fn:1"} {
		if _, _, err := e.invoke(k, map[string]any{"op": "echo"}); !errors.Is(err, stratus.ErrNotFound) {
			t.Errorf("invoke %s of a removed function: %v", k, err)
		}
	}
	e.waitFor("no instance left", func() bool { return len(e.procs()) == 0 })
}

// All versions of a function share its head's max concurrency; an idle
// instance of one version makes way for a call of another at the cap.
func TestSharedCapAcrossVersions(t *testing.T) {
	const wait = 300 * time.Millisecond
	e := newEnv(t, opts{throttleWait: wait})
	v1 := e.version("fn", 1, nil)
	e.deploy("fn", 2, func(c *stratus.FunctionConfig) { c.MaxConcurrency = 2 })
	// The published version's own setting does not count.
	e.m.Deploy(publishedAs(v1, 1, func(c *stratus.FunctionConfig) { c.MaxConcurrency = 10 }))
	g := e.gate()
	busy := []<-chan invResult{e.goInvoke("fn", block(g)), e.goInvoke("fn:1", block(g))}
	e.waitFor("two busy instances", func() bool { return e.m.FunctionStats("fn").Busy == 2 })
	for _, k := range []string{"fn", "fn:1"} {
		r := e.await(e.goInvoke(k, map[string]any{"op": "echo"}))
		if !errors.Is(r.err, stratus.ErrCapacity) {
			t.Errorf("a third call of %s at the function's cap: %v, want ErrCapacity", k, r.err)
		}
	}
	if s := e.m.FunctionStats("fn"); s.Live != 2 || s.Throttles != 2 {
		t.Errorf("FunctionStats = %+v, want 2 live and 2 throttles", s)
	}
	e.open(g)
	e.open(g)
	for _, c := range busy {
		if r := e.await(c); r.err != nil {
			t.Fatal(r.err)
		}
	}
	// Both idle now, at the cap: a call of version 1 takes its own idle
	// instance; two at once evict the head's idle one for the second.
	e.waitFor("two idle instances", func() bool { return e.m.FunctionStats("fn").Idle == 2 })
	g2 := e.gate()
	two := []<-chan invResult{e.goInvoke("fn:1", block(g2)), e.goInvoke("fn:1", block(g2))}
	e.waitFor("version 1 on both slots", func() bool { return e.m.Stats("fn:1").Busy == 2 })
	if s := e.m.Stats("fn"); s.Live != 0 {
		t.Errorf("head's pool: %+v, want its idle instance evicted", s)
	}
	e.open(g2)
	e.open(g2)
	for _, c := range two {
		if r := e.await(c); r.err != nil {
			t.Fatal(r.err)
		}
	}
}

// A throttled head (reserved concurrency 0) refuses every call of every
// version at once: a throttle, no record.
func TestThrottledRefusesEveryVersion(t *testing.T) {
	e := newEnv(t, opts{})
	v1 := e.version("fn", 1, nil)
	e.deploy("fn", 2, func(c *stratus.FunctionConfig) { c.Throttled = true })
	e.m.Deploy(publishedAs(v1, 1, nil))
	for _, k := range []string{"fn", "fn:1"} {
		start := time.Now()
		_, id, err := e.invoke(k, map[string]any{"op": "echo"})
		if !errors.Is(err, stratus.ErrCapacity) || time.Since(start) > 5*time.Second {
			t.Errorf("invoke %s of a throttled function: %v after %s, want ErrCapacity at once", k, err, time.Since(start))
		}
		if _, n := e.sink.recordOf(id); n != 0 {
			t.Errorf("a throttled call of %s left %d records", k, n)
		}
	}
	if s := e.m.FunctionStats("fn"); s.Throttles != 2 || s.Live != 0 {
		t.Errorf("FunctionStats = %+v, want 2 throttles and no instance", s)
	}
	// Lifting the throttle lets them run.
	e.deploy("fn", 3, nil)
	e.mustInvoke("fn", map[string]any{"op": "echo"})
	e.mustInvoke("fn:1", map[string]any{"op": "echo"})
}

// MinInstances holds per pool: a published version keeps its own warm
// instances next to the head's; a throttled function keeps none.
func TestMinInstancesPerVersion(t *testing.T) {
	e := newEnv(t, opts{})
	v1 := e.version("fn", 1, nil)
	e.deploy("fn", 2, func(c *stratus.FunctionConfig) { c.MinInstances = 1 })
	e.m.Deploy(publishedAs(v1, 1, func(c *stratus.FunctionConfig) { c.MinInstances = 2 }))
	e.m.Reap()
	e.waitFor("warm instances of both versions", func() bool {
		return e.gauges("fn") == stratus.InstanceStats{Live: 1, Idle: 1} && e.gauges("fn:1") == stratus.InstanceStats{Live: 2, Idle: 2}
	})
	e.deploy("fn", 3, func(c *stratus.FunctionConfig) { c.MinInstances = 1; c.Throttled = true })
	e.waitFor("no instance of a throttled function", func() bool {
		e.m.Reap()
		return e.m.FunctionStats("fn").Live == 0
	})
}
