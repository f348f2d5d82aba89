package pool

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
)

// Admission: which instance serves a call, queues, caps and throttling.

func TestMostRecentlyUsedFirst(t *testing.T) {
	e := newEnv(t, opts{})
	e.deploy("fn", 1, nil)
	g1, g2 := e.gate(), e.gate()
	c1 := e.goInvoke("fn", block(g1))
	c2 := e.goInvoke("fn", block(g2))
	e.atGate(g1)
	e.atGate(g2)
	if got := e.gauges("fn"); got != (stratus.InstanceStats{Live: 2, Busy: 2}) {
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
	if got := e.m.Stats("fn"); got.Live != 2 || got.Throttles != 2 {
		t.Errorf("Stats = %+v, want no instance beyond max concurrency, and both calls counted as throttles", got)
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
	if got := e.gauges("fn"); got != (stratus.InstanceStats{Live: 1, Idle: 1}) {
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
	e.waitFor("the second instance up and idle", func() bool { return e.gauges("fn") == stratus.InstanceStats{Live: 2, Idle: 2} })
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
	// One start is held in the driver with the one turn; the other waits
	// for that turn.
	e.waitFor("one sandbox being made, the other start waiting for its turn", func() bool {
		e.m.mu.Lock()
		waiting := e.m.awaitingTurn
		e.m.mu.Unlock()
		return waiting == 1 && len(e.drv.ids("start")) == 1
	})
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
	if got := e.gauges("a"); got != (stratus.InstanceStats{Live: 1, Idle: 1}) {
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
