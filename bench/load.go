package main

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

// target is one HTTP endpoint the load generator drives. Every target gets
// the same request: POST of the event {} as application/json.
type target struct {
	benchkit.Target
	// kind is what the target is (kindDirect, …); for Stratus, sandbox,
	// path (/v1 or /fn) and function say which server, route and function.
	kind                    string
	sandbox, path, function string
	// pids lists the processes serving the target, for CPU accounting:
	// the first is the front (the server, the proxy, the emulator).
	pids func() []int
}

// Kinds of targets.
const (
	kindDirect  = "direct"
	kindProxy   = "proxy"
	kindStratus = "stratus"
	kindRelay   = "relay"
	kindRIE     = "rie"
)

var event = []byte(`{}`)

// point is the result of one measurement at one concurrency.
type point struct {
	benchkit.Run
	// CPUPerReq is the CPU time the target's processes (and their
	// children) spent per answered request (user + system), 0 when
	// unknown; FrontCPUPerReq counts the first process alone (the Stratus
	// server without its instances, the proxy without its upstream).
	CPUPerReq      time.Duration
	FrontCPUPerReq time.Duration
	// Throttled is the number of CFS periods in which the quota held back
	// a cgroup of the target's processes, summed over them, per second of
	// the run (a runc sandbox's CPU share: 10 periods a second per
	// sandbox; 0 in the process driver).
	Throttled float64
}

// measure drives t at conc (see benchkit.Measure) and accounts the CPU
// time of its processes.
func measure(ctx context.Context, t *target, conc int, warmup, dur time.Duration) (point, error) {
	var p point
	var around func() func(benchkit.Run)
	if t.pids != nil {
		around = func() func(benchkit.Run) {
			pids := t.pids()
			front := pids[0]
			cpu0 := benchkit.SampleCPU(pids...)
			cgs := cpuCgroups(slices.Collect(maps.Keys(cpu0)))
			thr0 := throttledPeriods(cgs)
			return func(r benchkit.Run) {
				if r.OK == 0 {
					return
				}
				cpu1 := benchkit.SampleCPU(t.pids()...)
				p.CPUPerReq = cpu1.Since(cpu0) / time.Duration(r.OK)
				p.FrontCPUPerReq = (cpu1[front] - cpu0[front]) / time.Duration(r.OK)
				p.Throttled = float64(throttledPeriods(cgs)-thr0) / r.Elapsed.Seconds()
			}
		}
	}
	r, err := benchkit.Measure(ctx, &t.Target, conc, warmup, dur, around)
	p.Run = r
	return p, err
}

// medianRun takes the median of each figure over rounds; counts are summed.
func medianRun(rs []point) point {
	runs := make([]benchkit.Run, len(rs))
	for i, r := range rs {
		runs[i] = r.Run
	}
	return point{
		Run:            benchkit.MedianRun(runs),
		CPUPerReq:      benchkit.MedianOf(rs, func(r point) time.Duration { return r.CPUPerReq }),
		FrontCPUPerReq: benchkit.MedianOf(rs, func(r point) time.Duration { return r.FrontCPUPerReq }),
		Throttled:      benchkit.MedianOf(rs, func(r point) float64 { return r.Throttled }),
	}
}
