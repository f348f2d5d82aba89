package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/store"
)

// Kinds of lease, the first part of a lease's name ("function/NAME").
const (
	kindFunction = "function"
	kindService  = "service"
)

const (
	// absentFor is how long a lease that has no row is remembered as
	// absent (a host that names no service).
	absentFor = time.Second
	// maxKnown bounds the leases remembered; beyond it they are all
	// forgotten.
	maxKnown = 4096
	// maxResolve bounds the turns of resolve.
	maxResolve = 5
)

// leaseName is the name of the lease of workload name of kind.
func leaseName(kind, name string) string { return kind + "/" + name }

// Owns reports whether this node holds the lease of workload name of
// kind ("function", "service") and may act on it now: before the lease's
// local deadline. It is a local check, without I/O. Single: always true.
func (c *Cluster) Owns(kind, name string) bool {
	if c.single {
		return true
	}
	_, ok := c.holds(leaseName(kind, name))
	return ok
}

// Owner returns the node that owns the workload of kind ("function",
// "service") and name as this node last knew it, without I/O: this node
// while it holds its lease, another while its lease, as last read, has
// not expired, else "". Single: always this node.
func (c *Cluster) Owner(kind, name string) string {
	if c.single {
		return c.cfg.Node
	}
	name = leaseName(kind, name)
	if _, ok := c.holds(name); ok {
		return c.cfg.Node
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if k, ok := c.known[name]; ok && k.lease.Held(time.Now()) {
		return k.lease.Holder
	}
	return ""
}

// holds returns the epoch of lease name if this node holds it and its
// deadline has not passed.
func (c *Cluster) holds(name string) (int64, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	h, ok := c.held[name]
	if !ok || !time.Now().Before(h.deadline) {
		return 0, false
	}
	return h.epoch, true
}

// acquire asks the store for lease name. got reports whether this node
// holds it now; otherwise l is the holder's lease, remembered.
func (c *Cluster) acquire(ctx context.Context, name string) (l store.Lease, got bool, err error) {
	switch {
	case c.evicted.Load():
		return store.Lease{}, false, fmt.Errorf("node %s owns nothing: another server has its name: %w", c.cfg.Node, stratus.ErrUnavailable)
	case !c.joined.Load():
		return store.Lease{}, false, fmt.Errorf("node %s has not joined its cluster yet: %w", c.cfg.Node, stratus.ErrUnavailable)
	}
	start := time.Now()
	l, err = c.db.AcquireLease(ctx, name, c.cfg.Node, c.cfg.LeaseTTL)
	if err != nil {
		return store.Lease{}, false, err
	}
	if l.Holder != c.cfg.Node {
		c.remember(l, true)
		return l, false, nil
	}
	c.mu.Lock()
	if c.evicted.Load() {
		// The lease under this name may be the new incarnation's: keep
		// out of it.
		c.mu.Unlock()
		return store.Lease{}, false, fmt.Errorf("node %s owns nothing: another server has its name: %w", c.cfg.Node, stratus.ErrUnavailable)
	}
	if c.stopping {
		c.mu.Unlock()
		if err := c.db.ReleaseLease(ctx, name, c.cfg.Node); err != nil {
			c.log.Warn("release lease taken while stopping (it expires by itself)", "lease", name, "err", err)
		}
		return store.Lease{}, false, fmt.Errorf("node %s is stopping: %w", c.cfg.Node, stratus.ErrUnavailable)
	}
	_, had := c.held[name]
	c.held[name] = holding{epoch: l.Epoch, deadline: start.Add(c.cfg.LeaseTTL - c.margin), since: time.Now()}
	delete(c.known, name)
	c.mu.Unlock()
	c.wake()
	if !had {
		c.log.Info("lease acquired", "lease", name, "epoch", l.Epoch)
		c.changed(name)
	}
	return l, true, nil
}

// release stops acting on lease name, then frees it in the store, or,
// gone (its workload left the store), deletes it there. Until the store
// has freed it, and for the renewals that began before, a renewal that
// still finds it is not taken for this node's (see renew): another node
// may have it already.
func (c *Cluster) release(ctx context.Context, name string, gone bool) {
	c.mu.Lock()
	delete(c.held, name)
	c.released[name] = time.Time{} // under way
	c.mu.Unlock()
	c.changed(name)
	var err error
	if gone {
		err = c.db.DeleteLease(ctx, name, c.cfg.Node)
	} else {
		err = c.db.ReleaseLease(ctx, name, c.cfg.Node)
	}
	if err != nil {
		// It expires by itself; a gone workload's lease then stays in
		// the store (no scan finds it again).
		c.log.Warn("release lease (it expires by itself)", "lease", name, "gone", gone, "err", err)
	}
	c.mu.Lock()
	c.released[name] = time.Now()
	if err != nil {
		// Not freed: it expires by itself, and no renewal takes it back
		// before.
		c.released[name] = time.Now().Add(c.cfg.LeaseTTL)
	}
	c.mu.Unlock()
}

// changed tells the subscribers that this node gained or lost lease
// name, if that matters to them: a service's.
func (c *Cluster) changed(name string) {
	if svc, ok := strings.CutPrefix(name, kindService+"/"); ok {
		c.deliver(store.Change{Table: "services", Name: svc})
	}
}

// wake tells the sweeper that the holdings changed.
func (c *Cluster) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// renewLoop renews this node's leases every fifth of the TTL.
func (c *Cluster) renewLoop(ctx context.Context) {
	t := time.NewTicker(c.renewal)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := c.renew(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			c.log.Warn("lease renewal failed; leases are dropped at their deadline unless it works again", "err", err)
			failing = true
		case err == nil && failing:
			c.log.Info("lease renewal works again")
			failing = false
		}
	}
}

// renew renews every lease this node holds in the store. A lease the
// store renewed may be acted on until the renewal's start plus the TTL
// minus the margin; a lease it did not renew is lost, unless this node
// recorded it after the renewal began (an acquisition it could not see).
// A lease the store renewed that this node had dropped at its deadline
// (or never knew: a previous run of the node took it) is taken back: its
// epoch did not change, so nobody held it meanwhile.
//
// The subscribers hear of every lease that enters or leaves c.held: a
// lease in it is one they were told this node has.
func (c *Cluster) renew(ctx context.Context) error {
	// A renewal slower than the TTL is useless: its deadline has passed.
	if c.evicted.Load() {
		return nil // the leases under this name are another incarnation's
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.LeaseTTL)
	defer cancel()
	start := time.Now()
	ls, err := c.db.RenewLeases(ctx, c.cfg.Node, c.cfg.LeaseTTL)
	if err != nil {
		return err
	}
	deadline := start.Add(c.cfg.LeaseTTL - c.margin)
	renewed := make(map[string]int64, len(ls))
	for _, l := range ls {
		renewed[l.Name] = l.Epoch
	}
	var gained, lost []string
	now := time.Now()
	c.mu.Lock()
	if c.evicted.Load() { // evict cleared c.held: keep it so
		c.mu.Unlock()
		return nil
	}
	for name, h := range c.held {
		epoch, ok := renewed[name]
		switch {
		case ok:
			c.held[name] = holding{epoch: epoch, deadline: deadline, since: h.since}
		case h.since.After(start):
		default:
			delete(c.held, name)
			lost = append(lost, name)
		}
	}
	for name, epoch := range renewed {
		if _, ok := c.held[name]; ok {
			continue
		}
		if r, ok := c.released[name]; ok && (r.IsZero() || !start.After(r)) {
			continue // being released, or released after this renewal began
		}
		c.held[name] = holding{epoch: epoch, deadline: deadline, since: now}
		gained = append(gained, name)
	}
	for name, r := range c.released {
		if !r.IsZero() && start.After(r) {
			delete(c.released, name) // later renewals cannot see it
		}
	}
	c.mu.Unlock()
	c.wake()
	for _, name := range lost {
		c.log.Warn("lease lost", "lease", name)
		c.changed(name)
	}
	for _, name := range gained {
		c.log.Info("lease taken back: still this node's at its epoch", "lease", name)
		c.changed(name)
	}
	return nil
}

// sweepLoop drops each lease at its deadline, so that the subscribers
// learn it at once (Owns is false from the deadline on anyway).
func (c *Cluster) sweepLoop(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		next := c.sweep()
		t.Reset(next)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.kick:
		}
	}
}

// sweep drops the leases whose deadline has passed and returns the time
// until the next deadline.
func (c *Cluster) sweep() time.Duration {
	now := time.Now()
	next := time.Hour
	var lost []string
	c.mu.Lock()
	for name, h := range c.held {
		if d := h.deadline.Sub(now); d > 0 {
			next = min(next, d)
			continue
		}
		delete(c.held, name)
		lost = append(lost, name)
	}
	c.mu.Unlock()
	for _, name := range lost {
		c.log.Warn("lease dropped at its deadline: not renewed in time", "lease", name)
		c.changed(name)
	}
	return next
}

// scanServices takes every stored service whose lease is free (never
// taken, released, expired), and deletes the leases it holds of
// services that have been gone from the store for a while
// (Cluster.serviceGC).
func (c *Cluster) scanServices(ctx context.Context) error {
	ls, err := c.db.ServiceLeases(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	stored := make(map[string]bool, len(ls))
	var errs []error
	for _, l := range ls {
		stored[l.Name] = true
		if _, ok := c.holds(l.Name); ok {
			continue
		}
		if l.Held(now) && l.Holder != c.cfg.Node {
			c.remember(l, true) // its holder's, dead or alive: never taken early
			continue
		}
		if _, _, err := c.acquire(ctx, l.Name); err != nil {
			errs = append(errs, err)
		}
	}
	var gone []string
	c.mu.Lock()
	for name, h := range c.held {
		if strings.HasPrefix(name, kindService+"/") && !stored[name] && now.Sub(h.since) > c.serviceGC {
			gone = append(gone, name)
		}
	}
	c.mu.Unlock()
	for _, name := range gone {
		c.release(ctx, name, true)
	}
	return errors.Join(errs...)
}

// remember keeps lease l as read (exists: it has a row) until it
// expires, or briefly if it has no row.
func (c *Cluster) remember(l store.Lease, exists bool) {
	now := time.Now()
	until := now
	switch {
	case !exists:
		until = now.Add(absentFor)
	case l.Held(now):
		until = l.Expires
	}
	if !until.After(now) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.known) >= maxKnown {
		for name, k := range c.known {
			if !now.Before(k.until) {
				delete(c.known, name)
			}
		}
	}
	if len(c.known) >= maxKnown {
		clear(c.known)
	}
	c.known[l.Name] = known{lease: l, exists: exists, until: until}
}

// forget drops what this node remembers of lease name.
func (c *Cluster) forget(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.known, name)
}

// lookup returns lease name as remembered, else as the store has it now
// (remembered then).
func (c *Cluster) lookup(ctx context.Context, name string) (store.Lease, bool, error) {
	c.mu.RLock()
	k, ok := c.known[name]
	c.mu.RUnlock()
	if ok && time.Now().Before(k.until) {
		return k.lease, k.exists, nil
	}
	l, exists, err := c.db.Lease(ctx, name)
	if err != nil {
		return store.Lease{}, false, err
	}
	c.remember(l, exists)
	return l, exists, nil
}

// A target is where a workload is served: here (self), or at node's
// address under the lease's epoch.
type target struct {
	self  bool
	node  string
	addr  *url.URL
	epoch int64
	lease string // set by the forwarder
}

// resolve finds where the workload of lease name is served. A lease held
// here (before its deadline) is here. A lease another node holds is
// there if that node is alive and was not found unreachable; if it is
// dead, gone or unreachable, resolve waits for its lease to expire
// rather than take it early. A free lease is taken, if onlyExisting is
// false or it has a row; found is false for a lease without a row when
// onlyExisting is set.
func (c *Cluster) resolve(ctx context.Context, name string, onlyExisting bool) (t target, found bool, err error) {
	for range maxResolve {
		if epoch, ok := c.holds(name); ok {
			return target{self: true, epoch: epoch}, true, nil
		}
		l, exists, err := c.lookup(ctx, name)
		if err != nil {
			return target{}, false, fmt.Errorf("find the owner of %s: %w", name, unavailable(err))
		}
		if !exists && onlyExisting {
			return target{}, false, nil
		}
		if l.Held(time.Now()) && l.Holder != c.cfg.Node {
			n, ok, err := c.nodeOf(ctx, l.Holder)
			if err != nil {
				return target{}, false, err
			}
			if ok {
				return target{node: l.Holder, addr: n, epoch: l.Epoch}, true, nil
			}
			// Dead, gone or unreachable: read the lease again (it may
			// have been released or renewed), else wait for it.
			fresh, exists, err := c.db.Lease(ctx, name)
			if err != nil {
				return target{}, false, fmt.Errorf("find the owner of %s: %w", name, unavailable(err))
			}
			if exists && fresh.Held(time.Now()) && fresh.Holder == l.Holder && fresh.Epoch == l.Epoch {
				if err := sleepUntil(ctx, fresh.Expires); err != nil {
					return target{}, false, fmt.Errorf("wait for the lease %s of unreachable node %s: %w", name, l.Holder, err)
				}
			}
			c.forget(name)
			continue
		}
		if _, got, err := c.acquire(ctx, name); err != nil {
			return target{}, false, fmt.Errorf("take %s: %w", name, unavailable(err))
		} else if got {
			epoch, _ := c.holds(name)
			return target{self: true, epoch: epoch}, true, nil
		}
	}
	return target{}, false, fmt.Errorf("find the owner of %s: it keeps moving: %w", name, stratus.ErrUnavailable)
}

// nodeOf returns the address of node name if it is alive (its last
// heartbeat younger than DeadAfter) and not suspect. It reads the nodes
// again if name is unknown and the list is older than a heartbeat.
func (c *Cluster) nodeOf(ctx context.Context, name string) (*url.URL, bool, error) {
	c.mu.RLock()
	st, ok := c.nodes[name]
	stale := time.Since(c.nodesAt) > c.cfg.Heartbeat
	c.mu.RUnlock()
	if !ok && stale {
		if _, err := c.readNodes(ctx); err != nil {
			return nil, false, fmt.Errorf("find node %s: %w", name, unavailable(err))
		}
		c.mu.RLock()
		st, ok = c.nodes[name]
		c.mu.RUnlock()
	}
	if !ok || time.Since(st.node.HeartbeatAt) >= c.cfg.DeadAfter || !st.suspect.IsZero() || name == c.cfg.Node {
		return nil, false, nil
	}
	if st.addr == nil {
		return nil, false, nil // logged once by readNodes
	}
	return st.addr, true, nil
}

// markSuspect notes that a connection to node name was refused: it is
// not forwarded to until a later heartbeat of it.
func (c *Cluster) markSuspect(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.nodes[name]; ok {
		st.suspect = time.Now()
		c.nodes[name] = st
	}
}

// sleepUntil waits until t (a time of the store's clock) or ctx's end.
func sleepUntil(ctx context.Context, t time.Time) error {
	return sleepFor(ctx, time.Until(t))
}

// unavailable is err, made a stratus.ErrUnavailable if it is not one
// already: the store could not say where a workload runs.
func unavailable(err error) error {
	if errors.Is(err, stratus.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", err, stratus.ErrUnavailable)
}
