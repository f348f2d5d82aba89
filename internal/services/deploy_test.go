package services

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
)

func TestDeployServes(t *testing.T) {
	h := newHarness(t)
	svc := h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 1, Env: map[string]string{"GREETING": "hi"}})
	if svc.Name != "web" || svc.Revision != 1 || svc.Digest != "sha256:app" {
		t.Errorf("deploy returned %+v", svc)
	}
	st := h.status("web")
	if st.State != StateReady || st.Ready != 1 || st.Desired != 1 || st.Live != 1 || st.Restarts != 0 || st.LastError != "" {
		t.Errorf("status after deploy: %+v", st)
	}
	if len(st.Replicas) != 1 || st.Replicas[0].Revision != 1 || st.Replicas[0].State != stateReady {
		t.Fatalf("replicas after deploy: %+v", st.Replicas)
	}
	if got := h.store.names(); !slices.Equal(got, []string{"web"}) {
		t.Errorf("stored services %v", got)
	}
	if !h.store.holds("web") || !h.m.ImageInUse("sha256:app") {
		t.Errorf("name claimed %v, ImageInUse %v", h.store.holds("web"), h.m.ImageInUse("sha256:app"))
	}

	rev, id := h.hello("web")
	if rev != "web-00001" || id != st.Replicas[0].ID {
		t.Errorf("GET / answered by %s %s, want web-00001 %s", rev, id, st.Replicas[0].ID)
	}
	// The sandbox got the image's command and environment, the user's and
	// the platform's, with PORT the port the target points at.
	b := h.d.box(id)
	if !slices.Equal(b.argv, []string{"/fake"}) {
		t.Errorf("argv %q", b.argv)
	}
	_, port, _ := net.SplitHostPort(st.Replicas[0].Address)
	if b.env["PORT"] != port || b.env["K_SERVICE"] != "web" || b.env["GREETING"] != "hi" || b.env["FROM_IMAGE"] != "1" {
		t.Errorf("sandbox env %v, address %s", b.env, st.Replicas[0].Address)
	}
	eventually.True(t, waitFor, "the replica's output in the service's logs", func() bool {
		return h.logs.has("web", "stdout", "fake listening")
	})
}

func TestRollingUpdate(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ReadyTimeout = 5 * time.Second })
	h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 1})
	held, release := h.acquire("web")
	defer release()

	// Revision 2's replica listens once the gate opens; until then,
	// requests go to revision 1.
	deployed := make(chan error, 1)
	go func() {
		_, err := h.m.Deploy(t.Context(), "web", stratus.ServiceConfig{Image: "app", MinScale: 1, Env: map[string]string{"FAKE_WAIT_GATE": "1"}})
		deployed <- err
	}()
	eventually.True(t, waitFor, "revision 2's replica started", func() bool { return len(h.d.startedOf("web-00002")) == 1 })
	if rev, _ := h.hello("web"); rev != "web-00001" {
		t.Errorf("while revision 2 starts, a request went to %s", rev)
	}
	if st := h.status("web"); st.State != StateReady {
		t.Errorf("while revision 2 starts: %+v", st)
	}
	h.d.openGate()
	select {
	case err := <-deployed:
		if err != nil {
			t.Fatalf("deploy revision 2: %v", err)
		}
	case <-time.After(waitFor):
		t.Fatal("deploy of revision 2 did not return")
	}
	if rev, _ := h.hello("web"); rev != "web-00002" {
		t.Errorf("after the deploy, a request went to %s", rev)
	}
	svc, st, _ := h.m.Get("web")
	if svc.Revision != 2 || st.State != StateReady || st.Ready != 1 {
		t.Errorf("after the deploy: revision %d, %+v", svc.Revision, st)
	}

	// The old replica drains: it serves the request it holds, then stops.
	eventually.True(t, waitFor, "the old replica draining", func() bool {
		st := h.status("web")
		return st.Draining == 1 && slices.ContainsFunc(st.Replicas, func(r ReplicaStatus) bool {
			return r.Revision == 1 && r.State == stateStopping && r.Inflight == 1
		})
	})
	if n := len(h.d.liveOf("web-00001")); n != 1 {
		t.Fatalf("%d sandboxes of revision 1 live while it holds a request, want 1", n)
	}
	if body, err := fetch(held, "/"); err != nil || !strings.HasPrefix(body, "web-00001 ") {
		t.Errorf("the held request on the old replica: %q %v", body, err)
	}
	release()
	eventually.True(t, waitFor, "the old replica stopped", func() bool {
		return len(h.d.liveOf("web-00001")) == 0 && h.status("web").Draining == 0
	})
	if rev, _ := h.hello("web"); rev != "web-00002" {
		t.Errorf("after the drain, a request went to %s", rev)
	}
}

func TestFailedDeploy(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ReadyTimeout = time.Second })
	h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 1})

	cases := []struct {
		name string
		cfg  stratus.ServiceConfig
		want []string
	}{
		{"exits at start", stratus.ServiceConfig{Image: "app", Env: map[string]string{"FAKE_EXIT_AT_START": "3"}},
			[]string{"exited before it was ready", "exit status 3"}},
		{"never listens", stratus.ServiceConfig{Image: "app", Env: map[string]string{"FAKE_NO_LISTEN": "1"}},
			[]string{"not ready within", "does not accept connections"}},
		{"unhealthy", stratus.ServiceConfig{Image: "app", HealthPath: "/healthz", Env: map[string]string{"FAKE_UNHEALTHY": "1"}},
			[]string{"not ready within", "GET /healthz: status 500"}},
	}
	for _, c := range cases {
		_, err := h.m.Deploy(t.Context(), "web", c.cfg)
		if !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("%s: deploy: %v, want ErrInvalid", c.name, err)
			continue
		}
		for _, w := range append(c.want, "web-00002") {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: deploy error %q does not say %q", c.name, err, w)
			}
		}
		// Revision 1 still serves; the failure is reported.
		svc, st, _ := h.m.Get("web")
		if svc.Revision != 1 || st.State != StateReady || st.Ready != 1 {
			t.Errorf("%s: after the failed deploy: revision %d, %+v", c.name, svc.Revision, st)
		}
		if !strings.Contains(st.LastError, "web-00002") || !strings.Contains(st.LastError, c.want[0]) {
			t.Errorf("%s: last error %q does not name the failed revision and why", c.name, st.LastError)
		}
		if rev, _ := h.hello("web"); rev != "web-00001" {
			t.Errorf("%s: after the failed deploy, a request went to %s", c.name, rev)
		}
		eventually.True(t, waitFor, "the failed revision's sandboxes stopped", func() bool { return len(h.d.liveOf("web-00002")) == 0 })
	}
	if n := len(h.d.live()); n != 1 {
		t.Errorf("%d live sandboxes, want revision 1's", n)
	}
	// A good deploy (of a changed configuration: an unchanged one changes
	// nothing) clears the error.
	h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 1, Env: map[string]string{"V": "2"}})
	if svc, st, _ := h.m.Get("web"); svc.Revision != 2 || st.LastError != "" {
		t.Errorf("after a good deploy: revision %d, last error %q", svc.Revision, st.LastError)
	}
}

func TestFailedFirstDeploy(t *testing.T) {
	h := newHarness(t)
	_, err := h.m.Deploy(t.Context(), "web", stratus.ServiceConfig{Image: "app", Env: map[string]string{"FAKE_EXIT_AT_START": "3"}})
	if !errors.Is(err, stratus.ErrInvalid) || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("deploy: %v, want ErrInvalid saying exit status 3", err)
	}
	if _, _, err := h.m.Get("web"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("get after a failed first deploy: %v, want ErrNotFound", err)
	}
	if _, _, err := h.m.Acquire(t.Context(), "web"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("acquire after a failed first deploy: %v, want ErrNotFound", err)
	}
	if names := h.store.names(); len(names) != 0 || h.store.holds("web") {
		t.Errorf("after a failed first deploy: stored %v, name still claimed %v", names, h.store.holds("web"))
	}
	eventually.True(t, waitFor, "no sandbox left", func() bool { return len(h.d.live()) == 0 })
}

func TestDeployRejects(t *testing.T) {
	h := newHarness(t)
	cases := []struct {
		name string
		cfg  stratus.ServiceConfig
		want error
		text string
	}{
		{"taken", stratus.ServiceConfig{Image: "app"}, stratus.ErrConflict, "a function has that name"},
		{"web", stratus.ServiceConfig{Image: "missing"}, stratus.ErrNotFound, "missing"},
		{"web", stratus.ServiceConfig{Image: "noentry"}, stratus.ErrInvalid, "no entrypoint"},
		{"web", stratus.ServiceConfig{Image: "app", MinScale: 3, MaxScale: 2}, stratus.ErrInvalid, "max 2"},
		{"bad/name", stratus.ServiceConfig{Image: "app"}, stratus.ErrInvalid, "name"},
	}
	for _, c := range cases {
		_, err := h.m.Deploy(t.Context(), c.name, c.cfg)
		if !errors.Is(err, c.want) || !strings.Contains(fmt.Sprint(err), c.text) {
			t.Errorf("deploy %s %+v: %v, want %v saying %q", c.name, c.cfg, err, c.want, c.text)
		}
	}
	// A command makes an image without entrypoint usable.
	h.deploy("web", stratus.ServiceConfig{Image: "noentry", Command: []string{"/bin/server"}})
	if names := h.store.names(); !slices.Equal(names, []string{"web"}) {
		t.Errorf("stored services %v, want only web", names)
	}
	if started := h.d.started(); len(started) != 1 || !slices.Equal(h.d.box(started[0]).argv, []string{"/bin/server"}) {
		t.Errorf("started %v", started)
	}
}

func TestRemove(t *testing.T) {
	h := newHarness(t)
	h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 1, MaxScale: 1, Concurrency: 1})
	_, release := h.acquire("web")
	defer release()
	waiting := h.acquireAsync(t.Context(), "web")
	eventually.True(t, waitFor, "a request waiting", func() bool { return h.status("web").Waiting == 1 })

	if err := h.m.Remove(t.Context(), "web"); err != nil {
		t.Fatal(err)
	}
	if a := receive(t, waiting); !errors.Is(a.err, stratus.ErrNotFound) {
		t.Errorf("waiting acquire after remove: %v, want ErrNotFound", a.err)
	}
	if _, _, err := h.m.Get("web"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("get after remove: %v", err)
	}
	if _, _, err := h.m.Acquire(t.Context(), "web"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("acquire after remove: %v", err)
	}
	if names := h.store.names(); len(names) != 0 || h.store.holds("web") {
		t.Errorf("after remove: stored services %v, name claimed %v", names, h.store.holds("web"))
	}
	// The replica finishes the request it holds, then stops.
	if n := len(h.d.live()); n != 1 {
		t.Errorf("%d live sandboxes while a request is in flight, want 1", n)
	}
	release()
	eventually.True(t, waitFor, "the replica stopped", func() bool { return len(h.d.live()) == 0 })
	if err := h.m.Remove(t.Context(), "web"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("second remove: %v, want ErrNotFound", err)
	}
}

// failingDelete is a fakeStore whose DeleteService fails while fail is set.
type failingDelete struct {
	*fakeStore
	fail atomic.Bool
}

func (s *failingDelete) DeleteService(ctx context.Context, name string) error {
	if s.fail.Load() {
		return errors.New("database is locked")
	}
	return s.fakeStore.DeleteService(ctx, name)
}

// Config.Removed is called once per successful remove, with the name,
// once the service is gone from the store and the Manager; never after a
// remove that failed.
func TestRemovedHook(t *testing.T) {
	st := &failingDelete{fakeStore: newFakeStore()}
	var m *Manager
	var mu sync.Mutex
	var calls []string
	h := newHarness(t, func(c *Config) {
		c.Store = st
		c.Removed = func(name string) {
			mu.Lock()
			calls = append(calls, name)
			mu.Unlock()
			_, _, err := m.Get(name)
			if !errors.Is(err, stratus.ErrNotFound) || slices.Contains(st.names(), name) {
				t.Errorf("Removed(%q) called while the service exists: get %v, stored %v", name, err, st.names())
			}
		}
	})
	m = h.m
	h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 1})
	h.deploy("api", stratus.ServiceConfig{Image: "app"})
	called := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(calls)
	}

	st.fail.Store(true)
	if err := m.Remove(t.Context(), "web"); err == nil {
		t.Fatal("remove succeeded while the store fails")
	}
	st.fail.Store(false)
	if err := m.Remove(t.Context(), "missing"); !errors.Is(err, stratus.ErrNotFound) {
		t.Fatalf("remove of an unknown service: %v, want ErrNotFound", err)
	}
	if c := called(); len(c) != 0 {
		t.Errorf("Removed called after failed removes: %v", c)
	}
	if _, _, err := m.Get("web"); err != nil {
		t.Fatalf("get after a failed remove: %v", err)
	}
	if err := m.Remove(t.Context(), "web"); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(t.Context(), "web"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("second remove: %v, want ErrNotFound", err)
	}
	if c := called(); !slices.Equal(c, []string{"web"}) {
		t.Errorf("Removed called with %v, want [web]", c)
	}
}

func TestLoad(t *testing.T) {
	store := newFakeStore()
	for _, rev := range []*stratus.Revision{
		{Service: "web", Number: 3, Digest: "sha256:app", Config: stratus.ServiceConfig{Image: "app", MinScale: 1, MaxScale: 1, Port: 8080}},
		{Service: "gone", Number: 1, Digest: "missing", Config: stratus.ServiceConfig{Image: "old", MinScale: 1, MaxScale: 1, Port: 8080}},
	} {
		if _, err := store.PutRevision(context.Background(), rev); err != nil {
			t.Fatal(err)
		}
	}
	h := newHarness(t, func(c *Config) { c.Store = store })
	eventually.True(t, waitFor, "the stored service ready", func() bool { return h.status("web").Ready == 1 })
	if rev, _ := h.hello("web"); rev != "web-00003" {
		t.Errorf("GET / answered by %s, want web-00003", rev)
	}
	// A service whose image is gone is loaded, with no replicas.
	if _, _, err := h.m.Acquire(t.Context(), "gone"); !errors.Is(err, stratus.ErrUnavailable) {
		t.Errorf("acquire of a service without image: %v, want ErrUnavailable", err)
	}
	if st := h.status("gone"); st.Live != 0 || !strings.Contains(st.LastError, "image old") {
		t.Errorf("service without image: %+v", st)
	}
	// The next deploy follows the stored revisions.
	if svc := h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 1}); svc.Revision != 4 {
		t.Errorf("deploy after load made revision %d, want 4", svc.Revision)
	}
}
