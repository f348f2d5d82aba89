package services

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/stratus-run/stratus"
)

// routing is a service's traffic resolved to the revisions it reaches:
// the shares of its split and the revisions of its tags.
type routing struct {
	split []*share           // percent above 0 only, one per revision
	tags  map[string]*revSet // by tag
}

// share is one revision's part of a split, with its smooth weighted round
// robin credit.
type share struct {
	set     *revSet
	percent int
	credit  int
}

// pick returns the revision of the next untagged request, by smooth
// weighted round robin: every share gains its percent, the one with the
// most credit is chosen and pays the total. Within every run of 100
// picks each revision gets exactly its percent, spread evenly. nil when
// the split is empty.
func (rt *routing) pick() *revSet {
	var best *share
	total := 0
	for _, sh := range rt.split {
		sh.credit += sh.percent
		total += sh.percent
		if best == nil || sh.credit > best.credit {
			best = sh
		}
	}
	if best == nil {
		return nil
	}
	best.credit -= total
	return best.set
}

// target returns the revision that a request routed by tag (when tagged)
// or by the split reaches, or nil.
func (rt *routing) target(tag string, tagged bool) *revSet {
	if tagged {
		return rt.tags[tag]
	}
	return rt.pick()
}

// number is the revision a target reaches when latest is the latest
// ready revision.
func number(t stratus.TrafficTarget, latest int) int {
	if t.Latest {
		return latest
	}
	return t.Revision
}

// reached returns the revisions that traffic t reaches, in order, when
// latest is the latest ready revision: those of the targets with a
// percent or a tag; the latest alone when t is empty.
func reached(t []stratus.TrafficTarget, latest int) []int {
	if len(t) == 0 {
		return []int{latest}
	}
	var ns []int
	for _, x := range t {
		if n := number(x, latest); (x.Percent > 0 || x.Tag != "") && !slices.Contains(ns, n) {
			ns = append(ns, n)
		}
	}
	return ns
}

// resolve resolves traffic t to the revision sets of sets, which holds
// every revision t reaches (see reached).
func resolve(t []stratus.TrafficTarget, latest int, sets map[int]*revSet) routing {
	if len(t) == 0 {
		return routing{split: []*share{{set: sets[latest], percent: 100}}}
	}
	var rt routing
	for _, x := range t {
		set := sets[number(x, latest)]
		if x.Tag != "" {
			if rt.tags == nil {
				rt.tags = make(map[string]*revSet)
			}
			rt.tags[x.Tag] = set
		}
		if x.Percent == 0 {
			continue
		}
		if i := slices.IndexFunc(rt.split, func(sh *share) bool { return sh.set == set }); i >= 0 {
			rt.split[i].percent += x.Percent
			continue
		}
		rt.split = append(rt.split, &share{set: set, percent: x.Percent})
	}
	return rt
}

// SetTraffic sets how service name's requests are split between its
// revisions, and its tags, and returns the service. Each target names a
// revision that became ready (every stored one did) or the latest ready
// one; an empty split gives the latest all requests. Revisions the split
// newly reaches start their minimum replicas (and more as their requests
// ask, from zero too); those it no longer reaches drain and stop. A
// split that is not valid (stratus.ValidateTraffic: stratus.ErrInvalid)
// or names an unknown revision (stratus.ErrNotFound), or one whose image
// is gone, changes nothing. An unknown service is an error wrapping
// stratus.ErrNotFound. It waits for a deploy of name in progress.
func (m *Manager) SetTraffic(ctx context.Context, name string, t []stratus.TrafficTarget) (*stratus.Service, error) {
	if err := stratus.ValidateTraffic(t); err != nil {
		return nil, fmt.Errorf("set traffic of service %q: %w", name, err)
	}
	t = slices.Clone(t)
	l := m.deployLock(name)
	l.Lock()
	defer l.Unlock()
	remote, err := m.followBefore(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("set traffic of service %q: %w", name, err)
	}
	if remote {
		return m.setRemoteTraffic(ctx, name, t)
	}
	m.mu.Lock()
	s, ok := m.services[name]
	var latest *stratus.Revision
	var have map[int]*revSet
	if ok {
		latest, have = s.latest, maps.Clone(s.sets)
	}
	m.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("service %q: %w", name, stratus.ErrNotFound)
	}
	// Deploys and removes of name hold its lock: s, its latest revision
	// and its sets stay as read until this change ends.

	// The revisions the split newly reaches, their images in use from now
	// on.
	added := make(map[int]*revSet)
	var digests []string
	defer func() {
		m.mu.Lock()
		for _, d := range digests {
			if m.pending[d]--; m.pending[d] == 0 {
				delete(m.pending, d)
			}
		}
		m.mu.Unlock()
	}()
	for _, n := range reached(t, latest.Number) {
		if have[n] != nil {
			continue
		}
		rev := latest
		if n != latest.Number {
			var err error
			if rev, err = m.cfg.Store.GetRevision(ctx, name, n); err != nil {
				return nil, fmt.Errorf("set traffic of service %q: %w", name, err)
			}
		}
		m.mu.Lock()
		m.pending[rev.Digest]++
		m.mu.Unlock()
		digests = append(digests, rev.Digest)
		img, err := m.resolve(ctx, rev.Digest)
		if err != nil {
			return nil, fmt.Errorf("set traffic of service %q: revision %s: image %s: %w", name, rev.Name(), rev.Config.Image, err)
		}
		added[n] = m.newSet(s, rev, img)
	}
	stored, err := m.cfg.Store.SetTraffic(ctx, name, t)
	if err != nil {
		return nil, err
	}

	m.mu.Lock()
	s.svc = *stored
	if len(s.svc.Traffic) == 0 {
		s.svc.Traffic = nil
	}
	// A revision the split newly reaches starts its minimum replicas; the
	// requests it gets start more, from zero too.
	for n, set := range added {
		set.desired = max(set.desired, set.rev.Config.MinScale)
		s.sets[n] = set
		m.reconcileLocked(set)
	}
	m.rerouteLocked(s, t)
	svc := s.svc
	m.mu.Unlock()
	for _, set := range added {
		m.prepareAhead(set)
	}
	m.log.Info("traffic set", "service", name, "traffic", fmt.Sprint(t))
	return &svc, nil
}

// rerouteLocked routes s's requests by traffic t from now on: the sets of
// the revisions t no longer reaches retire (they drain and stop), and
// the requests waiting for one of their replicas wait for one of the
// revision that their route reaches now (or fail: their tag gone, or,
// come without the server's token, a revision that needs it). s.sets
// holds every revision t reaches.
func (m *Manager) rerouteLocked(s *service, t []stratus.TrafficTarget) {
	keep := reached(t, s.latest.Number)
	for n, set := range s.sets {
		if !slices.Contains(keep, n) {
			delete(s.sets, n)
			s.draining = append(s.draining, set)
			m.removeLocked(set)
		}
	}
	s.route = resolve(t, s.latest.Number, s.sets)
	s.waiters = slices.DeleteFunc(s.waiters, func(w *waiter) bool {
		if !w.set.retired {
			return false
		}
		w.set.waiting--
		w.set = s.route.target(w.tag, w.tagged)
		if w.set == nil {
			w.err = fmt.Errorf("service %q has no tag %q: %w", s.name, w.tag, stratus.ErrNotFound)
			close(w.ch)
			return true
		}
		if w.set.img == nil {
			w.err = fmt.Errorf("service %q: %s: %w", s.name, w.set.why, stratus.ErrUnavailable)
			close(w.ch)
			return true
		}
		if w.public {
			if err := tokenRequired(s, w.set); err != nil {
				w.err = err
				close(w.ch)
				return true
			}
		}
		w.set.waiting++
		m.wakeLocked(w.set)
		return false
	})
	m.grantLocked(s)
	m.notifyLocked()
}

// wakeLocked starts a replica of set for a request that waits for one,
// when none runs or every one is busy, without waiting for a tick.
func (m *Manager) wakeLocked(set *revSet) {
	if set.liveLocked() == 0 || set.allBusyLocked() {
		set.desired = max(set.desired, set.liveLocked()+1)
		set.desired = min(set.desired, set.rev.Config.MaxScale)
		m.reconcileLocked(set)
	}
}

// H2C reports whether every revision a route of a service reaches (as
// Auth reads the route) speaks h2c to its replicas (ServiceConfig.H2C);
// false for an unknown service or tag.
func (m *Manager) H2C(route string) bool {
	name, tag, tagged := strings.Cut(route, "@")
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.services[name]
	if !ok {
		return false
	}
	if tagged {
		set, ok := s.route.tags[tag]
		return ok && set.rev.Config.H2C
	}
	if len(s.route.split) == 0 {
		return s.latest != nil && s.latest.Config.H2C
	}
	for _, sh := range s.route.split {
		if !sh.set.rev.Config.H2C {
			return false
		}
	}
	return true
}

// Auth returns the auth mode of a route of a service: for "NAME", the
// strictest of the revisions its split reaches (the token unless every
// one is deployed --auth none); for "NAME@TAG", that of the revision the
// tag reaches. ok is false for an unknown service or tag.
func (m *Manager) Auth(route string) (auth string, ok bool) {
	name, tag, tagged := strings.Cut(route, "@")
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.services[name]
	if !ok {
		return "", false
	}
	if tagged {
		set, ok := s.route.tags[tag]
		if !ok {
			return "", false
		}
		return set.rev.Config.Auth, true
	}
	auth = stratus.AuthNone
	for _, sh := range s.route.split {
		if sh.set.rev.Config.Auth != stratus.AuthNone {
			auth = stratus.AuthToken
		}
	}
	if len(s.route.split) == 0 {
		auth = s.latest.Config.Auth
	}
	return auth, true
}
