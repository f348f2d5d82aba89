package pods

import (
	"testing"

	"github.com/stratus-run/stratus/internal/sandbox"
)

func TestCPU(t *testing.T) {
	for _, tc := range []struct {
		name       string
		spec       sandbox.Spec
		req, limit int64 // milli-cores
	}{
		{"quota in proportion to memory", sandbox.Spec{MemoryMB: 1769}, 1000, 1000},
		{"quota, small", sandbox.Spec{MemoryMB: 128}, 73, 73},
		{"weight: up to a core", sandbox.Spec{MemoryMB: 128, CPUWeight: true}, 73, 1000},
		{"weight above a core", sandbox.Spec{MemoryMB: 3538, CPUWeight: true}, 2000, 2000},
		{"explicit cores", sandbox.Spec{MemoryMB: 128, CPU: 0.5}, 500, 500},
		{"request apart", sandbox.Spec{MemoryMB: 128, CPU: 2, CPURequest: 0.25}, 250, 2000},
		{"request above the limit", sandbox.Spec{CPU: 0.5, CPURequest: 1}, 1000, 1000},
		{"no memory: the floor", sandbox.Spec{}, minMilliCPU, minMilliCPU},
	} {
		req, limit := cpu(tc.spec)
		if req.MilliValue() != tc.req || limit.MilliValue() != tc.limit {
			t.Errorf("%s: request %dm limit %dm; want %dm and %dm", tc.name, req.MilliValue(), limit.MilliValue(), tc.req, tc.limit)
		}
	}
}

func TestRuntimeAPI(t *testing.T) {
	if got := runtimeAPI([]string{"A=1", "AWS_LAMBDA_RUNTIME_API=10.0.0.1:9001"}); got != "10.0.0.1:9001" {
		t.Errorf("runtimeAPI = %q", got)
	}
	if got := runtimeAPI([]string{"AWS_LAMBDA_RUNTIME_APIX=1"}); got != "" {
		t.Errorf("runtimeAPI of another variable = %q", got)
	}
}

func TestSignalName(t *testing.T) {
	if signalName(9) != "killed" || signalName(15) != "terminated" || signalName(40) != "signal 40" {
		t.Errorf("signalName: %q %q %q", signalName(9), signalName(15), signalName(40))
	}
}
