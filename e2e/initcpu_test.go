package e2e

import (
	"encoding/json"
	"testing"
)

// cpuQuotaApp reads its sandbox's CPU quota (the container's own cgroup,
// which it sees at /sys/fs/cgroup) once at import, during the init, and
// again in each invocation.
const cpuQuotaApp = `def quota():
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            q = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            return [q, int(f.read())]
    except FileNotFoundError:
        with open("/sys/fs/cgroup/cpu.max") as f:
            q, p = f.read().split()
            return [int(q), int(p)]


AT_IMPORT = quota()


def handler(event, context):
    return {"import": AT_IMPORT, "invoke": quota()}
`

// TestInitCPU: in the runc sandbox a function's init runs with a full core
// and its invocations with its memory's share of one (128 MB: 128/1769 of
// a core), as a user sees it from inside the function: the CPU quota its
// module-level code reads, then the one its handler reads. Alike for a
// cold start on a container prepared ahead and on one started for it.
func TestInitCPU(t *testing.T) {
	needRunc(t)
	needTool(t, "python3")
	code := writeFiles(t, map[string]string{"app.py": cpuQuotaApp})
	full := [2]int{100_000, 100_000}
	share := [2]int{100_000 * 128 / 1769, 100_000}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"CreateAhead", nil},
		{"NoCreateAhead", []string{"--max-prepared", "0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, tc.args...)
			s.mustCLI("deploy", "cpu", "--runtime", "python3", "--handler", "app.handler", "--memory", "128", code)
			for i := range 2 {
				c := s.mustInvoke("cpu", `{}`)
				if c.Cold() != (i == 0) {
					t.Errorf("call %d: %s; want only the first cold", i+1, c)
				}
				var got struct{ Import, Invoke [2]int }
				if err := json.Unmarshal(c.Body, &got); err != nil {
					t.Fatalf("call %d: %s: %v", i+1, c, err)
				}
				if got.Import != full || got.Invoke != share {
					t.Errorf("call %d: CPU quota (µs per period) at import %v, in the handler %v; want %v (a core) then %v (128 MB's share)",
						i+1, got.Import, got.Invoke, full, share)
				}
			}
		})
	}
}
