package services

import "slices"

// reconcileLocked starts or stops replicas of set toward set.desired.
// Idle replicas are stopped first, then those with the fewest requests.
// Before Run starts, it starts nothing: Run reconciles every service
// then.
func (m *Manager) reconcileLocked(set *revSet) {
	if set.img == nil || m.stopping || m.life == nil {
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

// stopAll stops every replica, in-flight requests draining for at most
// StopGrace, and waits for every goroutine of the Manager.
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
	for set := range m.deploying {
		set.retired = true
		m.retireLocked(set)
	}
	m.mu.Unlock()
	m.wg.Wait()
}
