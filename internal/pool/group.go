package pool

import "github.com/stratus-run/stratus"

// A function's pools: its head's and its published versions', which
// share its concurrency, and their figures.

// fnGroup is the pools of one function: its head's ($LATEST) and those
// of its published versions, which share the head's max concurrency
// and its throttle (stratus.FunctionConfig.Throttled).
type fnGroup struct {
	name string
	head *fnPool // nil until the head is deployed
	// live counts the instances of every pool of the function.
	live  int
	pools map[*fnPool]struct{}

	// The function's counters never go down while it exists, though a
	// published version's pool goes (RemoveVersion): seen holds every
	// pool statsLocked has counted, and once one is no longer in pools
	// its final counters move to gone. A pool made and removed between
	// two calls of statsLocked was never reported, and is not counted.
	seen map[*fnPool]struct{}
	gone counters
}

// counters are the figures of a pool that only grow.
type counters struct {
	throttles, coldStarts, prepareHits, prepareMisses int64
}

func (c *counters) add(p *fnPool) {
	c.throttles += p.throttles
	c.coldStarts += p.coldStarts
	c.prepareHits += p.prepareHits
	c.prepareMisses += p.prepareMisses
}

// maxConc is the cap of the group's live instances: its head's max
// concurrency (p's when the head is not deployed). m.mu is held.
func (g *fnGroup) maxConc(p *fnPool) int {
	if g.head != nil {
		return g.head.cur.Config.MaxConcurrency
	}
	return p.cur.Config.MaxConcurrency
}

// throttled reports whether the function refuses every invocation.
// m.mu is held.
func (g *fnGroup) throttled() bool { return g.head != nil && g.head.cur.Config.Throttled }

// Stats reports the instance counts and counters of the pool with key
// key: a function's head (its name) or a published version ("NAME:N");
// zero for a pool the Manager does not have. The counters count from the
// pool's first deploy since the server started (Remove forgets them).
func (m *Manager) Stats(key string) stratus.InstanceStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pools[key]
	if p == nil {
		return stratus.InstanceStats{}
	}
	return p.statsLocked()
}

// AllStats reports Stats of every pool the Manager has, by key, in one
// pass under its lock.
func (m *Manager) AllStats() map[string]stratus.InstanceStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	all := make(map[string]stratus.InstanceStats, len(m.pools))
	for key, p := range m.pools {
		all[key] = p.statsLocked()
	}
	return all
}

// FunctionStats reports the Stats of every version of function name
// summed: the function's figures, as Lambda's are per function.
func (m *Manager) FunctionStats(name string) stratus.InstanceStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	g := m.fns[name]
	if g == nil {
		return stratus.InstanceStats{}
	}
	return g.statsLocked()
}

// AllFunctionStats reports FunctionStats of every function the Manager
// has, by name, in one pass under its lock (for a metrics scrape).
func (m *Manager) AllFunctionStats() map[string]stratus.InstanceStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	all := make(map[string]stratus.InstanceStats, len(m.fns))
	for name, g := range m.fns {
		all[name] = g.statsLocked()
	}
	return all
}

// statsLocked sums the stats of g's pools; its counters also hold those
// of the pools removed since statsLocked counted them, so that they
// never go down (a removed pool's counters are final: it admits no
// invocation). m.mu is held.
func (g *fnGroup) statsLocked() stratus.InstanceStats {
	if g.seen == nil {
		g.seen = make(map[*fnPool]struct{}, len(g.pools))
	}
	for p := range g.seen {
		if _, ok := g.pools[p]; !ok {
			g.gone.add(p)
			delete(g.seen, p)
		}
	}
	var s stratus.InstanceStats
	for p := range g.pools {
		g.seen[p] = struct{}{}
		x := p.statsLocked()
		s.Live += x.Live
		s.Idle += x.Idle
		s.Busy += x.Busy
		s.Starting += x.Starting
		s.Waiting += x.Waiting
		s.Prepared += x.Prepared
		s.Throttles += x.Throttles
		s.ColdStarts += x.ColdStarts
		s.PrepareHits += x.PrepareHits
		s.PrepareMisses += x.PrepareMisses
	}
	s.Throttles += g.gone.throttles
	s.ColdStarts += g.gone.coldStarts
	s.PrepareHits += g.gone.prepareHits
	s.PrepareMisses += g.gone.prepareMisses
	return s
}
