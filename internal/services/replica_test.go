package services

import (
	"strings"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
)

func TestRestartAfterExit(t *testing.T) {
	h := newHarness(t)
	h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 1, HealthPath: "/healthz"})
	first := h.status("web").Replicas[0].ID
	h.d.crash(t, first, 3)
	eventually.True(t, waitFor, "the replica restarted and ready", func() bool {
		st := h.status("web")
		return st.Restarts == 1 && st.Ready == 1 && len(st.Replicas) == 1 && st.Replicas[0].ID != first
	})
	st := h.status("web")
	if !strings.Contains(st.LastError, "exited while serving: exit status 3") || st.State != StateReady {
		t.Errorf("after the exit: state %s, last error %q", st.State, st.LastError)
	}
	if _, id := h.hello("web"); id != st.Replicas[0].ID {
		t.Errorf("GET / answered by %s, want the new sandbox %s", id, st.Replicas[0].ID)
	}
	eventually.True(t, waitFor, "the exit in the service's logs", func() bool { return h.logs.has("web", "platform", "exit status 3") })
	if n := len(h.d.live()); n != 1 {
		t.Errorf("%d live sandboxes after a restart, want 1", n)
	}
}

func TestLivenessAndCrashLoop(t *testing.T) {
	// Runs are short (unhealthy 300ms after start, three failed probes)
	// and BackoffMax is long, so restarts are not reset as stable runs.
	h := newHarness(t, func(c *Config) { c.BackoffMax = 3 * time.Second })
	h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 1, HealthPath: "/healthz",
		Env: map[string]string{"FAKE_UNHEALTHY_AFTER_MS": "300"}})
	eventually.True(t, waitFor, "a restart by the liveness probe", func() bool {
		st := h.status("web")
		return st.Restarts >= 1 && strings.Contains(st.LastError, "liveness probe failed 3 times: GET /healthz: status 500")
	})
	eventually.True(t, waitFor, "CrashLoopBackOff", func() bool { return h.status("web").State == StateCrashLoop })
	if st := h.status("web"); st.Restarts < crashLoopRestarts {
		t.Errorf("crash loop after %d restarts, want at least %d", st.Restarts, crashLoopRestarts)
	}
	if n := len(h.d.live()); n > 1 {
		t.Errorf("%d live sandboxes, want at most 1", n)
	}
}
