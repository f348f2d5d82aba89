package services

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
)

// revConfig is a configuration that differs by v, so that each deploy of
// another v makes a revision.
func revConfig(v string, min int) stratus.ServiceConfig {
	return stratus.ServiceConfig{Image: "app", MinScale: min, Env: map[string]string{"V": v}}
}

func (h *harness) setTraffic(name string, t ...stratus.TrafficTarget) *stratus.Service {
	h.t.Helper()
	svc, err := h.m.SetTraffic(h.t.Context(), name, t)
	if err != nil {
		h.t.Fatalf("set traffic of %s: %v", name, err)
	}
	return svc
}

// split sends n requests to route and counts the revisions that answered.
func (h *harness) split(route string, n int) map[string]int {
	h.t.Helper()
	got := make(map[string]int)
	for range n {
		rev, _ := h.hello(route)
		got[rev]++
	}
	return got
}

// within reports whether got of n draws is within 4 standard deviations
// of a binomial draw of percent p: whichever way requests are picked,
// random or round robin, a correct split passes and a wrong one does not.
func within(got, n, p int) bool {
	mean := float64(n*p) / 100
	sd := math.Sqrt(float64(n) * float64(p) / 100 * (1 - float64(p)/100))
	return math.Abs(float64(got)-mean) <= 4*sd+1
}

func TestTrafficSplitAndTags(t *testing.T) {
	h := newHarness(t)
	h.deploy("web", revConfig("1", 1))
	h.deploy("web", revConfig("2", 1))
	// No split set: the latest takes every request, the first drains.
	eventually.True(t, waitFor, "revision 1 stopped", func() bool { return len(h.d.liveOf("web-00001")) == 0 })
	if got := h.split("web", 10); got["web-00002"] != 10 {
		t.Errorf("without a split: %v", got)
	}

	svc := h.setTraffic("web", stratus.TrafficTarget{Revision: 1, Percent: 80}, stratus.TrafficTarget{Revision: 2, Percent: 20, Tag: "canary"})
	if svc.Revision != 2 || len(svc.Traffic) != 2 || svc.Traffic[1].Tag != "canary" {
		t.Errorf("SetTraffic returned %+v", svc)
	}
	const n = 400
	got := h.split("web", n)
	if !within(got["web-00001"], n, 80) || !within(got["web-00002"], n, 20) || got["web-00001"]+got["web-00002"] != n {
		t.Errorf("an 80/20 split over %d requests went %v", n, got)
	}
	// The tag reaches its revision whatever its percent.
	if got := h.split("web@canary", 20); got["web-00002"] != 20 {
		t.Errorf("web@canary went to %v", got)
	}
	if _, _, err := h.m.Acquire(t.Context(), "web@nope"); !errors.Is(err, stratus.ErrNotFound) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("an unknown tag: %v, want not found naming it", err)
	}
	if a, ok := h.m.Auth("web@canary"); !ok || a != stratus.AuthToken {
		t.Errorf("Auth(web@canary) = %q, %v", a, ok)
	}
	if _, ok := h.m.Auth("web@nope"); ok {
		t.Error("Auth of an unknown tag is ok")
	}
	// Each revision runs its own replicas.
	st := h.status("web")
	want := []Route{
		{Target: stratus.TrafficTarget{Revision: 1, Percent: 80}, Ready: 1},
		{Target: stratus.TrafficTarget{Revision: 2, Percent: 20, Tag: "canary"}, Ready: 1},
	}
	if diff := cmp.Diff(want, st.Routes); diff != "" || st.Ready != 2 || st.State != StateReady {
		t.Errorf("status %s, %d ready; routes (-want +got):\n%s", st.State, st.Ready, diff)
	}

	// Back to the latest alone: revision 1 drains and stops.
	h.setTraffic("web", stratus.TrafficTarget{Latest: true, Percent: 100})
	eventually.True(t, waitFor, "revision 1 stopped again", func() bool { return len(h.d.liveOf("web-00001")) == 0 })
	if got := h.split("web", 10); got["web-00002"] != 10 {
		t.Errorf("latest=100: %v", got)
	}
	if _, _, err := h.m.Acquire(t.Context(), "web@canary"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("a tag no longer set: %v, want not found", err)
	}
}

// A deploy under a split moves the Latest targets to the new revision and
// keeps the pinned ones, replicas and all; the revision the traffic no
// longer reaches stops.
func TestTrafficDeployKeepsPinnedMovesLatest(t *testing.T) {
	h := newHarness(t)
	h.deploy("web", revConfig("1", 1))
	h.deploy("web", revConfig("2", 1))
	eventually.True(t, waitFor, "revision 1 stopped", func() bool { return len(h.d.liveOf("web-00001")) == 0 })
	split := []stratus.TrafficTarget{{Revision: 1, Percent: 50, Tag: "stable"}, {Latest: true, Percent: 50, Tag: "next"}}
	h.setTraffic("web", split...)
	eventually.True(t, waitFor, "revision 1 ready", func() bool { return h.status("web").Ready == 2 })
	pinned := h.d.liveOf("web-00001")

	svc := h.deploy("web", revConfig("3", 1))
	if svc.Revision != 3 || !cmp.Equal(svc.Traffic, split) {
		t.Errorf("deploy under a split returned %+v", svc)
	}
	if got := h.split("web@next", 5); got["web-00003"] != 5 {
		t.Errorf("the latest's tag after a deploy went to %v", got)
	}
	if got := h.split("web@stable", 5); got["web-00001"] != 5 {
		t.Errorf("the pinned tag after a deploy went to %v", got)
	}
	got := h.split("web", 100)
	if !within(got["web-00001"], 100, 50) || !within(got["web-00003"], 100, 50) || got["web-00002"] != 0 {
		t.Errorf("a 50/50 split after a deploy went %v", got)
	}
	eventually.True(t, waitFor, "revision 2 stopped", func() bool { return len(h.d.liveOf("web-00002")) == 0 })
	if now := h.d.liveOf("web-00001"); len(now) != 1 || len(pinned) != 1 || now[0] != pinned[0] {
		t.Errorf("the pinned revision's replicas changed across the deploy: %d then %d", len(pinned), len(now))
	}
	if !cmp.Equal(h.store.traffic("web"), split) {
		t.Errorf("stored traffic %v", h.store.traffic("web"))
	}
	// A pinned revision's image is in use.
	if !h.m.ImageInUse("sha256:app") {
		t.Error("the image is not in use")
	}
}

// A revision that only a tag reaches (0%) scales to zero and a request to
// its tag wakes it; it stays the tag's while the latest changes.
func TestTrafficZeroPercentTagWakes(t *testing.T) {
	h := newHarness(t)
	h.deploy("web", revConfig("1", 0))
	h.deploy("web", revConfig("2", 1))
	h.setTraffic("web", stratus.TrafficTarget{Latest: true, Percent: 100}, stratus.TrafficTarget{Revision: 1, Percent: 0, Tag: "old"})
	if got := h.split("web", 20); got["web-00002"] != 20 {
		t.Errorf("the split went to %v", got)
	}
	eventually.True(t, waitFor, "revision 1 at zero", func() bool { return len(h.d.liveOf("web-00001")) == 0 })
	if rev, _ := h.hello("web@old"); rev != "web-00001" {
		t.Errorf("web@old answered by %s", rev)
	}
	h.deploy("web", revConfig("3", 1))
	if rev, _ := h.hello("web@old"); rev != "web-00001" {
		t.Errorf("after a deploy, web@old answered by %s", rev)
	}
}

// Splits that are not valid, or name what does not exist, are refused and
// change nothing.
func TestTrafficInvalidChangesNothing(t *testing.T) {
	h := newHarness(t)
	h.deploy("web", revConfig("1", 1))
	h.deploy("web", revConfig("2", 1))
	split := []stratus.TrafficTarget{{Latest: true, Percent: 100, Tag: "current"}}
	h.setTraffic("web", split...)
	eventually.True(t, waitFor, "revision 1 stopped", func() bool { return len(h.d.liveOf("web-00001")) == 0 })
	started := len(h.d.started())

	for _, tc := range []struct {
		name, svc string
		split     []stratus.TrafficTarget
		kind      error
		says      string
	}{
		{"sum 90", "web", []stratus.TrafficTarget{{Revision: 1, Percent: 90}}, stratus.ErrInvalid, "sum to 90"},
		{"sum 110", "web", []stratus.TrafficTarget{{Revision: 1, Percent: 60}, {Revision: 2, Percent: 50}}, stratus.ErrInvalid, "sum to 110"},
		{"unknown revision", "web", []stratus.TrafficTarget{{Revision: 9, Percent: 100}}, stratus.ErrNotFound, "no revision 9"},
		{"unknown revision at 0%", "web", []stratus.TrafficTarget{{Revision: 2, Percent: 100}, {Revision: 9, Percent: 0, Tag: "x"}}, stratus.ErrNotFound, "no revision 9"},
		{"bad tag", "web", []stratus.TrafficTarget{{Revision: 1, Percent: 100, Tag: "Not_A_Tag"}}, stratus.ErrInvalid, "Not_A_Tag"},
		{"tag twice", "web", []stratus.TrafficTarget{{Revision: 1, Percent: 50, Tag: "a"}, {Revision: 2, Percent: 50, Tag: "a"}}, stratus.ErrInvalid, "twice"},
		{"revision and latest", "web", []stratus.TrafficTarget{{Revision: 1, Latest: true, Percent: 100}}, stratus.ErrInvalid, "not both"},
		{"unknown service", "api", []stratus.TrafficTarget{{Latest: true, Percent: 100}}, stratus.ErrNotFound, `"api"`},
	} {
		_, err := h.m.SetTraffic(t.Context(), tc.svc, tc.split)
		if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want %v saying %q", tc.name, err, tc.kind, tc.says)
		}
	}
	if got := h.store.traffic("web"); !cmp.Equal(got, split) {
		t.Errorf("stored traffic changed to %v", got)
	}
	if svc, _, _ := h.m.Get("web"); !cmp.Equal(svc.Traffic, split) {
		t.Errorf("traffic changed to %v", svc.Traffic)
	}
	if got := h.split("web@current", 5); got["web-00002"] != 5 {
		t.Errorf("web@current went to %v", got)
	}
	if n := len(h.d.started()); n != started {
		t.Errorf("%d sandboxes started by refused splits", n-started)
	}
}

// A deploy of the latest revision's configuration and image makes no
// revision and starts nothing.
func TestUnchangedDeployMakesNoRevision(t *testing.T) {
	h := newHarness(t)
	cfg := stratus.ServiceConfig{Image: "app", MinScale: 1, Env: map[string]string{}, Args: nil}
	first := h.deploy("web", cfg)
	started := len(h.d.started())
	cfg.Env = nil // the same, as stored
	again := h.deploy("web", cfg)
	if again.Revision != 1 || !again.UpdatedAt.Equal(first.UpdatedAt) {
		t.Errorf("an unchanged deploy returned revision %d, updated %v (was %v)", again.Revision, again.UpdatedAt, first.UpdatedAt)
	}
	if n := len(h.d.started()); n != started {
		t.Errorf("an unchanged deploy started %d sandboxes", n-started)
	}
	if n, _ := h.store.NextRevision(t.Context(), "web"); n != 2 {
		t.Errorf("next revision %d, want 2", n)
	}
	// Any change makes one.
	for i, edit := range []func(c *stratus.ServiceConfig){
		func(c *stratus.ServiceConfig) { c.Args = []string{"--v"} },
		func(c *stratus.ServiceConfig) { c.TimeoutSec = 30 },
		func(c *stratus.ServiceConfig) { c.Image = "app2" },
	} {
		edit(&cfg)
		if svc := h.deploy("web", cfg); svc.Revision != i+2 {
			t.Errorf("change %d made revision %d, want %d", i, svc.Revision, i+2)
		}
	}
}

// Load restores each service's split: the revisions it reaches run their
// minimum replicas, and the split and tags route as before.
func TestLoadRestoresTraffic(t *testing.T) {
	store := newFakeStore()
	ctx := context.Background()
	for n := 1; n <= 3; n++ {
		c := revConfig(fmt.Sprint(n), 1)
		c.Defaults()
		if _, err := store.PutRevision(ctx, &stratus.Revision{Service: "web", Number: n, Digest: "sha256:app", Config: c}); err != nil {
			t.Fatal(err)
		}
	}
	split := []stratus.TrafficTarget{{Revision: 1, Percent: 70}, {Latest: true, Percent: 30}, {Revision: 2, Percent: 0, Tag: "two"}}
	if _, err := store.SetTraffic(ctx, "web", split); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(c *Config) { c.Store = store })
	eventually.True(t, waitFor, "three revisions ready", func() bool { return h.status("web").Ready == 3 })
	got := h.split("web", 100)
	if !within(got["web-00001"], 100, 70) || !within(got["web-00003"], 100, 30) || got["web-00002"] != 0 {
		t.Errorf("the restored split went %v", got)
	}
	if rev, _ := h.hello("web@two"); rev != "web-00002" {
		t.Errorf("web@two answered by %s", rev)
	}
	if svc, _, _ := h.m.Get("web"); !cmp.Equal(svc.Traffic, split) || svc.Revision != 3 {
		t.Errorf("restored service %+v", svc)
	}
}

// The smooth weighted round robin gives each revision exactly its percent
// of every 100 picks, interleaved.
func TestRoutingPick(t *testing.T) {
	a, b, c := &revSet{}, &revSet{}, &revSet{}
	rt := resolve([]stratus.TrafficTarget{{Revision: 1, Percent: 50}, {Revision: 2, Percent: 30}, {Revision: 1, Percent: 10}, {Revision: 3, Percent: 10}}, 3,
		map[int]*revSet{1: a, 2: b, 3: c})
	var picks []*revSet
	for range 200 {
		picks = append(picks, rt.pick())
	}
	for i := 0; i < 200; i += 100 {
		window := picks[i : i+100]
		count := func(s *revSet) int {
			return len(slices.DeleteFunc(slices.Clone(window), func(x *revSet) bool { return x != s }))
		}
		if count(a) != 60 || count(b) != 30 || count(c) != 10 {
			t.Errorf("picks %d-%d: %d, %d, %d; want 60, 30, 10", i, i+99, count(a), count(b), count(c))
		}
	}
	// Interleaved: the 10% revision never twice in a row.
	for i := 1; i < len(picks); i++ {
		if picks[i] == c && picks[i-1] == c {
			t.Fatalf("pick %d: the 10%% revision twice in a row", i)
		}
	}
	var empty routing
	if empty.pick() != nil {
		t.Error("an empty split picked a revision")
	}
}

// Requests waiting for a replica of a revision the traffic leaves wait
// for one of the revision their route reaches now; those of a tag that
// is gone fail, naming it.
func TestTrafficReroutesWaiters(t *testing.T) {
	h := newHarness(t)
	h.deploy("web", revConfig("1", 1))
	// Revision 2 serves at once, without a replica; the replicas it
	// starts never listen (until the gate opens, at cleanup).
	zero := 0
	h.deploy("web", stratus.ServiceConfig{Image: "app", InitialScale: &zero, Env: map[string]string{"FAKE_WAIT_GATE": "1"}})
	h.setTraffic("web", stratus.TrafficTarget{Latest: true, Percent: 100, Tag: "two"})
	split := h.acquireAsync(t.Context(), "web")
	tagged := h.acquireAsync(t.Context(), "web@two")
	eventually.True(t, waitFor, "two requests waiting", func() bool { return h.status("web").Waiting == 2 })

	h.setTraffic("web", stratus.TrafficTarget{Revision: 1, Percent: 100})
	a := receive(t, split)
	if a.err != nil {
		t.Fatalf("the rerouted request: %v", a.err)
	}
	body, err := fetch(a.tg, "/")
	a.release()
	if err != nil || !strings.HasPrefix(body, "web-00001 ") {
		t.Errorf("the rerouted request was answered %q, %v", body, err)
	}
	if b := receive(t, tagged); !errors.Is(b.err, stratus.ErrNotFound) || !strings.Contains(b.err.Error(), `"two"`) {
		t.Errorf("the request of a removed tag: %v, want not found naming it", b.err)
	}
	if st := h.status("web"); st.Waiting != 0 {
		t.Errorf("%d requests still waiting", st.Waiting)
	}
}

// A request that came without the server's token reaches only a revision
// deployed with auth none: one whose route takes it to another, at once
// or after a traffic change while it waits, gets ErrTokenRequired.
func TestTrafficWithoutTokenReachesOnlyOpenRevisions(t *testing.T) {
	h := newHarness(t)
	h.deploy("web", revConfig("1", 1)) // auth token, the default
	// Revision 2, open, serves at once without a replica; the replicas it
	// starts never listen (until the gate opens, at cleanup).
	zero := 0
	h.deploy("web", stratus.ServiceConfig{Image: "app", Auth: stratus.AuthNone, InitialScale: &zero, Env: map[string]string{"FAKE_WAIT_GATE": "1"}})
	h.setTraffic("web", stratus.TrafficTarget{Latest: true, Percent: 100}, stratus.TrafficTarget{Revision: 1, Tag: "one"})
	public := WithoutToken(t.Context())
	waiting := h.acquireAsync(public, "web")
	eventually.True(t, waitFor, "the request waiting", func() bool { return h.status("web").Waiting == 1 })

	h.setTraffic("web", stratus.TrafficTarget{Revision: 1, Percent: 100}, stratus.TrafficTarget{Revision: 1, Tag: "one"})
	if a := receive(t, waiting); !errors.Is(a.err, ErrTokenRequired) {
		if a.release != nil {
			a.release()
		}
		t.Fatalf("the request without the token rerouted to revision 1: %v, want ErrTokenRequired", a.err)
	}
	for _, route := range []string{"web", "web@one"} {
		if _, _, err := h.m.Acquire(public, route); !errors.Is(err, ErrTokenRequired) {
			t.Errorf("Acquire %s without the token: %v, want ErrTokenRequired", route, err)
		}
	}
	if rev, _ := h.hello("web"); rev != "web-00001" { // with the token
		t.Errorf("the request with the token reached %s", rev)
	}
	if st := h.status("web"); st.Waiting != 0 {
		t.Errorf("%d requests still waiting", st.Waiting)
	}
}
