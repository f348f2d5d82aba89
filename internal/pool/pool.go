// Package pool keeps the instances of every deployed function: it hands an
// idle warm instance to each invocation (most recently used first); when
// none is idle the invocation waits for the first instance that comes
// free while the pool starts new ones (scale from zero, see admission.go)
// up to the function's max concurrency and the server-wide cap; beyond
// that callers wait a bounded time (then ErrCapacity; at most QueueSize
// waiting per function, one more gets ErrCapacity at once). It keeps
// --min-instances warm and stops instances idle for longer than their
// idle timeout (scale to zero).
//
// Versions: a pool is keyed by stratus.Version.PoolKey: a function's
// head ($LATEST) under the function's name, each published version it
// was handed under "NAME:N", with instances of its own (they report what
// they run as: AWS_LAMBDA_FUNCTION_VERSION, the START line, the record's
// Qualifier). Concurrency is the function's, as on Lambda: the live
// instances of all its pools count against its head's MaxConcurrency (an
// idle instance of one version makes way for a call of another at that
// cap), and a head with Config.Throttled refuses every call of every
// version with ErrCapacity. Stats and AllStats are per pool;
// FunctionStats and AllFunctionStats sum a function's pools.
//
// The files follow its jobs: admission.go hands out slots and instances
// (waiters, caps, release); build.go builds an instance and the spec of
// its sandbox, one way for code from a zip and from an image; start.go
// starts it, watches it and stops it; prepare.go makes sandboxes ahead;
// invoke.go runs one invocation by Lambda's rules (START and REPORT
// lines, records, billed time, CPU time) and traces it; lambdaenv.go is Lambda's environment,
// ARNs and trace IDs; instance.go is one instance and its Runtime API
// exchange; group.go a function's pools (its versions') and their
// figures.
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
// Lifetime: New builds a Manager; nothing starts before Run (a Deploy
// before it waits with its MinInstances and prepared instance, an Invoke
// waits for its instance). Run(ctx) reaps every Config.ReapEvery until ctx
// ends; then no instance starts or is prepared any more, starts and
// prepares in flight are abandoned (their driver calls get ctx's end),
// idle and prepared instances stop at once and busy ones when their
// invocation ends. No driver call runs without a bound: those of the
// Manager's goroutines have contexts derived from Run's: Start, Prepare
// and EndInit end with ctx or after Config.DriverTimeout; Stop after
// StopGrace + DriverTimeout; Wait, which lasts as long as its sandbox,
// DriverTimeout after that sandbox's Stop returned (at once when Stop
// failed). Owns ends with its Runtime API or after DriverTimeout. The
// calls of an invocation (SyncOutput, CPUNanos, Stats) take the invocation's own
// context, which ends at the function's timeout (the hot path pays for no
// timer of its own). So Run returns at most StopGrace +
// 2×DriverTimeout + 1 s (Manager.stopBound; the second for closing a
// Runtime API) after ctx ends or, with invocations in flight then, after
// the last of them ends (each within its function's timeout), even with
// driver calls that hang, as long as they return once their context ends.
// A hung driver may leave a sandbox behind; the server's next start stops
// it (Driver.List).
//
// Metering: every invocation that reached an instance leaves one record
// (stratus.Invocation) with its trigger, its billed time (a cold start's
// init included, as Lambda bills it), the CPU time its instance used for
// it (one driver read per invocation, see cpuReader) and its trace ID.
// Invocations refused with ErrCapacity leave none: Stats counts them as
// throttles, next to cold starts and the prepared sandboxes they found or
// missed. With Config.Tracer each invocation is a span "invoke NAME" (the
// OpenTelemetry FaaS conventions) with a child for its wait in the queue
// and, on a cold start, one for the start and its parts.
//
// Goroutines: the Manager owns every goroutine it starts (instance starts
// for the queue and for MinInstances, prepares, stops, and one exit
// watcher per live sandbox) and Run waits for all of them. An invocation
// runs on its caller's goroutine.
//
// Concurrency: one mutex (Manager.mu) guards every pool's bookkeeping; it
// is never held across I/O or a driver call. Waiters are served first
// come, first served, across the versions of a function too.
package pool

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/logs"
	"github.com/stratus-run/stratus/internal/sandbox"
	"github.com/stratus-run/stratus/internal/trace"
)

// Sink receives the platform's output: log lines and invocation records.
// Calls must not block for long; they come from invocation paths.
type Sink interface {
	Log(l stratus.LogLine)
	Record(r stratus.Invocation)
}

// Config configures a Manager. Its zero values are the defaults given
// with each field; Driver, Command and CodeDir are required.
type Config struct {
	// Log receives the manager's log lines (its component key set by the
	// caller); nil discards them.
	Log *slog.Logger
	// Driver runs the instances' sandboxes.
	Driver sandbox.Driver
	// Placer, when set, says where Driver's sandboxes run (Instances
	// shows it); nil leaves that out.
	Placer sandbox.Placer
	// Command returns the argv that runs version v with its code in
	// taskDir and the runtime clients in runtimeDir, both paths in the
	// sandbox.
	Command func(v *stratus.Version, taskDir, runtimeDir string) ([]string, error)
	// Root, for a driver with Capabilities.RootFS and Mounts, returns the root
	// folder a sandbox of version v runs in (the minimal root of its
	// runtime) and the argv that runs v there; Command serves other
	// drivers (and all of them when Root is nil).
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
	// (Config.Image set), with its root filesystem unpacked into a host
	// folder (ImageRun.RootFS) when rootFS is set: for a driver with
	// Capabilities.RootFS rather than ImageRef. nil refuses such versions.
	Image func(ctx context.Context, v *stratus.Version, rootFS bool) (*ImageRun, error)
	// Region is the server's region, in ARNs and the environment: "local".
	Region string
	// AccountID is the account in the ARNs the functions are given:
	// stratus.DefaultAccountID.
	AccountID string
	// MaxInstances caps live instances across all functions:
	// stratus.DefaultMaxConc.
	MaxInstances int
	// MaxPrepared caps prepared instances across all functions (at most
	// one per function); 0, the default, turns create-ahead off. It only
	// applies to a driver with Capabilities.Prepare.
	MaxPrepared int
	// CPUQuota makes a function's CPU share (in proportion to its memory)
	// a hard quota, as on Lambda; by default it is a weight under
	// contention and an instance may use up to a core
	// (sandbox.Spec.CPUWeight).
	CPUQuota bool
	// MaxCreating caps the sandboxes being made at once across the
	// server (starts without a prepared sandbox, and prepares); more wait
	// their turn: DefaultMaxCreating().
	MaxCreating int
	// IdleTimeout is the default idle lifetime of an instance:
	// stratus.DefaultIdleTimeout.
	IdleTimeout time.Duration
	// ThrottleWait bounds how long an invocation waits for an instance when
	// its function or the server is at its cap; by default (0) it waits
	// only for the instances on their way.
	ThrottleWait time.Duration
	// QueueSize bounds the invocations of one function waiting for an
	// instance beyond those being started for them; one more gets
	// ErrCapacity at once: 1000.
	QueueSize int
	// InitTimeout bounds a runtime's initialisation: 10 s.
	InitTimeout time.Duration
	// StopGrace is how long a stopping instance gets after SIGTERM; by
	// default (0) it is killed at once.
	StopGrace time.Duration
	// DriverTimeout bounds each driver call but Stop (StopGrace more),
	// Wait and an invocation's own (see the package doc): 10 s.
	DriverTimeout time.Duration
	// ReapEvery is how often Run reaps idle instances: 1 s.
	ReapEvery time.Duration
	// Sink receives log lines and records; nil drops them.
	Sink Sink
	// Output, if set, bounds what is stored of each instance's output:
	// per invocation and per second per function. Nil stores it all.
	Output *logs.Limiter
	// Tracer makes the spans of invocations (see Manager.Invoke); nil
	// makes none, and costs an invocation nothing.
	Tracer oteltrace.Tracer
	// Now is the clock: time.Now. Span timestamps come from it too.
	Now func() time.Time
}

// Defaults of Config's fields.
const (
	defaultQueueSize     = 1000
	defaultInitTimeout   = 10 * time.Second
	defaultDriverTimeout = 10 * time.Second
	defaultReapEvery     = time.Second
	defaultRegion        = "local"
)

func (c *Config) defaults() {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Region == "" {
		c.Region = defaultRegion
	}
	if c.AccountID == "" {
		c.AccountID = stratus.DefaultAccountID
	}
	if c.MaxInstances <= 0 {
		c.MaxInstances = stratus.DefaultMaxConc
	}
	if c.MaxCreating <= 0 {
		c.MaxCreating = DefaultMaxCreating()
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = stratus.DefaultIdleTimeout
	}
	if c.QueueSize <= 0 {
		c.QueueSize = defaultQueueSize
	}
	if c.InitTimeout <= 0 {
		c.InitTimeout = defaultInitTimeout
	}
	if c.DriverTimeout <= 0 {
		c.DriverTimeout = defaultDriverTimeout
	}
	if c.ReapEvery <= 0 {
		c.ReapEvery = defaultReapEvery
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Manager holds the pools of all functions.
type Manager struct {
	cfg Config
	log *slog.Logger

	// createAhead: the driver has Capabilities.Prepare and MaxPrepared > 0.
	createAhead bool
	// cpu is the driver's CPU counter, nil when it has none (then Stats
	// gives the CPU time); see Manager.usage.
	cpu cpuReader
	// tracer makes spans when traced (Config.Tracer was set).
	tracer oteltrace.Tracer
	traced bool
	// arch is the records' Arch: the machine's architecture.
	arch string

	// run is Run's ctx: starts and prepares end with it. life outlives
	// it, for stopping instances and watching sandboxes; Run cancels it
	// when it returns. Both are set by Run, under mu, before running; a
	// goroutine of the Manager's reads them only after (every one starts
	// once running is set).
	run, life context.Context

	mu       sync.Mutex
	pools    map[string]*fnPool  // by stratus.Version.PoolKey
	fns      map[string]*fnGroup // by function name
	live     int                 // instances across all pools
	prepared int                 // prepared instances, and places reserved for prepares in flight
	running  bool                // Run has begun: starts and prepares may run
	stopping bool
	arrivals uint64 // waiters so far: the next one's waiter.seq
	// sandboxes are the instances whose sandbox is up (launched, its
	// exit not yet seen), by function name, with when it was launched:
	// see Instances.
	sandboxes map[string]map[*Instance]time.Time

	// creating holds a token for each sandbox being made (a start without
	// a prepared sandbox, or a prepare): see Config.MaxCreating.
	// awaitingTurn counts the starts and prepares in creation, waiting
	// for a token; guarded by mu.
	creating     chan struct{}
	awaitingTurn int

	wg sync.WaitGroup // starts, prepares, stops and exit watchers
}

// fnPool is the instances of one version of a function: its head
// ($LATEST, key the function's name) or a published version (key
// "NAME:N").
type fnPool struct {
	name    string // PoolKey
	group   *fnGroup
	isHead  bool // the function's head ($LATEST) pool
	cur     *stratus.Version
	idle    []*Instance // most recently used last
	live    int         // starting + idle + busy
	waiters []*waiter
	// starting counts the starts in flight for waiters (their slots are
	// in live); see scaleLocked.
	starting int
	// inFlight counts every start in flight: for waiters and for
	// MinInstances.
	inFlight int
	removed  bool
	// used is when the function was last invoked or deployed.
	used time.Time
	// prepared is the prepared instance of cur, if any; preparing is the
	// latest prepare in flight, if any.
	prepared  *Instance
	preparing *prepareOp
	// prepareTried: a prepare was started for this pool (guarded by
	// Manager.mu). Run's catch-up for the pools deployed before it
	// prepares only those without one, so that a deploy racing Run's
	// start does not prepare twice (a failed prepare is not retried
	// until the next deploy or start).
	prepareTried bool

	// Counters for Stats, since the pool was made: invocations refused
	// with ErrCapacity, cold starts, and (with create-ahead) cold starts
	// that found a prepared sandbox or made one.
	throttles, coldStarts, prepareHits, prepareMisses int64
}

// New returns a Manager of cfg's functions; call Run to start and reap
// instances, and to stop everything at the end.
func New(cfg Config) *Manager {
	cfg.defaults()
	cpu, _ := cfg.Driver.(cpuReader)
	return &Manager{
		cfg: cfg, log: cfg.Log, pools: make(map[string]*fnPool), fns: make(map[string]*fnGroup),
		creating:    make(chan struct{}, cfg.MaxCreating),
		createAhead: cfg.MaxPrepared > 0 && cfg.Driver != nil && cfg.Driver.Capabilities().Prepare,
		cpu:         cpu,
		tracer:      trace.Or(cfg.Tracer),
		traced:      cfg.Tracer != nil,
		arch:        stratus.ArchOf(runtime.GOARCH),
	}
}

// cpuReader is the CPU counter of a driver that has one (the process and
// runc drivers): one cheap read per invocation.
type cpuReader interface {
	// CPUNanos returns the CPU time sandbox id has used so far.
	CPUNanos(ctx context.Context, id string) (int64, error)
}

// Run starts what was asked before it (instances for waiting invocations,
// MinInstances, prepared instances: Config's callbacks may use what the
// caller builds after New), then reaps idle instances every
// Config.ReapEvery until ctx ends. It then stops every instance and
// returns once all of the Manager's goroutines have ended: within
// stopBound of ctx's end or of the end of the last invocation then in
// flight, even with hung driver calls (see the package doc). Call it
// once.
func (m *Manager) Run(ctx context.Context) error {
	life, end := context.WithCancel(context.WithoutCancel(ctx))
	defer end()
	m.mu.Lock()
	m.run, m.life = ctx, life
	m.running = true
	pools := make([]*fnPool, 0, len(m.pools))
	for _, p := range m.pools {
		pools = append(pools, p)
		m.scaleLocked(p, true)
	}
	m.mu.Unlock()
	for _, p := range pools {
		m.prepareAheadOnce(p)
	}
	m.Reap()
	t := time.NewTicker(m.cfg.ReapEvery)
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

// stopBound is how long after Run's ctx ends (or the last invocation in
// flight then does) Run may take to return: a stop's StopGrace and
// DriverTimeout, DriverTimeout for its sandbox's end to be seen, and a
// second for closing its Runtime API.
func (m *Manager) stopBound() time.Duration {
	return max(m.cfg.StopGrace, 0) + 2*m.cfg.DriverTimeout + time.Second
}

// Deploy makes v what the pool v.PoolKey() runs: the function's head
// ($LATEST, whose configuration's MaxConcurrency and Throttled hold for
// every version of the function) or a published version. Idle and
// prepared instances of an older head stop; busy ones stop when their
// invocation ends. It starts instances up to the version's MinInstances
// and, for the head with create-ahead, prepares one so that the first
// cold start is fast (a deploy counts as a use of the function).
func (m *Manager) Deploy(v *stratus.Version) {
	now := m.cfg.Now()
	key := v.PoolKey()
	m.mu.Lock()
	p := m.pools[key]
	if p == nil {
		g := m.fns[v.Function]
		if g == nil {
			g = &fnGroup{name: v.Function, pools: make(map[*fnPool]struct{})}
			m.fns[v.Function] = g
		}
		p = &fnPool{name: key, group: g, isHead: key == v.Function}
		g.pools[p] = struct{}{}
		if p.isHead {
			g.head = p
		}
		m.pools[key] = p
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

// Remove forgets function name and stops the instances of all its
// versions, the prepared one too; callers waiting for one get
// ErrNotFound.
func (m *Manager) Remove(name string) {
	m.mu.Lock()
	g := m.fns[name]
	if g == nil {
		m.mu.Unlock()
		return
	}
	var old []*Instance
	for p := range g.pools {
		old = append(old, m.removeLocked(p)...)
	}
	m.mu.Unlock()
	m.stopAsync(old...)
}

// RemoveVersion forgets the pool with key key (a published version's,
// "NAME:N") and stops its instances; callers waiting for one get
// ErrNotFound.
func (m *Manager) RemoveVersion(key string) {
	m.mu.Lock()
	p := m.pools[key]
	if p == nil {
		m.mu.Unlock()
		return
	}
	old := m.removeLocked(p)
	m.mu.Unlock()
	m.stopAsync(old...)
}

// removeLocked forgets p, fails its waiters and returns its idle and
// prepared instances, to stop. m.mu is held.
func (m *Manager) removeLocked(p *fnPool) []*Instance {
	delete(m.pools, p.name)
	g := p.group
	delete(g.pools, p)
	if g.head == p {
		g.head = nil
	}
	if len(g.pools) == 0 && m.fns[g.name] == g {
		delete(m.fns, g.name)
	}
	p.removed = true
	old := p.idle
	p.idle = nil
	for _, in := range old {
		m.dropLocked(in)
	}
	old = append(old, m.dropPreparedLocked(p))
	for _, w := range p.waiters {
		w.ch <- grant{err: fmt.Errorf("function %q: %w", p.name, stratus.ErrNotFound)}
	}
	p.waiters = nil
	return old
}

// StopAll stops every idle and prepared instance now and every busy one
// when its invocation ends; no instance starts or is prepared afterwards,
// and callers waiting for one get ErrUnavailable. Run calls it when its
// ctx ends.
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
			w.ch <- grant{err: errStopping}
		}
		p.waiters = nil
	}
	m.mu.Unlock()
	m.stopAsync(old...)
}

// statsLocked is p's InstanceStats. Starting counts every start in flight
// (for waiting invocations and for MinInstances); Busy counts every live
// instance that is not idle, those starting too. m.mu is held.
func (p *fnPool) statsLocked() stratus.InstanceStats {
	s := stratus.InstanceStats{
		Live: p.live, Idle: len(p.idle),
		Starting: p.inFlight, Waiting: len(p.waiters),
		Throttles: p.throttles, ColdStarts: p.coldStarts,
		PrepareHits: p.prepareHits, PrepareMisses: p.prepareMisses,
	}
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

// Reap stops instances idle for longer than their idle timeout, keeping
// each pool's MinInstances, and starts instances up to MinInstances, all
// within the function's max concurrency (the head's, shared by every
// version): a function over it (its cap lowered) loses idle instances
// until it is not. A throttled function, which no call may use, keeps no
// idle instance.
// A function not used (invoked or deployed) for longer than its idle
// timeout loses its prepared instance, so that an idle server runs no
// sandbox beyond MinInstances; its next cold start prepares one again.
// It does nothing before Run or once stopping.
func (m *Manager) Reap() {
	now := m.cfg.Now()
	var old []*Instance
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
		minInstances := c.MinInstances
		if p.group.throttled() {
			// No call may use its instances: they all go.
			minInstances, idleFor = 0, 0
		}
		if p.prepared != nil && now.Sub(p.used) >= idleFor {
			old = append(old, m.dropPreparedLocked(p))
		}
		// Over the function's cap, MinInstances or not, idle instances
		// go: every version keeps its warm ones within the cap only.
		old = append(old, m.shedLocked(p.group, p)...)
		// p.idle is oldest first.
		for len(p.idle) > 0 && p.live > minInstances && now.Sub(p.idle[0].lastUsed) >= idleFor {
			in := p.idle[0]
			p.idle = p.idle[1:]
			old = append(old, in)
			m.dropLocked(in)
		}
		for p.live < minInstances && len(p.waiters) == 0 && m.reserveLocked(p, false) {
			m.goStartLocked(p, false)
		}
	}
	m.mu.Unlock()
	m.stopAsync(old...)
}
