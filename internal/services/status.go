package services

import (
	"fmt"
	"maps"
	"slices"

	"github.com/stratus-run/stratus"
)

// Status is the state of a service's replicas (State StateRemote when
// another server runs them). Ready, Desired, Live and
// Restarts count those of the revisions the traffic reaches; Draining
// those of the revisions it left.
type Status struct {
	State     string
	Ready     int
	Desired   int
	Live      int
	Draining  int
	Restarts  int
	Waiting   int
	LastError string
	// Node names the server that owns the service, when Config.Owner is
	// set and knows it.
	Node string
	// Routes is the traffic resolved: each target of the split as set,
	// or, with none set, the latest revision at 100 percent.
	Routes   []Route
	Replicas []ReplicaStatus
}

// Route is one traffic target, resolved: Target.Revision is the
// revision it reaches now (the latest ready one for a Latest target),
// whose ready replicas Ready counts.
type Route struct {
	Target stratus.TrafficTarget
	Ready  int
}

// ReplicaStatus describes one replica.
type ReplicaStatus struct {
	ID       string
	Revision int
	// Address is where the replica listens (host:port), once started.
	Address string
	// Node is the node it runs on, on a backend that places replicas
	// (Config.Revisions: a pod's node).
	Node     string
	State    string
	Inflight int
	Restarts int
	LastErr  string
}

// Get returns service name with its status.
func (m *Manager) Get(name string) (stratus.Service, Status, error) {
	m.mu.Lock()
	s, ok := m.services[name]
	if !ok {
		m.mu.Unlock()
		return stratus.Service{}, Status{}, fmt.Errorf("service %q: %w", name, stratus.ErrNotFound)
	}
	svc, st := s.svc, m.statusLocked(s)
	m.mu.Unlock()
	st.Node = m.owner(name)
	return svc, st, nil
}

// List returns every service with its status, by name.
func (m *Manager) List() ([]stratus.Service, []Status) {
	m.mu.Lock()
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
	m.mu.Unlock()
	for i, n := range names {
		sts[i].Node = m.owner(n)
	}
	return svcs, sts
}

// owner is Config.Owner of name, or "". The caller does not hold m.mu.
func (m *Manager) owner(name string) string {
	if m.cfg.Owner == nil {
		return ""
	}
	return m.cfg.Owner(name)
}

func (m *Manager) statusLocked(s *service) Status {
	st := Status{Waiting: len(s.waiters), LastError: s.lastErr}
	crash := false
	sets := slices.SortedFunc(maps.Values(s.sets), func(a, b *revSet) int { return b.rev.Number - a.rev.Number })
	for _, set := range sets {
		st.Desired += set.desired
	}
	for _, set := range append(sets, s.draining...) {
		serving := !set.retired
		for _, r := range set.replicas {
			if serving {
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
				ID: r.id, Revision: set.rev.Number, Address: addr, Node: r.node, State: r.state, Inflight: r.inflight,
				Restarts: r.restarts, LastErr: r.lastErr,
			})
		}
	}
	targets := s.svc.Traffic
	if len(targets) == 0 {
		targets = []stratus.TrafficTarget{{Latest: true, Percent: 100}}
	}
	for _, t := range targets {
		t.Revision = number(t, s.latest.Number)
		rt := Route{Target: t}
		if set := s.sets[t.Revision]; set != nil {
			rt.Ready = set.readyLocked()
		}
		st.Routes = append(st.Routes, rt)
	}
	switch {
	case s.remote:
		st.State = StateRemote
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
