package services

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/stratus-run/stratus"
)

// Services on several servers sharing one store. A server runs the
// replicas of the services it owns (Config.Owns); it keeps the others
// as remote: their revisions' sets have no image and the reason
// whyRemote, so that Auth, List and Get work from what is stored and
// Acquire fails with stratus.ErrUnavailable (the request belongs to the
// owner) unless the server owns the service by then. Reload and
// ReloadAll bring memory to what the store holds and to who owns what;
// followOwners, each tick of Run, stops at once the replicas of a
// service this server lost, and reloads on a goroutine (an adoption) one
// it has come to own; a request for such a service that comes before
// the tick starts that adoption itself and waits for it (see adopt).

// StateRemote is the state of a service whose replicas another server
// runs (Status.Node names it when known).
const StateRemote = "Remote"

// whyRemote is why a remote service's revisions run no replica here.
const whyRemote = "the service runs on another server"

// owns reports whether this server runs service name's replicas. The
// caller does not hold m.mu.
func (m *Manager) owns(name string) bool { return m.cfg.Owns == nil || m.cfg.Owns(name) }

// buildSets makes the sets of the revisions that svc's traffic reaches,
// for service s: when owned, each with its image resolved and its
// minimum replicas desired (an image that cannot be resolved gives the
// set its reason, returned as lastErr, and no replicas); else without
// image, their reason whyRemote. keep holds sets to use as they are, by
// revision number. The images it resolves are in use until the caller
// calls done (once the sets are installed). It returns svc's latest
// revision. The caller does not hold m.mu.
func (m *Manager) buildSets(ctx context.Context, s *service, svc stratus.Service, owned bool, keep map[int]*revSet) (latest *stratus.Revision, sets map[int]*revSet, lastErr string, done func(), err error) {
	latest = &stratus.Revision{Service: svc.Name, Number: svc.Revision, Config: svc.Config, Digest: svc.Digest, CreatedAt: svc.UpdatedAt}
	sets = make(map[int]*revSet)
	var digests []string
	done = func() {
		m.mu.Lock()
		for _, d := range digests {
			if m.pending[d]--; m.pending[d] == 0 {
				delete(m.pending, d)
			}
		}
		m.mu.Unlock()
	}
	for _, n := range reached(svc.Traffic, latest.Number) {
		if set := keep[n]; set != nil {
			sets[n] = set
			continue
		}
		rev := latest
		if n != latest.Number {
			if rev, err = m.cfg.Store.GetRevision(ctx, svc.Name, n); err != nil {
				return nil, nil, "", done, err
			}
		}
		set := m.newSet(s, rev, nil)
		sets[n] = set
		if !owned {
			set.why = whyRemote
			continue
		}
		if why := m.notHere(rev.Config); why != "" {
			set.why = fmt.Sprintf("revision %s: %s", rev.Name(), why)
			lastErr = set.why
			continue
		}
		m.mu.Lock()
		m.pending[rev.Digest]++
		m.mu.Unlock()
		digests = append(digests, rev.Digest)
		img, err := m.resolve(ctx, rev.Digest)
		if err != nil {
			set.why = fmt.Sprintf("revision %s: image %s: %v", rev.Name(), rev.Config.Image, err)
			lastErr = set.why
			m.log.Warn("service image unavailable", "service", svc.Name, "revision", rev.Name(), "err", err)
			continue
		}
		set.img = img
		set.desired = rev.Config.MinScale
	}
	return latest, sets, lastErr, done, nil
}

// Reload reads service name from the store and makes the Manager agree
// with it and with who owns it: a service this server owns runs the
// revisions its traffic reaches (those another server deployed, or that
// it ran before the ownership moved, start their minimum replicas); one
// it does not own, or that is gone, drains and stops its replicas (a
// gone one is forgotten and Config.Removed called). A Reload that finds
// what the Manager has changes nothing. It waits for a deploy, traffic
// change or remove of name in progress. A store error changes nothing.
func (m *Manager) Reload(ctx context.Context, name string) error {
	l := m.deployLock(name)
	l.Lock()
	defer l.Unlock()
	return m.reloadLocked(ctx, name)
}

// ReloadAll is Reload of every stored service and of every one the
// Manager has that the store lost, except those with a deploy, traffic
// change or remove in progress, which the next ReloadAll sees.
func (m *Manager) ReloadAll(ctx context.Context) error {
	list, err := m.cfg.Store.ListServices(ctx)
	if err != nil {
		return fmt.Errorf("reload services: %w", err)
	}
	names := make([]string, 0, len(list))
	for _, svc := range list {
		names = append(names, svc.Name)
	}
	m.mu.Lock()
	for name := range m.services {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	m.mu.Unlock()
	var errs []error
	for _, name := range names {
		l := m.deployLock(name)
		if !l.TryLock() {
			continue
		}
		// Read again under the lock: a deploy may have ended since the
		// list was read.
		errs = append(errs, m.reloadLocked(ctx, name))
		l.Unlock()
	}
	return errors.Join(errs...)
}

// reloadLocked is Reload; the caller holds name's deployLock.
func (m *Manager) reloadLocked(ctx context.Context, name string) error {
	got, err := m.cfg.Store.GetService(ctx, name)
	if errors.Is(err, stratus.ErrNotFound) {
		m.drop(name)
		return nil
	}
	if err != nil {
		return fmt.Errorf("reload service %q: %w", name, err)
	}
	svc := *got
	if len(svc.Traffic) == 0 {
		svc.Traffic = nil
	}
	owned := m.owns(name)

	m.mu.Lock()
	s, known := m.services[name]
	keep := make(map[int]*revSet)
	if known && s.remote == !owned {
		for n, set := range s.sets {
			// A remote service keeps only sets without replicas (a
			// traffic change may have added one that runs).
			if !set.retired && (set.img != nil) == owned {
				keep[n] = set
			}
		}
		same := s.latest.Number == svc.Revision && slices.Equal(s.svc.Traffic, svc.Traffic)
		for _, n := range reached(svc.Traffic, svc.Revision) {
			same = same && keep[n] != nil
		}
		if same {
			s.svc = svc
			m.mu.Unlock()
			return nil
		}
	}
	if !known {
		s = &service{name: name, sets: make(map[int]*revSet)}
	}
	m.mu.Unlock()

	latest, sets, lastErr, done, err := m.buildSets(ctx, s, svc, owned, keep)
	defer done()
	if err != nil {
		return fmt.Errorf("reload service %q: %w", name, err)
	}
	m.mu.Lock()
	if m.stopping {
		m.mu.Unlock()
		return fmt.Errorf("reload service %q: %w", name, errStopping)
	}
	if !known {
		m.services[name] = s
	}
	var added []*revSet
	for n, set := range sets {
		old := s.sets[n]
		if old == set {
			continue
		}
		if old != nil {
			s.draining = append(s.draining, old)
			m.retireLocked(old)
		}
		s.sets[n] = set
		added = append(added, set)
	}
	s.latest, s.svc, s.remote = latest, svc, !owned
	if lastErr != "" {
		s.lastErr = lastErr
	}
	m.rerouteLocked(s, svc.Traffic)
	for _, set := range added {
		m.reconcileLocked(set)
	}
	m.mu.Unlock()
	for _, set := range added {
		m.prepareAhead(set)
	}
	switch {
	case !owned:
		m.log.Info("service runs on another server", "service", name, "revision", latest.Name())
	case !known || len(added) > 0:
		m.log.Info("service runs here", "service", name, "revision", latest.Name())
	}
	return nil
}

// drop forgets service name, which the store no longer has: its
// replicas drain and stop, then Config.Removed is called. The caller
// holds name's deployLock.
func (m *Manager) drop(name string) {
	m.mu.Lock()
	s, ok := m.services[name]
	if ok {
		delete(m.services, name)
		m.endLocked(s, true, fmt.Errorf("service %q: %w", name, stratus.ErrNotFound))
	}
	m.mu.Unlock()
	if ok {
		m.log.Info("service removed on another server", "service", name)
		if m.cfg.Removed != nil {
			m.cfg.Removed(name)
		}
	}
}

// followOwners makes each service follow Config.Owns: one that runs
// here but is no longer owned stops its replicas now (disownLocked);
// one that is owned but runs elsewhere is reloaded on a goroutine of the
// Manager's (adoptLocked). Run calls it every tick.
func (m *Manager) followOwners() {
	if m.cfg.Owns == nil {
		return
	}
	type known struct {
		name         string
		remote, runs bool
	}
	m.mu.Lock()
	list := make([]known, 0, len(m.services))
	for name, s := range m.services {
		list = append(list, known{name, s.remote, s.runsLocked()})
	}
	m.mu.Unlock()
	for _, k := range list {
		owned := m.cfg.Owns(k.name)
		switch {
		case owned && k.remote:
			m.mu.Lock()
			m.adoptLocked(k.name)
			m.mu.Unlock()
		case !owned && k.runs:
			m.mu.Lock()
			s := m.services[k.name]
			lost := s != nil && s.runsLocked()
			if lost {
				m.disownLocked(s)
			}
			m.mu.Unlock()
			if lost {
				m.log.Info("service no longer owned here; its replicas stop", "service", k.name)
			}
		}
	}
}

// runsLocked reports whether s may run replicas here: it is not remote,
// or a deploy or traffic change made here while it was added a revision
// that runs. m.mu is held.
func (s *service) runsLocked() bool {
	if !s.remote {
		return true
	}
	for _, set := range s.sets {
		if set.img != nil {
			return true
		}
	}
	return false
}

// disownLocked makes s remote: the sets of its revisions drain and stop,
// replaced by sets without replicas; the requests waiting for one fail
// with stratus.ErrUnavailable. m.mu is held.
func (m *Manager) disownLocked(s *service) {
	for _, n := range slices.Collect(maps.Keys(s.sets)) {
		old := s.sets[n]
		set := m.newSet(s, old.rev, nil)
		set.why = whyRemote
		s.sets[n] = set
		s.draining = append(s.draining, old)
		m.retireLocked(old)
	}
	s.remote = true
	m.rerouteLocked(s, s.svc.Traffic)
}

// adoption is a reload in progress of a service known as remote that
// this server has come to own: the tick that saw it and the requests
// that found it (see adopt) share it.
type adoption struct {
	done   chan struct{}
	err    error // the reload's; set before done closes
	cancel context.CancelFunc
}

// adoptTimeout bounds an adoption's reload (the store's reads and the
// resolution of the images, which may come from another server).
const adoptTimeout = 5 * time.Minute

// adoptLocked starts the reload of service name on a goroutine of the
// Manager's, unless one runs already, and returns it; nil when Run has
// not started or is stopping. The reload runs under Run's lifetime,
// bounded by adoptTimeout and cut short by Run's end (stopAll), never
// under a request's context: a request that stops waiting leaves it to
// the others. m.mu is held.
func (m *Manager) adoptLocked(name string) *adoption {
	if a := m.adopting[name]; a != nil {
		return a
	}
	if m.stopping || m.life == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(m.life, adoptTimeout)
	a := &adoption{done: make(chan struct{}), cancel: cancel}
	m.adopting[name] = a
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer cancel()
		err := m.Reload(ctx, name)
		m.mu.Lock()
		delete(m.adopting, name)
		a.err = err
		stopping := m.stopping
		m.mu.Unlock()
		close(a.done)
		if err != nil && !stopping {
			m.log.Warn("start a service come to be owned here", "service", name, "err", err)
		}
	}()
	return a
}

// adopt makes service name, known as remote but owned now (its lease
// taken since the last tick, maybe by this very request), run here: it
// starts or joins its adoption (adoptLocked) and waits for its end, at
// most wait and while ctx lasts. A Run that has not started yet is
// waited for too.
func (m *Manager) adopt(ctx context.Context, name string, wait time.Duration) error {
	t := time.NewTimer(wait)
	defer t.Stop()
	timeout := func() error {
		return fmt.Errorf("service %q: not started on this server within %s: %w", name, m.cfg.ReadyTimeout, stratus.ErrUnavailable)
	}
	select {
	case <-m.running:
	case <-t.C:
		return timeout()
	case <-ctx.Done():
		return ctx.Err()
	}
	m.mu.Lock()
	a := m.adoptLocked(name)
	m.mu.Unlock()
	if a == nil {
		return fmt.Errorf("service %q: %w", name, errStopping)
	}
	select {
	case <-a.done:
		if a.err != nil {
			return fmt.Errorf("service %q: start on this server: %w", name, a.err)
		}
		return nil
	case <-t.C:
		return timeout()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// setRemoteTraffic is SetTraffic of a service another server owns: the
// revisions t reaches must exist; the split is stored, for the owner to
// follow. The caller holds name's deployLock.
func (m *Manager) setRemoteTraffic(ctx context.Context, name string, t []stratus.TrafficTarget) (*stratus.Service, error) {
	m.mu.Lock()
	latest := m.services[name].latest.Number
	m.mu.Unlock()
	for _, n := range reached(t, latest) {
		if n == latest {
			continue
		}
		if _, err := m.cfg.Store.GetRevision(ctx, name, n); err != nil {
			return nil, fmt.Errorf("set traffic of service %q: %w", name, err)
		}
	}
	stored, err := m.cfg.Store.SetTraffic(ctx, name, t)
	if err != nil {
		return nil, err
	}
	if err := m.reloadLocked(ctx, name); err != nil {
		m.log.Warn("reload a service after its traffic change", "service", name, "err", err)
	}
	m.log.Info("traffic set; the owner follows it", "service", name, "traffic", fmt.Sprint(t))
	return stored, nil
}

// followBefore brings service name up to the store when it is known as
// remote but owned now (the tick has not seen it yet), so that a deploy
// or traffic change starts from what runs. It reports whether the
// service is remote still. The caller holds name's deployLock.
func (m *Manager) followBefore(ctx context.Context, name string) (remote bool, err error) {
	m.mu.Lock()
	s, ok := m.services[name]
	remote = ok && s.remote
	m.mu.Unlock()
	if !remote || !m.owns(name) {
		return remote, nil
	}
	return false, m.reloadLocked(ctx, name)
}
