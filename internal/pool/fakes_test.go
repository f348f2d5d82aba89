package pool

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/stratus-run/stratus/internal/logtest"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sandbox"
	"github.com/stratus-run/stratus/internal/sandbox/process"
)

// Drivers the tests put between the Manager and the process driver.

// preparer is the process driver with Capabilities.Prepare, for the
// create-ahead tests. Prepare checks the spec as the process driver does
// and keeps it: no process runs until Start, which must get the same spec.
// Stop of a prepared sandbox ends it; Wait of one returns when it is
// stopped, or waits for its process once started. Every Prepare, Start
// and Stop is recorded in order.
type preparer struct {
	*process.Driver

	mu    sync.Mutex
	calls []call
	boxes map[string]*prepBox
	// fail, when set, is Prepare's error.
	fail error
	// hold, when set, is a channel each Prepare waits on (after it is
	// recorded) until it is closed; holdStart the same for each Start of
	// a sandbox not prepared.
	hold, holdStart chan struct{}
	// specs are the specs of every Prepare and Start, in order.
	specs []sandbox.Spec
	// onEndInit, when set, is called by EndInit (before it is recorded).
	onEndInit func(id string)
}

// call is one recorded driver call: op is "prepare", "start" (of a
// sandbox not prepared), "start-prepared", "end-init" or "stop".
type call struct{ op, id string }

type prepBox struct {
	spec    sandbox.Spec
	state   string        // "prepared", "starting", "started", "stopped"; guarded by preparer.mu
	settled chan struct{} // closed when started or stopped
}

func newPreparer(d *process.Driver) *preparer {
	return &preparer{Driver: d, boxes: make(map[string]*prepBox)}
}

func (p *preparer) Capabilities() sandbox.Capabilities {
	c := p.Driver.Capabilities()
	c.Prepare = true
	return c
}

func (p *preparer) Prepare(ctx context.Context, spec sandbox.Spec) error {
	p.mu.Lock()
	p.calls = append(p.calls, call{"prepare", spec.ID})
	p.specs = append(p.specs, spec)
	fail, hold := p.fail, p.hold
	p.mu.Unlock()
	if hold != nil {
		<-hold
	}
	if fail != nil {
		return fail
	}
	if err := p.Driver.Prepare(ctx, spec); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.boxes[spec.ID]; ok {
		return fmt.Errorf("prepare %s twice: %w", spec.ID, stratus.ErrConflict)
	}
	p.boxes[spec.ID] = &prepBox{spec: spec, state: "prepared", settled: make(chan struct{})}
	return nil
}

func (p *preparer) Start(ctx context.Context, spec sandbox.Spec) error {
	p.mu.Lock()
	p.specs = append(p.specs, spec)
	b := p.boxes[spec.ID]
	if b == nil {
		p.calls = append(p.calls, call{"start", spec.ID})
		hold := p.holdStart
		p.mu.Unlock()
		if hold != nil {
			<-hold
		}
		return p.Driver.Start(ctx, spec)
	}
	p.calls = append(p.calls, call{"start-prepared", spec.ID})
	if b.state != "prepared" {
		p.mu.Unlock()
		return fmt.Errorf("start %s: %s, not prepared: %w", spec.ID, b.state, stratus.ErrConflict)
	}
	b.state = "starting"
	p.mu.Unlock()
	err := p.Driver.Start(ctx, spec)
	if !sameSpec(b.spec, spec) {
		err = fmt.Errorf("start %s with a spec other than the prepared one", spec.ID)
	}
	p.mu.Lock()
	b.state = "started"
	if err != nil {
		b.state = "stopped"
	}
	close(b.settled)
	p.mu.Unlock()
	return err
}

// holdStarts makes every Start of a sandbox not prepared wait from now on
// until the returned channel is closed.
func (p *preparer) holdStarts() chan struct{} {
	hold := make(chan struct{})
	p.mu.Lock()
	p.holdStart = hold
	p.mu.Unlock()
	return hold
}

func sameSpec(a, b sandbox.Spec) bool {
	return a.ID == b.ID && slices.Equal(a.Argv, b.Argv) && slices.Equal(a.Env, b.Env) && a.Dir == b.Dir &&
		slices.Equal(a.Mounts, b.Mounts) && a.MemoryMB == b.MemoryMB && a.Stdout == b.Stdout && a.Stderr == b.Stderr
}

func (p *preparer) EndInit(ctx context.Context, id string) error {
	p.mu.Lock()
	hook := p.onEndInit
	p.mu.Unlock()
	if hook != nil {
		hook(id)
	}
	p.mu.Lock()
	p.calls = append(p.calls, call{"end-init", id})
	p.mu.Unlock()
	return p.Driver.EndInit(ctx, id)
}

func (p *preparer) Stop(ctx context.Context, id string, grace time.Duration) error {
	p.mu.Lock()
	p.calls = append(p.calls, call{"stop", id})
	if b := p.boxes[id]; b != nil && b.state == "prepared" {
		b.state = "stopped"
		close(b.settled)
		p.mu.Unlock()
		return nil
	}
	p.mu.Unlock()
	return p.Driver.Stop(ctx, id, grace)
}

func (p *preparer) Wait(ctx context.Context, id string) (sandbox.Exit, error) {
	p.mu.Lock()
	b := p.boxes[id]
	p.mu.Unlock()
	if b == nil {
		return p.Driver.Wait(ctx, id)
	}
	select {
	case <-b.settled:
	case <-ctx.Done():
		return sandbox.Exit{}, ctx.Err()
	}
	p.mu.Lock()
	state := b.state
	delete(p.boxes, id)
	p.mu.Unlock()
	if state == "started" {
		return p.Driver.Wait(ctx, id)
	}
	return sandbox.Exit{Code: -1, Signal: "terminated"}, nil
}

func (p *preparer) List(ctx context.Context) ([]string, error) {
	ids, err := p.Driver.List(ctx)
	return append(ids, p.preparedLeft()...), err
}

// preparedLeft lists the sandboxes prepared and neither started nor
// stopped.
func (p *preparer) preparedLeft() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ids []string
	for id, b := range p.boxes {
		if b.state == "prepared" {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

func (p *preparer) log() []call {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.calls)
}

// ids returns the IDs of the recorded calls of op, in order.
func (p *preparer) ids(op string) []string {
	var ids []string
	for _, c := range p.log() {
		if c.op == op {
			ids = append(ids, c.id)
		}
	}
	return ids
}

func (p *preparer) stopped(id string) bool { return slices.Contains(p.ids("stop"), id) }

// recorder is a driver with Mounts and a host IP of its own that records
// the spec of each Start and refuses it.
type recorder struct {
	sandbox.Driver // nil: only Name, Capabilities and Start are called
	mu             sync.Mutex
	specs          []sandbox.Spec
}

var errRecorded = errors.New("recorded")

func (r *recorder) Capabilities() sandbox.Capabilities {
	return sandbox.Capabilities{Mounts: true, HostIP: netip.MustParseAddr("127.0.0.2")}
}

func (r *recorder) Start(ctx context.Context, spec sandbox.Spec) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.specs = append(r.specs, spec)
	return errRecorded
}

func (r *recorder) Name() string { return "recorder" }

func (r *recorder) started() []sandbox.Spec {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.specs)
}

// hanger is the process driver but for the calls named in hang ("start",
// "prepare", "stop", "wait", "end-init", "sync-output", "stats", "owns"),
// which block until their ctx ends and then return its error, as a hung
// runc killed by its context would. With prepare set it claims
// Capabilities.Prepare.
type hanger struct {
	*process.Driver
	hang    map[string]bool
	prepare bool

	mu      sync.Mutex
	hanging int    // calls blocked now
	hung    []call // calls that blocked, once their ctx ended
}

// block holds a call of op for sandbox id until ctx ends.
func (h *hanger) block(ctx context.Context, op, id string) error {
	h.mu.Lock()
	h.hanging++
	h.mu.Unlock()
	<-ctx.Done()
	h.mu.Lock()
	h.hanging--
	h.hung = append(h.hung, call{op, id})
	h.mu.Unlock()
	return ctx.Err()
}

func (h *hanger) blocked() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hanging
}

// ended returns the IDs of the calls of op that blocked and ended.
func (h *hanger) ended(op string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var ids []string
	for _, c := range h.hung {
		if c.op == op {
			ids = append(ids, c.id)
		}
	}
	return ids
}

func (h *hanger) Capabilities() sandbox.Capabilities {
	c := h.Driver.Capabilities()
	c.Prepare = h.prepare
	return c
}

func (h *hanger) Start(ctx context.Context, spec sandbox.Spec) error {
	if h.hang["start"] {
		return h.block(ctx, "start", spec.ID)
	}
	return h.Driver.Start(ctx, spec)
}

func (h *hanger) Prepare(ctx context.Context, spec sandbox.Spec) error {
	if h.hang["prepare"] {
		return h.block(ctx, "prepare", spec.ID)
	}
	return h.Driver.Prepare(ctx, spec)
}

func (h *hanger) Stop(ctx context.Context, id string, grace time.Duration) error {
	if h.hang["stop"] {
		return h.block(ctx, "stop", id)
	}
	return h.Driver.Stop(ctx, id, grace)
}

func (h *hanger) Wait(ctx context.Context, id string) (sandbox.Exit, error) {
	if h.hang["wait"] {
		return sandbox.Exit{}, h.block(ctx, "wait", id)
	}
	return h.Driver.Wait(ctx, id)
}

func (h *hanger) EndInit(ctx context.Context, id string) error {
	if h.hang["end-init"] {
		return h.block(ctx, "end-init", id)
	}
	return h.Driver.EndInit(ctx, id)
}

func (h *hanger) SyncOutput(ctx context.Context, id string) error {
	if h.hang["sync-output"] {
		return h.block(ctx, "sync-output", id)
	}
	return h.Driver.SyncOutput(ctx, id)
}

func (h *hanger) Stats(ctx context.Context, id string) (sandbox.Stats, error) {
	if h.hang["stats"] {
		return sandbox.Stats{}, h.block(ctx, "stats", id)
	}
	return h.Driver.Stats(ctx, id)
}

func (h *hanger) Owns(ctx context.Context, id string, local, remote netip.AddrPort) (bool, error) {
	if h.hang["owns"] {
		return false, h.block(ctx, "owns", id)
	}
	return h.Driver.Owns(ctx, id, local, remote)
}

// find returns the attributes of each record of h with message msg,
// as strings, and its level.
func find(h *logtest.Recorder, msg string) []map[string]string {
	var out []map[string]string
	for _, r := range h.Records() {
		if r.Message != msg {
			continue
		}
		attrs := logtest.Attrs(r)
		attrs["level"] = r.Level.String()
		out = append(out, attrs)
	}
	return out
}

// cpuCounter is the process driver with a CPU counter the test sets: each
// sandbox's CPU time starts at init when it starts (its runtime's init)
// and grows by what add adds. Stats reports it in CPUNanos; CPUNanos,
// when the driver is wrapped as cpuCounterReader, too. It counts the
// reads of both.
type cpuCounter struct {
	sandbox.Driver // the process driver, behind the interface: its own CPUNanos is hidden
	init           int64

	mu                   sync.Mutex
	nanos                map[string]int64
	statsReads, cpuReads int
}

func newCPUCounter(d *process.Driver, init time.Duration) *cpuCounter {
	return &cpuCounter{Driver: d, init: int64(init), nanos: make(map[string]int64)}
}

func (c *cpuCounter) Start(ctx context.Context, spec sandbox.Spec) error {
	c.mu.Lock()
	c.nanos[spec.ID] = c.init
	c.mu.Unlock()
	return c.Driver.Start(ctx, spec)
}

// add counts d more CPU time for sandbox id.
func (c *cpuCounter) add(id string, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nanos[id] += int64(d)
}

func (c *cpuCounter) Stats(ctx context.Context, id string) (sandbox.Stats, error) {
	st, err := c.Driver.Stats(ctx, id)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.statsReads++
	st.CPUNanos = c.nanos[id]
	return st, err
}

// reads returns the number of Stats and CPUNanos calls so far.
func (c *cpuCounter) reads() (stats, cpu int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.statsReads, c.cpuReads
}

// cpuCounterReader is a cpuCounter with a CPUNanos method.
type cpuCounterReader struct{ *cpuCounter }

func (c cpuCounterReader) CPUNanos(ctx context.Context, id string) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cpuReads++
	n, ok := c.nanos[id]
	if !ok {
		return 0, fmt.Errorf("sandbox %q: %w", id, stratus.ErrNotFound)
	}
	return n, nil
}
