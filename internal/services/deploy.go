package services

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/stratus-run/stratus"
)

// notHere says why this server may not run a service of cfg here: its
// replicas run on this machine and its region is not one cfg allows; ""
// when it may.
func (m *Manager) notHere(cfg stratus.ServiceConfig) string {
	if m.cfg.Revisions != nil || stratus.AllowedIn(cfg.Regions, m.cfg.Region) {
		return ""
	}
	return fmt.Sprintf("it may run in regions %s; this server is in region %s and runs replicas on its own machine", strings.Join(cfg.Regions, ", "), m.cfg.Region)
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
// service), starts its initial replicas (see
// stratus.ServiceConfig.InitialScale) and, once they are ready, makes it
// the latest ready revision: the traffic's Latest targets (all of it,
// with no split set) move to it, pinned targets stay, and a revision the
// traffic no longer reaches then drains and stops. A cfg and image equal
// to the latest revision's make no revision: Deploy returns the service
// as it is. A revision that does not become ready fails the deploy with
// the reason (wrapping stratus.ErrInvalid) and changes nothing: the
// previous revisions keep serving. A name a function holds is an error
// wrapping stratus.ErrConflict; the new service's name is claimed before
// its replicas start and freed again if its first revision fails. Deploy
// waits (within ctx) until Run has started.
func (m *Manager) Deploy(ctx context.Context, name string, cfg stratus.ServiceConfig) (_ *stratus.Service, err error) {
	if err := stratus.ValidName(name); err != nil {
		return nil, err
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if why := m.notHere(cfg); why != "" {
		return nil, fmt.Errorf("deploy service %q: %s: %w", name, why, stratus.ErrUnavailable)
	}
	if m.cfg.Revisions == nil && m.cfg.Driver.Name() == "kube" {
		// Services on Kubernetes become Deployments, not pods of the
		// sandbox driver (docs/design/kubernetes.md); not built yet.
		return nil, fmt.Errorf("deploy service %q: services do not run on the kube sandbox driver yet (functions do): %w", name, stratus.ErrUnavailable)
	}
	select {
	case <-m.running:
	case <-ctx.Done():
		return nil, fmt.Errorf("deploy service %q: %w", name, ctx.Err())
	}
	l := m.deployLock(name)
	l.Lock()
	defer l.Unlock()
	// A service owned here but known as remote runs here first.
	if _, err := m.followBefore(ctx, name); err != nil {
		return nil, fmt.Errorf("deploy service %q: %w", name, err)
	}
	// Deploys and removes of name hold its lock: whether it exists
	// cannot change until this deploy ends.
	m.mu.Lock()
	_, existed := m.services[name]
	m.mu.Unlock()
	if err := m.cfg.Store.ClaimServiceName(ctx, name); err != nil {
		return nil, err
	}
	if !existed {
		defer func() {
			if err != nil {
				m.releaseName(ctx, name)
			}
		}()
	}

	img, err := m.resolve(ctx, cfg.Image)
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
	// (An image the server does not hold runs as given: its nodes know
	// its entrypoint.)
	if a := argv(cfg, img); (img.RootFS != "" || m.cfg.Revisions == nil) && (len(a) == 0 || a[0] == "") {
		return nil, fmt.Errorf("deploy service %q: image %s has no entrypoint or command; give one with --command: %w", name, cfg.Image, stratus.ErrInvalid)
	}
	if existed {
		m.mu.Lock()
		s := m.services[name]
		// (A remote service's sets have no image: its owner runs them.)
		same := sameRevision(s.latest, cfg, img.Digest) && (s.remote || s.sets[s.latest.Number] == nil || s.sets[s.latest.Number].img != nil)
		svc := s.svc
		m.mu.Unlock()
		if same {
			m.log.Info("deploy changes nothing", "service", name, "revision", s.latest.Name())
			return &svc, nil
		}
	}
	n, err := m.cfg.Store.NextRevision(ctx, name)
	if err != nil {
		return nil, err
	}
	rev := &stratus.Revision{Service: name, Number: n, Config: cfg, Digest: img.Digest, CreatedAt: m.cfg.Now()}

	m.mu.Lock()
	if m.stopping {
		m.mu.Unlock()
		return nil, fmt.Errorf("deploy service %q: %w", name, errStopping)
	}
	s := m.services[name]
	if !existed {
		s = &service{name: name, sets: make(map[int]*revSet)}
	}
	set := m.newSet(s, rev, img)
	var initial int
	switch {
	case cfg.InitialScale != nil:
		initial = max(*cfg.InitialScale, cfg.MinScale)
		set.hold = min(initial, cfg.MaxScale)
	case existed && s.sets[s.latest.Number] != nil:
		initial = max(cfg.MinScale, 1, s.sets[s.latest.Number].readyLocked())
	default:
		initial = max(cfg.MinScale, 1)
	}
	set.desired = min(initial, cfg.MaxScale)
	m.reconcileLocked(set)
	m.deploying[set] = true
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.deploying, set)
		m.mu.Unlock()
	}()

	err = m.waitReady(ctx, set)
	m.mu.Lock()
	if set.retired { // Run's end stopped its replicas meanwhile
		err = errStopping
	}
	m.mu.Unlock()
	if errors.Is(err, errStopping) {
		return nil, fmt.Errorf("deploy service %q: %w", name, err)
	}
	if err != nil {
		m.retire(set)
		m.mu.Lock()
		if existed {
			s.lastErr = fmt.Sprintf("revision %s failed: %v", rev.Name(), err)
		}
		m.mu.Unlock()
		// The revision's fault, unless the backend's API was not there or
		// the caller went away.
		kind := stratus.ErrInvalid
		if errors.Is(err, stratus.ErrUnavailable) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			kind = stratus.ErrUnavailable
		}
		return nil, fmt.Errorf("deploy service %q: revision %s did not become ready: %v: %w", name, rev.Name(), err, kind)
	}
	stored, err := m.cfg.Store.PutRevision(ctx, rev)
	if err != nil {
		m.retire(set)
		return nil, err
	}
	m.mu.Lock()
	if set.hold > 0 {
		set.holdUntil = m.cfg.Now().Add(set.scaler.Spec().StableWindow)
	}
	s.latest, s.svc, s.lastErr = rev, *stored, ""
	// It runs here now; if another server owns it, Run's next tick
	// stops it here (followOwners).
	s.remote = false
	m.services[name] = s
	// The traffic decides which sets stay: the new one unless no target
	// reaches it, the previous latest's if a pinned target does.
	s.sets[n] = set
	m.rerouteLocked(s, stored.Traffic)
	serves := !set.retired
	m.mu.Unlock()
	if serves {
		m.prepareAhead(set)
		m.log.Info("revision serves", "service", name, "revision", rev.Name(), "image", cfg.Image)
	} else {
		m.log.Info("revision ready; the traffic does not reach it", "service", name, "revision", rev.Name(), "image", cfg.Image)
	}
	return stored, nil
}

// sameRevision reports whether a deploy of cfg (its defaults filled in)
// running the image with digest d would make a revision equal to latest.
func sameRevision(latest *stratus.Revision, cfg stratus.ServiceConfig, d string) bool {
	if latest == nil || latest.Digest != d {
		return false
	}
	// As stored: nil and empty lists and maps are the same.
	a, err1 := json.Marshal(latest.Config)
	b, err2 := json.Marshal(cfg)
	return err1 == nil && err2 == nil && bytes.Equal(a, b)
}

// errStopping fails a deploy that Run's end stopped.
var errStopping = fmt.Errorf("the server is stopping: %w", stratus.ErrUnavailable)

// releaseName frees the name a failed first deploy claimed, even when the
// deploy failed because its ctx ended.
func (m *Manager) releaseName(ctx context.Context, name string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.DriverTimeout)
	defer cancel()
	if err := m.cfg.Store.ReleaseServiceName(ctx, name); err != nil {
		m.log.Warn("free the name of a failed deploy; freed at the next start", "service", name, "err", err)
	}
}

// waitReady waits until every replica set.desired asked for is ready, or
// fails with the first replica's reason. On a backend, a refusal of the
// revision's objects (an error wrapping stratus.ErrInvalid) fails it at
// once; other errors of the backend's API are retried meanwhile (see
// applyBackend), and the deadline's error names the last one (wrapping
// its kind).
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
			case (r.restarts > 0 || r.failed) && failed == "" && r.lastErr != "":
				failed = r.lastErr
			}
		}
		var backendErr error
		if b := set.backend; b != nil && b.applied < 0 {
			backendErr = b.err
		}
		changed, desired := m.changed, set.desired
		m.mu.Unlock()
		if failed != "" {
			return errors.New(failed)
		}
		if errors.Is(backendErr, stratus.ErrInvalid) {
			return backendErr
		}
		if ready >= desired {
			return nil
		}
		select {
		case <-changed:
		case <-deadline.C:
			if backendErr != nil {
				return fmt.Errorf("no replica was ready within %s; the last error: %w", m.cfg.ReadyTimeout, backendErr)
			}
			return fmt.Errorf("no replica was ready within %s", m.cfg.ReadyTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// retire stops every replica of set now (a revision that never served);
// on a backend its objects go.
func (m *Manager) retire(set *revSet) {
	m.mu.Lock()
	m.removeLocked(set)
	m.mu.Unlock()
}

// removeLocked is retireLocked of a revision that is done with for good
// (its deploy failed, the traffic left it, its service was removed): on
// a backend, its objects are deleted once its requests are done.
func (m *Manager) removeLocked(set *revSet) {
	if set.backend != nil && set.img != nil {
		set.backend.remove = true
	}
	m.retireLocked(set)
}

// retireLocked marks set retired and asks its replicas to stop (each
// drains its requests first) and its prepared sandbox, if any, to stop in
// a goroutine of the Manager's.
func (m *Manager) retireLocked(set *revSet) {
	set.retired = true
	set.desired = 0
	for _, r := range set.replicas {
		r.requestStop()
	}
	if set.backend != nil {
		for _, r := range set.replicas {
			r.state = stateStopping
		}
		m.kickLocked(set)
	}
	if p := set.prepared; p != nil {
		set.prepared = nil
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.stopPrepared(set, p)
		}()
	}
}

// endLocked retires every revision of s (for good if removed: see
// removeLocked) and fails the requests waiting for one of its replicas
// with err.
func (m *Manager) endLocked(s *service, removed bool, err error) {
	retire := m.retireLocked
	if removed {
		retire = m.removeLocked
	}
	for _, set := range s.sets {
		retire(set)
	}
	for _, set := range s.draining {
		retire(set)
	}
	for _, w := range s.waiters {
		w.err = err
		close(w.ch)
	}
	s.waiters = nil
}

// Remove deletes service name: its replicas stop (in-flight requests
// finish first), its revisions and logs are deleted, and then
// Config.Removed is called. An unknown name is an error wrapping
// stratus.ErrNotFound.
func (m *Manager) Remove(ctx context.Context, name string) error {
	l := m.deployLock(name)
	l.Lock()
	defer l.Unlock()
	if err := m.cfg.Store.DeleteService(ctx, name); err != nil {
		return err
	}
	m.mu.Lock()
	if s, ok := m.services[name]; ok {
		delete(m.services, name)
		m.endLocked(s, true, fmt.Errorf("service %q: %w", name, stratus.ErrNotFound))
	}
	m.mu.Unlock()
	// Under the name's lock: no deploy of it starts before the hook ends.
	if m.cfg.Removed != nil {
		m.cfg.Removed(name)
	}
	return nil
}
