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

// Acquiring an instance. An invocation takes the most recently used idle
// instance of its function. When there is none it waits in the function's
// queue (first come, first served) for the first instance that comes
// free: one whose invocation ends, or one started for the queue. The pool
// starts an instance for every waiter no start in flight will serve
// (scaleLocked), within the function's max concurrency and the
// server-wide cap. A burst of short invocations is thus served by the
// first instances up and does not wait for one sandbox per call; a burst
// of long ones gets an instance per call as they come up. An instance
// started for the queue that finds it empty stays idle, warm.
//
// Making sandboxes is CPU work (namespaces, mounts, cgroups, the runtime's
// own start), and on a small machine many at once only slow each other
// and the instances serving calls: at most Config.MaxCreating are made at
// once; a start that waited its turn and finds no waiter left for it is
// dropped before it makes anything. Starting a prepared sandbox (create-
// ahead) needs no turn: only its program starts.

// grant is what a waiter receives: an instance (cold when started for the
// queue, with initErr set when its runtime failed its init), or an error.
type grant struct {
	inst    *Instance
	cold    bool
	initErr *runtimeapi.Result
	err     error
}

type waiter struct {
	ch chan grant // buffered 1
}

// DefaultMaxCreating is half the machine's CPUs, at least one: the other
// half serves invocations while sandboxes are made.
func DefaultMaxCreating() int { return max(1, runtime.NumCPU()/2) }

// errSurplus ends a start for the queue that has no waiter left to serve.
var errSurplus = errors.New("no invocation waits for this instance any more")

// acquire returns an instance of the current version of name, ready for an
// invocation. cold is true when it was started for the queue and this call
// is its first; initErr is set when that start failed in a way the caller
// reports to the client (the instance is then dead and must be released
// unhealthy).
func (m *Manager) acquire(ctx context.Context, name string) (in *Instance, cold bool, initErr *runtimeapi.Result, err error) {
	now := m.cfg.Now()
	m.mu.Lock()
	if m.stopping {
		m.mu.Unlock()
		return nil, false, nil, fmt.Errorf("server is stopping: %w", stratus.ErrUnavailable)
	}
	p := m.pools[name]
	if p == nil {
		m.mu.Unlock()
		return nil, false, nil, fmt.Errorf("function %q: %w", name, stratus.ErrNotFound)
	}
	p.used = now
	if n := len(p.idle); n > 0 {
		in = p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		in.state = stateBusy
		m.mu.Unlock()
		return in, false, nil, nil
	}
	w := &waiter{ch: make(chan grant, 1)}
	p.waiters = append(p.waiters, w)
	m.scaleLocked(p, true)
	// QueueSize bounds the calls waiting beyond the instances on their
	// way: a call that got a start of its own is not refused.
	if n := len(p.waiters) - p.starting; m.cfg.QueueSize > 0 && n > m.cfg.QueueSize {
		p.waiters = p.waiters[:len(p.waiters)-1]
		m.mu.Unlock()
		return nil, false, nil, fmt.Errorf("function %q: %d invocations wait for an instance already: %w", name, n-1, stratus.ErrCapacity)
	}
	m.mu.Unlock()

	// ThrottleWait bounds a wait at the cap: while instances are on their
	// way for the queue, the wait goes on.
	throttle := m.cfg.ThrottleWait
	t := time.NewTimer(throttle)
	defer t.Stop()
	for {
		select {
		case g := <-w.ch:
			return g.inst, g.cold, g.initErr, g.err
		case <-t.C:
			m.mu.Lock()
			coming := p.starting > 0
			m.mu.Unlock()
			if coming {
				t.Reset(max(throttle, 100*time.Millisecond))
				continue
			}
			if m.cancelWait(p, w) {
				m.mu.Lock()
				live, maxConc := p.live, p.cur.Config.MaxConcurrency
				m.mu.Unlock()
				return nil, false, nil, fmt.Errorf("function %q: %d instances busy (max concurrency %d, server cap %d): %w", name, live, maxConc, m.cfg.MaxInstances, stratus.ErrCapacity)
			}
		case <-ctx.Done():
			if m.cancelWait(p, w) {
				return nil, false, nil, ctx.Err()
			}
		}
		// A grant is on its way.
		g := <-w.ch
		return g.inst, g.cold, g.initErr, g.err
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
// at the server-wide cap). It reports whether it started one. m.mu is
// held.
func (m *Manager) scaleLocked(p *fnPool, evict bool) bool {
	started := false
	for !m.stopping && !p.removed && p.starting < len(p.waiters) && m.reserveLocked(p, evict) {
		p.starting++
		started = true
		v := p.cur
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.startForQueue(p, v)
		}()
	}
	return started
}

// startForQueue starts an instance of v in a slot scaleLocked reserved
// and hands it to p's first waiter; with no waiter left it stays idle. A
// platform failure goes to the first waiter as its error.
func (m *Manager) startForQueue(p *fnPool, v *stratus.Version) {
	in, initErr, err := m.start(p, v, true)
	m.mu.Lock()
	p.starting--
	if err != nil {
		p.live--
		m.live--
		var w *waiter
		if !errors.Is(err, errSurplus) {
			w = popWaiterLocked(p)
		}
		m.grantSlotLocked(p)
		m.mu.Unlock()
		if w != nil {
			w.ch <- grant{err: err}
		} else if !errors.Is(err, errSurplus) {
			m.log.Warn("start instance", "fn", v.Function, "err", err)
		}
		return
	}
	if !p.removed && !m.stopping && p.cur.Version == in.Version.Version {
		if w := popWaiterLocked(p); w != nil {
			m.mu.Unlock()
			w.ch <- grant{inst: in, cold: true, initErr: initErr}
			return
		}
	}
	m.mu.Unlock()
	if initErr != nil {
		m.log.Warn("instance failed its init", "fn", v.Function, "instance", in.ID, "err", string(initErr.Body))
	}
	m.release(in, initErr == nil)
}

// reserveLocked takes a slot for a new instance of p. When the server is
// at its cap and evict is set, it stops the least recently used idle
// instance of any function to make room. m.mu is held.
func (m *Manager) reserveLocked(p *fnPool, evict bool) bool {
	if p.live >= p.cur.Config.MaxConcurrency {
		return false
	}
	if m.live >= m.cfg.MaxInstances {
		if !evict {
			return false
		}
		victim := m.lruIdleLocked()
		if victim == nil {
			return false
		}
		vp := victim.pool
		for i, x := range vp.idle {
			if x == victim {
				vp.idle = append(vp.idle[:i], vp.idle[i+1:]...)
				break
			}
		}
		// The victim's slot passes to p, not to a waiter.
		m.forgetLocked(victim)
		m.stopAsync(victim)
	}
	p.live++
	m.live++
	return true
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

// forgetLocked marks in dead and frees its slot; false if it already was.
// m.mu is held.
func (m *Manager) forgetLocked(in *Instance) bool {
	if in.state == stateDead {
		return false
	}
	in.state = stateDead
	in.pool.live--
	m.live--
	return true
}

// grantSlotLocked uses a free slot for the waiters of p, or else of any
// pool blocked by the server-wide cap.
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

// release returns in after an invocation: to a waiter, to the idle stack,
// or (unhealthy, outdated, removed, stopping) to be stopped.
func (m *Manager) release(in *Instance, healthy bool) {
	m.mu.Lock()
	p := in.pool
	if in.state == stateDead {
		m.mu.Unlock()
		return
	}
	if !healthy || p.removed || m.stopping || p.cur.Version != in.Version.Version {
		m.dropLocked(in)
		m.mu.Unlock()
		m.stopAsync(in)
		return
	}
	if w := popWaiterLocked(p); w != nil {
		m.mu.Unlock()
		w.ch <- grant{inst: in}
		return
	}
	if m.live >= m.cfg.MaxInstances && m.blockedByCapLocked(p) {
		// A call of another function waits for the server-wide cap: this
		// instance makes way for it, as an idle one would be evicted.
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

// blockedByCapLocked reports whether a pool other than p has a waiter
// that no start serves and that only the server-wide cap keeps from
// starting an instance. m.mu is held.
func (m *Manager) blockedByCapLocked(p *fnPool) bool {
	for _, q := range m.pools {
		if q != p && len(q.waiters) > q.starting && !q.removed && q.live < q.cur.Config.MaxConcurrency {
			return true
		}
	}
	return false
}

// creation waits for a turn to make a sandbox (Config.MaxCreating) and
// returns the function that gives it back. With forQueue set, a start
// whose waiter was served meanwhile gets errSurplus instead; so does one
// of a removed function or a stopping server.
func (m *Manager) creation(p *fnPool, forQueue bool) (func(), error) {
	m.creating <- struct{}{}
	done := func() { <-m.creating }
	if !forQueue {
		return done, nil
	}
	m.mu.Lock()
	// p.starting counts this start: with fewer waiters than starts, one
	// of them is surplus, and this one has not made anything yet.
	surplus := m.stopping || p.removed || len(p.waiters) < p.starting
	m.mu.Unlock()
	if surplus {
		done()
		return nil, errSurplus
	}
	return done, nil
}

// start launches an instance and waits until its runtime asks for the first
// invocation. It uses a prepared instance of v when there is one (see
// takePrepared), and has p prepare the next one once this start is done,
// whichever it used. Without one it waits for its turn to make a sandbox
// (see creation; forQueue as there). Failures of the function's own init
// come back as initErr with a live-but-dead instance to release; platform
// failures as err.
func (m *Manager) start(p *fnPool, v *stratus.Version, forQueue bool) (*Instance, *runtimeapi.Result, error) {
	defer m.prepareAhead(p)
	in := m.takePrepared(p, v)
	if in != nil {
		// Only the program is left to start: the init duration counts
		// from here, not from the prepare.
		in.started = m.cfg.Now()
		if err := m.cfg.Driver.Start(context.Background(), in.spec); err != nil {
			m.stopAsync(in)
			return nil, nil, fmt.Errorf("start prepared instance of %s: %w", v.Key(), err)
		}
	} else {
		done, err := m.creation(p, forQueue)
		if err != nil {
			return nil, nil, err
		}
		in, err = m.newInstance(p, v)
		if err != nil {
			done()
			return nil, nil, err
		}
		in.state = stateBusy
		in.started = m.cfg.Now()
		err = m.launch(in, m.cfg.Driver.Start)
		done()
		if err != nil {
			return nil, nil, fmt.Errorf("start instance of %s: %w", v.Key(), err)
		}
	}
	rapi := in.rapi

	t := time.NewTimer(m.cfg.InitTimeout)
	defer t.Stop()
	select {
	case <-rapi.Ready():
		// Its runtime asks for its first invocation: the init is done,
		// and from now on the instance has its memory's share of CPU.
		if err := m.cfg.Driver.EndInit(context.Background(), in.ID); err != nil {
			m.log.Warn("end instance init", "fn", v.Function, "instance", in.ID, "err", err)
		}
		return in, nil, nil
	case r := <-rapi.InitError():
		// Lambda reports the runtime's own init error; the instance is done.
		return in, &r, nil
	case <-in.exited:
		// A runtime that reports its init error and exits: its own words.
		select {
		case r := <-rapi.InitError():
			return in, &r, nil
		default:
		}
		r := runtimeapi.ErrorResult("Runtime.ExitError", exitMessage(in.exit))
		return in, &r, nil
	case <-t.C:
		r := runtimeapi.ErrorResult("Runtime.InitTimeout", fmt.Sprintf("runtime did not ask for an invocation within %s of starting", m.cfg.InitTimeout))
		return in, &r, nil
	}
}
