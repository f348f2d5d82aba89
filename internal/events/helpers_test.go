package events

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	stratus "github.com/stratus-run/stratus"
)

// testLog shows the package's warnings when STRATUS_TEST_LOG is set.
func testLog() *slog.Logger {
	if os.Getenv("STRATUS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// fakeInvoker records every call and answers with behave (success when nil).
type fakeInvoker struct {
	behave func(ctx context.Context, req stratus.Request, call int) (*stratus.Response, error)

	mu    sync.Mutex
	calls []stratus.Request
	byID  map[string]int
	cur   atomic.Int64
	peak  atomic.Int64
}

func (f *fakeInvoker) Invoke(ctx context.Context, name string, req stratus.Request) (*stratus.Response, error) {
	n := f.cur.Add(1)
	defer f.cur.Add(-1)
	for p := f.peak.Load(); n > p && !f.peak.CompareAndSwap(p, n); p = f.peak.Load() {
	}
	f.mu.Lock()
	f.calls = append(f.calls, req)
	if f.byID == nil {
		f.byID = make(map[string]int)
	}
	f.byID[req.RequestID]++
	call := f.byID[req.RequestID]
	f.mu.Unlock()
	if f.behave == nil {
		return &stratus.Response{Body: []byte(`"ok"`)}, nil
	}
	return f.behave(ctx, req, call)
}

func (f *fakeInvoker) callsFor(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.byID[id]
}

func (f *fakeInvoker) requests() []stratus.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]stratus.Request(nil), f.calls...)
}

// fnError is a function error response.
func fnError(typ, msg string) *stratus.Response {
	return &stratus.Response{ErrorType: typ, Body: fmt.Appendf(nil, `{"errorType":%q,"errorMessage":%q}`, typ, msg)}
}

// policies is a mutable PolicyFunc.
type policies struct {
	mu sync.Mutex
	m  map[string]AsyncPolicy
}

func newPolicies(kv ...any) *policies {
	p := &policies{m: make(map[string]AsyncPolicy)}
	for i := 0; i < len(kv); i += 2 {
		p.m[kv[i].(string)] = kv[i+1].(AsyncPolicy)
	}
	return p
}

func (p *policies) lookup(fn string) (AsyncPolicy, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pol, ok := p.m[fn]
	return pol, ok
}

func (p *policies) set(fn string, pol AsyncPolicy) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.m[fn] = pol
}

func (p *policies) remove(fn string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, fn)
}

// statusSink records every status by request ID.
type statusSink struct {
	mu   sync.Mutex
	byID map[string][]Status
}

func (s *statusSink) AsyncStatus(st Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byID == nil {
		s.byID = make(map[string][]Status)
	}
	s.byID[st.RequestID] = append(s.byID[st.RequestID], st)
}

// states returns "state/attempt" for each status of id.
func (s *statusSink) states(id string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, st := range s.byID[id] {
		out = append(out, fmt.Sprintf("%s/%d", st.State, st.Attempt))
	}
	return out
}

type doneRec struct {
	fn, id   string
	event    string
	result   *stratus.Response
	attempts int
	err      error
}

type harness struct {
	t    *testing.T
	dir  string
	bus  *Bus
	q    *Queue
	inv  *fakeInvoker
	pol  *policies
	sink *statusSink
	done chan doneRec

	stop  context.CancelFunc
	ended chan error
}

// fastQueue shortens every delay of c so tests run in milliseconds.
func fastQueue(c *QueueConfig) {
	c.RetryBase = 5 * time.Millisecond
	c.RetryMax = 40 * time.Millisecond
	c.ThrottleDelay = 10 * time.Millisecond
	c.AckWait = time.Second
	c.PollWait = 500 * time.Millisecond
	c.RescanInterval = 100 * time.Millisecond
	c.DrainTimeout = 2 * time.Second
}

func openTestBus(t *testing.T, cfg BusConfig) *Bus {
	t.Helper()
	if cfg.Log == nil {
		cfg.Log = testLog()
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	b, err := OpenBus(ctx, cfg)
	if err != nil {
		t.Fatalf("open bus: %v", err)
	}
	return b
}

// newHarness opens a bus on dir (a new temp dir if "") and a fast queue.
func newHarness(t *testing.T, dir string, inv *fakeInvoker, pol *policies) *harness {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	h := &harness{t: t, dir: dir, inv: inv, pol: pol, sink: &statusSink{}, done: make(chan doneRec, 10000)}
	h.bus = openTestBus(t, BusConfig{StoreDir: dir})
	h.q = h.newQueue(h.bus)
	t.Cleanup(h.close)
	return h
}

// newQueue returns a fast queue on b that reports to h; change, if any,
// adjusts its configuration first.
func (h *harness) newQueue(b *Bus, change ...func(*QueueConfig)) *Queue {
	cfg := QueueConfig{
		Bus: b, Invoker: h.inv, Policy: h.pol.lookup, Sink: h.sink, Log: testLog(),
		OnDone: func(_ context.Context, fn, id string, event []byte, res *stratus.Response, attempts int, err error) Routing {
			h.done <- doneRec{fn: fn, id: id, event: string(event), result: res, attempts: attempts, err: err}
			return Routing{}
		},
	}
	fastQueue(&cfg)
	for _, c := range change {
		c(&cfg)
	}
	return NewQueue(cfg)
}

// configure replaces h's queue with one whose configuration change
// adjusts; call it before run or after stopRun.
func (h *harness) configure(change func(*QueueConfig)) {
	h.q = h.newQueue(h.bus, change)
}

// run starts the queue's Run; close stops it.
func (h *harness) run() {
	ctx, cancel := context.WithCancel(context.Background())
	h.stop, h.ended = cancel, make(chan error, 1)
	go func() { h.ended <- h.q.Run(ctx) }()
}

// stopRun stops Run and waits for it.
func (h *harness) stopRun() {
	h.t.Helper()
	if h.stop == nil {
		return
	}
	h.stop()
	select {
	case err := <-h.ended:
		if err != nil {
			h.t.Errorf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		h.t.Fatal("run did not return within 15s of its ctx ending")
	}
	h.stop = nil
}

func (h *harness) close() {
	h.stopRun()
	if h.bus != nil {
		if err := h.bus.Close(); err != nil {
			h.t.Errorf("close bus: %v", err)
		}
		h.bus = nil
	}
}

func (h *harness) enqueue(fn, event string) string {
	h.t.Helper()
	id, err := h.q.Enqueue(h.t.Context(), fn, []byte(event))
	if err != nil {
		h.t.Fatalf("enqueue %s: %v", fn, err)
	}
	return id
}

// waitDone returns the next n OnDone calls, failing after timeout.
func (h *harness) waitDone(n int, timeout time.Duration) []doneRec {
	h.t.Helper()
	deadline := time.After(timeout)
	var out []doneRec
	for len(out) < n {
		select {
		case d := <-h.done:
			out = append(out, d)
		case <-deadline:
			h.t.Fatalf("got %d of %d done events within %s", len(out), n, timeout)
		}
	}
	return out
}
