package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

// Goals of issue 12: the current server's throughput over the baseline's,
// at every concurrency.
const (
	goalOff = 0.95 // exporter off: at most 5 % less
	goalOn  = 0.85 // exporter on: at most 15 % less
)

// results is everything one run measured.
type results struct {
	Env     map[string]string
	Options map[string]any
	// Elapsed is the whole run, the builds included.
	Elapsed time.Duration
	// BaselineCommit is the commit the baseline was built from ("" when
	// given by -baseline); the binaries are the servers run.
	BaselineCommit string `json:",omitempty"`
	BaselineBinary string
	CurrentBinary  string
	// Notes say where the sandbox measured is not the default one.
	Notes    []string `json:",omitempty"`
	Targets  []targetResult
	Profiles []profileResult `json:",omitempty"`

	pprof []pprofTarget // the servers to profile (with -profile)
}

// targetResult holds a target's runs, one per concurrency (the median of
// the rounds), and the rounds themselves.
type targetResult struct {
	Name    string
	Kind    string
	Sandbox string `json:",omitempty"`
	// Live and Idle are the function's instances once warmed.
	Live, Idle int `json:",omitempty"`
	Runs       []point
	Rounds     [][]point `json:",omitempty"` // by concurrency, then round
	// Invocations is the server's count of the function's invocations
	// (stratus_function_invocations_total) at the end: warm-up included.
	Invocations int `json:",omitempty"`
	// Export is what the OTLP receiver got from the server.
	Export *spanCount `json:",omitempty"`
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

func optionsView(o options) map[string]any {
	return map[string]any{
		"conc": o.concs, "duration": o.duration.String(), "warmup": o.warmup.String(), "rounds": o.rounds,
		"commit": o.commit, "traceparent": o.traceparent, "profile": o.profileDir != "",
	}
}

// medianRun takes the median of each figure over rounds; counts are summed.
func medianRun(rs []point) point {
	runs := make([]benchkit.Run, len(rs))
	for i, r := range rs {
		runs[i] = r.Run
	}
	return point{
		Run:         benchkit.MedianRun(runs),
		ServerCPU:   benchkit.MedianOf(rs, func(r point) time.Duration { return r.ServerCPU }),
		InstanceCPU: benchkit.MedianOf(rs, func(r point) time.Duration { return r.InstanceCPU }),
	}
}

// ratio compares a target with the baseline at one concurrency.
type ratio struct {
	Conc int
	// RPS is the median throughput over the baseline's. Paired is the
	// median of the same ratio taken round by round (figures taken
	// seconds apart, so that a busy moment of the machine weighs on both),
	// RoundMin and RoundMax its extremes; the goals are judged on Paired.
	RPS, Paired, RoundMin, RoundMax float64
	// CPU is the server's CPU per invocation over the baseline's.
	CPU float64
}

// compare is cur's figures over base's at every concurrency both have.
func compare(cur, base *targetResult) []ratio {
	var out []ratio
	for _, b := range base.Runs {
		c := cur.at(b.Conc)
		if c == nil || b.RPS == 0 {
			continue
		}
		r := ratio{Conc: b.Conc, RPS: c.RPS / b.RPS}
		if b.ServerCPU > 0 {
			r.CPU = float64(c.ServerCPU) / float64(b.ServerCPU)
		}
		cr, br := cur.roundsAt(b.Conc), base.roundsAt(b.Conc)
		var paired []float64
		for i := range min(len(cr), len(br)) {
			if br[i].RPS > 0 {
				paired = append(paired, cr[i].RPS/br[i].RPS)
			}
		}
		if len(paired) > 0 {
			r.Paired, r.RoundMin, r.RoundMax = benchkit.Median(paired), slices.Min(paired), slices.Max(paired)
		}
		out = append(out, r)
	}
	return out
}

// goal is the goal line of a current target: its throughput over the
// baseline's, paired round by round, at every concurrency must be at
// least want.
func goal(name string, rs []ratio, want float64) benchkit.Goal {
	g := benchkit.Goal{What: name + ": throughput over the baseline's (paired)", Target: fmt.Sprintf("≥ %.2f at every concurrency", want), OK: len(rs) > 0}
	var got []string
	for _, r := range rs {
		got = append(got, fmt.Sprintf("c=%d %.3f", r.Conc, r.Paired))
		if r.Paired < want {
			g.OK = false
		}
	}
	g.Got = strings.Join(got, ", ")
	return g
}

// print writes the report.
func (r *results) print(w io.Writer) {
	fmt.Fprintf(w, "\nStratus metering overhead (issue 12) — %s, %s CPUs (%s), kernel %s, %s, %s, runc %s, cgroups %s; source tree %s; load average %s at start, %s at end; run took %s\n",
		r.Env["date"], r.Env["cpus"], r.Env["cpu"], r.Env["kernel"], r.Env["os"], r.Env["go"], orNone(r.Env["runc"]), r.Env["cgroups"], r.Env["tree"],
		r.Env["loadavg at start"], orNone(r.Env["loadavg at end"]), r.Elapsed.Round(time.Second))
	fmt.Fprintf(w, "baseline: %s (%s); current: %s\n", orNone(r.BaselineCommit), r.BaselineBinary, r.CurrentBinary)
	for _, n := range r.Notes {
		fmt.Fprintln(w, "  note:", n)
	}
	var base *targetResult
	var concs []int
	for i := range r.Targets {
		t := &r.Targets[i]
		if t.Kind == kindBaseline {
			base = t
		}
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
	lo, hi := concs[0], concs[len(concs)-1]

	fmt.Fprintf(w, "\nWarm invoke: POST {} to /v1/functions/%s/invoke (the floor: to tinyserver), one keep-alive connection at c=%d (p50/p99); median of %v rounds of %v each\n",
		function, lo, r.Options["rounds"], r.Options["duration"])
	tw := benchkit.Table(w)
	hdr := fmt.Sprintf("target\tsandbox\tp50 c=%d\tp99 c=%d\t", lo, lo)
	for _, c := range concs {
		hdr += fmt.Sprintf("req/s c=%d\t", c)
	}
	hdr += fmt.Sprintf("server CPU c=%d\tserver CPU c=%d\tinstances' CPU c=%d\terrors\tcold\tmax load\t", lo, hi, hi)
	fmt.Fprintln(tw, hdr)
	for _, t := range r.Targets {
		line := fmt.Sprintf("%s\t%s\t", t.Name, orNone(t.Sandbox))
		if p := t.at(lo); p != nil {
			line += fmt.Sprintf("%s\t%s\t", benchkit.FmtDur(p.P50), benchkit.FmtDur(p.P99))
		} else {
			line += "-\t-\t"
		}
		errs, cold, load := 0, 0, 0.0
		for _, c := range concs {
			if p := t.at(c); p != nil {
				line += fmt.Sprintf("%.0f\t", p.RPS)
				errs, cold, load = errs+p.Errs, cold+p.Cold, max(load, p.LoadAvg)
			} else {
				line += "-\t"
			}
		}
		cpu := func(c int, f func(point) time.Duration) string {
			if p := t.at(c); p != nil && f(*p) > 0 {
				return benchkit.FmtDur(f(*p))
			}
			return "-"
		}
		line += fmt.Sprintf("%s\t%s\t%s\t%d\t%d\t%.1f\t", cpu(lo, func(p point) time.Duration { return p.ServerCPU }),
			cpu(hi, func(p point) time.Duration { return p.ServerCPU }), cpu(hi, func(p point) time.Duration { return p.InstanceCPU }), errs, cold, load)
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	fmt.Fprintln(w, "  CPU: user + system from /proc over the measured run, per answer (10 ms ticks); server = the stratus process, instances' = its descendants (the function's sandboxes)")

	if base == nil {
		return
	}
	var goals []benchkit.Goal
	fmt.Fprintln(w, "\nCurrent over the baseline: throughput (paired: median of the round-by-round ratios [lowest, highest]; medians: ratio of the medians), server CPU per invocation (ratio of the medians), p50 at c="+strconv.Itoa(lo))
	tw = benchkit.Table(w)
	hdr = "target\t"
	for _, c := range concs {
		hdr += fmt.Sprintf("req/s c=%d paired; medians\t", c)
	}
	for _, c := range concs {
		hdr += fmt.Sprintf("CPU/inv c=%d\t", c)
	}
	hdr += fmt.Sprintf("server CPU added c=%d\tp50 c=%d\t", hi, lo)
	fmt.Fprintln(tw, hdr)
	for i := range r.Targets {
		t := &r.Targets[i]
		if t.Kind == kindDirect || t.Kind == kindBaseline {
			continue
		}
		rs := compare(t, base)
		line := t.Name + "\t"
		for _, c := range concs {
			if x := at(rs, c); x != nil {
				line += fmt.Sprintf("%.3f [%.2f, %.2f]; %.3f\t", x.Paired, x.RoundMin, x.RoundMax, x.RPS)
			} else {
				line += "-\t"
			}
		}
		for _, c := range concs {
			if x := at(rs, c); x != nil && x.CPU > 0 {
				line += fmt.Sprintf("%.2f×\t", x.CPU)
			} else {
				line += "-\t"
			}
		}
		if p, b := t.at(hi), base.at(hi); p != nil && b != nil {
			line += benchkit.Signed(p.ServerCPU-b.ServerCPU) + "\t"
		} else {
			line += "-\t"
		}
		if p, b := t.at(lo), base.at(lo); p != nil && b != nil {
			line += benchkit.Signed(p.P50-b.P50) + "\t"
		} else {
			line += "-\t"
		}
		fmt.Fprintln(tw, line)
		switch t.Kind {
		case kindOff:
			goals = append(goals, goal(t.Name, rs, goalOff))
		case kindOn, kindOnParent:
			goals = append(goals, goal(t.Name, rs, goalOn))
		}
	}
	tw.Flush()

	var exported bool
	for _, t := range r.Targets {
		exported = exported || t.Export != nil
	}
	if exported {
		fmt.Fprintln(w, "\nSpans the in-process OTLP/HTTP receiver decoded, per invocation the server counted (stratus_function_invocations_total, warm-up included)")
		tw = benchkit.List(w)
		for _, t := range r.Targets {
			if t.Export == nil {
				continue
			}
			e := t.Export
			per := func(n int) string {
				if t.Invocations == 0 {
					return "?"
				}
				return fmt.Sprintf("%.3f", float64(n)/float64(t.Invocations))
			}
			names := make([]string, 0, len(e.ByName))
			for k := range e.ByName {
				names = append(names, k)
			}
			slices.Sort(names)
			var by []string
			for _, k := range names {
				by = append(by, fmt.Sprintf("%q %s", k, per(e.ByName[k])))
			}
			fmt.Fprintf(tw, "%s\t%d spans in %d exports (%s, %d rejected), %d invocations: %s per invocation\t%s\n",
				t.Name, e.Spans, e.Exports, benchkit.MB(e.Bytes), e.Bad, t.Invocations, per(e.Spans), strings.Join(by, ", "))
		}
		tw.Flush()
	}

	benchkit.PrintGoals(w, "Goals of issue 12 (same run, same machine)", goals)

	for _, p := range r.Profiles {
		fmt.Fprintf(w, "\nCPU profile of %s at c=%d: %s; %s of samples over %d invocations", p.Target, p.Conc, p.File, p.CPU, p.Invocations)
		if p.Invocations > 0 {
			fmt.Fprintf(w, " (%s per invocation)", benchkit.FmtDur(p.CPU/time.Duration(p.Invocations)))
		}
		fmt.Fprintln(w, "\n"+p.Top)
	}
}

// at is the ratio at conc in rs, nil if none.
func at(rs []ratio, conc int) *ratio {
	for i := range rs {
		if rs[i].Conc == conc {
			return &rs[i]
		}
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
