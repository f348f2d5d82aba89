package services

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"time"

	"github.com/stratus-run/stratus"
)

// Revisions runs each revision as a whole, placing, starting, probing
// and restarting its replicas itself: on Kubernetes, one Deployment per
// revision (package kubedeploy). With Config.Revisions set the Manager
// starts no sandbox: it ensures a revision's objects when the revision
// is deployed, sets its replicas where the autoscaler decides (0 to
// scale to zero; a request from zero asks for 1), sends requests to the
// endpoints the backend reports ready, counting them in flight per
// endpoint as it does per replica, and deletes the objects once the
// revision is retired (traffic left it, its deploy failed or its service
// was removed), retrying until the deletion succeeds or the server
// stops (see deleteObjects). A revision whose service moves to another
// server, or that runs when the server stops, keeps its objects for the
// next owner. When Run starts, the Manager lists the backend's objects
// and deletes those of the services it owns that no revision here
// claims: what an earlier run left (see cleanOrphans).
//
// Images: a reference the server's image store does not hold runs as
// given (the nodes pull it); one it holds gives the revision its digest
// and its user (Image.User).
type Revisions interface {
	// Ensure creates or updates revision rev's objects, running img with
	// replicas replicas; idempotent. It blocks on the cluster's API.
	Ensure(ctx context.Context, rev *stratus.Revision, img *Image, replicas int) error
	// Scale sets revision number of service's replicas; it blocks on the
	// cluster's API. Objects that do not exist are an error wrapping
	// stratus.ErrNotFound.
	Scale(ctx context.Context, service string, number, replicas int) error
	// Delete removes revision number of service's objects; idempotent
	// (objects already gone are no error). It blocks on the cluster's
	// API.
	Delete(ctx context.Context, service string, number int) error
	// List returns every revision some of whose objects the backend has,
	// in no order. It blocks on the cluster's API.
	List(ctx context.Context) ([]RevisionRef, error)
	// Endpoints returns the replicas of revision number of service as
	// last seen. It does not block (the Manager calls it holding its
	// lock).
	Endpoints(service string, number int) []Endpoint
	// Changed returns a channel closed at the next change of any
	// revision's endpoints.
	Changed() <-chan struct{}
}

// RevisionRef names a revision whose objects a Revisions backend has.
type RevisionRef struct {
	Service string
	Number  int
}

// name is the revision's name, as stratus.Revision's Name.
func (r RevisionRef) name() string {
	return (&stratus.Revision{Service: r.Service, Number: r.Number}).Name()
}

// Endpoint is one replica of a revision that a Revisions backend runs.
type Endpoint struct {
	// Name names it (the pod), unique among the revision's.
	Name string
	// Node is the node it runs on ("" until placed).
	Node string
	// Addr is where it takes requests; invalid until known.
	Addr netip.AddrPort
	// Ready: it takes requests.
	Ready bool
	// Terminating: it is stopping; it takes no new requests.
	Terminating bool
	// Restarts counts its restarts.
	Restarts int
	// OOMKilled: the end it was last restarted after was a kill for
	// exceeding its memory limit. The Manager counts an OOM kill when it
	// sees Restarts grow (or first sees it above 0) with OOMKilled set.
	OOMKilled bool
	// Reason says why it is not ready, or how it last ended (an OOM kill
	// in the words of OOMReason).
	Reason string
	// Failed: it cannot start as it is (its image cannot be pulled, its
	// configuration is refused, it crash-loops); a deploy waiting for it
	// fails with Reason.
	Failed bool
}

// backendSet is the state of a revision on a Revisions backend; all
// guarded by Manager.mu.
type backendSet struct {
	applied int  // replicas last applied; -1 until its objects are ensured
	held    int  // replicas it counts in Manager.total (see holdLocked)
	running bool // a goroutine applies (see applyBackend)
	remove  bool // retired for good: its objects are deleted
	// err is the last failed call's error; nil once a call succeeds.
	err error
}

// holdLocked makes set count n replicas in m.total, the replicas of all
// services that Config.MaxReplicas caps: on a backend, those applied to
// its objects (or being applied, when more), until its objects are
// deleted or are no longer this server's. When it counts fewer, the
// revisions the cap holds below their desired replicas are kicked to
// take the room. m.mu is held.
func (m *Manager) holdLocked(set *revSet, n int) {
	b := set.backend
	less := n < b.held
	m.total += n - b.held
	b.held = n
	if less {
		m.kickCappedLocked(set)
	}
}

// capLocked is how many of set's desired replicas the cap
// (Config.MaxReplicas) leaves room for, beside the other revisions'.
// m.mu is held.
func (m *Manager) capLocked(set *revSet) int {
	room := m.cfg.MaxReplicas - (m.total - set.backend.held)
	return max(0, min(set.desired, room))
}

// kickCappedLocked kicks every revision on the backend, but except,
// whose applied replicas are fewer than it desires. m.mu is held.
func (m *Manager) kickCappedLocked(except *revSet) {
	if m.stopping {
		return
	}
	kick := func(set *revSet) {
		if set != except && set.backend != nil && !set.retired && set.backend.applied < set.desired {
			m.kickLocked(set)
		}
	}
	for _, s := range m.services {
		for _, set := range s.sets {
			kick(set)
		}
	}
	for set := range m.deploying {
		kick(set)
	}
}

// kickLocked starts the goroutine that brings set's objects to what it
// wants (see applyBackend), unless one runs. m.mu is held.
func (m *Manager) kickLocked(set *revSet) {
	if set.backend == nil || set.backend.running || m.life == nil || set.img == nil {
		return
	}
	set.backend.running = true
	m.wg.Add(1)
	go m.applyBackend(set)
}

// applyBackend is the goroutine of set's objects: it ensures them and
// sets their replicas to set.desired, as far as Config.MaxReplicas
// leaves room (see capLocked), until they agree; once set is retired for
// good it waits for its requests in flight (its revision's request
// timeout at most; StopGrace once the server stops) and deletes them
// (see deleteObjects). A failed call is retried after BackoffBase; its
// error is kept in set.backend.err until a call succeeds. While objects
// of the same revision number are being deleted (an earlier revision's
// that had the number: a failed deploy's, or a removed service's), it
// waits for that to end before it makes them. Once set is retired its
// replicas' metering ends, when its objects are deleted if they are to
// be.
func (m *Manager) applyBackend(set *revSet) {
	defer m.wg.Done()
	name, number := set.svc.name, set.rev.Number
	ref := RevisionRef{name, number}
	for {
		m.mu.Lock()
		b := set.backend
		if set.retired {
			for _, r := range set.replicas {
				r.state = stateStopping
			}
			remove := b.remove
			if !remove {
				// Its objects stay for the next owner: not this
				// server's replicas any more.
				m.holdLocked(set, 0)
			}
			m.mu.Unlock()
			if remove {
				m.drainSet(set)
				if m.deleteObjects(ref, set) {
					m.log.Info("revision deleted", "service", name, "revision", set.rev.Name())
				}
			}
			var news backendNews
			m.mu.Lock()
			b.running = false
			m.holdLocked(set, 0)
			now := m.cfg.Now()
			for _, r := range set.replicas {
				closeIdle(r.target)
				m.endBackendRunLocked(r, now, &news)
			}
			set.replicas = nil
			m.notifyLocked()
			m.mu.Unlock()
			m.tell(&news)
			return
		}
		want := m.capLocked(set)
		if b.applied == want || m.stopping {
			b.running = false
			// (A failed call may have held more.)
			m.holdLocked(set, max(b.applied, 0))
			m.mu.Unlock()
			return
		}
		if m.deleting[ref] {
			changed := m.changed
			m.mu.Unlock()
			select {
			case <-changed:
			case <-m.halted:
			}
			continue
		}
		ensure := b.applied < 0
		m.holdLocked(set, max(b.applied, want))
		capped := want < set.desired
		m.mu.Unlock()
		if capped {
			m.log.Warn("revision held below its desired replicas by the server's cap", "service", name, "revision", set.rev.Name(), "replicas", want, "max_replicas", m.cfg.MaxReplicas)
		}
		ctx, cancel := m.callCtx(m.cfg.DriverTimeout)
		var err error
		if ensure {
			err = m.cfg.Revisions.Ensure(ctx, set.rev, set.img, want)
		} else {
			err = m.cfg.Revisions.Scale(ctx, name, number, want)
		}
		cancel()
		m.mu.Lock()
		switch {
		case err == nil:
			b.applied, b.err = want, nil
			m.holdLocked(set, want)
			if ensure {
				m.log.Info("revision's objects ensured", "service", name, "revision", set.rev.Name(), "replicas", want)
			}
		case errors.Is(err, stratus.ErrNotFound):
			b.applied, b.err = -1, err // its objects went: make them again
		default:
			b.err = err
		}
		m.notifyLocked()
		m.mu.Unlock()
		if err == nil {
			continue
		}
		m.log.Warn("apply a revision's replicas", "service", name, "revision", set.rev.Name(), "replicas", want, "err", err)
		t := time.NewTimer(m.cfg.BackoffBase)
		select {
		case <-t.C:
		case <-m.life.Done():
			t.Stop()
		}
	}
}

// deleteObjects deletes the backend's objects of revision ref: those of
// self, a set retired for good, or, with self nil, an orphan's (see
// cleanOrphans). A failed call is retried after BackoffBase, doubling up
// to BackoffMax (see backoff), until one succeeds (objects already gone
// are a success) or the server stops: a retired set gets its first call
// even then, an orphan none. It stops too once another set claims the
// objects (see claimedLocked): a deploy that took the revision's number
// again, after a failed deploy or its service's removal, whose Ensure
// then makes them anew. It reports whether the objects were deleted.
// While a call runs, ref is in m.deleting: no Ensure or Scale of the
// same revision number runs meanwhile (see applyBackend), and no other
// deletion of them (an orphan's gives way; a retired set's waits).
func (m *Manager) deleteObjects(ref RevisionRef, self *revSet) bool {
	for attempt := 0; ; attempt++ {
		m.mu.Lock()
		if m.stopping && (attempt > 0 || self == nil) || m.claimedLocked(ref, self) || m.deleting[ref] && self == nil {
			m.mu.Unlock()
			return false
		}
		if m.deleting[ref] {
			// An orphan's deletion of the same objects is under way:
			// its outcome decides the next call.
			changed := m.changed
			m.mu.Unlock()
			select {
			case <-changed:
			case <-m.halted:
				return false
			}
			attempt--
			continue
		}
		m.deleting[ref] = true
		m.mu.Unlock()
		ctx, cancel := m.callCtx(m.cfg.DriverTimeout)
		err := m.cfg.Revisions.Delete(ctx, ref.Service, ref.Number)
		cancel()
		m.mu.Lock()
		delete(m.deleting, ref)
		m.notifyLocked()
		m.mu.Unlock()
		if err == nil || errors.Is(err, stratus.ErrNotFound) {
			return true
		}
		m.log.Warn("delete a revision's objects; retried", "service", ref.Service, "revision", ref.name(), "attempt", attempt+1, "err", err)
		if !m.backoff(attempt) {
			m.log.Warn("the server stops: a revision's objects stay until its next start", "service", ref.Service, "revision", ref.name())
			return false
		}
	}
}

// claimedLocked reports whether the objects of revision ref are not to
// be deleted on behalf of self (nil: an orphan): a set other than self
// of the same service and number is not retired (it serves, or its
// deploy is in progress); or, for an orphan, any set of them is here
// (a retired one drains first and deletes them itself), or its service
// is known to be another server's. m.mu is held.
func (m *Manager) claimedLocked(ref RevisionRef, self *revSet) bool {
	claims := func(set *revSet) bool {
		return set != self && set.rev.Number == ref.Number && set.svc.name == ref.Service && (self == nil || !set.retired)
	}
	if s := m.services[ref.Service]; s != nil {
		if self == nil && s.remote {
			return true
		}
		for _, set := range s.sets {
			if claims(set) {
				return true
			}
		}
		if self == nil && slices.ContainsFunc(s.draining, claims) {
			return true
		}
	}
	for set := range m.deploying {
		if claims(set) {
			return true
		}
	}
	return false
}

// backoff waits before the retry that follows failed attempt (0 for
// the first call): BackoffBase, doubled with each attempt up to
// BackoffMax. It returns false at once when the server stops.
func (m *Manager) backoff(attempt int) bool {
	t := time.NewTimer(min(m.cfg.BackoffBase<<min(attempt, 16), m.cfg.BackoffMax))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-m.halted:
		return false
	}
}

// cleanOrphans deletes the backend's objects that no revision here
// claims (see claimedLocked), of the services this server owns
// (Config.Owns): those an earlier run left behind, having stopped or
// crashed before it deleted them, or after its store forgot their
// revision or service. Run starts it after Load; it lists the objects
// once (a failed List is retried as deleteObjects retries) and ends once
// each is deleted or kept, or the server stops.
func (m *Manager) cleanOrphans() {
	defer m.wg.Done()
	var refs []RevisionRef
	for attempt := 0; ; attempt++ {
		ctx, cancel := m.callCtx(m.cfg.DriverTimeout)
		var err error
		refs, err = m.cfg.Revisions.List(ctx)
		cancel()
		if err == nil {
			break
		}
		m.log.Warn("list the revisions' objects to delete those left over; retried", "attempt", attempt+1, "err", err)
		if !m.backoff(attempt) {
			return
		}
	}
	for _, ref := range refs {
		// Owns is not called holding m.mu; claimedLocked, under it,
		// keeps what changed since.
		if !m.owns(ref.Service) {
			continue
		}
		if m.deleteObjects(ref, nil) {
			m.log.Info("deleted the objects of a revision no longer served", "service", ref.Service, "revision", ref.name())
		}
	}
}

// closeIdle closes the idle connections of t's transport, if any.
func closeIdle(t Target) {
	if tr, ok := t.Transport.(*http.Transport); ok {
		tr.CloseIdleConnections()
	}
}

// drainSet waits until no request of set's replicas is in flight, for at
// most its revision's request timeout, StopGrace once the server stops.
func (m *Manager) drainSet(set *revSet) {
	deadline := time.Now().Add(requestTimeout(set.rev.Config))
	for {
		m.mu.Lock()
		n := 0
		for _, r := range set.replicas {
			n += r.inflight
		}
		if d := time.Now().Add(m.cfg.StopGrace); m.stopping && d.Before(deadline) {
			deadline = d
		}
		changed := m.changed
		m.mu.Unlock()
		if n == 0 {
			return
		}
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-changed:
			t.Stop()
		case <-t.C:
			return
		}
	}
}

// followBackend keeps the replicas of every revision on the backend as
// its endpoints are, until stop closes.
func (m *Manager) followBackend(stop <-chan struct{}) {
	for {
		ch := m.cfg.Revisions.Changed()
		var news backendNews
		m.mu.Lock()
		for _, s := range m.services {
			for _, set := range s.sets {
				m.syncLocked(set, &news)
			}
		}
		for set := range m.deploying {
			m.syncLocked(set, &news)
		}
		m.mu.Unlock()
		m.tell(&news)
		select {
		case <-ch:
		case <-stop:
			return
		}
	}
}

// backendNews is what following the backend saw, told once m.mu is
// released (see tell): the usage of the replicas whose metering ended,
// and the replicas' restarts with their reasons.
type backendNews struct {
	usage    []stratus.ReplicaUsage
	restarts []restartNews
}

type restartNews struct {
	r      *replica
	reason string
}

// tell reports news: the replicas' usage to Config.Usage, their restarts
// to the log. The caller does not hold m.mu.
func (m *Manager) tell(news *backendNews) {
	for _, u := range news.usage {
		m.cfg.Usage.ReplicaUsage(u)
	}
	for _, x := range news.restarts {
		m.platformLog(x.r, fmt.Sprintf("replica %s: %s", x.r.set.rev.Name(), x.reason))
	}
}

// endBackendRunLocked ends the metering of backend replica r at end, if
// it is metered, adding its usage to news. m.mu is held.
func (m *Manager) endBackendRunLocked(r *replica, end time.Time, news *backendNews) {
	if r.run == nil {
		return
	}
	if u, ok := m.endRunLocked(r, r.run.id, end); ok {
		news.usage = append(news.usage, u)
	}
}

// syncLocked makes set's replicas its endpoints': one replica per
// endpoint, ready when the endpoint is; a replica whose endpoint went
// is dropped once its requests are done. A replica that came to be
// ready takes the waiting requests. It meters a replica from the first
// sight of its endpoint's address (its pod started) until its endpoint
// is gone, and counts its restarts and OOM kills in its service's
// counters (see Endpoint.OOMKilled); what is to be told goes to news.
// m.mu is held.
func (m *Manager) syncLocked(set *revSet, news *backendNews) {
	if set.img == nil || set.backend == nil || set.retired {
		return
	}
	eps := m.cfg.Revisions.Endpoints(set.svc.name, set.rev.Number)
	c := set.rev.Config
	now := m.cfg.Now()
	changed, readied := false, false
	seen := make(map[string]bool, len(eps))
	for _, ep := range eps {
		seen[ep.Name] = true
		i := slices.IndexFunc(set.replicas, func(r *replica) bool { return r.id == ep.Name })
		var r *replica
		if i < 0 {
			// Restarts from before this server saw the pod (another
			// owner's, or its own before a restart) were counted then:
			// only those from now on count here.
			r = &replica{set: set, id: ep.Name, state: stateStarting, stop: make(chan struct{}), restarts: ep.Restarts}
			set.replicas = append(set.replicas, r)
			changed = true
		} else {
			r = set.replicas[i]
		}
		if ep.Addr.IsValid() && (r.target.URL == nil || r.target.URL.Host != ep.Addr.String()) {
			closeIdle(r.target)
			r.target = Target{
				URL:       &url.URL{Scheme: "http", Host: ep.Addr.String()},
				Transport: newTransport(c.H2C),
				Timeout:   requestTimeout(c),
			}
		}
		state := stateStarting
		switch {
		case ep.Terminating:
			state = stateStopping
		case ep.Ready && r.target.URL != nil:
			state = stateReady
		case ep.Failed && ep.Restarts > 0:
			state = stateBackoff
		}
		if ep.Restarts >= crashLoopRestarts && state == stateStarting {
			state = stateBackoff
		}
		if state != r.state {
			if state == stateReady {
				r.readyAt = now
				readied = true
			}
			r.state = state
			changed = true
		}
		if ep.Restarts > r.restarts {
			set.svc.restarts += int64(ep.Restarts - r.restarts)
			if ep.OOMKilled {
				set.svc.oomKills++
			}
			reason := ep.Reason
			if reason == "" {
				reason = "restarted"
			}
			news.restarts = append(news.restarts, restartNews{r, reason})
		}
		if ep.Addr.IsValid() && r.run == nil {
			m.beginRunLocked(r, ep.Name, now)
		}
		r.node, r.restarts, r.lastErr, r.failed = ep.Node, ep.Restarts, ep.Reason, ep.Failed
	}
	set.replicas = slices.DeleteFunc(set.replicas, func(r *replica) bool {
		if seen[r.id] {
			return false
		}
		if r.state != stateStopping {
			r.state = stateStopping
			changed = true
		}
		m.endBackendRunLocked(r, now, news)
		if r.inflight > 0 {
			return false
		}
		closeIdle(r.target)
		return true
	})
	if readied {
		m.grantLocked(set.svc)
	}
	if changed || readied {
		m.notifyLocked()
	}
}

// resolve is Config.Images' Resolve of ref; on a backend, a reference
// the server does not hold (or with no Images) runs as given: its digest
// is the reference, its user unknown (the backend's default).
func (m *Manager) resolve(ctx context.Context, ref string) (*Image, error) {
	if m.cfg.Revisions != nil && m.cfg.Images == nil {
		return &Image{Digest: ref}, nil
	}
	img, err := m.cfg.Images.Resolve(ctx, ref)
	if err != nil && m.cfg.Revisions != nil && errors.Is(err, stratus.ErrNotFound) {
		return &Image{Digest: ref}, nil
	}
	return img, err
}
