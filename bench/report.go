package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// results is everything one run measured.
type results struct {
	Env            map[string]string
	Options        map[string]any
	WarmInstances  int    `json:",omitempty"`
	RIEBinary      string `json:",omitempty"`
	Warm           []targetResult
	Cold           *coldResult       `json:",omitempty"`
	ProcessPoll    *coldResult       `json:",omitempty"`
	ProcessInherit *coldResult       `json:",omitempty"`
	RuntimeStart   *coldResult       `json:",omitempty"`
	Fleet          *fleetResult      `json:",omitempty"`
	ColdMatrix     *coldMatrixResult `json:",omitempty"`
	Profiles       []profileResult   `json:",omitempty"`
}

// targetResult holds a target's runs, one per concurrency (the median of
// the rounds).
type targetResult struct {
	Name    string
	MaxConc int
	Runs    []point
}

func (t *targetResult) at(conc int) *point {
	for i := range t.Runs {
		if t.Runs[i].Conc == conc {
			return &t.Runs[i]
		}
	}
	return nil
}

func optionsView(o options) map[string]any {
	var secs []string
	for s := range o.sections {
		secs = append(secs, s)
	}
	slices.Sort(secs)
	return map[string]any{
		"sections": secs, "conc": o.concs, "duration": o.duration.String(), "warmup": o.warmup.String(),
		"rounds": o.rounds, "coldRuns": o.coldRuns, "fleet": o.fleetSize, "lsRuns": o.lsRuns,
		"matrixRuns": o.matrixRuns, "matrixBurst": o.matrixBurst,
	}
}

// medianRun takes the median of each figure over rounds; counts are summed.
func medianRun(rs []point) point {
	out := point{Conc: rs[0].Conc}
	med := func(f func(point) time.Duration) time.Duration {
		v := make([]time.Duration, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		return median(v)
	}
	rps := make([]float64, len(rs))
	for i, r := range rs {
		out.OK += r.OK
		out.Errs += r.Errs
		out.Cold += r.Cold
		out.Elapsed += r.Elapsed
		rps[i] = r.RPS
	}
	slices.Sort(rps)
	out.RPS = rps[len(rps)/2]
	out.P50 = med(func(r point) time.Duration { return r.P50 })
	out.P99 = med(func(r point) time.Duration { return r.P99 })
	out.Mean = med(func(r point) time.Duration { return r.Mean })
	out.CPUPerReq = med(func(r point) time.Duration { return r.CPUPerReq })
	out.FrontCPUPerReq = med(func(r point) time.Duration { return r.FrontCPUPerReq })
	for _, r := range rs {
		out.LoadAvg = max(out.LoadAvg, r.LoadAvg)
	}
	return out
}

// Goals of issue 2 on this machine.
const (
	goalAddedP50 = 150 * time.Microsecond
	goalRatio32  = 0.25
	goalColdP50  = 5 * time.Millisecond
	goalFleetRSS = 100 << 20
	goalConc     = 32
)

func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d < 0:
		return "-" + fmtDur(-d)
	case d < time.Millisecond:
		return fmt.Sprintf("%d µs", d.Microseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000)
	default:
		return d.Round(time.Millisecond).String()
	}
}

func signed(d time.Duration) string {
	if d >= 0 {
		return "+" + fmtDur(d)
	}
	return fmtDur(d)
}

func mb(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/(1<<20)) }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// print writes the report.
func (r *results) print(w io.Writer) {
	fmt.Fprintf(w, "\nStratus bench — %s, %s CPUs (%s), kernel %s, %s, %s; source tree %s; load average %s at start\n",
		r.Env["date"], r.Env["cpus"], r.Env["cpu"], r.Env["kernel"], r.Env["os"], r.Env["go"], r.Env["tree"], r.Env["loadavg at start"])
	var direct *targetResult
	for i := range r.Warm {
		if strings.HasPrefix(r.Warm[i].Name, "direct") {
			direct = &r.Warm[i]
		}
	}
	var concs []int
	if direct != nil {
		for _, x := range direct.Runs {
			concs = append(concs, x.Conc)
		}
	}
	type goal struct {
		what, target, got string
		ok                bool
	}
	var goals []goal

	if len(r.Warm) > 0 && direct != nil {
		fmt.Fprintf(w, "\nWarm path: POST {} on one keep-alive connection (c=1: p50/p99), throughput at c=%s; median of %v rounds of %v each\n",
			joinInts(concs, ","), r.Options["rounds"], r.Options["duration"])
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		hdr := "target\tp50\tp99\tp50 vs direct\tp99 vs direct\t"
		for _, c := range concs {
			hdr += fmt.Sprintf("req/s c=%d\tvs direct\t", c)
		}
		fmt.Fprintln(tw, hdr)
		d1 := direct.at(1)
		for _, t := range r.Warm {
			one := t.at(1)
			line := t.Name + "\t"
			if one != nil {
				line += fmtDur(one.P50) + "\t" + fmtDur(one.P99) + "\t"
				if d1 != nil && t.Name != direct.Name {
					line += signed(one.P50-d1.P50) + "\t" + signed(one.P99-d1.P99) + "\t"
				} else {
					line += "\t\t"
				}
			} else {
				line += "\t\t\t\t"
			}
			for _, c := range concs {
				x, dx := t.at(c), direct.at(c)
				if x == nil {
					line += "n/a\t\t"
					continue
				}
				line += fmt.Sprintf("%.0f\t%.2f\t", x.RPS, x.RPS/dx.RPS)
			}
			fmt.Fprintln(tw, line)
		}
		tw.Flush()

		fmt.Fprintln(w, "\nCPU time per answered request (user + system, from /proc): front = the server / proxy / emulator process, behind = its upstream or function instances")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		hdr = "target\t"
		for _, c := range concs {
			hdr += fmt.Sprintf("c=%d total\tfront\tbehind\t", c)
		}
		fmt.Fprintln(tw, hdr)
		for _, t := range r.Warm {
			line := t.Name + "\t"
			for _, c := range concs {
				x := t.at(c)
				if x == nil {
					line += "n/a\t\t\t"
					continue
				}
				line += fmtDur(x.CPUPerReq) + "\t" + fmtDur(x.FrontCPUPerReq) + "\t" + fmtDur(x.CPUPerReq-x.FrontCPUPerReq) + "\t"
			}
			fmt.Fprintln(tw, line)
		}
		tw.Flush()
		var notes []string
		for _, t := range r.Warm {
			for _, x := range t.Runs {
				if x.Errs > 0 || x.Cold > 0 {
					notes = append(notes, fmt.Sprintf("%s c=%d: %d errors, %d cold starts during measurement", t.Name, x.Conc, x.Errs, x.Cold))
				}
			}
		}
		if r.WarmInstances > 0 {
			notes = append(notes, fmt.Sprintf("the no-op function had %d live instances after warming", r.WarmInstances))
		}
		maxLoad := 0.0
		for _, t := range r.Warm {
			for _, x := range t.Runs {
				maxLoad = max(maxLoad, x.LoadAvg)
			}
		}
		notes = append(notes, fmt.Sprintf("machine load average (1 min) up to %.1f during these runs (other work shares the 2 cores)", maxLoad))
		for _, n := range notes {
			fmt.Fprintln(w, "  note:", n)
		}
		for _, t := range r.Warm {
			if !strings.HasPrefix(t.Name, "stratus") {
				continue
			}
			if one := t.at(1); one != nil && d1 != nil {
				add := one.P50 - d1.P50
				goals = append(goals, goal{"warm p50 added latency, " + strings.TrimPrefix(t.Name, "stratus "), "≤ " + fmtDur(goalAddedP50), signed(add), add <= goalAddedP50})
			}
			if x, dx := t.at(goalConc), direct.at(goalConc); x != nil && dx != nil {
				ratio := x.RPS / dx.RPS
				goals = append(goals, goal{"throughput c=32 vs direct, " + strings.TrimPrefix(t.Name, "stratus "), fmt.Sprintf("≥ %.2f", goalRatio32), fmt.Sprintf("%.2f", ratio), ratio >= goalRatio32})
			}
		}
	}

	if r.Cold != nil || r.ProcessPoll != nil {
		fmt.Fprintf(w, "\nCold start: scale from zero to the first answer (%v runs), next to starting a static Go HTTP server as a plain process\n", r.Options["coldRuns"])
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "what\tp50\tp99\tmin\tmax\tp50 vs process (poll)\tp50 vs process (inherited fd)\t")
		row := func(name string, c *coldResult) {
			if c == nil {
				return
			}
			line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t", name, fmtDur(c.P50), fmtDur(c.P99), fmtDur(c.Min), fmtDur(c.Max))
			for _, f := range []*coldResult{r.ProcessPoll, r.ProcessInherit} {
				if f == nil {
					line += "\t"
				} else {
					line += fmt.Sprintf("%.2f×\t", float64(c.P50)/float64(f.P50))
				}
			}
			fmt.Fprintln(tw, line)
		}
		row("process start, poll the port", r.ProcessPoll)
		row("process start, inherited listening socket", r.ProcessInherit)
		row("Runtime API floor: exec bootstrap, answer 1st invoke", r.RuntimeStart)
		row("stratus cold invoke (/v1 invoke)", r.Cold)
		tw.Flush()
		if r.Cold != nil {
			fmt.Fprintf(w, "  note: the server's Init Duration (instance start → runtime's first invocation/next) p50 %s\n", fmtDur(r.Cold.InitP50))
			goals = append(goals, goal{"cold start p50", "≤ " + fmtDur(goalColdP50), fmtDur(r.Cold.P50), r.Cold.P50 <= goalColdP50})
		}
	}

	if f := r.Fleet; f != nil {
		fmt.Fprintf(w, "\n%d deployed functions (same code, deployed through the API, 8 in parallel)\n", f.Functions)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "deploy %d functions\t%s (%.0f/s)\n", f.Functions, fmtDur(f.DeployElapsed), float64(f.Functions)/f.DeployElapsed.Seconds())
		fmt.Fprintf(tw, "stratus ls (table)\tmedian %s, best %s (%d runs)\n", fmtDur(f.LsTable), fmtDur(f.LsTableMin), f.LsRuns)
		fmt.Fprintf(tw, "stratus ls -o json\tmedian %s, best %s\n", fmtDur(f.LsJSON), fmtDur(f.LsJSONMin))
		fmt.Fprintf(tw, "GET /v1/functions (Go client, no CLI)\tmedian %s\n", fmtDur(f.ListAPI))
		fmt.Fprintf(tw, "server VmRSS, fresh\t%s\n", mb(f.RSSBefore))
		fmt.Fprintf(tw, "server VmRSS, %d functions, idle\t%s (+%s)\n", f.Functions, mb(f.RSSAfter), mb(f.RSSAfter-f.RSSBefore))
		fmt.Fprintf(tw, "server VmRSS after the ls runs\t%s (peak VmHWM %s)\n", mb(f.RSSAfterLs), mb(f.HWM))
		fmt.Fprintf(tw, "live instances (ls -o json) / server child processes\t%d / %d\n", f.LiveInstances, f.ChildProcs)
		tw.Flush()
		ok := f.RSSAfter < goalFleetRSS && f.LiveInstances == 0 && f.ChildProcs == 0
		goals = append(goals, goal{fmt.Sprintf("%d idle functions", f.Functions), "< 100 MB, no instance",
			fmt.Sprintf("%s, %d instances", mb(f.RSSAfter), f.LiveInstances), ok})
	}

	if r.ColdMatrix != nil {
		r.ColdMatrix.print(w)
	}
	if len(goals) > 0 {
		fmt.Fprintln(w, "\nGoals (issue 2)")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, g := range goals {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", g.what, g.target, g.got, verdict(g.ok))
		}
		tw.Flush()
	}
	for _, p := range r.Profiles {
		fmt.Fprintf(w, "\nCPU profile of the server: %s (%s)\n%s\n", p.What, p.File, p.Top)
	}
}

func joinInts(v []int, sep string) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, sep)
}
