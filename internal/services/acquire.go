package services

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stratus-run/stratus"
)

// ErrTokenRequired is a request admitted without the server's token
// (WithoutToken) that its route took to a revision not deployed with
// auth none: the split or tag changed after it was admitted.
var ErrTokenRequired = errors.New("the revision takes only requests with the server's token")

type withoutTokenKey struct{}

// WithoutToken returns ctx marked as a request's that came without the
// server's token, admitted because its route's revisions were all
// deployed with auth none: Acquire then gives it only a replica of such a
// revision.
func WithoutToken(ctx context.Context) context.Context {
	return context.WithValue(ctx, withoutTokenKey{}, true)
}

// NoToken reports whether ctx is marked WithoutToken.
func NoToken(ctx context.Context) bool {
	v, _ := ctx.Value(withoutTokenKey{}).(bool)
	return v
}

// tokenRequired is the error of a request without the server's
// token for set of s, nil if set takes it (auth none). m.mu is held.
func tokenRequired(s *service, set *revSet) error {
	if set.rev.Config.Auth == stratus.AuthNone {
		return nil
	}
	return fmt.Errorf("service %q: revision %s: %w", s.name, set.rev.Name(), ErrTokenRequired)
}

// Acquire gives a request to route a ready replica, waiting (bounded)
// while replicas start or are all busy. route is a service's name, whose
// split chooses the revision (see SetTraffic), or NAME@TAG for the
// revision tag reaches. release must be called once the request is done.
// An unknown service or tag, or a service removed while the request
// waits, is an error wrapping stratus.ErrNotFound; a full queue
// stratus.ErrCapacity; no replica free within ReadyTimeout, or Run's ctx
// ended, stratus.ErrUnavailable. A request of ctx marked WithoutToken
// whose revision (chosen now, or after a traffic change while it waits)
// was not deployed with auth none gets ErrTokenRequired.
//
// A service known as remote that this server owns now (Config.Owns: its
// lease was taken since the last tick or reload, maybe for this very
// request) is first started here as Reload would, the request waiting
// for it within ctx and ReadyTimeout; concurrent requests share that
// start (see adopt).
func (m *Manager) Acquire(ctx context.Context, route string) (*Target, func(), error) {
	start := time.Now()
	t, release, remote, err := m.acquire(ctx, route, m.cfg.ReadyTimeout)
	if !remote {
		return t, release, err
	}
	name, _, _ := strings.Cut(route, "@")
	if !m.owns(name) {
		return nil, nil, err
	}
	if err := m.adopt(ctx, name, m.cfg.ReadyTimeout); err != nil {
		return nil, nil, err
	}
	t, release, _, err = m.acquire(ctx, route, m.cfg.ReadyTimeout-time.Since(start))
	return t, release, err
}

// acquire is Acquire waiting at most wait for a replica, without the
// start of a service come to be owned here: remote reports that the
// request failed because the service is remote here.
func (m *Manager) acquire(ctx context.Context, route string, wait time.Duration) (_ *Target, _ func(), remote bool, _ error) {
	public := NoToken(ctx)
	name, tag, tagged := strings.Cut(route, "@")
	m.mu.Lock()
	s, ok := m.services[name]
	if !ok {
		m.mu.Unlock()
		return nil, nil, false, fmt.Errorf("service %q: %w", name, stratus.ErrNotFound)
	}
	set := s.route.target(tag, tagged)
	if set == nil {
		m.mu.Unlock()
		return nil, nil, false, fmt.Errorf("service %q has no tag %q: %w", name, tag, stratus.ErrNotFound)
	}
	if public {
		if err := tokenRequired(s, set); err != nil {
			m.mu.Unlock()
			return nil, nil, false, err
		}
	}
	if r := set.pickLocked(); r != nil {
		m.beginLocked(r)
		t := r.target
		m.mu.Unlock()
		return &t, m.releaser(r), false, nil
	}
	if set.img == nil {
		why, remote := set.why, s.remote
		m.mu.Unlock()
		return nil, nil, remote, fmt.Errorf("service %q: %s: %w", name, why, stratus.ErrUnavailable)
	}
	if m.stopping { // no replica starts any more
		m.mu.Unlock()
		return nil, nil, false, fmt.Errorf("service %q: %w", name, errStopping)
	}
	if n := len(s.waiters); n >= m.cfg.QueueSize {
		m.mu.Unlock()
		return nil, nil, false, fmt.Errorf("service %q: %d requests wait already: %w", name, n, stratus.ErrCapacity)
	}
	w := &waiter{ch: make(chan grant, 1), set: set, tag: tag, tagged: tagged, public: public}
	s.waiters = append(s.waiters, w)
	set.waiting++
	// Scale from zero, or past busy replicas, without waiting for a tick.
	m.wakeLocked(set)
	m.mu.Unlock()

	t := time.NewTimer(wait)
	defer t.Stop()
	var why error
	select {
	case g, ok := <-w.ch:
		if !ok { // Remove, Run's end, or its tag removed
			return nil, nil, false, w.err
		}
		return &g.t, m.releaser(g.r), false, nil
	case <-t.C:
		why = fmt.Errorf("service %q: no replica free within %s: %w", name, m.cfg.ReadyTimeout, stratus.ErrUnavailable)
	case <-ctx.Done():
		why = ctx.Err()
	}
	m.mu.Lock()
	if i := slices.Index(s.waiters, w); i >= 0 {
		s.waiters = slices.Delete(s.waiters, i, i+1)
		w.set.waiting--
		m.mu.Unlock()
		return nil, nil, false, why
	}
	m.mu.Unlock()
	// Granted meanwhile: give the slot back.
	if g, ok := <-w.ch; ok {
		m.releaser(g.r)()
	}
	return nil, nil, false, why
}

func (m *Manager) releaser(r *replica) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			r.inflight--
			r.set.svc.inflight--
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

// beginLocked gives a request a slot of r: it counts it in flight, for
// the autoscaler and for usage.
func (m *Manager) beginLocked(r *replica) {
	now := m.cfg.Now()
	s := r.set.svc
	r.inflight++
	s.inflight++
	r.set.tracker.Begin(now)
	if r.run != nil {
		r.run.requests++
	}
	if m.meteringLocked() {
		a := m.minuteLocked(s, now)
		a.MaxInFlight = max(a.MaxInFlight, s.inflight)
	}
}

// grantLocked hands free replica slots to the requests waiting for one
// of s's revisions, oldest first: a request whose revision has no slot
// free lets younger ones of other revisions pass.
func (m *Manager) grantLocked(s *service) {
	if len(s.waiters) == 0 {
		return
	}
	var full []*revSet // revisions without a free slot
	kept := s.waiters[:0]
	for i, w := range s.waiters {
		if len(full) >= len(s.sets) {
			kept = append(kept, s.waiters[i:]...)
			break
		}
		if slices.Contains(full, w.set) {
			kept = append(kept, w)
			continue
		}
		r := w.set.pickLocked()
		if r == nil {
			full = append(full, w.set)
			kept = append(kept, w)
			continue
		}
		w.set.waiting--
		m.beginLocked(r)
		w.ch <- grant{r, r.target}
	}
	clear(s.waiters[len(kept):])
	s.waiters = kept
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
