// Package pool keeps the instances of every deployed function: it hands an
// idle warm instance to each invocation (most recently used first); when
// none is idle the invocation waits for the first instance that comes
// free while the pool starts new ones (scale from zero, see acquire.go) up
// to the function's max concurrency and the server-wide cap; beyond that
// callers wait a bounded time (then ErrCapacity; at most QueueSize waiting
// per function, one more gets ErrCapacity at once). It keeps
// --min-instances warm and stops instances idle for longer than their
// idle timeout (scale to zero).
//
// Create-ahead (prepare.go): with a driver that has Capabilities.Prepare
// and Config.MaxPrepared above zero, each function keeps up to one
// prepared instance of its head version: its sandbox made ahead (network,
// mounts, cgroups) with its program not started. A cold start of that
// version takes it and only has the program to start; the pool then
// prepares the next one once that start is done. Prepared instances are
// not live instances (no max concurrency, no MaxInstances); MaxPrepared
// caps them server-wide.
//
// CPU: an instance's sandbox has one core (initCPU) from its start until
// its runtime first asks for an invocation; the pool then ends its init
// (Driver.EndInit), before handing it that invocation, and from then on it
// has its own share (in proportion to memory): a weight under contention,
// up to a core while CPUs are free, or with Config.CPUQuota a hard quota.
//
// Concurrency: one mutex (Manager.mu) guards every pool's bookkeeping; it is
// never held across I/O. Instance starts, prepares and stops run outside
// it. The Manager owns every goroutine it starts (instance starts for warm
// pools, prepares, stops, exit watchers) and Run waits for all of them
// after stopping every instance. Waiters are served first come, first
// served.
package pool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/logs"
	"github.com/stratus-run/stratus/internal/rootfs"
	"github.com/stratus-run/stratus/internal/runtimeapi"
	"github.com/stratus-run/stratus/internal/sandbox"
	"github.com/stratus-run/stratus/runtimes"
)

// Sink receives the platform's output: log lines and invocation records.
// Calls must not block for long; they come from invocation paths.
type Sink interface {
	Log(l stratus.LogLine)
	Record(r stratus.Invocation)
}

// Where a function's code and the runtime clients are in a sandbox of a
// driver with Capabilities.Mounts, as on Lambda.
const (
	TaskRoot    = "/var/task"
	RuntimeRoot = "/var/runtime"
)

// Config configures a Manager.
type Config struct {
	Driver sandbox.Driver
	// Command returns the argv that runs version v with its code in
	// taskDir and the runtime clients in runtimeDir, both paths in the
	// sandbox.
	Command func(v *stratus.Version, taskDir, runtimeDir string) ([]string, error)
	// Root, for a driver with Capabilities.RootFS and Mounts, returns the root
	// folder a sandbox of version v runs in (the minimal root of its
	// runtime) and the argv that runs v there; Command serves other
	// drivers.
	Root func(v *stratus.Version, taskDir, runtimeDir string) (root string, argv []string, err error)
	// CodeDir returns the folder holding the extracted code with this
	// sha256.
	CodeDir func(sha string) string
	// RuntimeDir is the host folder of the runtime clients. A driver with
	// Capabilities.Mounts gets it read-only at /var/runtime and the code
	// read-only at /var/task, as on Lambda; others run both at their host
	// paths.
	RuntimeDir string
	// Image returns how to run a version deployed from an image
	// (Config.Image set); nil refuses such versions.
	Image  func(ctx context.Context, v *stratus.Version) (*ImageRun, error)
	Region string
	// MaxInstances caps live instances across all functions.
	MaxInstances int
	// MaxPrepared caps prepared instances across all functions (at most
	// one per function); 0 turns create-ahead off. It only applies to a
	// driver with Capabilities.Prepare.
	MaxPrepared int
	// CPUQuota makes a function's CPU share (in proportion to its memory)
	// a hard quota, as on Lambda; else it is a weight under contention
	// and an instance may use up to a core (sandbox.Spec.CPUWeight).
	CPUQuota bool
	// MaxCreating caps the sandboxes being made at once across the
	// server (starts without a prepared sandbox, and prepares); more wait
	// their turn. 0 means DefaultMaxCreating.
	MaxCreating int
	// IdleTimeout is the default idle lifetime of an instance.
	IdleTimeout time.Duration
	// ThrottleWait bounds how long an invocation waits for an instance when
	// its function or the server is at its cap.
	ThrottleWait time.Duration
	// QueueSize bounds the invocations of one function waiting for an
	// instance; one more gets ErrCapacity at once. 0 means no bound.
	QueueSize int
	// InitTimeout bounds a runtime's initialisation.
	InitTimeout time.Duration
	// StopGrace is how long a stopping instance gets after SIGTERM.
	StopGrace time.Duration
	Sink      Sink
	// Output, if set, bounds what is stored of each instance's output:
	// per invocation and per second per function.
	Output *logs.Limiter
	Now    func() time.Time
	Log    *slog.Logger
}

// Manager holds the pools of all functions.
type Manager struct {
	cfg Config
	log *slog.Logger

	// createAhead: the driver has Capabilities.Prepare and MaxPrepared > 0.
	createAhead bool

	mu       sync.Mutex
	pools    map[string]*fnPool
	live     int  // instances across all pools
	prepared int  // prepared instances, and places reserved for prepares in flight
	running  bool // Run has begun: background starts and prepares may run
	stopping bool

	// creating holds a token for each sandbox being made (a start without
	// a prepared sandbox, or a prepare): see Config.MaxCreating.
	creating chan struct{}

	wg sync.WaitGroup // background starts, prepares, stops and exit watchers
}

type fnPool struct {
	name    string
	cur     *stratus.Version
	idle    []*Instance // most recently used last
	live    int         // starting + idle + busy
	waiters []*waiter
	// starting counts the starts in flight for waiters (their slots are
	// in live); see scaleLocked.
	starting int
	removed  bool
	// used is when the function was last invoked or deployed.
	used time.Time
	// prepared is the prepared instance of cur, if any; preparing is the
	// latest prepare in flight, if any.
	prepared  *Instance
	preparing *prepareOp
}

// New returns a Manager; call Run to reap idle instances and to stop
// everything at the end.
func New(cfg Config) *Manager {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.InitTimeout == 0 {
		cfg.InitTimeout = 10 * time.Second
	}
	if cfg.MaxInstances == 0 {
		cfg.MaxInstances = stratus.DefaultMaxConc
	}
	if cfg.MaxCreating <= 0 {
		cfg.MaxCreating = DefaultMaxCreating()
	}
	return &Manager{
		cfg: cfg, log: cfg.Log, pools: make(map[string]*fnPool),
		creating:    make(chan struct{}, cfg.MaxCreating),
		createAhead: cfg.MaxPrepared > 0 && cfg.Driver != nil && cfg.Driver.Capabilities().Prepare,
	}
}

// Run reaps idle instances every tick until ctx ends, then stops every
// instance and returns once all of the Manager's goroutines have ended.
// Background work waits for Run: versions deployed before it get their
// MinInstances and prepared instances when it begins (so Config's
// callbacks may use what the caller builds after New).
func (m *Manager) Run(ctx context.Context, tick time.Duration) error {
	m.mu.Lock()
	m.running = true
	pools := make([]*fnPool, 0, len(m.pools))
	for _, p := range m.pools {
		pools = append(pools, p)
	}
	m.mu.Unlock()
	for _, p := range pools {
		m.prepareAhead(p)
	}
	m.Reap()
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			m.Reap()
		case <-ctx.Done():
			m.StopAll()
			m.wg.Wait()
			return nil
		}
	}
}

// Deploy makes v the version new invocations of its function use. Idle
// and prepared instances of older versions stop; busy ones stop when their
// invocation ends. It starts instances up to the version's MinInstances
// and, with create-ahead, prepares one so that the first cold start is
// fast (a deploy counts as a use of the function).
func (m *Manager) Deploy(v *stratus.Version) {
	now := m.cfg.Now()
	m.mu.Lock()
	p := m.pools[v.Function]
	if p == nil {
		p = &fnPool{name: v.Function}
		m.pools[v.Function] = p
	}
	p.cur = v
	p.used = now
	var stale *Instance // the prepared instance of an older version
	if in := p.prepared; in != nil && in.Version.Version != v.Version {
		stale = m.dropPreparedLocked(p)
	}
	var old []*Instance
	keep := p.idle[:0]
	for _, in := range p.idle {
		if in.Version.Version != v.Version {
			old = append(old, in)
			continue
		}
		keep = append(keep, in)
	}
	clear(p.idle[len(keep):])
	p.idle = keep
	for _, in := range old {
		m.dropLocked(in)
	}
	m.mu.Unlock()
	m.stopAsync(append(old, stale)...)
	m.prepareAhead(p)
	m.Reap()
}

// Remove forgets function name and stops its instances, its prepared one
// too; callers waiting for one get ErrNotFound.
func (m *Manager) Remove(name string) {
	m.mu.Lock()
	p := m.pools[name]
	if p == nil {
		m.mu.Unlock()
		return
	}
	delete(m.pools, name)
	p.removed = true
	old := p.idle
	p.idle = nil
	for _, in := range old {
		m.dropLocked(in)
	}
	old = append(old, m.dropPreparedLocked(p))
	for _, w := range p.waiters {
		w.ch <- grant{err: fmt.Errorf("function %q: %w", name, stratus.ErrNotFound)}
	}
	p.waiters = nil
	m.mu.Unlock()
	m.stopAsync(old...)
}

// StopAll stops every idle and prepared instance now and every busy one
// when its invocation ends; no instance starts or is prepared afterwards.
func (m *Manager) StopAll() {
	m.mu.Lock()
	m.stopping = true
	var old []*Instance
	for _, p := range m.pools {
		old = append(old, p.idle...)
		for _, in := range p.idle {
			m.dropLocked(in)
		}
		p.idle = nil
		old = append(old, m.dropPreparedLocked(p))
		for _, w := range p.waiters {
			w.ch <- grant{err: fmt.Errorf("server is stopping: %w", stratus.ErrUnavailable)}
		}
		p.waiters = nil
	}
	m.mu.Unlock()
	m.stopAsync(old...)
}

// Stats reports the instance counts of function name.
func (m *Manager) Stats(name string) stratus.InstanceStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pools[name]
	if p == nil {
		return stratus.InstanceStats{}
	}
	s := stratus.InstanceStats{Live: p.live, Idle: len(p.idle)}
	s.Busy = p.live - s.Idle
	if p.prepared != nil {
		s.Prepared = 1
	}
	return s
}

// Total reports live instances across the server.
func (m *Manager) Total() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.live
}

// Invoke runs req on an instance of the current version of function name.
// It returns ErrNotFound for an unknown function, ErrCapacity when no
// instance could be had within ThrottleWait or QueueSize invocations wait
// already, ErrUnavailable while stopping.
// Function errors, timeouts and crashes are not Go errors: they come back
// as a Response with ErrorType set.
func (m *Manager) Invoke(ctx context.Context, name string, req stratus.Request) (*stratus.Response, error) {
	in, cold, initErr, err := m.acquire(ctx, name)
	if err != nil {
		return nil, err
	}
	v := in.Version
	c := v.Config
	if initErr != nil {
		// The instance never became ready: answer with its init failure.
		rec := m.record(in, req.RequestID, m.cfg.Now(), 0, true, stratus.OutcomeCrash, initErr.ErrorType)
		rec.InitDurationMs = ms(m.cfg.Now().Sub(in.started))
		m.emitReport(in, rec)
		m.release(in, false)
		return &stratus.Response{Body: initErr.Body, ErrorType: initErr.ErrorType, Record: rec}, nil
	}
	start := m.cfg.Now()
	m.platform(in, req.RequestID, "START RequestId: "+req.RequestID+" Version: "+stratus.LatestVersion)
	inv := &runtimeapi.Invocation{
		RequestID:       req.RequestID,
		Event:           req.Event,
		Deadline:        start.Add(time.Duration(c.TimeoutSec) * time.Second),
		FunctionARN:     m.arn(v.Function),
		TraceID:         traceID(start),
		ClientContext:   req.ClientContext,
		CognitoIdentity: req.CognitoIdentity,
	}
	res, outcome, healthy, err := in.invoke(ctx, inv, time.Duration(c.TimeoutSec)*time.Second)
	if err != nil {
		// The caller left before the runtime took the event.
		m.release(in, healthy)
		return nil, err
	}
	end := m.cfg.Now()
	if healthy {
		// Lines printed before the answer belong to this invocation: take
		// them before END and before another invocation can.
		_ = m.cfg.Driver.SyncOutput(ctx, in.ID)
	}
	rec := m.record(in, req.RequestID, start, end.Sub(start), cold, outcome, res.ErrorType)
	if cold {
		rec.InitDurationMs = ms(start.Sub(in.started))
	}
	rec.MaxMemoryMB = m.maxMemoryMB(ctx, in, end)
	m.release(in, healthy)
	m.emitReport(in, rec)
	return &stratus.Response{Body: res.Body, ErrorType: res.ErrorType, Record: rec}, nil
}

// statsEvery bounds how often an instance's peak memory is read; the peak
// only grows, so a reading this fresh is good enough for a REPORT line.
// A read costs the server 50–100 µs (the process driver reads
// /proc/PID/status): once a second it is a few µs per invocation of a
// busy instance, where every 100 ms was about 5 % of the server's CPU.
const statsEvery = time.Second

// maxMemoryMB is the instance's peak memory in MB. Only the invocation in
// flight on in calls it.
func (m *Manager) maxMemoryMB(ctx context.Context, in *Instance, now time.Time) int {
	select {
	case <-in.exited:
		// Killed for exceeding its memory: it used all of it, as Lambda
		// reports (its figures went with its sandbox).
		if in.exit.OOM {
			return in.Version.Config.MemoryMB
		}
	default:
	}
	if in.statsAt.IsZero() || now.Sub(in.statsAt) >= statsEvery {
		if st, err := m.cfg.Driver.Stats(ctx, in.ID); err == nil {
			in.maxMemMB = int(math.Ceil(float64(st.MaxRSSBytes) / (1 << 20)))
			in.statsAt = now
		}
	}
	return in.maxMemMB
}

func (m *Manager) record(in *Instance, reqID string, start time.Time, d time.Duration, cold bool, outcome, errType string) stratus.Invocation {
	dms := ms(d)
	billed := int64(math.Ceil(dms))
	if billed < 1 {
		billed = 1
	}
	return stratus.Invocation{
		RequestID: reqID, Function: in.Version.Function, Version: in.Version.Version,
		Start: start, DurationMs: dms, BilledMs: billed, MemoryMB: in.Version.Config.MemoryMB,
		Cold: cold, Outcome: outcome, ErrorType: errType, Instance: in.ID,
	}
}

func (m *Manager) emitReport(in *Instance, r stratus.Invocation) {
	// Lines of the invocation dropped beyond a bound: one line, before END.
	in.out.Done(r.RequestID)
	// One stored line carries END and REPORT: the store shows it as both.
	line := fmt.Sprintf("REPORT RequestId: %s\tDuration: %.2f ms\tBilled Duration: %d ms\tMemory Size: %d MB\tMax Memory Used: %d MB",
		r.RequestID, r.DurationMs, r.BilledMs, r.MemoryMB, r.MaxMemoryMB)
	if r.Cold {
		line += fmt.Sprintf("\tInit Duration: %.2f ms", r.InitDurationMs)
	}
	if r.Outcome == stratus.OutcomeTimeout {
		line += "\tStatus: timeout"
	}
	m.emit(in, r.RequestID, stratus.StreamReport, line)
	if m.cfg.Sink != nil {
		m.cfg.Sink.Record(r)
	}
}

func (m *Manager) platform(in *Instance, reqID, text string) {
	m.emit(in, reqID, stratus.StreamPlatform, text)
}

func (m *Manager) emit(in *Instance, reqID, stream, text string) {
	if m.cfg.Sink == nil {
		return
	}
	m.cfg.Sink.Log(stratus.LogLine{
		Function: in.Version.Function, Time: m.cfg.Now(), RequestID: reqID,
		Instance: in.ID, Stream: stream, Text: text,
	})
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (m *Manager) arn(fn string) string {
	return "arn:aws:lambda:" + m.cfg.Region + ":000000000000:function:" + fn
}

// newInstance makes an instance of v in p: its ID, its Runtime API
// (listening) and the spec of its sandbox, which nothing runs yet. Its
// state is stateStarting.
// ImageRun is how a function from an image runs: its root filesystem
// (a host folder), its command (the image's entrypoint and command, or
// the entrypoint and the function's handler), environment and working
// directory.
type ImageRun struct {
	RootFS string
	Argv   []string
	Env    []string
	Dir    string
}

func (m *Manager) newInstance(p *fnPool, v *stratus.Version) (*Instance, error) {
	if v.Config.Image != "" {
		return m.newImageInstance(p, v)
	}
	caps := m.cfg.Driver.Capabilities()
	dir := m.cfg.CodeDir(v.CodeSHA)
	taskDir, rtDir := dir, m.cfg.RuntimeDir
	var mounts []sandbox.Mount
	if caps.Mounts {
		taskDir, rtDir = TaskRoot, RuntimeRoot
		mounts = append(mounts, sandbox.Mount{Source: dir, Target: TaskRoot})
		if m.cfg.RuntimeDir != "" {
			mounts = append(mounts, sandbox.Mount{Source: m.cfg.RuntimeDir, Target: RuntimeRoot})
		}
	}
	var root string
	var argv []string
	var err error
	if caps.RootFS && caps.Mounts && m.cfg.Root != nil {
		root, argv, err = m.cfg.Root(v, taskDir, rtDir)
	} else {
		argv, err = m.cfg.Command(v, taskDir, rtDir)
	}
	if err != nil {
		return nil, err
	}
	// The sandbox reaches its Runtime API at the host's address on its
	// network, or on the loopback it shares with the host.
	rapi, err := runtimeapi.New(caps.HostIP)
	if err != nil {
		return nil, err
	}
	in := &Instance{
		ID: newID(), Version: v, pool: p, rapi: rapi,
		state: stateStarting, exited: make(chan struct{}),
	}
	empty := ""
	in.reqID.Store(&empty)
	in.stdout = m.outputWriter(in, "stdout")
	in.stderr = m.outputWriter(in, "stderr")
	in.spec = sandbox.Spec{
		ID:        in.ID,
		Argv:      argv,
		Env:       m.env(v, taskDir, rtDir, in, rapi.Addr()),
		Dir:       taskDir,
		RootFS:    root,
		Mounts:    mounts,
		User:      sandboxUser(caps),
		MemoryMB:  v.Config.MemoryMB,
		InitCPU:   initCPU,
		CPUWeight: !m.cfg.CPUQuota,
		// A prepared sandbox of a shipped client has it loaded, waiting.
		StartAhead: runtimes.StartsAhead(v.Config.Runtime),
		Stdout:     in.stdout,
		Stderr:     in.stderr,
	}
	return in, nil
}

// newImageInstance is newInstance for a version deployed from an image:
// the image is the sandbox's root, its working directory (else /var/task)
// the task root, and its environment comes before Lambda's.
func (m *Manager) newImageInstance(p *fnPool, v *stratus.Version) (*Instance, error) {
	if m.cfg.Image == nil || !m.cfg.Driver.Capabilities().RootFS {
		return nil, fmt.Errorf("function %s runs an image, which the %s sandbox driver cannot run: %w", v.Function, m.cfg.Driver.Name(), stratus.ErrUnavailable)
	}
	img, err := m.cfg.Image(context.Background(), v)
	if err != nil {
		return nil, err
	}
	taskDir := img.Dir
	if taskDir == "" {
		taskDir = TaskRoot
	}
	rapi, err := runtimeapi.New(m.cfg.Driver.Capabilities().HostIP)
	if err != nil {
		return nil, err
	}
	in := &Instance{
		ID: newID(), Version: v, pool: p, rapi: rapi,
		state: stateStarting, exited: make(chan struct{}),
	}
	empty := ""
	in.reqID.Store(&empty)
	in.stdout = m.outputWriter(in, "stdout")
	in.stderr = m.outputWriter(in, "stderr")
	in.spec = sandbox.Spec{
		ID:        in.ID,
		Argv:      img.Argv,
		Env:       imageEnv(img.Env, m.env(v, taskDir, "", in, rapi.Addr())),
		Dir:       taskDir,
		RootFS:    img.RootFS,
		User:      sandboxUser(m.cfg.Driver.Capabilities()),
		MemoryMB:  v.Config.MemoryMB,
		InitCPU:   initCPU,
		CPUWeight: !m.cfg.CPUQuota,
		Stdout:    in.stdout,
		Stderr:    in.stderr,
	}
	return in, nil
}

// initCPU is the CPU quota, in cores, of a function's sandbox until its
// runtime first asks for an invocation: as in Lambda's init phase, which
// runs with a full core whatever the memory size, the runtime's start-up
// and the function's module-level code are not held to the small share of
// a small memory size. Invocations get the share (see sandbox.Spec.CPU).
const initCPU = 1.0

// sandboxUser is who a function runs as where the driver sets users:
// Lambda's sbx_user1051 (uid 993, gid 990), whose entries the minimal
// roots have.
func sandboxUser(caps sandbox.Capabilities) *sandbox.User {
	if !caps.Users {
		return nil
	}
	return &sandbox.User{UID: uint32(rootfs.Sandbox.UID), GID: uint32(rootfs.Sandbox.GID)}
}

// launch makes in's sandbox live with run (the driver's Start or
// Prepare), lets only that sandbox use its Runtime API and watches for its
// end in a goroutine of the Manager's. On failure in's Runtime API is
// closed.
func (m *Manager) launch(in *Instance, run func(context.Context, sandbox.Spec) error) error {
	if err := run(context.Background(), in.spec); err != nil {
		in.rapi.Close()
		return err
	}
	// Other instances reach this Runtime API too (on the sandboxes'
	// network, or on the loopback they share with the host): it answers
	// only connections of this instance's sandbox.
	// The first refusal is a warning, later ones debug lines: a hostile
	// function that keeps knocking cannot flood the log.
	drv, fn, id := m.cfg.Driver, in.Version.Function, in.ID
	var warned atomic.Bool
	in.rapi.SetOwner(func(ctx context.Context, local, remote netip.AddrPort) bool {
		ok, err := drv.Owns(ctx, id, local, remote)
		if ok {
			return true
		}
		level := slog.LevelWarn
		if warned.Swap(true) {
			level = slog.LevelDebug
		}
		if err != nil {
			m.log.Log(ctx, level, "runtime api: refused a connection of unknown origin", "fn", fn, "instance", id, "remote", remote, "err", err)
		} else {
			m.log.Log(ctx, level, "runtime api: refused a connection from outside the instance", "fn", fn, "instance", id, "remote", remote)
		}
		return false
	})
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		e, err := m.cfg.Driver.Wait(context.Background(), in.ID)
		if err != nil {
			e = sandbox.Exit{Code: -1, Signal: "unknown"}
		}
		in.stdout.Close()
		in.stderr.Close()
		in.exit = e
		close(in.exited)
		in.rapi.Close()
		m.onExit(in)
	}()
	return nil
}

// onExit forgets an instance whose sandbox ended on its own while idle or
// prepared.
func (m *Manager) onExit(in *Instance) {
	m.mu.Lock()
	p := in.pool
	switch in.state {
	case stateIdle:
		for i, x := range p.idle {
			if x == in {
				p.idle = append(p.idle[:i], p.idle[i+1:]...)
				break
			}
		}
		m.dropLocked(in)
		m.mu.Unlock()
		m.log.Info("idle instance exited", "fn", in.Version.Function, "instance", in.ID, "exit", in.exit.String())
	case statePrepared:
		m.dropPreparedLocked(p)
		m.mu.Unlock()
		m.log.Warn("prepared instance exited", "fn", in.Version.Function, "instance", in.ID, "exit", in.exit.String())
	default:
		m.mu.Unlock()
	}
}

// outputWriter turns one stream of in's output into log lines. Both
// streams share in's meter, which drops lines beyond Config.Output's bounds
// before they are copied.
func (m *Manager) outputWriter(in *Instance, stream string) *sandbox.LineWriter {
	fn := in.Version.Function
	if in.out == nil && m.cfg.Output != nil {
		in.out = m.cfg.Output.Meter(fn, true, func(req, text string) { m.platform(in, req, text) })
	}
	return &sandbox.LineWriter{
		Allow: func(n int) bool { return in.out.Allow(*in.reqID.Load(), n) },
		Emit: func(line string) {
			if m.cfg.Sink == nil {
				return
			}
			m.cfg.Sink.Log(stratus.LogLine{
				Function: fn, Time: m.cfg.Now(), RequestID: *in.reqID.Load(),
				Instance: in.ID, Stream: stream, Text: line,
			})
		},
	}
}

// stopAsync stops instances in the background; nil entries are skipped.
func (m *Manager) stopAsync(ins ...*Instance) {
	for _, in := range ins {
		if in == nil {
			continue
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			in.rapi.Close()
			if err := m.cfg.Driver.Stop(context.Background(), in.ID, m.cfg.StopGrace); err != nil {
				m.log.Warn("stop instance", "fn", in.Version.Function, "instance", in.ID, "err", err)
			}
		}()
	}
}

// Reap stops instances idle for longer than their idle timeout, keeping
// each function's MinInstances, and starts instances up to MinInstances.
// A function not used (invoked or deployed) for longer than its idle
// timeout loses its prepared instance, so that an idle server runs no
// sandbox beyond MinInstances; its next cold start prepares one again.
func (m *Manager) Reap() {
	now := m.cfg.Now()
	var old []*Instance
	type warm struct {
		p *fnPool
		v *stratus.Version
	}
	var starts []warm
	m.mu.Lock()
	if m.stopping || !m.running {
		m.mu.Unlock()
		return
	}
	for _, p := range m.pools {
		c := p.cur.Config
		idleFor := time.Duration(c.IdleTimeout)
		if idleFor <= 0 {
			idleFor = m.cfg.IdleTimeout
		}
		if p.prepared != nil && now.Sub(p.used) >= idleFor {
			old = append(old, m.dropPreparedLocked(p))
		}
		// p.idle is oldest first.
		for len(p.idle) > 0 && p.live > c.MinInstances && now.Sub(p.idle[0].lastUsed) >= idleFor {
			in := p.idle[0]
			p.idle = p.idle[1:]
			old = append(old, in)
			m.dropLocked(in)
		}
		for p.live < c.MinInstances && len(p.waiters) == 0 && m.reserveLocked(p, false) {
			starts = append(starts, warm{p, p.cur})
		}
	}
	m.mu.Unlock()
	m.stopAsync(old...)
	for _, s := range starts {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			in, initErr, err := m.start(s.p, s.v, false)
			if err != nil {
				m.log.Warn("start warm instance", "fn", s.v.Function, "err", err)
				m.mu.Lock()
				s.p.live--
				m.live--
				m.grantSlotLocked(s.p)
				m.mu.Unlock()
				return
			}
			if initErr != nil {
				m.log.Warn("warm instance failed its init", "fn", s.v.Function, "instance", in.ID, "err", string(initErr.Body))
			}
			m.release(in, initErr == nil)
		}()
	}
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func traceID(t time.Time) string {
	var b [20]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return fmt.Sprintf("Root=1-%08x-%s;Parent=%s;Sampled=0", t.Unix(), h[:24], h[24:40])
}

// baseEnv is how many entries env begins with that an image's own
// environment may override (PATH, LANG, TZ).
const baseEnv = 3

func (m *Manager) env(v *stratus.Version, taskDir, rtDir string, in *Instance, rapiAddr string) []string {
	c := v.Config
	env := []string{
		"PATH=/usr/local/bin:/usr/bin:/bin:/opt/bin",
		"LANG=en_US.UTF-8",
		"TZ=:UTC",
		"AWS_LAMBDA_RUNTIME_API=" + rapiAddr,
		"AWS_LAMBDA_FUNCTION_NAME=" + v.Function,
		"AWS_LAMBDA_FUNCTION_VERSION=" + stratus.LatestVersion,
		fmt.Sprintf("AWS_LAMBDA_FUNCTION_MEMORY_SIZE=%d", c.MemoryMB),
		"AWS_REGION=" + m.cfg.Region,
		"AWS_DEFAULT_REGION=" + m.cfg.Region,
		"LAMBDA_TASK_ROOT=" + taskDir,
		"LAMBDA_RUNTIME_DIR=" + rtDir,
		"_HANDLER=" + c.Handler,
		"AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/" + v.Function,
		"AWS_LAMBDA_LOG_STREAM_NAME=" + m.cfg.Now().UTC().Format("2006/01/02") + "/[" + stratus.LatestVersion + "]" + in.ID,
		"AWS_EXECUTION_ENV=AWS_Lambda_" + c.Runtime,
	}
	for k, val := range c.Env {
		env = append(env, k+"="+val)
	}
	return env
}

// imageEnv is an image function's environment: Lambda's defaults, then
// the image's environment, then Lambda's variables and the function's
// own; a later entry of a name replaces an earlier one.
func imageEnv(image, lambda []string) []string {
	var out []string
	at := map[string]int{}
	for _, kv := range slices.Concat(lambda[:baseEnv], image, lambda[baseEnv:]) {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := at[k]; ok {
			out[i] = kv
			continue
		}
		at[k] = len(out)
		out = append(out, kv)
	}
	return out
}
