// Package services runs container services: each deploy makes an
// immutable revision whose replicas (sandboxes running the image) start,
// pass a readiness probe, take traffic and are restarted with backoff
// when they exit or fail their liveness probe. Requests are balanced over
// a revision's ready replicas by fewest in-flight, each replica taking at
// most its revision's concurrency; extra requests wait in a bounded queue
// while the autoscaler adds replicas (from zero too). A new revision
// serves only once its replicas are ready; a revision that traffic no
// longer reaches then drains and stops. A deploy whose configuration and
// image equal the latest revision's makes no revision.
//
// Traffic (see SetTraffic): with no split set, the latest ready revision
// takes every request. A split shares the requests between revisions by
// percent with a smooth weighted round robin (each run of 100 requests
// goes exactly by the percents, interleaved), and a tag routes to its
// revision whatever its percent (Acquire of "NAME@TAG"). Every revision
// the traffic reaches (a percent above 0, or a tag) keeps its own
// replicas and autoscaler, bounded by its own configuration's scales; a
// Latest target follows each new ready revision, pinned ones stay.
//
// Functions and services share one namespace of names, kept by the
// store: a deploy claims its service's name (Store.ClaimServiceName)
// before any replica starts, so no function takes it meanwhile, and gives
// it back if the first revision fails.
//
// On Kubernetes (Config.Revisions, see backend.go) a revision is one
// Deployment rather than sandboxes: the Manager sets its replicas where
// the autoscaler decides, within Config.MaxReplicas for all revisions
// together, and balances requests over the ready endpoints the backend
// reports, counting them in flight per endpoint as per replica; probes,
// restarts and placement are the cluster's. The Manager counts a
// replica's restarts as its endpoint's restart count grows, and an OOM
// kill when the end it restarted after was one.
//
// Usage (Config.Usage): a replica's sandbox is metered from its
// program's start to its end, a backend's replica (a pod) from the first
// sight of its endpoint's address (its pod started) until its endpoint
// is gone, its revision's objects are deleted or Run ends, in replica
// time, vCPU and GB seconds per minute and a ReplicaUsage per replica.
// CPU time is read from the driver's CPU counters once a minute and at a
// sandbox's end; a backend's pods have none here (there is no metrics
// API to read them from), so their CPUMs is 0.
//
// Lifetime: New builds a Manager and Load reads the stored services; no
// replica runs before Run. Run(ctx) starts each service's minimum
// replicas, autoscales every tick and, once ctx ends, stops every replica
// (those of deploys in progress too; those deploys, and the requests
// waiting for a replica, fail with stratus.ErrUnavailable) and returns.
// Every driver call runs with a context derived from Run's and bounded in
// time (see Config.DriverTimeout): a sandbox's Wait lasts until its
// sandbox ends but at most DriverTimeout after its Stop returned (no
// longer once its Stop failed), so a replica whose stop the driver does
// not see through is forgotten all the same. Once ctx ends, a
// replica finishes the probe it may be running (1 s at most), drains its
// requests for StopGrace at most, stops its sandbox (StopGrace +
// DriverTimeout) and waits for its end (DriverTimeout); so Run returns at
// most 1 s + 2×StopGrace + 2×DriverTimeout after ctx ends
// (Manager.stopBound), even when a driver call hangs: driver calls still
// running then are cancelled. Deploy waits until Run has started.
//
// Goroutines: the Manager owns one per replica (start, probe, restart,
// drain and stop) and, while that replica's sandbox runs, one waiting
// for its end (Driver.Wait; runOnce waits for it before it returns);
// one per sandbox prepared ahead; one per prepared sandbox being stopped
// (its revision retired, see retireLocked); one per service being
// started here having come to be owned here (see adoptLocked); its Run
// loop (autoscaling and reconciling every tick); on a Revisions
// backend, one per revision while it applies the revision's objects
// (applyBackend, deleting them too once it is retired for good), one
// that Run starts to follow the backend's endpoints (followBackend),
// stopped before Run stops the replicas, and one that Run starts to
// delete the objects an earlier run left (cleanOrphans), ended by the
// stop;
// and, with Config.Usage, one that Run
// starts to report the usage minutes as they end (see meter), which
// reads the live sandboxes' CPU counters once a minute and ends with
// Run's ctx. Run returns after stopping every replica and waiting for
// those goroutines; it then reports the minute in progress. A request
// waits in Acquire on its own goroutine, bounded in time and in number.
//
// Locking: one mutex, Manager.mu, guards every service, revision set and
// replica field marked "guarded"; nothing blocks while holding it. A lock
// per name (deployLock) serializes the deploys, traffic changes, removes
// and reloads of one service; it is taken before Manager.mu, never while
// holding it. Config.Owns and Config.Owner are never called while
// holding Manager.mu (a name's deployLock may be held).
//
// Several servers on one store (see cluster.go): each service has one
// owner at a time (Config.Owns), the only server that runs its replicas
// and autoscales it. The others know it from the store (List and Get
// show its configuration, revisions and traffic, and the state
// StateRemote with the owner's name) but run nothing for it. Reload and
// ReloadAll follow the store: a change another server made (a deploy, a
// traffic split, a removal) and a change of owner; each tick Run also
// stops at once the replicas of a service this server no longer owns
// and starts, on a goroutine of its own, one it has come to own.
package services

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/autoscaler"
	"github.com/stratus-run/stratus/internal/logs"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// Store keeps services and their revisions, and the names they hold.
// *store.Store implements it.
type Store interface {
	// ClaimServiceName holds name for a service; idempotent. A name a
	// function holds is an error wrapping stratus.ErrConflict.
	ClaimServiceName(ctx context.Context, name string) error
	// ReleaseServiceName frees a claimed name under which no service is
	// stored (a first deploy that failed); idempotent.
	ReleaseServiceName(ctx context.Context, name string) error
	// NextRevision is the number the next revision of service name gets
	// (1 for a new service).
	NextRevision(ctx context.Context, name string) (int, error)
	// PutRevision stores rev as its service's latest revision, creating
	// the service (its traffic stays as set); a number already taken, or
	// a name a function holds, is an error wrapping stratus.ErrConflict.
	PutRevision(ctx context.Context, rev *stratus.Revision) (*stratus.Service, error)
	// GetRevision returns revision number of service name; an unknown
	// one is an error wrapping stratus.ErrNotFound.
	GetRevision(ctx context.Context, name string, number int) (*stratus.Revision, error)
	// SetTraffic stores service name's traffic split and returns the
	// service; an unknown service is an error wrapping
	// stratus.ErrNotFound.
	SetTraffic(ctx context.Context, name string, t []stratus.TrafficTarget) (*stratus.Service, error)
	// ListServices returns every stored service at its latest revision,
	// with its traffic.
	ListServices(ctx context.Context) ([]stratus.Service, error)
	// DeleteService removes service name with its revisions and frees its
	// name; an unknown name is an error wrapping stratus.ErrNotFound.
	DeleteService(ctx context.Context, name string) error
	// GetService returns service name at its latest revision, with its
	// traffic; an unknown one is an error wrapping stratus.ErrNotFound.
	GetService(ctx context.Context, name string) (*stratus.Service, error)
}

// Image is what the manager needs of an image to run it.
type Image struct {
	Digest     string
	RootFS     string // the flattened root folder on the host
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	// User runs the image's program (its USER); nil is the image's root,
	// which a driver with a user namespace maps to an unprivileged host id.
	User *sandbox.User
}

// Images resolves image references.
type Images interface {
	// Resolve returns the image ref names, its root folder prepared. A
	// missing image is an error wrapping stratus.ErrNotFound.
	Resolve(ctx context.Context, ref string) (*Image, error)
}

// LogSink receives the replicas' output and the platform's lines.
type LogSink interface {
	Log(stratus.LogLine)
}

// Config configures a Manager. Store, Images and Driver are required,
// but for Revisions (then Driver and Images may be nil); every other zero
// field means its default.
type Config struct {
	// Store keeps services, their revisions and their names.
	Store Store
	// Images resolves the images that revisions run.
	Images Images
	// Driver runs the replicas' sandboxes.
	Driver sandbox.Driver
	// Revisions, if set, runs the revisions instead of Driver (see
	// Revisions); Images may then be nil (every image reference runs as
	// given).
	Revisions Revisions
	// Logs receives the replicas' output and the platform's lines; nil
	// drops them.
	Logs LogSink
	// Output, if set, bounds the output stored per second per service.
	Output *logs.Limiter
	// Usage receives each service's usage minutes and each replica's
	// usage (see UsageSink); nil measures nothing.
	Usage UsageSink
	// Removed, if set, is called with a service's name once its removal
	// has committed: it is gone from the store and the Manager, its
	// replicas stopping (so that the server drops the service's metric
	// series); nil: nothing is called. It is called once per successful
	// Remove (and once when Reload or ReloadAll finds that another server
	// removed it), never after a failed one, before any later deploy of
	// the name: it must be quick and must not deploy or remove that
	// service.
	Removed func(name string)
	// Owns, if set, reports whether this server runs service name's
	// replicas now (it owns the service); it must be quick. nil: every
	// service is this server's.
	Owns func(name string) bool
	// Owner, if set, names the server that owns service name ("" when
	// unknown), for the status; it must be quick. nil: none is named.
	Owner func(name string) string
	// Log receives what the Manager does; nil discards it.
	Log *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time

	// ReadyTimeout bounds how long a new replica may take to pass its
	// readiness probe (and how long a request waits for a replica).
	ReadyTimeout time.Duration
	// ProbeInterval is the liveness probe's period; three failures in a
	// row restart the replica.
	ProbeInterval time.Duration
	// StopGrace is how long a stopping replica gets after SIGTERM, and
	// how long, once Run's ctx ends, replicas drain their requests.
	StopGrace time.Duration
	// DriverTimeout bounds each driver call other than Start and Prepare
	// (bounded by ReadyTimeout), beyond the StopGrace a Stop takes, and a
	// Wait once its sandbox's Stop returned: 10 s when 0.
	DriverTimeout time.Duration
	// QueueSize bounds the requests waiting for a replica per service;
	// more get ErrCapacity.
	QueueSize int
	// Tick is the autoscaler's period.
	Tick time.Duration
	// StableWindow, PanicWindow and ScaleToZeroGrace tune the autoscaler.
	StableWindow, PanicWindow, ScaleToZeroGrace time.Duration
	// BackoffBase and BackoffMax bound the restart backoff.
	BackoffBase, BackoffMax time.Duration
	// MaxReplicas caps the replicas of all services together (on a
	// Revisions backend, the replicas applied to all revisions' objects).
	MaxReplicas int
	// Region is this server's region. Without a Revisions backend (its
	// replicas run on this machine) it runs only services allowed in it
	// (stratus.ServiceConfig.Regions); a backend places them itself.
	Region string
}

func (c *Config) defaults() {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = time.Minute
	}
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = 5 * time.Second
	}
	if c.StopGrace <= 0 {
		c.StopGrace = 10 * time.Second
	}
	if c.DriverTimeout <= 0 {
		c.DriverTimeout = 10 * time.Second
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 1000
	}
	if c.Tick <= 0 {
		c.Tick = time.Second
	}
	if c.BackoffBase <= 0 {
		c.BackoffBase = time.Second
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = time.Minute
	}
	if c.MaxReplicas <= 0 {
		c.MaxReplicas = 1000
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Replica states.
const (
	stateStarting = "starting"
	stateReady    = "ready"
	stateBackoff  = "backoff" // exited or unhealthy; waits before it starts again
	stateStopping = "stopping"
)

// Service states, as `stratus service get` shows them.
const (
	StateReady        = "Ready"
	StateScaledToZero = "ScaledToZero"
	StateStarting     = "Starting"
	StateCrashLoop    = "CrashLoopBackOff"
)

// crashLoopRestarts is how many restarts without a stable run make a
// replica's state a crash loop.
const crashLoopRestarts = 3

// Manager runs every service's replicas.
type Manager struct {
	cfg Config
	log *slog.Logger

	// life is Run's context, kept past its end by at most the shutdown
	// bound; every driver call derives its context from it. It is kept
	// here, not passed, because replicas start from Deploy, Acquire and
	// the autoscaler alike, and all of them must stop with Run. Set once
	// by Run, under mu, before any replica goroutine starts; running is
	// closed then.
	life    context.Context
	running chan struct{}

	mu       sync.Mutex
	services map[string]*service // guarded
	total    int                 // live replicas of all services (on a backend, see holdLocked); guarded
	stopping bool                // guarded
	changed  chan struct{}       // closed and replaced on every replica state change; guarded
	deploys  map[string]*sync.Mutex
	// deploying holds the revisions of deploys in progress, not serving
	// yet, so that a stop reaches their replicas too; guarded.
	deploying map[*revSet]bool
	pending   map[string]int // image digest → deploys in progress; guarded
	// adopting holds the reloads in progress of services known as
	// remote that this server has come to own (see adopt); guarded.
	adopting map[string]*adoption
	// deleting holds the revisions whose objects a Revisions backend
	// is deleting now (see deleteObjects); guarded.
	deleting map[RevisionRef]bool
	// halted is closed once stopping is set: waits before a retry end.
	halted chan struct{}

	// Metering (with Config.Usage), all guarded: the sandboxes being
	// metered, the services with usage minutes not reported yet, the
	// start of the earliest minute not reported yet, and whether Run's
	// end reported the last ones.
	runs      map[*replica]struct{}
	metered   map[*service]struct{}
	flushed   time.Time
	usageDone bool

	wg sync.WaitGroup // replica goroutines
}

type service struct {
	name string
	// latest is the latest ready revision, which Latest targets (and an
	// empty split) reach; guarded.
	latest *stratus.Revision
	// sets holds the replicas of every revision the traffic reaches, by
	// revision number; route is the traffic resolved to them. Both
	// guarded.
	sets     map[int]*revSet
	route    routing
	draining []*revSet       // revisions traffic left, finishing their requests; guarded
	waiters  []*waiter       // requests waiting for a replica, oldest first; guarded
	lastErr  string          // last deploy or replica error; guarded
	svc      stratus.Service // the latest revision, with the traffic as set; guarded
	inflight int             // requests a replica of any revision holds; guarded
	// remote: another server owns the service; its sets have no image
	// (their reason whyRemote) and no replica. Guarded.
	remote bool
	// Counters since the service was loaded or first deployed; guarded.
	restarts, oomKills int64
	// minutes holds the usage minutes not reported yet, by their start
	// in Unix seconds; guarded.
	minutes map[int64]*stratus.UsageMinute
}

// revSet is the replicas of one revision.
type revSet struct {
	svc      *service
	rev      *stratus.Revision
	img      *Image
	scaler   *autoscaler.Scaler
	tracker  autoscaler.Tracker  // requests in flight, averaged between ticks
	decision autoscaler.Decision // the scaler's last; guarded
	desired  int                 // guarded
	replicas []*replica          // guarded
	waiting  int                 // requests waiting for one of its replicas; guarded
	// why says why img is nil (its image could not be resolved at load).
	why     string
	retired bool // guarded: drain and stop every replica
	next    int  // guarded: where pickLocked starts
	// hold is the revision's explicit initial scale (InitialScale): the
	// autoscaler asks for no fewer until holdUntil, a stable window after
	// the revision became ready (zero while it is not yet ready), as a
	// revision without traffic data keeps its scale. Both guarded.
	hold      int
	holdUntil time.Time
	// prepared is a sandbox made ahead for the next replica; preparing
	// says one is being made. Both guarded.
	prepared  *sandboxSpec
	preparing bool
	// backend is its state on Config.Revisions; nil without one.
	backend *backendSet
}

type replica struct {
	set      *revSet
	id       string // the current sandbox's ID; guarded
	state    string // guarded
	target   Target // guarded
	inflight int    // guarded
	restarts int    // guarded
	lastErr  string
	stop     chan struct{} // closed to stop the replica for good
	stopOnce sync.Once
	readyAt  time.Time // guarded
	run      *runMeter // the metering of its sandbox while it runs; guarded
	// On Config.Revisions: the node it runs on, and whether it cannot
	// start as it is (Endpoint.Failed). Guarded.
	node   string
	failed bool
}

type waiter struct {
	ch chan grant // buffered 1; receives the granted replica
	// set is the revision it waits for, chosen by its route (tag, or the
	// split when untagged); guarded.
	set    *revSet
	tag    string
	tagged bool
	// public: the request came without the server's token (WithoutToken).
	public bool
	// err is why ch was closed without a grant (the service was removed,
	// or Run's ctx ended); set before the close.
	err error
}

// grant is a replica slot given to a waiting request, with the replica's
// address read under the lock.
type grant struct {
	r *replica
	t Target
}

// Target is a replica a request was given: its address, the HTTP
// transport that keeps connections to it (closed when it stops, so that
// no connection outlives its replica), and how long the request may take
// (its revision's TimeoutSec, or stratus.DefaultServiceTimeoutSec).
type Target struct {
	URL       *url.URL
	Transport http.RoundTripper
	Timeout   time.Duration
}

// New returns a Manager; Load reads the stored services and Run runs
// them.
func New(cfg Config) *Manager {
	cfg.defaults()
	return &Manager{
		cfg: cfg, log: cfg.Log,
		running:   make(chan struct{}),
		services:  make(map[string]*service),
		changed:   make(chan struct{}),
		deploys:   make(map[string]*sync.Mutex),
		deploying: make(map[*revSet]bool),
		pending:   make(map[string]int),
		adopting:  make(map[string]*adoption),
		deleting:  make(map[RevisionRef]bool),
		halted:    make(chan struct{}),
		runs:      make(map[*replica]struct{}),
		metered:   make(map[*service]struct{}),
	}
}

// Load rebuilds every stored service with its traffic: the replicas of
// each revision the traffic reaches, whose minimum replicas start once
// Run does. A revision whose image is gone is loaded with the reason and
// no replicas; a service another server owns (Config.Owns) is loaded
// with none either. Call it before Run.
func (m *Manager) Load(ctx context.Context) error {
	list, err := m.cfg.Store.ListServices(ctx)
	if err != nil {
		return err
	}
	for _, svc := range list {
		owned := m.owns(svc.Name)
		s := &service{name: svc.Name, svc: svc, remote: !owned}
		latest, sets, lastErr, done, err := m.buildSets(ctx, s, svc, owned, nil)
		done()
		if err != nil {
			return fmt.Errorf("load service %q: %w", svc.Name, err)
		}
		s.latest, s.sets, s.lastErr = latest, sets, lastErr
		s.route = resolve(svc.Traffic, latest.Number, s.sets)
		m.mu.Lock()
		m.services[svc.Name] = s
		m.mu.Unlock()
	}
	return nil
}

func (m *Manager) newSet(s *service, rev *stratus.Revision, img *Image) *revSet {
	c := rev.Config
	// autoscaler.Spec reads a zero grace as its default: no grace is the
	// shortest one.
	grace := max(m.cfg.ScaleToZeroGrace, time.Nanosecond)
	stable, panicWindow := m.cfg.StableWindow, m.cfg.PanicWindow
	if w := time.Duration(c.Window); w > 0 {
		// The service's window; its panic window keeps the server's
		// ratio (0: the autoscaler's default, a tenth).
		stable, panicWindow = w, 0
		if m.cfg.StableWindow > 0 && m.cfg.PanicWindow > 0 {
			panicWindow = time.Duration(float64(w) * float64(m.cfg.PanicWindow) / float64(m.cfg.StableWindow))
		}
	}
	var backend *backendSet
	if m.cfg.Revisions != nil {
		backend = &backendSet{applied: -1}
	}
	return &revSet{
		svc: s, rev: rev, img: img, backend: backend,
		scaler: autoscaler.New(autoscaler.Spec{
			Min: c.MinScale, Max: c.MaxScale, Target: scaleTarget(c),
			StableWindow: stable, PanicWindow: panicWindow,
			ScaleToZeroGrace: grace,
		}),
	}
}

// scaleTarget is the autoscaler's target of in-flight requests per
// replica of a revision configured with c: its Target, capped at its
// Concurrency limit, else the one derived from the limit.
func scaleTarget(c stratus.ServiceConfig) float64 {
	if c.Target > 0 {
		if c.Concurrency > 0 {
			return min(c.Target, float64(c.Concurrency))
		}
		return c.Target
	}
	return autoscaler.TargetFor(c.Concurrency)
}

// ImageInUse reports whether a revision of a service that traffic reaches
// or that is draining runs the image with digest d, or a deploy or
// traffic change in progress is about to.
func (m *Manager) ImageInUse(d string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pending[d] > 0 {
		return true
	}
	for _, s := range m.services {
		for _, set := range s.sets {
			if set.rev.Digest == d {
				return true
			}
		}
		for _, old := range s.draining {
			if old.rev.Digest == d {
				return true
			}
		}
	}
	return false
}

// Run starts the loaded services' minimum replicas, then autoscales
// every service each tick until ctx ends; it then stops every replica
// and returns once every goroutine of the Manager has ended: at most
// stopBound (1 s + 2×StopGrace + 2×DriverTimeout) after ctx ends,
// whatever the driver does. With Config.Usage, it reports each minute's
// usage as the minute ends, each replica's as it ends, and, last, the
// minute in progress. Call it once.
func (m *Manager) Run(ctx context.Context) error {
	// Replicas stop after ctx ends, so driver calls outlive it, but not
	// the shutdown bound: end cancels them all then.
	life, end := context.WithCancel(context.WithoutCancel(ctx))
	defer end()
	m.mu.Lock()
	m.life = life
	m.flushed = m.cfg.Now().Truncate(time.Minute)
	var sets []*revSet
	for _, s := range m.services {
		for _, set := range s.sets {
			if set.waiting > 0 {
				set.desired = max(set.desired, 1)
			}
			m.reconcileLocked(set)
			sets = append(sets, set)
		}
	}
	if m.cfg.Revisions != nil {
		m.wg.Add(1)
		go m.cleanOrphans()
	}
	close(m.running)
	m.mu.Unlock()
	for _, set := range sets {
		m.prepareAhead(set)
	}
	followed := make(chan struct{})
	stopFollow := make(chan struct{})
	if m.cfg.Revisions != nil {
		go func() {
			defer close(followed)
			m.followBackend(stopFollow)
		}()
	} else {
		close(followed)
	}

	metered := make(chan struct{})
	if m.cfg.Usage != nil {
		go func() {
			defer close(metered)
			m.meter(ctx)
		}()
	} else {
		close(metered)
	}
	t := time.NewTicker(m.cfg.Tick)
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-t.C:
			m.followOwners()
			m.scale()
		}
	}
	t.Stop()
	close(stopFollow)
	<-followed
	<-metered
	bound := time.AfterFunc(m.stopBound(), end)
	defer bound.Stop()
	m.stopAll()
	// Every sandbox has ended: report the minute in progress.
	m.emit(m.closeMinutes(time.Time{}, true))
	return nil
}

// stopBound is how long after Run's ctx ends its driver calls may last.
// A replica may be running a probe (probeTimeout; it runs outside the
// driver's contexts, and no other probe starts after the stop), then
// drains for StopGrace; then its Stop takes StopGrace and DriverTimeout
// at most, and its Wait DriverTimeout more.
func (m *Manager) stopBound() time.Duration {
	return probeTimeout + 2*m.cfg.StopGrace + 2*m.cfg.DriverTimeout
}

// callCtx is the context of one driver call: it ends after d, or when
// the Manager's lifetime does. Only goroutines Run's start precedes call
// it.
func (m *Manager) callCtx(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(m.life, d)
}
