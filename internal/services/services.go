// Package services runs container services: each deploy makes an
// immutable revision whose replicas (sandboxes running the image) start,
// pass a readiness probe, take traffic and are restarted with backoff
// when they exit or fail their liveness probe. Requests are balanced over
// ready replicas by fewest in-flight, each replica taking at most its
// revision's concurrency; extra requests wait in a bounded queue while
// the autoscaler adds replicas (from zero too). A new revision serves
// only once its replicas are ready; the old one then drains and stops.
//
// Goroutines: the Manager owns one per replica (start, probe, restart,
// drain and stop) and its Run loop (autoscaling and reconciling every
// tick). Run returns after stopping every replica and waiting for those
// goroutines. A request waits in Acquire on its own goroutine, bounded in
// time and in number.
//
// Locking: one mutex, Manager.mu, guards every service, revision set and
// replica field marked "guarded"; nothing blocks while holding it.
package services

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/autoscaler"
	"github.com/stratus-run/stratus/internal/logs"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// Store keeps services and their revisions.
type Store interface {
	NextRevision(ctx context.Context, name string) (int, error)
	PutRevision(ctx context.Context, rev *stratus.Revision) (*stratus.Service, error)
	ListServices(ctx context.Context) ([]stratus.Service, error)
	DeleteService(ctx context.Context, name string) error
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

// Config configures a Manager.
type Config struct {
	Store  Store
	Images Images
	Driver sandbox.Driver
	Logs   LogSink
	// Output, if set, bounds the output stored per second per service.
	Output *logs.Limiter
	// NameTaken reports whether a function holds name: services and
	// functions share one namespace of names.
	NameTaken func(name string) bool
	Log       *slog.Logger
	Now       func() time.Time

	// ReadyTimeout bounds how long a new replica may take to pass its
	// readiness probe (and how long a request waits for a replica).
	ReadyTimeout time.Duration
	// ProbeInterval is the liveness probe's period; three failures in a
	// row restart the replica.
	ProbeInterval time.Duration
	// StopGrace is how long a stopping replica gets after SIGTERM.
	StopGrace time.Duration
	// QueueSize bounds the requests waiting for a replica per service;
	// more get ErrCapacity.
	QueueSize int
	// Tick is the autoscaler's period.
	Tick time.Duration
	// StableWindow, PanicWindow and ScaleToZeroGrace tune the autoscaler.
	StableWindow, PanicWindow, ScaleToZeroGrace time.Duration
	// BackoffBase and BackoffMax bound the restart backoff.
	BackoffBase, BackoffMax time.Duration
	// MaxReplicas caps the replicas of all services together.
	MaxReplicas int
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

	mu       sync.Mutex
	services map[string]*service // guarded
	total    int                 // live replicas of all services; guarded
	stopping bool                // guarded
	changed  chan struct{}       // closed and replaced on every replica state change; guarded
	deploys  map[string]*sync.Mutex
	pending  map[string]int // image digest → deploys in progress; guarded

	wg sync.WaitGroup // replica goroutines
}

type service struct {
	name     string
	cur      *revSet   // serving; guarded
	draining []*revSet // old revisions finishing their requests; guarded
	waiters  []*waiter // requests waiting for a replica, oldest first; guarded
	lastErr  string    // last deploy or replica error; guarded
	svc      stratus.Service
}

// revSet is the replicas of one revision.
type revSet struct {
	svc      *service
	rev      *stratus.Revision
	img      *Image
	scaler   *autoscaler.Scaler
	tracker  autoscaler.Tracker // requests in flight, averaged between ticks
	desired  int                // guarded
	replicas []*replica         // guarded
	retired  bool               // guarded: drain and stop every replica
	next     int                // guarded: where pickLocked starts
	// prepared is a sandbox made ahead for the next replica; preparing
	// says one is being made. Both guarded.
	prepared  *sandboxSpec
	preparing bool
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
}

type waiter struct {
	ch chan grant // buffered 1; receives the granted replica
}

// grant is a replica slot given to a waiting request, with the replica's
// address read under the lock.
type grant struct {
	r *replica
	t Target
}

// Target is a replica a request was given: its address, and the HTTP
// transport that keeps connections to it (closed when it stops, so that
// no connection outlives its replica).
type Target struct {
	URL       *url.URL
	Transport http.RoundTripper
}

// New returns a Manager; Start loads the stored services.
func New(cfg Config) *Manager {
	cfg.defaults()
	return &Manager{
		cfg: cfg, log: cfg.Log,
		services: make(map[string]*service),
		changed:  make(chan struct{}),
		deploys:  make(map[string]*sync.Mutex),
		pending:  make(map[string]int),
	}
}

// Load rebuilds the serving revision of every stored service and starts
// their minimum replicas. A service whose image is gone is loaded with
// its error recorded and no replicas.
func (m *Manager) Load(ctx context.Context) error {
	list, err := m.cfg.Store.ListServices(ctx)
	if err != nil {
		return err
	}
	for _, svc := range list {
		rev := &stratus.Revision{Service: svc.Name, Number: svc.Revision, Config: svc.Config, Digest: svc.Digest, CreatedAt: svc.UpdatedAt}
		s := &service{name: svc.Name, svc: svc}
		img, err := m.cfg.Images.Resolve(ctx, svc.Digest)
		if err != nil {
			s.lastErr = fmt.Sprintf("image %s: %v", svc.Config.Image, err)
			m.log.Warn("service image unavailable", "service", svc.Name, "err", err)
		}
		set := m.newSet(s, rev, img)
		m.mu.Lock()
		s.cur = set
		m.services[svc.Name] = s
		if img != nil {
			set.desired = svc.Config.MinScale
			m.reconcileLocked(set)
		}
		m.mu.Unlock()
		m.prepareAhead(set)
	}
	return nil
}

func (m *Manager) newSet(s *service, rev *stratus.Revision, img *Image) *revSet {
	c := rev.Config
	// autoscaler.Spec reads a zero grace as its default: no grace is the
	// shortest one.
	grace := max(m.cfg.ScaleToZeroGrace, time.Nanosecond)
	return &revSet{
		svc: s, rev: rev, img: img,
		scaler: autoscaler.New(autoscaler.Spec{
			Min: c.MinScale, Max: c.MaxScale, Target: autoscaler.TargetFor(c.Concurrency),
			StableWindow: m.cfg.StableWindow, PanicWindow: m.cfg.PanicWindow,
			ScaleToZeroGrace: grace,
		}),
	}
}

// Exists reports whether service name exists.
func (m *Manager) Exists(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.services[name]
	return ok
}

// Auth returns the auth mode of service name's serving revision.
func (m *Manager) Auth(name string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.services[name]
	if !ok {
		return "", false
	}
	return s.cur.rev.Config.Auth, true
}

// ImageInUse reports whether a service's serving or draining revision
// runs the image with digest d, or a deploy in progress is about to.
func (m *Manager) ImageInUse(d string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pending[d] > 0 {
		return true
	}
	for _, s := range m.services {
		if s.cur.rev.Digest == d {
			return true
		}
		for _, old := range s.draining {
			if old.rev.Digest == d {
				return true
			}
		}
	}
	return false
}

func (m *Manager) deployLock(name string) *sync.Mutex {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.deploys[name]
	if !ok {
		l = new(sync.Mutex)
		m.deploys[name] = l
	}
	return l
}

// Deploy makes a new revision of service name with cfg (creating the
// service), starts its replicas and, once they are ready, moves traffic
// to it; the previous revision then drains and stops. A revision that
// does not become ready fails the deploy with the reason (wrapping
// stratus.ErrInvalid) and changes nothing: the previous revision keeps
// serving.
func (m *Manager) Deploy(ctx context.Context, name string, cfg stratus.ServiceConfig) (*stratus.Service, error) {
	if err := stratus.ValidName(name); err != nil {
		return nil, err
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if m.cfg.NameTaken != nil && m.cfg.NameTaken(name) {
		return nil, fmt.Errorf("service %q: a function has that name: %w", name, stratus.ErrConflict)
	}
	l := m.deployLock(name)
	l.Lock()
	defer l.Unlock()

	img, err := m.cfg.Images.Resolve(ctx, cfg.Image)
	if err != nil {
		return nil, fmt.Errorf("deploy service %q: %w", name, err)
	}
	// The image is in use from now on, also while the deploy waits.
	m.mu.Lock()
	m.pending[img.Digest]++
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		if m.pending[img.Digest]--; m.pending[img.Digest] == 0 {
			delete(m.pending, img.Digest)
		}
		m.mu.Unlock()
	}()
	if len(cfg.Command) == 0 && len(img.Entrypoint) == 0 && len(img.Cmd) == 0 {
		return nil, fmt.Errorf("deploy service %q: image %s has no entrypoint or command; give one with --command: %w", name, cfg.Image, stratus.ErrInvalid)
	}
	n, err := m.cfg.Store.NextRevision(ctx, name)
	if err != nil {
		return nil, err
	}
	rev := &stratus.Revision{Service: name, Number: n, Config: cfg, Digest: img.Digest, CreatedAt: m.cfg.Now()}

	m.mu.Lock()
	if m.stopping {
		m.mu.Unlock()
		return nil, fmt.Errorf("deploy service %q: the server is stopping: %w", name, stratus.ErrUnavailable)
	}
	s, existed := m.services[name]
	if !existed {
		s = &service{name: name}
	}
	set := m.newSet(s, rev, img)
	initial := max(cfg.MinScale, 1)
	if existed {
		initial = max(initial, s.cur.readyLocked())
	}
	set.desired = min(initial, cfg.MaxScale)
	m.reconcileLocked(set)
	m.mu.Unlock()

	if err := m.waitReady(ctx, set); err != nil {
		m.retire(set)
		m.mu.Lock()
		if existed {
			s.lastErr = fmt.Sprintf("revision %s failed: %v", rev.Name(), err)
		}
		m.mu.Unlock()
		return nil, fmt.Errorf("deploy service %q: revision %s did not become ready: %v: %w", name, rev.Name(), err, stratus.ErrInvalid)
	}
	stored, err := m.cfg.Store.PutRevision(ctx, rev)
	if err != nil {
		m.retire(set)
		return nil, err
	}
	m.mu.Lock()
	old := s.cur
	s.cur, s.svc, s.lastErr = set, *stored, ""
	m.services[name] = s
	if old != nil {
		old.retired = true
		s.draining = append(s.draining, old)
		m.retireLocked(old)
	}
	m.grantLocked(s)
	m.notifyLocked()
	m.mu.Unlock()
	m.prepareAhead(set)
	m.log.Info("revision serves", "service", name, "revision", rev.Name(), "image", cfg.Image)
	return stored, nil
}

// waitReady waits until every replica set.desired asked for is ready, or
// fails with the first replica's reason.
func (m *Manager) waitReady(ctx context.Context, set *revSet) error {
	// A replica fails on its own ReadyTimeout, counted from its start,
	// with the reason; this deadline is only the backstop for one whose
	// sandbox does not even start, so it leaves room for a slow start.
	deadline := time.NewTimer(m.cfg.ReadyTimeout + 10*time.Second)
	defer deadline.Stop()
	for {
		m.mu.Lock()
		ready, failed := 0, ""
		for _, r := range set.replicas {
			switch {
			case r.state == stateReady:
				ready++
			case r.restarts > 0 && failed == "":
				failed = r.lastErr
			}
		}
		changed := m.changed
		m.mu.Unlock()
		if failed != "" {
			return errors.New(failed)
		}
		if ready >= set.desired {
			return nil
		}
		select {
		case <-changed:
		case <-deadline.C:
			return fmt.Errorf("no replica was ready within %s", m.cfg.ReadyTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// retire stops every replica of set now (a revision that never served).
func (m *Manager) retire(set *revSet) {
	m.mu.Lock()
	set.retired = true
	m.retireLocked(set)
	m.mu.Unlock()
}

func (m *Manager) retireLocked(set *revSet) {
	set.desired = 0
	for _, r := range set.replicas {
		r.requestStop()
	}
	if p := set.prepared; p != nil {
		set.prepared = nil
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.stopPrepared(p)
		}()
	}
}

// Remove deletes service name: its replicas stop (in-flight requests
// finish first) and its revisions and logs are deleted.
func (m *Manager) Remove(ctx context.Context, name string) error {
	l := m.deployLock(name)
	l.Lock()
	defer l.Unlock()
	if err := m.cfg.Store.DeleteService(ctx, name); err != nil {
		return err
	}
	m.mu.Lock()
	s, ok := m.services[name]
	if ok {
		delete(m.services, name)
		for _, set := range append(s.draining, s.cur) {
			set.retired = true
			m.retireLocked(set)
		}
		for _, w := range s.waiters {
			close(w.ch)
		}
		s.waiters = nil
	}
	m.mu.Unlock()
	return nil
}

// Acquire gives a request a ready replica of service name, waiting
// (bounded) while replicas start or are all busy. release must be called
// once the request is done.
func (m *Manager) Acquire(ctx context.Context, name string) (*Target, func(), error) {
	m.mu.Lock()
	s, ok := m.services[name]
	if !ok {
		m.mu.Unlock()
		return nil, nil, fmt.Errorf("service %q: %w", name, stratus.ErrNotFound)
	}
	if r := s.cur.pickLocked(); r != nil {
		r.inflight++
		s.cur.tracker.Begin(m.cfg.Now())
		t := r.target
		m.mu.Unlock()
		return &t, m.releaser(r), nil
	}
	if s.cur.img == nil {
		why := s.lastErr
		m.mu.Unlock()
		return nil, nil, fmt.Errorf("service %q: %s: %w", name, why, stratus.ErrUnavailable)
	}
	if n := len(s.waiters); n >= m.cfg.QueueSize {
		m.mu.Unlock()
		return nil, nil, fmt.Errorf("service %q: %d requests wait already: %w", name, n, stratus.ErrCapacity)
	}
	w := &waiter{ch: make(chan grant, 1)}
	s.waiters = append(s.waiters, w)
	// Scale from zero, or past busy replicas, without waiting for a tick.
	if s.cur.liveLocked() == 0 || s.cur.allBusyLocked() {
		s.cur.desired = max(s.cur.desired, s.cur.liveLocked()+1)
		s.cur.desired = min(s.cur.desired, s.cur.rev.Config.MaxScale)
		m.reconcileLocked(s.cur)
	}
	m.mu.Unlock()

	t := time.NewTimer(m.cfg.ReadyTimeout)
	defer t.Stop()
	var why error
	select {
	case g, ok := <-w.ch:
		if !ok {
			return nil, nil, fmt.Errorf("service %q: %w", name, stratus.ErrNotFound)
		}
		return &g.t, m.releaser(g.r), nil
	case <-t.C:
		why = fmt.Errorf("service %q: no replica free within %s: %w", name, m.cfg.ReadyTimeout, stratus.ErrUnavailable)
	case <-ctx.Done():
		why = ctx.Err()
	}
	m.mu.Lock()
	if i := slices.Index(s.waiters, w); i >= 0 {
		s.waiters = slices.Delete(s.waiters, i, i+1)
		m.mu.Unlock()
		return nil, nil, why
	}
	m.mu.Unlock()
	// Granted meanwhile: give the slot back.
	if g, ok := <-w.ch; ok {
		m.releaser(g.r)()
	}
	return nil, nil, why
}

func (m *Manager) releaser(r *replica) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			r.inflight--
			r.set.tracker.End(m.cfg.Now())
			if r.state == stateReady && !r.set.retired {
				m.grantLocked(r.set.svc)
			}
			if r.inflight == 0 && r.state != stateReady {
				m.notifyLocked() // a draining replica waits for this
			}
			m.mu.Unlock()
		})
	}
}

// grantLocked hands free replica slots of s's serving revision to waiting
// requests, oldest first.
func (m *Manager) grantLocked(s *service) {
	for len(s.waiters) > 0 {
		r := s.cur.pickLocked()
		if r == nil {
			return
		}
		w := s.waiters[0]
		s.waiters = s.waiters[1:]
		r.inflight++
		s.cur.tracker.Begin(m.cfg.Now())
		w.ch <- grant{r, r.target}
	}
}

// pickLocked returns the ready replica with the fewest requests in flight
// that has room for one more, or nil.
// Ties go round-robin, so that idle replicas share sequential requests.
func (set *revSet) pickLocked() *replica {
	var best *replica
	limit := set.rev.Config.Concurrency
	n := len(set.replicas)
	for i := range n {
		r := set.replicas[(set.next+i)%n]
		if r.state != stateReady || (limit > 0 && r.inflight >= limit) {
			continue
		}
		if best == nil || r.inflight < best.inflight {
			best = r
		}
	}
	set.next++
	return best
}

func (set *revSet) readyLocked() int {
	n := 0
	for _, r := range set.replicas {
		if r.state == stateReady {
			n++
		}
	}
	return n
}

// liveLocked counts the replicas that are not stopping.
func (set *revSet) liveLocked() int {
	n := 0
	for _, r := range set.replicas {
		if r.state != stateStopping {
			n++
		}
	}
	return n
}

// allBusyLocked: every live replica is ready and at its limit.
func (set *revSet) allBusyLocked() bool {
	limit := set.rev.Config.Concurrency
	if limit == 0 {
		return false
	}
	for _, r := range set.replicas {
		if r.state != stateStopping && (r.state != stateReady || r.inflight < limit) {
			return false
		}
	}
	return true
}

// reconcileLocked starts or stops replicas of set toward set.desired.
// Idle replicas are stopped first, then those with the fewest requests.
func (m *Manager) reconcileLocked(set *revSet) {
	if set.img == nil || m.stopping {
		return
	}
	live := set.liveLocked()
	for ; live < set.desired && m.total < m.cfg.MaxReplicas; live++ {
		r := &replica{set: set, state: stateStarting, stop: make(chan struct{})}
		set.replicas = append(set.replicas, r)
		m.total++
		m.wg.Add(1)
		go m.run(r)
	}
	for live > set.desired {
		var victim *replica
		for _, r := range set.replicas {
			if r.state == stateStopping {
				continue
			}
			if victim == nil || r.inflight < victim.inflight || (r.inflight == victim.inflight && r.state != stateReady) {
				victim = r
			}
		}
		if victim == nil {
			return
		}
		victim.state = stateStopping
		victim.requestStop()
		live--
	}
}

func (r *replica) requestStop() { r.stopOnce.Do(func() { close(r.stop) }) }

func (m *Manager) notifyLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// Run autoscales every service each tick until ctx ends, then stops every
// replica and waits for them.
func (m *Manager) Run(ctx context.Context) error {
	t := time.NewTicker(m.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			m.stopAll()
			return nil
		case <-t.C:
			m.scale()
		}
	}
}

// scale feeds each serving revision's autoscaler and applies its
// decision; it also stops drained replicas of old revisions.
func (m *Manager) scale() {
	now := m.cfg.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopping {
		return
	}
	for _, s := range m.services {
		set := s.cur
		if set.img == nil {
			continue
		}
		set.scaler.Record(now, set.tracker.Sample(now)+float64(len(s.waiters)))
		d := set.scaler.Decide(now, set.readyLocked())
		desired := d.Desired
		if len(s.waiters) > 0 {
			desired = max(desired, 1)
		}
		if desired != set.desired {
			m.log.Debug("autoscale", "service", s.name, "from", set.desired, "to", desired, "panic", d.Panic)
		}
		set.desired = desired
		m.reconcileLocked(set)
		s.draining = slices.DeleteFunc(s.draining, func(old *revSet) bool { return len(old.replicas) == 0 })
	}
}

func (m *Manager) stopAll() {
	m.mu.Lock()
	m.stopping = true
	m.notifyLocked() // draining replicas shorten their wait
	for _, s := range m.services {
		for _, set := range append(s.draining, s.cur) {
			m.retireLocked(set)
		}
		for _, w := range s.waiters {
			close(w.ch)
		}
		s.waiters = nil
	}
	m.mu.Unlock()
	m.wg.Wait()
}

// Status is the state of a service's replicas.
type Status struct {
	State     string
	Ready     int
	Desired   int
	Live      int
	Draining  int
	Restarts  int
	Waiting   int
	LastError string
	Replicas  []ReplicaStatus
}

// ReplicaStatus describes one replica.
type ReplicaStatus struct {
	ID       string
	Revision int
	// Address is where the replica listens (host:port), once started.
	Address  string
	State    string
	Inflight int
	Restarts int
	LastErr  string
}

// Get returns service name with its status.
func (m *Manager) Get(name string) (stratus.Service, Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.services[name]
	if !ok {
		return stratus.Service{}, Status{}, fmt.Errorf("service %q: %w", name, stratus.ErrNotFound)
	}
	return s.svc, m.statusLocked(s), nil
}

// List returns every service with its status, by name.
func (m *Manager) List() ([]stratus.Service, []Status) {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := make([]string, 0, len(m.services))
	for n := range m.services {
		names = append(names, n)
	}
	slices.Sort(names)
	svcs := make([]stratus.Service, len(names))
	sts := make([]Status, len(names))
	for i, n := range names {
		svcs[i], sts[i] = m.services[n].svc, m.statusLocked(m.services[n])
	}
	return svcs, sts
}

func (m *Manager) statusLocked(s *service) Status {
	st := Status{Desired: s.cur.desired, Waiting: len(s.waiters), LastError: s.lastErr}
	crash := false
	for _, set := range append([]*revSet{s.cur}, s.draining...) {
		for _, r := range set.replicas {
			if set == s.cur {
				switch r.state {
				case stateReady:
					st.Ready++
				case stateBackoff:
					if r.restarts >= crashLoopRestarts {
						crash = true
					}
				}
				if r.state != stateStopping {
					st.Live++
				}
				st.Restarts += r.restarts
				if r.lastErr != "" {
					st.LastError = r.lastErr
				}
			} else {
				st.Draining++
			}
			addr := ""
			if r.target.URL != nil {
				addr = r.target.URL.Host
			}
			st.Replicas = append(st.Replicas, ReplicaStatus{
				ID: r.id, Revision: set.rev.Number, Address: addr, State: r.state, Inflight: r.inflight,
				Restarts: r.restarts, LastErr: r.lastErr,
			})
		}
	}
	switch {
	case crash:
		st.State = StateCrashLoop
	case st.Ready > 0 && st.Ready >= st.Desired:
		st.State = StateReady
	case st.Live == 0 && st.Desired == 0:
		st.State = StateScaledToZero
	default:
		st.State = StateStarting
	}
	return st
}

func newID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// freePort asks the kernel for a free loopback port, for drivers whose
// sandboxes share the host's network.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func hostPort(a netip.Addr, port int) string {
	return net.JoinHostPort(a.String(), strconv.Itoa(port))
}
