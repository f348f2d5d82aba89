package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

// goalApart is issue 13's goal: the Lambda Invoke path (SigV4 included)
// and the native one at most 5 % apart.
const goalApart = 0.05

// results is everything one run measured.
type results struct {
	Env     map[string]string
	Options map[string]any
	// Elapsed is the whole run, the builds included.
	Elapsed time.Duration
	Binary  string // the server run
	Sandbox string // the driver the server reported
	Region  string // the server's region: the signatures' scope
	KeyID   string // the access key the signed target used
	// Warm is the function's instances once warmed.
	Warm v1.Instances
	// Notes say where the sandbox measured is not the default one.
	Notes    []string `json:",omitempty"`
	Targets  []targetResult
	Profiles []profileResult `json:",omitempty"`

	pprofAddr string // the server's pprof listener (with -profile)
}

// targetResult holds a target's runs, one per concurrency (the median of
// the rounds), and the rounds themselves.
type targetResult struct {
	Name   string
	Kind   string
	URL    string
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
	return map[string]any{
		"conc": o.concs, "duration": o.duration.String(), "warmup": o.warmup.String(), "rounds": o.rounds,
		"profile": o.profileDir != "",
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

// ratio compares a target with a reference at one concurrency.
type ratio struct {
	Conc int
	// RPS is the median throughput over the reference's. Paired is the
	// median of the same ratio taken round by round (figures taken
	// seconds apart, so that a busy moment of the machine weighs on both),
	// RoundMin and RoundMax its extremes; the goal is judged on Paired.
	RPS, Paired, RoundMin, RoundMax float64
	// CPU is the server's CPU per invocation over the reference's (the
	// medians), CPUAdded their difference.
	CPU      float64
	CPUAdded time.Duration
	// P50Added is the median p50 over the reference's.
	P50Added time.Duration
}

// compare is t's figures over ref's at every concurrency both have.
func compare(t, ref *targetResult) []ratio {
	var out []ratio
	for _, b := range ref.Runs {
		c := t.at(b.Conc)
		if c == nil || b.RPS == 0 {
			continue
		}
		r := ratio{Conc: b.Conc, RPS: c.RPS / b.RPS, CPUAdded: c.ServerCPU - b.ServerCPU, P50Added: c.P50 - b.P50}
		if b.ServerCPU > 0 {
			r.CPU = float64(c.ServerCPU) / float64(b.ServerCPU)
		}
		tr, br := t.roundsAt(b.Conc), ref.roundsAt(b.Conc)
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

// within reports whether x is at most apart from 1 (both ways).
func within(x, apart float64) bool { return x > 0 && math.Abs(x-1) <= apart+1e-9 }

// goals are the goal lines of issue 13 for the Lambda Invoke with SigV4
// over the native invoke: throughput (paired) and the server's CPU per
// invocation within goalApart of 1 at every concurrency.
func goals(rs []ratio) []benchkit.Goal {
	want := fmt.Sprintf("within %.0f %% (%.2f–%.2f) at every concurrency", goalApart*100, 1-goalApart, 1+goalApart)
	rps := benchkit.Goal{What: "Lambda Invoke (SigV4) over native invoke: throughput, paired", Target: want, OK: len(rs) > 0}
	cpu := benchkit.Goal{What: "Lambda Invoke (SigV4) over native invoke: server CPU per invocation", Target: want, OK: len(rs) > 0}
	var gotRPS, gotCPU []string
	for _, r := range rs {
		gotRPS = append(gotRPS, fmt.Sprintf("c=%d %.3f", r.Conc, r.Paired))
		gotCPU = append(gotCPU, fmt.Sprintf("c=%d %.3f", r.Conc, r.CPU))
		rps.OK = rps.OK && within(r.Paired, goalApart)
		cpu.OK = cpu.OK && within(r.CPU, goalApart)
	}
	rps.Got, cpu.Got = strings.Join(gotRPS, ", "), strings.Join(gotCPU, ", ")
	return []benchkit.Goal{rps, cpu}
}

// print writes the report.
func (r *results) print(w io.Writer) {
	fmt.Fprintf(w, "\nStratus Lambda Invoke against the native invoke (issue 13) — %s, %s CPUs (%s), kernel %s, %s, %s, runc %s, cgroups %s; source tree %s; load average %s at start, %s at end; run took %s\n",
		r.Env["date"], r.Env["cpus"], r.Env["cpu"], r.Env["kernel"], r.Env["os"], r.Env["go"], orNone(r.Env["runc"]), r.Env["cgroups"], r.Env["tree"],
		r.Env["loadavg at start"], orNone(r.Env["loadavg at end"]), r.Elapsed.Round(time.Second))
	fmt.Fprintf(w, "server: %s, sandbox %s, region %s; %s (one log line per call) at the default memory, %d live instances (%d idle) after warming\n",
		r.Binary, orNone(r.Sandbox), orNone(r.Region), function, r.Warm.Live, r.Warm.Idle)
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

	fmt.Fprintf(w, "\nPOST {} to each target; median of %v rounds of %v each (after %v unmeasured), the targets' order turned each round; the SigV4 target signed once per run and replayed\n",
		r.Options["rounds"], r.Options["duration"], r.Options["warmup"])
	tw := benchkit.Table(w)
	fmt.Fprintln(tw, "target\tc\treq/s\tp50\tp99\treq/s over direct\tserver CPU/inv\tinstances' CPU/inv\terrors\tcold\tmax load\t")
	for _, c := range concs {
		for _, t := range r.Targets {
			p := t.at(c)
			if p == nil {
				continue
			}
			over := "-"
			if f := floor.at(c); f != nil && f.RPS > 0 && t.Kind != kindDirect {
				over = fmt.Sprintf("%.3f", p.RPS/f.RPS)
			}
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%.1f\t\n", t.Name, c, p.RPS, benchkit.FmtDur(p.P50), benchkit.FmtDur(p.P99), over,
				durOrDash(p.ServerCPU), durOrDash(p.InstanceCPU), p.Errs, p.Cold, p.LoadAvg)
		}
	}
	tw.Flush()
	fmt.Fprintln(w, "  CPU: user + system from /proc over the measured run, per answer (10 ms ticks); server = the stratus process (for direct: tinyserver), instances' = its descendants (the function's sandboxes)")

	native := r.target(kindNative)
	if native == nil {
		return
	}
	fmt.Fprintln(w, "\nOver the reference: throughput (paired: median of the round-by-round ratios [lowest, highest]; medians: ratio of the medians), server CPU per invocation (ratio and difference of the medians), p50 added")
	tw = benchkit.Table(w)
	fmt.Fprintln(tw, "target\tover\tc\treq/s paired [lowest, highest]\treq/s medians\tserver CPU/inv\tCPU added\tp50 added\t")
	var gs []benchkit.Goal
	for _, pair := range [][2]string{{kindLambdaSigV4, kindNative}, {kindLambdaBearer, kindNative}, {kindLambdaSigV4, kindLambdaBearer}} {
		t, ref := r.target(pair[0]), r.target(pair[1])
		if t == nil || ref == nil {
			continue
		}
		rs := compare(t, ref)
		for _, x := range rs {
			cpu := "-"
			if x.CPU > 0 {
				cpu = fmt.Sprintf("%.3f", x.CPU)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.3f [%.2f, %.2f]\t%.3f\t%s\t%s\t%s\t\n", t.Name, ref.Name, x.Conc, x.Paired, x.RoundMin, x.RoundMax, x.RPS,
				cpu, benchkit.Signed(x.CPUAdded), benchkit.Signed(x.P50Added))
		}
		if pair == [2]string{kindLambdaSigV4, kindNative} {
			gs = goals(rs)
		}
	}
	tw.Flush()

	benchkit.PrintGoals(w, "Goals of issue 13 (same run, same server, same function)", gs)

	if len(r.Profiles) > 0 {
		fmt.Fprintln(w, "\nWhere the server's CPU goes, per invocation: cumulative CPU of each function in the profiles over the invocations answered (\"-\": not in the profile, or under pprof's cut)")
		tw = benchkit.Table(w)
		hdr := "function\t"
		for _, p := range r.Profiles {
			hdr += fmt.Sprintf("%s c=%d\t", p.Target, p.Conc)
		}
		fmt.Fprintln(tw, hdr)
		line := "all samples\t"
		for _, p := range r.Profiles {
			if p.Invocations > 0 {
				line += benchkit.FmtDur(p.CPU/time.Duration(p.Invocations)) + "\t"
			} else {
				line += "-\t"
			}
		}
		fmt.Fprintln(tw, line)
		for _, f := range frames {
			line := f.label + "\t"
			for _, p := range r.Profiles {
				line += durOrDash(p.PerInvocation[f.label]) + "\t"
			}
			fmt.Fprintln(tw, line)
		}
		tw.Flush()
	}

	for _, p := range r.Profiles {
		fmt.Fprintf(w, "\nCPU profile of the server under %s at c=%d: %s; %s of samples over %d invocations", p.Target, p.Conc, p.File, p.CPU, p.Invocations)
		if p.Invocations > 0 {
			fmt.Fprintf(w, " (%s per invocation)", benchkit.FmtDur(p.CPU/time.Duration(p.Invocations)))
		}
		fmt.Fprintln(w, "\n"+p.Top)
	}
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
