package pool

import (
	"context"
	"errors"
	"fmt"

	"github.com/stratus-run/stratus"
)

// Create-ahead. A function keeps at most one prepared instance, of its
// head version (fnPool.prepared): an Instance with its ID, its Runtime API
// (answering only its sandbox), its spec and its sandbox made with the
// driver's Prepare. Its exit watcher runs from the prepare on.
//
// When one is prepared: at a deploy, and after every start of an instance
// of the function (cold or to keep MinInstances), once that start is done,
// so that the prepare does not compete with it. A prepare that fails is
// logged and not retried until the next of those.
//
// How a start uses it (a start for an invocation; one to keep
// MinInstances makes its own, see lambdaenv.go): it takes the prepared
// instance of its version; if there is none but a prepare of its version
// is in flight, the first start to come waits for that prepare (it began
// earlier than a start of its own would, and two container setups at once
// only slow each other down) and takes what it makes; other starts
// meanwhile start sandboxes of their own.
//
// When one goes: a start takes it (it becomes a live instance), a new head
// version or Remove stops it, StopAll stops it, Reap stops it once the
// function has been unused (not invoked nor deployed) for its idle timeout,
// and the cap below may stop it for another function's.
//
// The cap: Config.MaxPrepared counts prepared instances and prepares in
// flight across the server. At the cap, a function that wants one takes
// the place of the prepared instance of the least recently used other
// function, unless that function was used more recently than itself (then
// it goes without). A prepare in flight is never cancelled for room.

// prepareOp is a prepare in flight.
type prepareOp struct {
	v *stratus.Version
	// claim is set by the start that waits for this prepare (guarded by
	// Manager.mu); it receives the prepared instance, or nil if the
	// prepare failed.
	claim chan *Instance
}

// prepareAhead prepares an instance of p's head version in a goroutine of
// the Manager's, when create-ahead is on, p is a function's head pool
// (published versions' pools prepare none), Run has begun, p has none
// prepared nor being prepared and there is room under MaxPrepared. It
// does not block.
func (m *Manager) prepareAhead(p *fnPool) { m.prepareAheadIf(p, false) }

// prepareAheadOnce is prepareAhead for a pool no prepare was started for
// yet: Run's catch-up of the pools deployed before it.
func (m *Manager) prepareAheadOnce(p *fnPool) { m.prepareAheadIf(p, true) }

func (m *Manager) prepareAheadIf(p *fnPool, once bool) {
	if !m.createAhead || !p.isHead {
		return
	}
	m.mu.Lock()
	v := p.cur
	ok := m.running && !m.stopping && !p.removed && p.prepared == nil && !p.group.throttled() &&
		(p.preparing == nil || p.preparing.v.Version != v.Version) && !(once && p.prepareTried)
	var evicted string
	if ok {
		ok, evicted = m.reservePreparedLocked(p)
	}
	var op *prepareOp
	ctx := m.run
	if ok {
		op = &prepareOp{v: v}
		p.preparing = op
		p.prepareTried = true
		m.wg.Add(1)
	}
	m.mu.Unlock()
	if !ok {
		return
	}
	if evicted != "" {
		m.log.Debug("prepared instance makes room", "fn", evicted, "for", p.name)
	}
	go func() {
		defer m.wg.Done()
		m.prepare(ctx, p, op)
	}()
}

// prepare makes a prepared instance of op.v for p in the place
// prepareAhead reserved, unless ctx ends first. It hands the instance to
// the start that claimed op, or keeps it if op.v is still p's head. A
// failure is logged and gives the place back.
func (m *Manager) prepare(ctx context.Context, p *fnPool, op *prepareOp) {
	v := op.v
	var in *Instance
	err := m.creation(ctx, p, false)
	if err == nil {
		in, err = m.newInstance(ctx, p, v, newID(), initOnDemand)
		if err == nil {
			err = m.launch(ctx, in, m.cfg.Driver.Prepare)
		}
		m.created()
	}
	m.mu.Lock()
	if p.preparing == op {
		p.preparing = nil
	}
	if err == nil {
		select {
		case <-in.exited:
			err = fmt.Errorf("its sandbox ended: %s", in.exit)
		default:
			// If it ends from now on, onExit or the start forgets it.
		}
	}
	claim := op.claim
	claimed := claim != nil
	keep := err == nil && !claimed && !m.stopping && !p.removed && p.cur.Version == v.Version && p.prepared == nil
	switch {
	case err == nil && claimed:
		m.prepared--
		in.state = stateBusy
	case keep:
		in.state = statePrepared
		p.prepared = in
	default:
		m.prepared--
	}
	m.mu.Unlock()
	switch {
	case err != nil:
		// Nothing of it is left: a failed Prepare leaves no sandbox.
		if !errors.Is(err, errSurplus) && ctx.Err() == nil {
			m.log.Warn("prepare instance", "fn", v.Function, "version", v.Version, "err", err)
		}
		if claimed {
			claim <- nil
		}
	case claimed:
		claim <- in
	case !keep:
		// A newer version, Remove or StopAll came meanwhile.
		m.stopAsync(in)
	default:
		m.log.Debug("instance prepared", "fn", v.Function, "version", v.Version, "instance", in.ID)
	}
}

// reservePreparedLocked takes a place under MaxPrepared for p, at the cap
// by stopping the prepared instance of the least recently used other
// function, unless that one was used more recently than p. It returns
// whether it took one, and the function whose prepared instance made
// room (for the caller to log once m.mu is released), if any. m.mu is
// held.
func (m *Manager) reservePreparedLocked(p *fnPool) (ok bool, evicted string) {
	if m.prepared >= m.cfg.MaxPrepared {
		var lru *fnPool
		for _, q := range m.pools {
			if q != p && q.prepared != nil && (lru == nil || q.used.Before(lru.used)) {
				lru = q
			}
		}
		if lru == nil || lru.used.After(p.used) {
			return false, ""
		}
		evicted = lru.name
		m.stopAsync(m.dropPreparedLocked(lru))
	}
	m.prepared++
	return true, evicted
}

// takePrepared hands a prepared instance of v to a start: p's prepared
// one if it is of v and its sandbox lives, else the one a prepare of v in
// flight makes, if no other start waits for that (it then waits: the
// prepare ends soon after Run's ctx does, and its instance must not be
// lost). The instance is busy and counts as live in the slot the caller
// reserved. Nil means the caller starts a sandbox of its own.
func (m *Manager) takePrepared(p *fnPool, v *stratus.Version) *Instance {
	m.mu.Lock()
	in := p.prepared
	if in != nil && in.Version.Version == v.Version {
		select {
		case <-in.exited:
			// onExit forgets it.
			m.mu.Unlock()
			return nil
		default:
		}
		p.prepared = nil
		m.prepared--
		in.state = stateBusy
		m.mu.Unlock()
		return in
	}
	op := p.preparing
	if op == nil || op.v.Version != v.Version || op.claim != nil {
		m.mu.Unlock()
		return nil
	}
	op.claim = make(chan *Instance, 1)
	m.mu.Unlock()
	return <-op.claim
}

// dropPreparedLocked forgets p's prepared instance and returns it (nil if
// p has none) for the caller to stop. m.mu is held.
func (m *Manager) dropPreparedLocked(p *fnPool) *Instance {
	in := p.prepared
	if in == nil {
		return nil
	}
	p.prepared = nil
	m.prepared--
	in.state = stateDead
	return in
}
