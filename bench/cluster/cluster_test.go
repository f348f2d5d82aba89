package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

func TestPerInvocation(t *testing.T) {
	r0 := cpuReading{kinds: map[string]time.Duration{cpuStratus: time.Second, cpuSandboxes: 0, cpuNATS: 100 * time.Millisecond},
		servers: []time.Duration{time.Second, 0}}
	r1 := cpuReading{kinds: map[string]time.Duration{cpuStratus: 3 * time.Second, cpuSandboxes: time.Second, cpuNATS: 100 * time.Millisecond},
		servers: []time.Duration{2 * time.Second, time.Second}}
	kinds, servers := perInvocation(r0, r1, 1000)
	// A kind the side has counts even when it used nothing; one it has
	// not (postgres) is absent.
	want := map[string]time.Duration{cpuStratus: 2 * time.Millisecond, cpuSandboxes: time.Millisecond, cpuNATS: 0}
	if diff := cmp.Diff(want, kinds); diff != "" {
		t.Errorf("kinds (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]time.Duration{time.Millisecond, time.Millisecond}, servers); diff != "" {
		t.Errorf("servers (-want +got):\n%s", diff)
	}
	if k, s := perInvocation(r0, r1, 0); k != nil || s != nil {
		t.Errorf("no answers: %v %v, want nothing", k, s)
	}
	if got := total(want); got != 3*time.Millisecond {
		t.Errorf("total = %v", got)
	}
}

// TestCompare checks the ratios to the single server: throughput paired
// round by round, CPU added in total and by kind.
func TestCompare(t *testing.T) {
	pt := func(rps float64, stratus, pg time.Duration) point {
		p := point{Run: benchkit.Run{Conc: 1, RPS: rps, P50: time.Millisecond}, CPU: map[string]time.Duration{cpuStratus: stratus}}
		if pg != 0 {
			p.CPU[cpuPostgres] = pg
		}
		return p
	}
	mk := func(kind string, rounds ...point) targetResult {
		return targetResult{Kind: kind, Runs: []point{medianRun(rounds)}, Rounds: [][]point{rounds}}
	}
	single := mk(kindSingle, pt(1000, 400*time.Microsecond, 0), pt(500, 500*time.Microsecond, 0), pt(1000, 400*time.Microsecond, 0))
	cluster := mk(kindCluster, pt(500, 600*time.Microsecond, 100*time.Microsecond), pt(500, 700*time.Microsecond, 200*time.Microsecond), pt(800, 600*time.Microsecond, 100*time.Microsecond))
	rs := compare(&cluster, &single)
	if len(rs) != 1 {
		t.Fatalf("compare = %+v", rs)
	}
	r := rs[0]
	// Paired: 0.5, 1.0, 0.8; of the medians: 500/1000.
	if r.Paired != 0.8 || r.RoundMin != 0.5 || r.RoundMax != 1 || r.RPS != 0.5 {
		t.Errorf("throughput: paired %v [%v, %v], medians %v", r.Paired, r.RoundMin, r.RoundMax, r.RPS)
	}
	// Medians: cluster 600 + 100 µs, single 400 µs.
	if r.Added != 300*time.Microsecond || r.AddedBy[cpuStratus] != 200*time.Microsecond || r.AddedBy[cpuPostgres] != 100*time.Microsecond {
		t.Errorf("CPU added %v, by kind %v", r.Added, r.AddedBy)
	}
	if r.CPU != 1.75 {
		t.Errorf("CPU ratio %v, want 1.75", r.CPU)
	}
	res := &results{Env: map[string]string{}, Options: map[string]any{}, Targets: []targetResult{single, cluster}}
	var b bytes.Buffer
	res.print(&b)
	if !strings.Contains(b.String(), "+300 µs") {
		t.Errorf("the report does not show the CPU added:\n%s", b.String())
	}
}

func TestNATSConfig(t *testing.T) {
	nodes := []*natsNode{
		{name: "n1", client: "127.0.0.1:1", route: "127.0.0.1:2", monitoring: "127.0.0.1:3"},
		{name: "n2", client: "127.0.0.1:4", route: "127.0.0.1:5", monitoring: "127.0.0.1:6"},
		{name: "n3", client: "127.0.0.1:7", route: "127.0.0.1:8", monitoring: "127.0.0.1:9"},
	}
	conf := natsConfig(nodes[1], nodes, "/tmp/x/n2")
	for _, want := range []string{`server_name: "n2"`, `listen: "127.0.0.1:4"`, `http: "127.0.0.1:6"`, `store_dir: "/tmp/x/n2"`,
		`listen: "127.0.0.1:5"`, `routes: ["nats-route://127.0.0.1:2", "nats-route://127.0.0.1:8"]`} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %s:\n%s", want, conf)
		}
	}
	c := &natsCluster{nodes: nodes}
	if got := c.URL(); got != "nats://127.0.0.1:1,nats://127.0.0.1:4,nats://127.0.0.1:7" {
		t.Errorf("URL = %s", got)
	}
}
