package pool

import (
	"testing"
	"time"

	"github.com/stratus-run/stratus"
)

// A function whose cap is lowered runs no more than the new cap, across
// its versions: a published version's warm instances (MinInstances too)
// go down to it, calls then take turns on the one left, and an instance
// busy at the change stops when its call ends instead of serving a call
// waiting for it.
func TestLoweredCapHoldsAcrossVersions(t *testing.T) {
	e := newEnv(t, opts{throttleWait: 10 * time.Second})
	v1 := e.version("fn", 1, nil)
	e.deploy("fn", 2, func(c *stratus.FunctionConfig) { c.MaxConcurrency = 3 })
	e.m.Deploy(publishedAs(v1, 1, func(c *stratus.FunctionConfig) { c.MinInstances = 3 }))
	e.waitStats("fn:1", stratus.InstanceStats{Live: 3, Idle: 3})

	e.deploy("fn", 3, func(c *stratus.FunctionConfig) { c.MaxConcurrency = 1 })
	e.waitFor("version 1 within the new cap", func() bool {
		e.m.Reap()
		return e.gauges("fn:1") == stratus.InstanceStats{Live: 1, Idle: 1}
	})
	g := e.gate()
	calls := make([]<-chan invResult, 3)
	for i := range calls {
		calls[i] = e.goInvoke("fn:1", block(g))
	}
	e.waitStats("fn:1", stratus.InstanceStats{Live: 1, Busy: 1, Waiting: 2})
	e.open(g)
	for _, c := range calls {
		if r := e.await(c); r.err != nil {
			t.Fatal(r.err)
		}
	}
	e.m.Reap()
	if s := e.m.FunctionStats("fn"); s.Live > 1 {
		t.Errorf("FunctionStats = %+v after Reap, want MinInstances kept within the cap of 1", s)
	}

	// Two busy at a cap of 2, one more waiting; the cap drops to 1: the
	// first to end stops, the waiter gets the second.
	e.m.Deploy(publishedAs(v1, 1, nil)) // no MinInstances starts from here
	e.deploy("fn", 4, func(c *stratus.FunctionConfig) { c.MaxConcurrency = 2 })
	ga, gb, gc := e.gate(), e.gate(), e.gate()
	a := e.goInvoke("fn:1", block(ga))
	e.atGate(ga)
	b := e.goInvoke("fn:1", block(gb))
	e.atGate(gb)
	c := e.goInvoke("fn:1", block(gc))
	e.waitFor("a waiter", func() bool { return e.waiters("fn:1") == 1 })
	e.deploy("fn", 5, func(c *stratus.FunctionConfig) { c.MaxConcurrency = 1 })
	e.open(ga)
	if r := e.await(a); r.err != nil {
		t.Fatal(r.err)
	}
	e.waitFor("one instance left, the waiter still waiting", func() bool {
		s := e.m.FunctionStats("fn")
		return s.Live == 1 && s.Waiting == 1
	})
	e.open(gb)
	e.open(gc)
	for _, ch := range []<-chan invResult{b, c} {
		if r := e.await(ch); r.err != nil {
			t.Fatal(r.err)
		}
	}
}

// At the function's cap, calls of its versions are served in the order
// they came: a call of version 1 queued before later calls of $LATEST
// gets the first slot that frees, not ErrCapacity after ThrottleWait.
func TestVersionsServedInArrivalOrder(t *testing.T) {
	e := newEnv(t, opts{throttleWait: 5 * time.Second})
	v1 := e.version("fn", 1, nil)
	e.deploy("fn", 2, func(c *stratus.FunctionConfig) { c.MaxConcurrency = 1 })
	e.m.Deploy(publishedAs(v1, 1, nil))
	g1, g2 := e.gate(), e.gate()
	first := e.goInvoke("fn", block(g1))
	e.atGate(g1)
	one := e.goInvoke("fn:1", map[string]any{"op": "echo"})
	e.waitFor("version 1's call waiting", func() bool { return e.waiters("fn:1") == 1 })
	later := []<-chan invResult{e.goInvoke("fn", block(g2)), e.goInvoke("fn", block(g2))}
	e.waitFor("two later $LATEST calls waiting", func() bool { return e.waiters("fn") == 2 })
	e.open(g1)
	if r := e.await(first); r.err != nil {
		t.Fatal(r.err)
	}
	if r := e.await(one); r.err != nil {
		t.Fatalf("version 1's call, first in line: %v", r.err)
	}
	e.open(g2)
	for _, c := range later {
		if r := e.await(c); r.err != nil {
			t.Fatal(r.err)
		}
	}
	if s := e.m.FunctionStats("fn"); s.Throttles != 0 || s.Live > 1 {
		t.Errorf("FunctionStats = %+v, want no throttle and at most one instance", s)
	}
}
