package services

import (
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// owners says who owns each service, as the cluster would.
type owners struct {
	mu sync.Mutex
	of map[string]string
}

func (o *owners) set(name, node string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.of[name] = node
}

func (o *owners) owner(name string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.of[name]
}

// owns is Config.Owns of server node.
func (o *owners) owns(node string) func(string) bool {
	return func(name string) bool { return o.owner(name) == node }
}

// replicas counts the replicas the Manager has for service name, live or
// not, from its memory: a replica exists there before its sandbox does.
func (h *harness) replicas(name string) int {
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	s := h.m.services[name]
	if s == nil {
		return 0
	}
	n := 0
	for _, set := range s.sets {
		n += len(set.replicas)
	}
	for _, set := range s.draining {
		n += len(set.replicas)
	}
	return n
}

// Two servers share one store; only the owner of a service runs its
// replicas, the other knows it and says where it runs. When the
// ownership moves, the new owner starts the stored revision (on Reload,
// or at its next tick) and the old one stops its replicas.
func TestOwnershipMoves(t *testing.T) {
	t.Parallel()
	st := newFakeStore()
	own := &owners{of: map[string]string{"web": "a"}}
	server := func(node string) *harness {
		return startHarness(t, sandbox.Capabilities{}, func(c *Config) {
			c.Store, c.Owns, c.Owner = st, own.owns(node), own.owner
		})
	}
	a, b := server("a"), server("b")
	ctx := t.Context()
	a.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 1, MaxScale: 2})

	// b learns of it as a change notification would make it.
	if err := b.m.Reload(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	svcs, sts := b.m.List()
	if len(svcs) != 1 || svcs[0].Config.Image != "app" || sts[0].State != StateRemote || sts[0].Node != "a" {
		t.Fatalf("b lists %+v %+v, want web from image app, remote on a", svcs, sts)
	}
	if n := b.replicas("web"); n != 0 {
		t.Errorf("b has %d replicas of a service it does not own", n)
	}
	if _, _, err := b.m.Acquire(ctx, "web"); !errors.Is(err, stratus.ErrUnavailable) {
		t.Errorf("acquire on b: %v, want ErrUnavailable", err)
	}
	// A traffic change on b is stored for the owner to follow.
	if _, err := b.m.SetTraffic(ctx, "web", []stratus.TrafficTarget{{Latest: true, Percent: 100, Tag: "x"}}); err != nil {
		t.Fatal(err)
	}
	if n := b.replicas("web"); n != 0 {
		t.Errorf("b has %d replicas after a traffic change", n)
	}
	if err := a.m.Reload(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if auth, ok := a.m.Auth("web@x"); !ok || auth != stratus.AuthToken {
		t.Errorf("a's route of tag x: %q %v, want the traffic b set", auth, ok)
	}
	if st := a.status("web"); st.State != StateReady || st.Node != "a" || st.Ready != 1 {
		t.Errorf("a's status after its reload: %+v", st)
	}

	// The ownership moves to b: b's Reload starts the stored revision,
	// a's next tick stops its replicas.
	own.set("web", "b")
	if err := b.m.Reload(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, waitFor, "b serves web", func() bool {
		st := b.status("web")
		return st.State == StateReady && st.Ready == 1 && st.Node == "b"
	})
	if rev, _ := b.hello("web"); rev != "web-00001" {
		t.Errorf("b answered from %s, want web-00001", rev)
	}
	eventually.True(t, waitFor, "a stops its replicas", func() bool { return len(a.d.live()) == 0 && a.replicas("web") == 0 })
	if st := a.status("web"); st.State != StateRemote || st.Node != "b" {
		t.Errorf("a's status once b owns web: %+v", st)
	}

	// And back, by the ticks alone.
	own.set("web", "a")
	eventually.True(t, waitFor, "a serves web again", func() bool { return a.status("web").Ready == 1 })
	eventually.True(t, waitFor, "b stops its replicas", func() bool { return len(b.d.live()) == 0 && b.replicas("web") == 0 })
	if rev, _ := a.hello("web@x"); rev != "web-00001" {
		t.Errorf("a answered web@x from %s, want web-00001", rev)
	}

	// A deploy made on b, which does not own web: it is stored, b stops
	// its replicas at its next tick, and a, the owner, follows the store.
	if svc := b.deploy("web", stratus.ServiceConfig{Image: "app2", MinScale: 1, MaxScale: 2}); svc.Revision != 2 {
		t.Fatalf("deploy on b made revision %d, want 2", svc.Revision)
	}
	eventually.True(t, waitFor, "b stops the revision it deployed", func() bool {
		return len(b.d.live()) == 0 && b.replicas("web") == 0 && b.status("web").State == StateRemote
	})
	if err := a.m.Reload(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, waitFor, "a serves revision 2", func() bool {
		return a.status("web").Ready == 1 && len(a.d.liveOf("web-00001")) == 0
	})
	if rev, _ := a.hello("web"); rev != "web-00002" {
		t.Errorf("a answered from %s, want web-00002", rev)
	}
}

// Reload follows what another server stored: a new revision, a traffic
// split, a removal; ReloadAll a new service. A Reload that finds nothing
// new changes nothing.
func TestReloadFollowsStore(t *testing.T) {
	var mu sync.Mutex
	var removed []string
	h := newHarness(t, func(c *Config) {
		c.Removed = func(name string) {
			mu.Lock()
			removed = append(removed, name)
			mu.Unlock()
		}
	})
	ctx := t.Context()
	h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 1, MaxScale: 2})
	starts := len(h.d.started())
	if err := h.m.Reload(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if err := h.m.ReloadAll(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(h.d.started()); n != starts || h.replicas("web") != 1 {
		t.Errorf("after reloads of nothing new: %d starts (want %d), %d replicas", n, starts, h.replicas("web"))
	}

	// A revision deployed by another server.
	put := func(name string, n int, image string) {
		c := stratus.ServiceConfig{Image: image, MinScale: 1, MaxScale: 2}
		c.Defaults()
		if _, err := h.store.PutRevision(ctx, &stratus.Revision{Service: name, Number: n, Digest: "sha256:" + image, Config: c}); err != nil {
			t.Fatal(err)
		}
	}
	put("web", 2, "app2")
	if err := h.m.Reload(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, waitFor, "revision 2 serves", func() bool { return h.status("web").Ready == 1 && len(h.d.liveOf("web-00001")) == 0 })
	if rev, _ := h.hello("web"); rev != "web-00002" {
		t.Errorf("answered from %s, want web-00002", rev)
	}

	// A split set by another server.
	if _, err := h.store.SetTraffic(ctx, "web", []stratus.TrafficTarget{{Revision: 1, Percent: 50}, {Revision: 2, Percent: 50}}); err != nil {
		t.Fatal(err)
	}
	if err := h.m.Reload(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, waitFor, "both revisions serve", func() bool { return h.status("web").Ready == 2 })
	var got []string
	for range 4 {
		rev, _ := h.hello("web")
		got = append(got, rev)
	}
	slices.Sort(got)
	if want := []string{"web-00001", "web-00001", "web-00002", "web-00002"}; !slices.Equal(got, want) {
		t.Errorf("answered from %v, want %v", got, want)
	}

	// A service another server made, seen by ReloadAll.
	put("api", 1, "app")
	if err := h.m.ReloadAll(ctx); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, waitFor, "api serves", func() bool { return h.status("api").Ready == 1 })

	// Removed by another server.
	if err := h.store.DeleteService(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if err := h.m.ReloadAll(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.m.Get("web"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("get of a removed service: %v, want ErrNotFound", err)
	}
	eventually.True(t, waitFor, "web's replicas stop", func() bool {
		return len(h.d.liveOf("web-00001")) == 0 && len(h.d.liveOf("web-00002")) == 0
	})
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(removed, []string{"web"}) {
		t.Errorf("Removed called with %v, want [web]", removed)
	}
}

// Load runs only the services this server owns; the others are known,
// remote, with their stored configuration.
func TestLoadOwnedOnly(t *testing.T) {
	st := newFakeStore()
	for _, name := range []string{"mine", "theirs"} {
		c := stratus.ServiceConfig{Image: "app", MinScale: 1, MaxScale: 1}
		c.Defaults()
		if _, err := st.PutRevision(t.Context(), &stratus.Revision{Service: name, Number: 1, Digest: "sha256:app", Config: c}); err != nil {
			t.Fatal(err)
		}
	}
	own := &owners{of: map[string]string{"mine": "a", "theirs": "b"}}
	h := newHarness(t, func(c *Config) { c.Store, c.Owns, c.Owner = st, own.owns("a"), own.owner })
	eventually.True(t, waitFor, "mine serves", func() bool { return h.status("mine").Ready == 1 })
	if st := h.status("theirs"); st.State != StateRemote || st.Node != "b" || st.Desired != 0 || h.replicas("theirs") != 0 {
		t.Errorf("theirs: %+v, %d replicas; want remote on b, none here", st, h.replicas("theirs"))
	}
	if auth, ok := h.m.Auth("theirs"); !ok || auth != stratus.AuthToken {
		t.Errorf("auth of theirs: %q %v", auth, ok)
	}
}
