package e2e

import (
	"encoding/json"
	"slices"
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


def weight():
    try:
        with open("/sys/fs/cgroup/cpu/cpu.shares") as f:
            return int(f.read())
    except FileNotFoundError:
        with open("/sys/fs/cgroup/cpu.weight") as f:
            return -int(f.read())


AT_IMPORT = quota()


def handler(event, context):
    return {"import": AT_IMPORT, "invoke": quota(), "weight": weight()}
`

// TestInitCPU: in the runc sandbox a function's init runs with a full core
// and its invocations with its memory's share of one (128 MB: 128/1769 of
// a core), as a user sees it from inside the function: the CPU quota its
// module-level code reads, then the one its handler reads, and its cgroup's
// weight (cpu.shares; on cgroup v2 cpu.weight, negated). By default the
// share is a weight (the quota stays a core); with --function-cpu quota it
// is the quota. Alike for a cold start on a container prepared ahead and
// on one started for it.
func TestInitCPU(t *testing.T) {
	needRunc(t)
	needTool(t, "python3")
	code := writeFiles(t, map[string]string{"app.py": cpuQuotaApp})
	full := [2]int{100_000, 100_000}
	share := [2]int{100_000 * 128 / 1769, 100_000}
	// 128 MB's share in cpu.shares units (1024 a core), and as runc maps
	// it to cgroup v2's cpu.weight; the kernel's default otherwise.
	shares := 100_000 * 128 / 1769 * 1024 / 100_000
	weights := []int{shares, -(1 + (shares-2)*9999/262142)}
	defaults := []int{1024, -100}
	for _, tc := range []struct {
		name    string
		args    []string
		invoke  [2]int
		weights []int
	}{
		{"CreateAhead", nil, full, weights},
		{"NoCreateAhead", []string{"--max-prepared", "0"}, full, weights},
		{"Quota", []string{"--function-cpu", "quota"}, share, defaults},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, tc.args...)
			s.mustCLI("deploy", "cpu", "--runtime", "python3", "--handler", "app.handler", "--memory", "128", code)
			for i := range 2 {
				c := s.mustInvoke("cpu", `{}`)
				if c.Cold() != (i == 0) {
					t.Errorf("call %d: %s; want only the first cold", i+1, c)
				}
				var got struct {
					Import, Invoke [2]int
					Weight         int
				}
				if err := json.Unmarshal(c.Body, &got); err != nil {
					t.Fatalf("call %d: %s: %v", i+1, c, err)
				}
				if got.Import != full || got.Invoke != tc.invoke || !slices.Contains(tc.weights, got.Weight) {
					t.Errorf("call %d: CPU quota (µs per period) at import %v, in the handler %v, weight %d; want %v (a core) then %v, weight one of %v",
						i+1, got.Import, got.Invoke, got.Weight, full, tc.invoke, tc.weights)
				}
			}
		})
	}
}
