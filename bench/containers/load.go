package main

import (
	"context"
	"time"

	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

// target is one HTTP endpoint the load generator drives with GET.
type target struct {
	benchkit.Target
	// cpu samples the CPU time used so far by the processes the
	// measurement accounts for; nil for none.
	cpu func() cpuSample
}

// cpuSample is CPU time used so far (user + system): by the Stratus
// server process, the bare proxy process, and the replicas' containers
// (their cgroups).
type cpuSample struct {
	Server, Proxy, Replicas time.Duration
}

// point is the result of one measurement at one concurrency.
type point struct {
	benchkit.Run
	// CPU time per answered request of the server, the bare proxy and
	// the replicas' containers (0 when not sampled).
	ServerCPU, ProxyCPU, ReplicaCPU time.Duration
}

// measure drives t at conc (see benchkit.Measure) and accounts the CPU
// time of the server, the proxy and the replicas.
func measure(ctx context.Context, t *target, conc int, warmup, dur time.Duration) (point, error) {
	var p point
	var around func() func(benchkit.Run)
	if t.cpu != nil {
		around = func() func(benchkit.Run) {
			cpu0 := t.cpu()
			return func(r benchkit.Run) {
				if r.OK == 0 {
					return
				}
				cpu1 := t.cpu()
				n := time.Duration(r.OK)
				p.ServerCPU = (cpu1.Server - cpu0.Server) / n
				p.ProxyCPU = (cpu1.Proxy - cpu0.Proxy) / n
				p.ReplicaCPU = (cpu1.Replicas - cpu0.Replicas) / n
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
		Run:        benchkit.MedianRun(runs),
		ServerCPU:  benchkit.MedianOf(rs, func(r point) time.Duration { return r.ServerCPU }),
		ProxyCPU:   benchkit.MedianOf(rs, func(r point) time.Duration { return r.ProxyCPU }),
		ReplicaCPU: benchkit.MedianOf(rs, func(r point) time.Duration { return r.ReplicaCPU }),
	}
}
