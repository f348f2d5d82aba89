package pool

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/stratus-run/stratus/internal/sandbox"
)

// InstanceInfo is one sandbox of a function, as Instances lists it.
type InstanceInfo struct {
	// ID is the instance's ID, its sandbox's.
	ID string
	// Version is what it runs as: stratus.LatestVersion or a published
	// version's number.
	Version string
	// State is "starting", "idle", "busy", "prepared" or "stopping".
	State string
	// Since is when its sandbox was launched (started, or prepared).
	Since time.Time
	// Placement is where its sandbox runs, with a Config.Placer that
	// knows it; zero otherwise.
	Placement sandbox.Placement
}

// Instances lists the sandboxes of function name that are up: launched
// (started or prepared) and their end not yet seen, of every version,
// oldest first. Their placement comes from Config.Placer, asked outside
// the Manager's lock.
func (m *Manager) Instances(name string) []InstanceInfo {
	m.mu.Lock()
	set := m.sandboxes[name]
	out := make([]InstanceInfo, 0, len(set))
	for in, since := range set {
		out = append(out, InstanceInfo{ID: in.ID, Version: in.Version.RunsAs(), State: stateName(in.state), Since: since})
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b InstanceInfo) int {
		return cmp.Or(a.Since.Compare(b.Since), strings.Compare(a.ID, b.ID))
	})
	if m.cfg.Placer != nil {
		for i := range out {
			out[i].Placement, _ = m.cfg.Placer.Placement(out[i].ID)
		}
	}
	return out
}

// stateName is how Instances shows an instance state.
func stateName(state int) string {
	switch state {
	case stateStarting:
		return "starting"
	case statePrepared:
		return "prepared"
	case stateIdle:
		return "idle"
	case stateBusy:
		return "busy"
	}
	return "stopping"
}

// addSandbox records that in's sandbox is up.
func (m *Manager) addSandbox(in *Instance) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sandboxes == nil {
		m.sandboxes = make(map[string]map[*Instance]time.Time)
	}
	fn := in.Version.Function
	if m.sandboxes[fn] == nil {
		m.sandboxes[fn] = make(map[*Instance]time.Time)
	}
	m.sandboxes[fn][in] = m.cfg.Now()
}

// removeSandbox records that in's sandbox has ended.
func (m *Manager) removeSandbox(in *Instance) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fn := in.Version.Function
	delete(m.sandboxes[fn], in)
	if len(m.sandboxes[fn]) == 0 {
		delete(m.sandboxes, fn)
	}
}
