package pool

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/runtimeapi"
)

// Admission: slots, waiters and instances handed out. An invocation takes
// the most recently used idle instance of its function. When there is
// none it waits in the function's queue (first come, first served) for
// the first instance that comes free: one whose invocation ends, or one
// started for the queue. The pool starts an instance for every waiter no
// start in flight will serve (scaleLocked), within the function's max
// concurrency and the server-wide cap. A burst of short invocations is
// thus served by the first instances up and does not wait for one sandbox
// per call; a burst of long ones gets an instance per call as they come
// up. An instance started for the queue that finds it empty stays idle,
// warm.
//
// Making sandboxes is CPU work (namespaces, mounts, cgroups, the runtime's
// own start), and on a small machine many at once only slow each other
// and the instances serving calls: at most Config.MaxCreating are made at
// once; a start that waited its turn and finds no waiter left for it is
// dropped before it makes anything. Starting a prepared sandbox (create-
// ahead) needs no turn: only its program starts.
//
// A slot is a place under the function's max concurrency and the
// server's cap (fnPool.live, Manager.live): reserveLocked takes one for a
// start, and freeSlotLocked gives it back, to a waiter if one can use it.

// lease is an instance handed to one invocation.
type lease struct {
	in *Instance
	// cold: the instance was started for this invocation, its first.
	cold bool
	// initErr is set when the start failed in a way the caller reports
	// to the client (the instance is then dead and must be released
	// unhealthy).
	initErr *runtimeapi.Result
	// prepared: the cold start used a prepared sandbox.
	prepared bool
	// waited: the invocation waited in its function's queue for it.
	waited bool
}

// grant is what a waiter receives: a lease, or an error.
type grant struct {
	lease
	err error
}

type waiter struct {
	ch chan grant // buffered 1
	// seq orders the waiters of all pools by arrival (Manager.arrivals):
	// a function's versions are served first come, first served.
	seq uint64
}

// DefaultMaxCreating is half the machine's CPUs, at least one: the other
// half serves invocations while sandboxes are made.
func DefaultMaxCreating() int { return max(1, runtime.NumCPU()/2) }

// errSurplus ends a start that has nothing left to do: its waiter was
// served meanwhile, its function was removed or the server is stopping.
var errSurplus = errors.New("no invocation waits for this instance any more")

// errStopping is what callers get once the Manager stops.
var errStopping = fmt.Errorf("server is stopping: %w", stratus.ErrUnavailable)

// acquire returns a lease on an instance of the current version of the
// pool with key name, ready for an invocation that arrived at now. Before
// Run it waits for Run. A function whose head is Throttled refuses it
// with ErrCapacity at once. Each ErrCapacity it returns counts as a
// throttle of the pool.
func (m *Manager) acquire(ctx context.Context, name string, now time.Time) (lease, error) {
	m.mu.Lock()
	if m.stopping {
		m.mu.Unlock()
		return lease{}, errStopping
	}
	p := m.pools[name]
	if p == nil {
		m.mu.Unlock()
		return lease{}, fmt.Errorf("function %q: %w", name, stratus.ErrNotFound)
	}
	if p.group.throttled() {
		p.throttles++
		m.mu.Unlock()
		return lease{}, fmt.Errorf("function %q is throttled (reserved concurrency 0): %w", p.group.name, stratus.ErrCapacity)
	}
	if err := m.notHere(p.cur); err != nil {
		m.mu.Unlock()
		return lease{}, err
	}
	p.used = now
	// Over the function's cap (lowered since its idle instances last
	// ran), idle instances go first: an idle one is used only within it.
	shed := m.shedLocked(p.group, p)
	if n := len(p.idle); n > 0 {
		in := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		in.state = stateBusy
		m.mu.Unlock()
		m.stopAsync(shed...)
		return lease{in: in}, nil
	}
	m.arrivals++
	w := &waiter{ch: make(chan grant, 1), seq: m.arrivals}
	p.waiters = append(p.waiters, w)
	m.scaleLocked(p, true)
	// QueueSize bounds the calls waiting beyond the instances on their
	// way: a call that got a start of its own is not refused.
	if n := len(p.waiters) - p.starting; n > m.cfg.QueueSize {
		p.waiters = p.waiters[:len(p.waiters)-1]
		p.throttles++
		m.mu.Unlock()
		m.stopAsync(shed...)
		return lease{}, fmt.Errorf("function %q: %d invocations wait for an instance already: %w", name, n-1, stratus.ErrCapacity)
	}
	m.mu.Unlock()
	m.stopAsync(shed...)

	// ThrottleWait bounds a wait at the cap: while instances are on their
	// way for the queue (or Run has yet to begin), the wait goes on.
	throttle := m.cfg.ThrottleWait
	t := time.NewTimer(throttle)
	defer t.Stop()
	for {
		select {
		case g := <-w.ch:
			g.waited = true
			return g.lease, g.err
		case <-t.C:
			m.mu.Lock()
			coming := p.starting > 0 || !m.running
			m.mu.Unlock()
			if coming {
				t.Reset(max(throttle, 100*time.Millisecond))
				continue
			}
			if m.cancelWait(p, w) {
				m.mu.Lock()
				live, maxConc := p.group.live, p.group.maxConc(p)
				p.throttles++
				m.mu.Unlock()
				return lease{}, fmt.Errorf("function %q: %d instances busy (max concurrency %d, server cap %d): %w", p.group.name, live, maxConc, m.cfg.MaxInstances, stratus.ErrCapacity)
			}
		case <-ctx.Done():
			if m.cancelWait(p, w) {
				return lease{}, ctx.Err()
			}
		}
		// A grant is on its way.
		g := <-w.ch
		g.waited = true
		return g.lease, g.err
	}
}

// cancelWait removes w from p's queue; false means a grant is already on
// its way.
func (m *Manager) cancelWait(p *fnPool, w *waiter) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, x := range p.waiters {
		if x == w {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			return true
		}
	}
	return false
}

// popWaiterLocked takes the first waiter of p's queue, nil if none. m.mu
// is held.
func popWaiterLocked(p *fnPool) *waiter {
	if len(p.waiters) == 0 {
		return nil
	}
	w := p.waiters[0]
	p.waiters[0] = nil
	p.waiters = p.waiters[1:]
	return w
}

// scaleLocked starts an instance of p's head version for each waiter that
// no start in flight will serve, while there are slots (evicting, when
// evict is set, the least recently used idle instance of another function
// at the server-wide cap). Before Run it starts nothing: Run scales every
// pool when it begins. It reports whether it started one. m.mu is held.
func (m *Manager) scaleLocked(p *fnPool, evict bool) bool {
	started := false
	for m.running && !m.stopping && !p.removed && p.starting < len(p.waiters) && m.reserveLocked(p, evict) {
		p.starting++
		started = true
		m.goStartLocked(p, true)
	}
	return started
}

// reserveLocked takes a slot for a new instance of p, under its
// function's max concurrency (shared by all its versions' pools) and the
// server's cap. When the server is at its cap and evict is set, it stops
// the least recently used idle instance of any function to make room.
// m.mu is held.
func (m *Manager) reserveLocked(p *fnPool, evict bool) bool {
	g := p.group
	if g.live >= g.maxConc(p) {
		// Another version's idle instance may make way.
		var victim *Instance
		if evict {
			for q := range g.pools {
				if q != p && len(q.idle) > 0 && (victim == nil || q.idle[0].lastUsed.Before(victim.lastUsed)) {
					victim = q.idle[0]
				}
			}
		}
		if victim == nil {
			return false
		}
		m.evictLocked(victim)
	}
	if m.live >= m.cfg.MaxInstances {
		if !evict {
			return false
		}
		victim := m.lruIdleLocked()
		if victim == nil {
			return false
		}
		m.evictLocked(victim)
	}
	p.live++
	g.live++
	m.live++
	return true
}

// evictLocked stops idle instance in to make room; its slot is the
// caller's, not a waiter's. m.mu is held.
func (m *Manager) evictLocked(in *Instance) {
	vp := in.pool
	for i, x := range vp.idle {
		if x == in {
			vp.idle = append(vp.idle[:i], vp.idle[i+1:]...)
			break
		}
	}
	m.forgetLocked(in)
	m.stopAsync(in)
}

func (m *Manager) lruIdleLocked() *Instance {
	var best *Instance
	for _, p := range m.pools {
		if len(p.idle) > 0 && (best == nil || p.idle[0].lastUsed.Before(best.lastUsed)) {
			best = p.idle[0]
		}
	}
	return best
}

// dropLocked forgets in (already out of any idle list) and gives its slot
// to a waiter. m.mu is held.
func (m *Manager) dropLocked(in *Instance) {
	if m.forgetLocked(in) {
		m.grantSlotLocked(in.pool)
	}
}

// forgetLocked marks in dead and takes its slot back, without giving it
// to anyone; false if it already was dead. m.mu is held.
func (m *Manager) forgetLocked(in *Instance) bool {
	if in.state == stateDead {
		return false
	}
	in.state = stateDead
	m.unreserveLocked(in.pool)
	return true
}

// freeSlotLocked gives back a slot of p that no instance holds (its start
// failed or was dropped), to a waiter if one can use it. m.mu is held.
func (m *Manager) freeSlotLocked(p *fnPool) {
	m.unreserveLocked(p)
	m.grantSlotLocked(p)
}

// unreserveLocked takes a slot of p back: reserveLocked undone. m.mu is
// held.
func (m *Manager) unreserveLocked(p *fnPool) {
	p.live--
	p.group.live--
	m.live--
}

// grantSlotLocked uses a free slot for the waiters of p, or else of any
// pool blocked by the server-wide cap. m.mu is held.
func (m *Manager) grantSlotLocked(p *fnPool) {
	if m.stopping || m.scaleLocked(p, false) {
		return
	}
	for _, q := range m.pools {
		if q != p && m.scaleLocked(q, false) {
			return
		}
	}
}

// release returns in after an invocation: to the oldest waiter of its
// function (its own pool's, or, when that of another version is older,
// stopped to make way for one of that version), to the idle stack, or
// (unhealthy, outdated, removed, stopping, over its function's cap) to be
// stopped.
func (m *Manager) release(in *Instance, healthy bool) {
	m.mu.Lock()
	p := in.pool
	if in.state == stateDead {
		m.mu.Unlock()
		return
	}
	if !healthy || p.removed || m.stopping || p.cur.Version != in.Version.Version || p.group.live > p.group.maxConc(p) {
		m.dropLocked(in)
		m.mu.Unlock()
		m.stopAsync(in)
		return
	}
	if q := m.olderSiblingLocked(p); q != nil {
		// A call of another version of this function came first: this
		// instance makes way for an instance of that version.
		m.forgetLocked(in)
		if !m.scaleLocked(q, false) {
			m.grantSlotLocked(p)
		}
		m.mu.Unlock()
		m.stopAsync(in)
		return
	}
	if w := popWaiterLocked(p); w != nil {
		m.mu.Unlock()
		w.ch <- grant{lease: lease{in: in}}
		return
	}
	if m.live >= m.cfg.MaxInstances && m.blockedByCapLocked(p) {
		// A call of another function waits for the server-wide cap:
		// this instance makes way for it, as an idle one would be
		// evicted.
		m.dropLocked(in)
		m.mu.Unlock()
		m.stopAsync(in)
		return
	}
	in.state = stateIdle
	in.lastUsed = m.cfg.Now()
	p.idle = append(p.idle, in)
	m.mu.Unlock()
}

// olderSiblingLocked returns the pool of another version of p's function
// whose oldest waiter that no start serves came before every waiter of p,
// while the function is at its max concurrency; nil if none (the oldest
// such first). m.mu is held.
func (m *Manager) olderSiblingLocked(p *fnPool) *fnPool {
	g := p.group
	if len(g.pools) < 2 || g.live < g.maxConc(p) {
		return nil
	}
	var best *fnPool
	var bestSeq uint64
	for q := range g.pools {
		if q == p || q.removed || len(q.waiters) <= q.starting {
			continue
		}
		if seq := q.waiters[q.starting].seq; best == nil || seq < bestSeq {
			best, bestSeq = q, seq
		}
	}
	if best == nil || len(p.waiters) > 0 && p.waiters[0].seq < bestSeq {
		return nil
	}
	return best
}

// shedLocked drops idle instances of g while it has more live instances
// than its max concurrency (lowered since they started): the least
// recently used first, those of p, one of g's pools, last. It returns
// them, to stop.
// m.mu is held.
func (m *Manager) shedLocked(g *fnGroup, p *fnPool) []*Instance {
	var shed []*Instance
	for g.live > g.maxConc(p) {
		var victim *Instance
		for q := range g.pools {
			if q != p && len(q.idle) > 0 && (victim == nil || q.idle[0].lastUsed.Before(victim.lastUsed)) {
				victim = q.idle[0]
			}
		}
		if victim == nil && len(p.idle) > 0 {
			victim = p.idle[0]
		}
		if victim == nil {
			break
		}
		vp := victim.pool
		vp.idle = vp.idle[1:]
		m.dropLocked(victim)
		shed = append(shed, victim)
	}
	return shed
}

// blockedByCapLocked reports whether a pool other than p has a waiter
// that no start serves and that only the server-wide cap keeps from
// starting an instance. m.mu is held.
func (m *Manager) blockedByCapLocked(p *fnPool) bool {
	for _, q := range m.pools {
		if q != p && len(q.waiters) > q.starting && !q.removed && q.group.live < q.group.maxConc(q) {
			return true
		}
	}
	return false
}

// creation waits for a turn to make a sandbox (Config.MaxCreating); the
// caller gives it back with created. A start for the queue (forQueue)
// whose waiter was served meanwhile gets errSurplus instead; so does any
// creation for a removed function or a stopping server, and ctx's end
// ends the wait with errStopping, also when a turn was free then.
func (m *Manager) creation(ctx context.Context, p *fnPool, forQueue bool) error {
	m.mu.Lock()
	m.awaitingTurn++
	m.mu.Unlock()
	turn := false
	select {
	case m.creating <- struct{}{}:
		turn = true
	case <-ctx.Done():
	}
	m.mu.Lock()
	m.awaitingTurn--
	// p.starting counts this start: with fewer waiters than starts, one
	// of them is surplus, and this one has not made anything yet.
	surplus := m.stopping || p.removed || forQueue && len(p.waiters) < p.starting
	m.mu.Unlock()
	var err error
	switch {
	case ctx.Err() != nil:
		// The select may take a free turn over ctx's end (a start that
		// a failed prepare left to make its own sandbox at Run's end).
		err = errStopping
	case surplus:
		err = errSurplus
	}
	if err != nil && turn {
		m.created()
	}
	return err
}

// created gives back a turn creation gave.
func (m *Manager) created() { <-m.creating }
