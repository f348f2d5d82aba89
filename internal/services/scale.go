package services

import (
	"fmt"
	"slices"
	"time"
)

// reconcileLocked starts or stops replicas of set toward set.desired.
// Idle replicas are stopped first, then those with the fewest requests.
// Before Run starts, it starts nothing: Run reconciles every service
// then.
func (m *Manager) reconcileLocked(set *revSet) {
	if set.img == nil || m.stopping || m.life == nil {
		return
	}
	if set.backend != nil {
		m.kickLocked(set) // the backend starts and stops its replicas
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

// stopRequested reports whether r was asked to stop.
func (r *replica) stopRequested() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

func (m *Manager) notifyLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// scale feeds the autoscaler of each revision traffic reaches and applies its
// decision; it also stops drained replicas of old revisions. It logs the
// changes once m.mu is released.
func (m *Manager) scale() {
	for _, c := range m.scaleAll(m.cfg.Now()) {
		m.log.Debug("autoscale", "revision", c.revision, "from", c.from, "to", c.to, "panic", c.panic)
	}
}

// scaleChange is a change of a revision's desired replicas.
type scaleChange struct {
	revision string
	from, to int
	panic    bool
}

// scaleAll does scale's work under m.mu and returns the changes.
func (m *Manager) scaleAll(now time.Time) (changes []scaleChange) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopping {
		return nil
	}
	for _, s := range m.services {
		for _, set := range s.sets {
			if set.img == nil {
				continue
			}
			set.scaler.Record(now, set.tracker.Sample(now)+float64(set.waiting))
			d := set.scaler.Decide(now, set.readyLocked())
			set.decision = d
			desired := d.Desired
			if set.waiting > 0 {
				desired = max(desired, 1)
			}
			if set.hold > 0 && (set.holdUntil.IsZero() || now.Before(set.holdUntil)) {
				desired = max(desired, set.hold)
			}
			if desired != set.desired {
				changes = append(changes, scaleChange{set.rev.Name(), set.desired, desired, d.Panic})
			}
			set.desired = desired
			m.reconcileLocked(set)
		}
		s.draining = slices.DeleteFunc(s.draining, func(old *revSet) bool { return len(old.replicas) == 0 })
	}
	return changes
}

// stopAll stops every replica, in-flight requests draining for at most
// StopGrace, cuts short the adoptions in progress, and waits for every
// goroutine of the Manager.
func (m *Manager) stopAll() {
	m.mu.Lock()
	m.stopping = true
	close(m.halted)
	m.notifyLocked() // draining replicas shorten their wait
	for name, s := range m.services {
		m.endLocked(s, false, fmt.Errorf("service %q: %w", name, errStopping))
	}
	for set := range m.deploying {
		m.retireLocked(set)
	}
	for _, a := range m.adopting {
		a.cancel()
	}
	m.mu.Unlock()
	m.wg.Wait()
}
