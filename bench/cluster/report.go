package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

// results is everything one run measured.
type results struct {
	Env     map[string]string
	Options map[string]any
	// Elapsed is the whole run, the builds included.
	Elapsed     time.Duration
	Binary      string            // the stratus server run
	NATSServer  string            `json:",omitempty"` // the nats-server binary
	NATSVersion string            `json:",omitempty"`
	Postgres    string            `json:",omitempty"` // postgres --version
	Sandbox     map[string]string // the driver each server reported, by name ("single", "s1" ...)
	ServerNames []string          `json:",omitempty"` // the cluster's servers, in the order of point.Servers
	// Owner is the cluster server that ran the function's instances once
	// warmed.
	Owner string `json:",omitempty"`
	// Warm is the function's instances once warmed ("single", "cluster":
	// the owner's).
	Warm map[string]v1.Instances
	// Idle is the CPU time per second of each kind of process of each
	// side with no load, once warmed.
	Idle map[string]map[string]time.Duration `json:",omitempty"`
	// Nodes is GET /v1/nodes of the first cluster server after the run.
	Nodes   []v1.Node `json:",omitempty"`
	Notes   []string  `json:",omitempty"`
	Targets []targetResult
}

// note records a note for the report, and says it now.
func (r *results) note(n string) {
	benchkit.Logf("note: %s", n)
	r.Notes = append(r.Notes, n)
}

// targetResult holds a target's runs, one per concurrency (the median of
// the rounds), and the rounds themselves.
type targetResult struct {
	Name   string
	Kind   string
	URL    string   `json:",omitempty"`
	URLs   []string `json:",omitempty"`
	Runs   []point
	Rounds [][]point `json:",omitempty"` // by concurrency, then round
}

func (t *targetResult) at(conc int) *point { return benchkit.At(t.Runs, conc) }

// roundsAt are t's rounds at conc, in order.
func (t *targetResult) roundsAt(conc int) []point {
	for _, rs := range t.Rounds {
		if len(rs) > 0 && rs[0].Conc == conc {
			return rs
		}
	}
	return nil
}

func (r *results) target(kind string) *targetResult {
	for i := range r.Targets {
		if r.Targets[i].Kind == kind {
			return &r.Targets[i]
		}
	}
	return nil
}

func optionsView(o options) map[string]any {
	var targets []string
	for _, k := range strings.Split(allKinds, ",") {
		if o.targets[k] {
			targets = append(targets, k)
		}
	}
	return map[string]any{
		"conc": o.concs, "duration": o.duration.String(), "warmup": o.warmup.String(), "rounds": o.rounds,
		"idle": o.idle.String(), "targets": targets,
	}
}

// medianRun takes the median of each figure over rounds; counts are
// summed.
func medianRun(rs []point) point {
	runs := make([]benchkit.Run, len(rs))
	for i, r := range rs {
		runs[i] = r.Run
	}
	p := point{Run: benchkit.MedianRun(runs), CPU: map[string]time.Duration{}}
	for _, k := range cpuKinds {
		if _, ok := rs[0].CPU[k]; ok {
			p.CPU[k] = benchkit.MedianOf(rs, func(r point) time.Duration { return r.CPU[k] })
		}
	}
	for i := range len(rs[0].Servers) {
		p.Servers = append(p.Servers, benchkit.MedianOf(rs, func(r point) time.Duration {
			if i < len(r.Servers) {
				return r.Servers[i]
			}
			return 0
		}))
	}
	return p
}

// ratio compares a target with a reference at one concurrency.
type ratio struct {
	Conc int
	// Paired is the median of the throughput ratios taken round by round
	// (figures seconds apart), RoundMin and RoundMax their extremes; RPS
	// the ratio of the medians.
	Paired, RoundMin, RoundMax, RPS float64
	// P50Added is the median p50 over the reference's.
	P50Added time.Duration
	// CPU is the CPU per invocation of every process over the
	// reference's (each the sum of its kinds' medians), Added their
	// difference, AddedBy the difference of each kind's median.
	CPU     float64
	Added   time.Duration
	AddedBy map[string]time.Duration
}

// compare is t's figures over ref's at every concurrency both have.
func compare(t, ref *targetResult) []ratio {
	var out []ratio
	for _, b := range ref.Runs {
		c := t.at(b.Conc)
		if c == nil || b.RPS == 0 {
			continue
		}
		tr, br := t.roundsAt(b.Conc), ref.roundsAt(b.Conc)
		tTotal, bTotal := c.Total(), b.Total()
		r := ratio{Conc: b.Conc, RPS: c.RPS / b.RPS, P50Added: c.P50 - b.P50, Added: tTotal - bTotal, AddedBy: map[string]time.Duration{}}
		if bTotal > 0 {
			r.CPU = float64(tTotal) / float64(bTotal)
		}
		for _, k := range cpuKinds {
			r.AddedBy[k] = c.CPU[k] - b.CPU[k]
		}
		var paired []float64
		for i := range min(len(tr), len(br)) {
			if br[i].RPS > 0 {
				paired = append(paired, tr[i].RPS/br[i].RPS)
			}
		}
		if len(paired) > 0 {
			r.Paired, r.RoundMin, r.RoundMax = benchkit.Median(paired), slices.Min(paired), slices.Max(paired)
		}
		out = append(out, r)
	}
	return out
}

// print writes the report.
func (r *results) print(w io.Writer) {
	fmt.Fprintf(w, "\nStratus: three servers on PostgreSQL and a NATS cluster against one server (issue 15) — %s, %s CPUs (%s), kernel %s, %s, %s, runc %s, cgroups %s; source tree %s; load average %s at start, %s at end; run took %s\n",
		r.Env["date"], r.Env["cpus"], r.Env["cpu"], r.Env["kernel"], r.Env["os"], r.Env["go"], orNone(r.Env["runc"]), r.Env["cgroups"], r.Env["tree"],
		r.Env["loadavg at start"], orNone(r.Env["loadavg at end"]), r.Elapsed.Round(time.Second))
	fmt.Fprintf(w, "single: one stratus server with the defaults (SQLite, embedded NATS), sandbox %s; %s (one log line per call) at the default memory, %d live instances (%d idle) after warming\n",
		orNone(r.Sandbox["single"]), function, r.Warm["single"].Live, r.Warm["single"].Idle)
	if len(r.ServerNames) > 0 {
		var sb []string
		for _, n := range r.ServerNames {
			sb = append(sb, n+" "+orNone(r.Sandbox[n]))
		}
		fmt.Fprintf(w, "cluster: %d stratus servers (sandbox: %s) on %s (one database; fsync, synchronous_commit and full_page_writes off, as the tests run it) and a NATS cluster of %d (%s, JetStream); %s deployed once, owned by %s, which runs every instance: %d live (%d idle) after warming\n",
			len(r.ServerNames), strings.Join(sb, ", "), orNone(r.Postgres), clusterSize, orNone(r.NATSVersion), function, orNone(r.Owner), r.Warm["cluster"].Live, r.Warm["cluster"].Idle)
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, "  note:", n)
	}
	var concs []int
	for _, t := range r.Targets {
		for _, p := range t.Runs {
			if !slices.Contains(concs, p.Conc) {
				concs = append(concs, p.Conc)
			}
		}
	}
	slices.Sort(concs)
	if len(concs) == 0 {
		return
	}
	floor := r.target(kindDirect)

	fmt.Fprintf(w, "\nPOST {} to each target, with the token; median of %v rounds of %v each (after %v unmeasured), the targets' order turned each round\n",
		r.Options["rounds"], r.Options["duration"], r.Options["warmup"])
	tw := benchkit.Table(w)
	fmt.Fprintln(tw, "target\tc\treq/s\tp50\tp99\treq/s over direct\tCPU/inv, all\tstratus\tsandboxes\tpostgres\tnats\terrors\tcold\tmax load\t")
	for _, c := range concs {
		for _, t := range r.Targets {
			p := t.at(c)
			if p == nil {
				continue
			}
			over := "-"
			if floor != nil && t.Kind != kindDirect {
				if f := floor.at(c); f != nil && f.RPS > 0 {
					over = fmt.Sprintf("%.3f", p.RPS/f.RPS)
				}
			}
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%.1f\t\n", t.Name, c, p.RPS, benchkit.FmtDur(p.P50), benchkit.FmtDur(p.P99), over,
				durOrDash(p.Total()), cpuCell(p.CPU, cpuStratus), cpuCell(p.CPU, cpuSandboxes), cpuCell(p.CPU, cpuPostgres), cpuCell(p.CPU, cpuNATS), p.Errs, p.Cold, p.LoadAvg)
		}
	}
	tw.Flush()
	fmt.Fprintln(w, "  CPU: user + system from /proc over the measured run, per answer (10 ms ticks), of every process of the target's side: stratus = the server processes themselves")
	fmt.Fprintln(w, "  (for direct: tinyserver), sandboxes = their descendants and the children they reaped (instances, runc), postgres = the postmaster and its backends")
	fmt.Fprintln(w, "  (ended ones included), nats = the three nats-server processes. The single server's SQLite and NATS run inside its own process.")

	single := r.target(kindSingle)
	var cmp []struct {
		t  *targetResult
		rs []ratio
	}
	for _, k := range []string{kindCluster, kindOwner, kindForwarded} {
		if t := r.target(k); t != nil && single != nil {
			cmp = append(cmp, struct {
				t  *targetResult
				rs []ratio
			}{t, compare(t, single)})
		}
	}
	if len(cmp) > 0 {
		fmt.Fprintln(w, "\nThe cost of coordination: each cluster target over the single server (throughput paired: median of the round-by-round ratios [lowest, highest];")
		fmt.Fprintln(w, "CPU: every process's CPU per invocation (the sum of the kinds' medians) over the single server's, their difference, and the difference by kind)")
		tw = benchkit.Table(w)
		fmt.Fprintln(tw, "target\tc\treq/s paired [lowest, highest]\tp50 added\tCPU/inv over single\tCPU added\tstratus\tsandboxes\tpostgres\tnats\t")
		for _, x := range cmp {
			for _, q := range x.rs {
				cpu := "-"
				if q.CPU > 0 {
					cpu = fmt.Sprintf("%.2f×", q.CPU)
				}
				fmt.Fprintf(tw, "%s\t%d\t%.3f [%.2f, %.2f]\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", x.t.Name, q.Conc, q.Paired, q.RoundMin, q.RoundMax, benchkit.Signed(q.P50Added),
					cpu, benchkit.Signed(q.Added), benchkit.Signed(q.AddedBy[cpuStratus]), benchkit.Signed(q.AddedBy[cpuSandboxes]),
					benchkit.Signed(q.AddedBy[cpuPostgres]), benchkit.Signed(q.AddedBy[cpuNATS]))
			}
		}
		tw.Flush()
	}
	r.printSplit(w, concs)
	r.printIdle(w)
}

// printSplit writes the parts of the cluster's cost: the store and events
// (owner only over single), one forwarding (forwarded only over owner
// only), and each server's own CPU.
func (r *results) printSplit(w io.Writer, concs []int) {
	single, owner, fwd := r.target(kindSingle), r.target(kindOwner), r.target(kindForwarded)
	if single != nil && owner != nil && fwd != nil {
		fmt.Fprintln(w, "\nThe parts, in CPU per invocation of every process (sums of the kinds' medians): the store and events = owner only − single; one forwarding = forwarded only − owner only")
		tw := benchkit.Table(w)
		fmt.Fprintln(tw, "c\tsingle\towner only\tforwarded only\tstore and events\tone forwarding\t")
		for _, c := range concs {
			s, o, f := single.at(c), owner.at(c), fwd.at(c)
			if s == nil || o == nil || f == nil {
				continue
			}
			st, ot, ft := s.Total(), o.Total(), f.Total()
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t\n", c, benchkit.FmtDur(st), benchkit.FmtDur(ot), benchkit.FmtDur(ft), benchkit.Signed(ot-st), benchkit.Signed(ft-ot))
		}
		tw.Flush()
	}
	if len(r.ServerNames) == 0 {
		return
	}
	fmt.Fprintln(w, "\nEach cluster server's own CPU per invocation (medians)")
	tw := benchkit.Table(w)
	hdr := "target\tc\t"
	for _, n := range r.ServerNames {
		if n == r.Owner {
			n += " (owner)"
		}
		hdr += n + "\t"
	}
	fmt.Fprintln(tw, hdr)
	for _, k := range []string{kindCluster, kindOwner, kindForwarded} {
		t := r.target(k)
		if t == nil {
			continue
		}
		for _, c := range concs {
			p := t.at(c)
			if p == nil {
				continue
			}
			line := fmt.Sprintf("%s\t%d\t", t.Name, c)
			for _, d := range p.Servers {
				line += benchkit.FmtDur(d) + "\t"
			}
			fmt.Fprintln(tw, line)
		}
	}
	tw.Flush()
}

// printIdle writes each side's CPU with no load.
func (r *results) printIdle(w io.Writer) {
	if len(r.Idle) == 0 {
		return
	}
	fmt.Fprintf(w, "\nCPU with no load (warm instances idle), ms per second, over %v\n", r.Options["idle"])
	tw := benchkit.Table(w)
	fmt.Fprintln(tw, "side\tall\tstratus\tsandboxes\tpostgres\tnats\t")
	for _, name := range []string{kindSingle, kindCluster} {
		m, ok := r.Idle[name]
		if !ok {
			continue
		}
		ms := func(k string) string {
			d, ok := m[k]
			if !ok {
				return "-"
			}
			return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond))
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%s\t%s\t%s\t%s\t\n", name, float64(total(m))/float64(time.Millisecond), ms(cpuStratus), ms(cpuSandboxes), ms(cpuPostgres), ms(cpuNATS))
	}
	tw.Flush()
}

func cpuCell(m map[string]time.Duration, kind string) string {
	d, ok := m[kind]
	if !ok {
		return "-"
	}
	return benchkit.FmtDur(d)
}

func durOrDash(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return benchkit.FmtDur(d)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
