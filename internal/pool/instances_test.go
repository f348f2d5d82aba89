package pool

import (
	"slices"
	"testing"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// placer places every sandbox on node n1, in a pod named after it.
type placer struct{}

func (placer) Placement(id string) (sandbox.Placement, bool) {
	return sandbox.Placement{Pod: "pod-" + id, Node: "n1"}, true
}

// states are the states of infos, in order.
func states(infos []InstanceInfo) []string {
	var s []string
	for _, in := range infos {
		s = append(s, in.State)
	}
	return s
}

// TestInstances lists a function's sandboxes through their lives: a busy
// instance and the one prepared for the next cold start, then the idle
// one, with where the placer says they run; none once the function is
// removed and they have ended.
func TestInstances(t *testing.T) {
	e := newEnv(t, opts{maxPrepared: 1})
	e.m.cfg.Placer = placer{} // read by Instances only
	e.deploy("fn", 1, nil)
	e.waitFor("a prepared sandbox", func() bool { return slices.Equal(states(e.m.Instances("fn")), []string{"prepared"}) })
	if got := e.m.Instances("other"); len(got) != 0 {
		t.Errorf("Instances of a function without any: %+v", got)
	}

	g := e.gate()
	call := e.goInvoke("fn", block(g))
	e.atGate(g)
	// The call took the prepared sandbox; the next one is prepared.
	e.waitFor("a busy instance and a prepared one", func() bool {
		s := states(e.m.Instances("fn"))
		slices.Sort(s)
		return slices.Equal(s, []string{"busy", "prepared"})
	})
	for _, in := range e.m.Instances("fn") {
		if in.Version != stratus.LatestVersion || in.Since.IsZero() || in.ID == "" {
			t.Errorf("instance %+v: want $LATEST, its launch time and ID", in)
		}
		if want := (sandbox.Placement{Pod: "pod-" + in.ID, Node: "n1"}); in.Placement != want {
			t.Errorf("instance %s placed %+v, want %+v", in.ID, in.Placement, want)
		}
	}
	e.open(g)
	e.await(call)
	e.waitFor("an idle instance and a prepared one", func() bool {
		s := states(e.m.Instances("fn"))
		slices.Sort(s)
		return slices.Equal(s, []string{"idle", "prepared"})
	})

	e.m.Remove("fn")
	e.waitFor("no sandbox of the removed function", func() bool {
		return len(e.m.Instances("fn")) == 0
	})
}
