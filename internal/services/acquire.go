package services

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/stratus-run/stratus"
)

// Acquire gives a request a ready replica of service name, waiting
// (bounded) while replicas start or are all busy. release must be called
// once the request is done. An unknown service, or one removed while the
// request waits, is an error wrapping stratus.ErrNotFound; a full queue
// stratus.ErrCapacity; no replica free within ReadyTimeout, or Run's ctx
// ended, stratus.ErrUnavailable.
func (m *Manager) Acquire(ctx context.Context, name string) (*Target, func(), error) {
	m.mu.Lock()
	s, ok := m.services[name]
	if !ok {
		m.mu.Unlock()
		return nil, nil, fmt.Errorf("service %q: %w", name, stratus.ErrNotFound)
	}
	if r := s.cur.pickLocked(); r != nil {
		m.beginLocked(r)
		t := r.target
		m.mu.Unlock()
		return &t, m.releaser(r), nil
	}
	if s.cur.img == nil {
		why := s.lastErr
		m.mu.Unlock()
		return nil, nil, fmt.Errorf("service %q: %s: %w", name, why, stratus.ErrUnavailable)
	}
	if m.stopping { // no replica starts any more
		m.mu.Unlock()
		return nil, nil, fmt.Errorf("service %q: %w", name, errStopping)
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
		if !ok { // Remove or Run's end
			return nil, nil, w.err
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
		m.beginLocked(r)
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
