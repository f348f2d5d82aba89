package services

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
)

// The fields a Knative Service sets take effect.

func TestArgs(t *testing.T) {
	img := &Image{Entrypoint: []string{"/entry"}, Cmd: []string{"cmd", "x"}}
	for _, tc := range []struct {
		name          string
		command, args []string
		want          []string
	}{
		{"image's", nil, nil, []string{"/entry", "cmd", "x"}},
		{"args replace the image's cmd", nil, []string{"-v", "serve"}, []string{"/entry", "-v", "serve"}},
		{"command replaces both", []string{"/bin/app"}, nil, []string{"/bin/app"}},
		{"command and args", []string{"/bin/app"}, []string{"--port", "1"}, []string{"/bin/app", "--port", "1"}},
	} {
		got := argv(stratus.ServiceConfig{Command: tc.command, Args: tc.args}, img)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: argv %q, want %q", tc.name, got, tc.want)
		}
	}

	h := newHarness(t)
	h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 1, Args: []string{"--flag", "v"}})
	_, id := h.hello("web")
	if got := h.d.box(id).argv; !slices.Equal(got, []string{"/fake", "--flag", "v"}) {
		t.Errorf("the replica ran %q", got)
	}
	// An image without an entrypoint runs its args.
	h.deploy("bare", stratus.ServiceConfig{Image: "noentry", MinScale: 1, Args: []string{"/bin/server", "-x"}})
	_, id = h.hello("bare")
	if got := h.d.box(id).argv; !slices.Equal(got, []string{"/bin/server", "-x"}) {
		t.Errorf("the bare replica ran %q", got)
	}
}

// With a liveness path, the health path is the readiness probe only: a
// replica whose liveness path fails becomes ready all the same (the
// deploy succeeds), then restarts, saying why.
func TestLivenessPath(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.BackoffMax = 3 * time.Second })
	h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 1, HealthPath: "/healthz", LivenessPath: "/alive"})
	eventually.True(t, waitFor, "a restart by the liveness probe", func() bool {
		st := h.status("web")
		return st.Restarts >= 1 && strings.Contains(st.LastError, "liveness probe failed 3 times: GET /alive: status 404")
	})
}

func TestTimeoutTargetWindow(t *testing.T) {
	h := newHarness(t)
	h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 1, TimeoutSec: 7, Concurrency: 10, Target: 4, Window: stratus.Duration(10 * time.Second)})
	tg, release := h.acquire("web")
	release()
	if tg.Timeout != 7*time.Second {
		t.Errorf("target timeout %s, want 7s", tg.Timeout)
	}
	sp := h.latestSet("web").scaler.Spec()
	// The harness's server windows are 2s and 1s: the service's panic
	// window keeps their ratio.
	if sp.Target != 4 || sp.StableWindow != 10*time.Second || sp.PanicWindow != 5*time.Second {
		t.Errorf("autoscaler spec %+v", sp)
	}

	// Defaults: Knative's timeout; the target derived from the
	// concurrency, and capped at it.
	h.deploy("api", stratus.ServiceConfig{Image: "app", MinScale: 1, Concurrency: 10})
	tg, release = h.acquire("api")
	release()
	if tg.Timeout != stratus.DefaultServiceTimeoutSec*time.Second {
		t.Errorf("default timeout %s", tg.Timeout)
	}
	if sp := h.latestSet("api").scaler.Spec(); sp.Target != 7 || sp.StableWindow != 2*time.Second {
		t.Errorf("default autoscaler spec %+v", sp)
	}
	if got := scaleTarget(stratus.ServiceConfig{Concurrency: 10, Target: 50}); got != 10 {
		t.Errorf("a target over the concurrency: %g, want 10", got)
	}
	if got := scaleTarget(stratus.ServiceConfig{Target: 50}); got != 50 {
		t.Errorf("a target without a concurrency limit: %g, want 50", got)
	}
}

func TestInitialScale(t *testing.T) {
	h := newHarness(t)
	three := 3
	h.deploy("web", stratus.ServiceConfig{Image: "app", InitialScale: &three})
	// The deploy returns once the initial replicas are ready.
	if st := h.status("web"); st.Ready != 3 {
		t.Errorf("after a deploy with initial scale 3: %d ready", st.Ready)
	}
	// The autoscaler keeps them for a stable window after they became
	// ready (a revision without traffic data keeps its scale), then,
	// without traffic (min 0), they scale in.
	set := h.latestSet("web")
	h.m.mu.Lock()
	hold, until := set.hold, set.holdUntil
	h.m.mu.Unlock()
	if hold != 3 || until.IsZero() {
		t.Errorf("initial scale held at %d until %v, want 3 until a window after ready", hold, until)
	}
	eventually.True(t, waitFor, "scaled to zero", func() bool { return h.status("web").Live == 0 })

	// Initial scale 0: the revision takes traffic at once, with no
	// replica; the first request starts one.
	zero := 0
	h.deploy("lazy", stratus.ServiceConfig{Image: "app", InitialScale: &zero})
	if st := h.status("lazy"); st.Live != 0 || len(h.d.startedOf("lazy-00001")) != 0 {
		t.Errorf("after a deploy with initial scale 0: %+v", st)
	}
	if rev, _ := h.hello("lazy"); rev != "lazy-00001" {
		t.Errorf("GET / answered by %s", rev)
	}
}

// latestSet is the replica set of service name's latest revision.
func (h *harness) latestSet(name string) *revSet {
	h.t.Helper()
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	s := h.m.services[name]
	if s == nil || s.sets[s.latest.Number] == nil {
		h.t.Fatalf("service %s has no latest revision running", name)
	}
	return s.sets[s.latest.Number]
}
