package server

import (
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/meter"
)

type discard struct{}

func (discard) Log(stratus.LogLine)       {}
func (discard) Record(stratus.Invocation) {}

// TestForgetFunction: a removed function's series leave the registry, and
// its records after a new deploy are counted afresh, also when records
// and the removal race.
func TestForgetFunction(t *testing.T) {
	m := newMetrics(discard{}, meter.New(meter.Default(), "local"))
	rec := stratus.Invocation{Function: "f", Outcome: stratus.OutcomeSuccess, DurationMs: 5, BilledMs: 5, MemoryMB: 128, Cold: true, InitDurationMs: 10}
	m.Record(rec)
	if got := testutil.ToFloat64(m.coldStarts.WithLabelValues("f")); got != 1 {
		t.Fatalf("cold starts = %v, want 1", got)
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() { m.Record(rec) })
		wg.Go(func() { m.forgetFunction("f") })
	}
	wg.Wait()
	m.forgetFunction("f")
	if n, err := testutil.GatherAndCount(m.reg, "stratus_function_cold_starts_total", "stratus_function_invocations_total"); err != nil || n != 0 {
		t.Fatalf("series of a removed function: %d, %v; want none", n, err)
	}
	m.Record(rec)
	const want = `
# HELP stratus_function_cold_starts_total Invocations that started an instance. Lambda: the invocations whose REPORT has an Init Duration.
# TYPE stratus_function_cold_starts_total counter
stratus_function_cold_starts_total{function="f"} 1
`
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want), "stratus_function_cold_starts_total"); err != nil {
		t.Errorf("after a new deploy: %v", err)
	}
}
