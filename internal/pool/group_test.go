package pool

import (
	"errors"
	"testing"

	"github.com/stratus-run/stratus"
)

// A published version's pool removed between two reads of the
// function's stats takes nothing away from its counters: the throttles
// series never goes down (which a reader of /metrics would count as a
// reset, and so as every throttle again).
func TestRemovedVersionKeepsItsCounters(t *testing.T) {
	e := newEnv(t, opts{})
	v1 := e.version("fn", 1, nil)
	e.deploy("fn", 2, func(c *stratus.FunctionConfig) { c.Throttled = true })
	e.m.Deploy(publishedAs(v1, 1, nil))
	throttle := func(k string) {
		t.Helper()
		if _, _, err := e.invoke(k, map[string]any{"op": "echo"}); !errors.Is(err, stratus.ErrCapacity) {
			t.Fatalf("invoke %s of a throttled function: %v, want ErrCapacity", k, err)
		}
	}
	throttle("fn:1")
	throttle("fn:1")
	throttle("fn")
	if s := e.m.AllFunctionStats()["fn"]; s.Throttles != 3 {
		t.Fatalf("before the removal: %d throttles, want 3", s.Throttles)
	}
	// A throttle after the last read, then the removal: counted too.
	throttle("fn:1")
	e.m.RemoveVersion("fn:1")
	if s := e.m.AllFunctionStats()["fn"]; s.Throttles != 4 {
		t.Fatalf("after removing version 1: %d throttles, want 4", s.Throttles)
	}
	throttle("fn")
	for range 2 { // the removed pool is folded in once
		if s := e.m.FunctionStats("fn"); s.Throttles != 5 || s.Live != 0 {
			t.Fatalf("after one more throttle: %+v, want 5 throttles", s)
		}
	}
	// The same version published again is a new pool, counting from 0
	// within the function's total.
	e.m.Deploy(publishedAs(v1, 1, nil))
	throttle("fn:1")
	if s, v := e.m.FunctionStats("fn"), e.m.Stats("fn:1"); s.Throttles != 6 || v.Throttles != 1 {
		t.Fatalf("version 1 again: function %d throttles, version %d; want 6 and 1", s.Throttles, v.Throttles)
	}
}
