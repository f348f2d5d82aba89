package services

import (
	"context"
	"errors"
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
// was removed). A revision whose service moves to another server, or
// that runs when the server stops, keeps its objects for the next owner.
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
	// Endpoints returns the replicas of revision number of service as
	// last seen. It does not block (the Manager calls it holding its
	// lock).
	Endpoints(service string, number int) []Endpoint
	// Changed returns a channel closed at the next change of any
	// revision's endpoints.
	Changed() <-chan struct{}
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
	// Reason says why it is not ready, or how it last ended.
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
	running bool // a goroutine applies (see applyBackend)
	remove  bool // retired for good: its objects are deleted
	err     string
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
// sets their replicas to set.desired until they agree; once set is
// retired for good it waits for its requests in flight (its revision's
// request timeout at most; StopGrace once the server stops) and deletes
// them. A failed call is retried after BackoffBase.
func (m *Manager) applyBackend(set *revSet) {
	defer m.wg.Done()
	name, number := set.svc.name, set.rev.Number
	for {
		m.mu.Lock()
		b := set.backend
		if set.retired {
			for _, r := range set.replicas {
				r.state = stateStopping
			}
			remove := b.remove
			m.mu.Unlock()
			if remove {
				m.drainSet(set)
				ctx, cancel := m.callCtx(m.cfg.DriverTimeout)
				err := m.cfg.Revisions.Delete(ctx, name, number)
				cancel()
				if err != nil {
					m.log.Warn("delete a retired revision", "service", name, "revision", set.rev.Name(), "err", err)
				} else {
					m.log.Info("revision deleted", "service", name, "revision", set.rev.Name())
				}
			}
			m.mu.Lock()
			b.running = false
			for _, r := range set.replicas {
				closeIdle(r.target)
			}
			set.replicas = nil
			m.notifyLocked()
			m.mu.Unlock()
			return
		}
		want := set.desired
		if b.applied == want || m.stopping {
			b.running = false
			m.mu.Unlock()
			return
		}
		ensure := b.applied < 0
		m.mu.Unlock()
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
			b.applied, b.err = want, ""
			if ensure {
				m.log.Info("revision's objects ensured", "service", name, "revision", set.rev.Name(), "replicas", want)
			}
		case errors.Is(err, stratus.ErrNotFound):
			b.applied = -1 // its objects went: make them again
		default:
			b.err = err.Error()
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
		m.mu.Lock()
		for _, s := range m.services {
			for _, set := range s.sets {
				m.syncLocked(set)
			}
		}
		for set := range m.deploying {
			m.syncLocked(set)
		}
		m.mu.Unlock()
		select {
		case <-ch:
		case <-stop:
			return
		}
	}
}

// syncLocked makes set's replicas its endpoints': one replica per
// endpoint, ready when the endpoint is; a replica whose endpoint went
// is dropped once its requests are done. A replica that came to be
// ready takes the waiting requests. m.mu is held.
func (m *Manager) syncLocked(set *revSet) {
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
			r = &replica{set: set, id: ep.Name, state: stateStarting, stop: make(chan struct{})}
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
