package main

import (
	"os"
	"slices"
	"time"

	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

// Kinds of processes whose CPU time is accounted.
const (
	cpuStratus   = "stratus"   // the server processes themselves (for direct: tinyserver)
	cpuSandboxes = "sandboxes" // the servers' descendants: the function's instances, runc
	cpuPostgres  = "postgres"  // the postmaster and its backends
	cpuNATS      = "nats"      // the nats-server processes
)

// cpuKinds are the kinds, in the report's order.
var cpuKinds = []string{cpuStratus, cpuSandboxes, cpuPostgres, cpuNATS}

// side is the processes a target's CPU is the sum of: every process of
// one deployment, whichever of its servers a call lands on.
type side struct {
	name     string
	servers  []int // stratus server PIDs (the floor's process for direct)
	postgres int   // the postmaster, 0 if none
	nats     []int
}

// cpuReading is the CPU time each kind, and each server on its own, had
// used.
type cpuReading struct {
	kinds   map[string]time.Duration
	servers []time.Duration
}

// read reads the CPU time of s's processes now. A server's figure is its
// own; its sandboxes' is the rest of its tree, with the children each
// process reaped; PostgreSQL's likewise the postmaster's tree with what
// it reaped (backends that ended count).
func (s *side) read() cpuReading {
	r := cpuReading{kinds: map[string]time.Duration{}}
	for _, pid := range s.servers {
		own := benchkit.ProcCPU(pid)
		r.servers = append(r.servers, own)
		r.kinds[cpuStratus] += own
		r.kinds[cpuSandboxes] += benchkit.TreeCPUReaped(pid) - own
	}
	if s.postgres != 0 {
		r.kinds[cpuPostgres] = benchkit.TreeCPUReaped(s.postgres)
	}
	for _, pid := range s.nats {
		r.kinds[cpuNATS] += benchkit.TreeCPUReaped(pid)
	}
	return r
}

// perInvocation is the CPU time used between r0 and r1 over n answers.
func perInvocation(r0, r1 cpuReading, n int) (kinds map[string]time.Duration, servers []time.Duration) {
	if n <= 0 {
		return nil, nil
	}
	kinds = map[string]time.Duration{}
	for _, k := range cpuKinds {
		if v, ok := r1.kinds[k]; ok {
			kinds[k] = (v - r0.kinds[k]) / time.Duration(n)
		}
	}
	for i := range min(len(r0.servers), len(r1.servers)) {
		servers = append(servers, (r1.servers[i]-r0.servers[i])/time.Duration(n))
	}
	return kinds, servers
}

// total is the sum of the kinds.
func total(kinds map[string]time.Duration) time.Duration {
	var d time.Duration
	for _, v := range kinds {
		d += v
	}
	return d
}

// idleRates is the CPU time per second each kind of the sides used over
// d with no load, by side.
func idleRates(sides []*side, d time.Duration) map[string]map[string]time.Duration {
	r0 := make([]cpuReading, len(sides))
	for i, s := range sides {
		r0[i] = s.read()
	}
	start := time.Now()
	time.Sleep(d)
	el := time.Since(start)
	out := map[string]map[string]time.Duration{}
	for i, s := range sides {
		r1 := s.read()
		m := map[string]time.Duration{}
		for _, k := range cpuKinds {
			if _, ok := r1.kinds[k]; ok {
				m[k] = time.Duration(float64(r1.kinds[k]-r0[i].kinds[k]) / el.Seconds())
			}
		}
		out[s.name] = m
	}
	return out
}

// newChild is the child process of this one with command name comm that
// is not in before (the children before it was started), 0 if none.
func newChild(before []int, comm string) int {
	for _, pid := range benchkit.Children(os.Getpid()) {
		if !slices.Contains(before, pid) && benchkit.Comm(pid) == comm {
			return pid
		}
	}
	return 0
}
