package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

// results is everything one run measured.
type results struct {
	Env     map[string]string
	Options map[string]any
	// Elapsed is the whole run, the builds included.
	Elapsed time.Duration
	// Sandboxes are the sandboxes the warm and cold sections measured, in
	// order: the first is the default one (runc where usable).
	Sandboxes []string
	// SandboxNotes say where a sandbox asked for was not the one measured.
	SandboxNotes   []string        `json:",omitempty"`
	WarmInstances  []warmInstances `json:",omitempty"`
	RIEBinary      string          `json:",omitempty"`
	Warm           []targetResult
	Cold           []stratusColdResult `json:",omitempty"`
	ProcessPoll    *coldResult         `json:",omitempty"`
	ProcessInherit *coldResult         `json:",omitempty"`
	RuntimeStart   *coldResult         `json:",omitempty"`
	Fleet          *fleetResult        `json:",omitempty"`
	ColdMatrix     *coldMatrixResult   `json:",omitempty"`
	Profiles       []profileResult     `json:",omitempty"`
}

// addSandbox records that a section measured sandbox name.
func (r *results) addSandbox(name string) {
	if !slices.Contains(r.Sandboxes, name) {
		r.Sandboxes = append(r.Sandboxes, name)
	}
}

// warmInstances are a warm function's instances once warmed.
type warmInstances struct {
	Sandbox, Function string
	Live, Idle        int
	LiveAfter         int // once every round ran
	IdleAfter         int
}

// targetResult holds a target's runs, one per concurrency (the median of
// the rounds).
type targetResult struct {
	Name string
	// Kind is kindDirect, kindProxy, kindStratus, kindRelay or kindRIE;
	// Sandbox, Path (/v1, /fn) and Function are Stratus's.
	Kind     string
	Sandbox  string `json:",omitempty"`
	Path     string `json:",omitempty"`
	Function string `json:",omitempty"`
	MaxConc  int
	Runs     []point
}

func (t *targetResult) at(conc int) *point { return benchkit.At(t.Runs, conc) }

func optionsView(o options) map[string]any {
	var secs []string
	for s := range o.sections {
		secs = append(secs, s)
	}
	slices.Sort(secs)
	return map[string]any{
		"sections": secs, "conc": o.concs, "duration": o.duration.String(), "warmup": o.warmup.String(),
		"rounds": o.rounds, "coldRuns": o.coldRuns, "fleet": o.fleetSize, "lsRuns": o.lsRuns,
		"matrixRuns": o.matrixRuns, "matrixBurst": o.matrixBurst, "sandboxes": o.sandboxes,
	}
}

// Goals of issue 2 on this machine.
const (
	goalAddedP50 = 150 * time.Microsecond
	goalRatio32  = 0.25
	goalColdP50  = 5 * time.Millisecond
	goalFleetRSS = 100 << 20
	goalConc     = 32
)

// Goals of issue 10, point 3 (the warm path, in the default sandbox), at
// concurrency goalConc unless said otherwise.
const (
	goal10AddedP50    = 250 * time.Microsecond // at c=1, over direct
	goal10RelayRatio  = 0.9                    // throughput over the Runtime API floor's
	goal10DirectRatio = 0.15                   // throughput over direct's
	goal10ServerCPU   = 1.0                    // server CPU per invocation over the bare proxy's
	goal10RuncRatio   = 0.9                    // runc's throughput over the process driver's
)

// print writes the report.
func (r *results) print(w io.Writer) {
	fmt.Fprintf(w, "\nStratus bench — %s, %s CPUs (%s), kernel %s, %s, %s, runc %s; source tree %s; load average %s at start, %s at end; run took %s\n",
		r.Env["date"], r.Env["cpus"], r.Env["cpu"], r.Env["kernel"], r.Env["os"], r.Env["go"], orNone(r.Env["runc"]), r.Env["tree"],
		r.Env["loadavg at start"], orNone(r.Env["loadavg at end"]), r.Elapsed.Round(time.Second))
	if len(r.Sandboxes) > 0 {
		fmt.Fprintf(w, "Sandboxes measured, in order: %s (the first stands for the default sandbox, the server started without --sandbox)\n", strings.Join(r.Sandboxes, ", "))
	}
	for _, n := range r.SandboxNotes {
		fmt.Fprintln(w, "  note:", n)
	}
	var direct, proxy, relay *targetResult
	for i := range r.Warm {
		switch r.Warm[i].Kind {
		case kindDirect:
			direct = &r.Warm[i]
		case kindProxy:
			proxy = &r.Warm[i]
		case kindRelay:
			relay = &r.Warm[i]
		}
	}
	var concs []int
	if direct != nil {
		for _, x := range direct.Runs {
			concs = append(concs, x.Conc)
		}
	}
	defaultSandbox := ""
	if len(r.Sandboxes) > 0 {
		defaultSandbox = r.Sandboxes[0]
	}
	var goals, goals10 []benchkit.Goal

	if len(r.Warm) > 0 && direct != nil {
		fmt.Fprintf(w, "\nWarm path: POST {} on one keep-alive connection (c=1: p50/p99), throughput at c=%s; median of %v rounds of %v each\n",
			joinInts(concs, ","), r.Options["rounds"], r.Options["duration"])
		fmt.Fprintln(w, "  stratus SANDBOX ROUTE FUNCTION: /v1 = POST /v1/functions/NAME/invoke (token), /fn = POST /fn/NAME (--auth none); noop = e2e/testdata/gonoop, lognoop = the same logging one line per call; 128 MB (the default)")
		tw := benchkit.Table(w)
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
				line += benchkit.FmtDur(one.P50) + "\t" + benchkit.FmtDur(one.P99) + "\t"
				if d1 != nil && t.Name != direct.Name {
					line += benchkit.Signed(one.P50-d1.P50) + "\t" + benchkit.Signed(one.P99-d1.P99) + "\t"
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
		tw = benchkit.Table(w)
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
				line += benchkit.FmtDur(x.CPUPerReq) + "\t" + benchkit.FmtDur(x.FrontCPUPerReq) + "\t" + benchkit.FmtDur(x.CPUPerReq-x.FrontCPUPerReq) + "\t"
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
		for _, in := range r.WarmInstances {
			notes = append(notes, fmt.Sprintf("%s, %s: %d live instances (%d idle) after warming, %d (%d idle) after the rounds", in.Sandbox, in.Function, in.Live, in.Idle, in.LiveAfter, in.IdleAfter))
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

		// Issue 2's goals, for the no-op in the default sandbox.
		for _, t := range r.Warm {
			if t.Kind != kindStratus || t.Sandbox != defaultSandbox || t.Function != "noop" {
				continue
			}
			what := fmt.Sprintf("%s %s", t.Path, t.Sandbox)
			if one := t.at(1); one != nil && d1 != nil {
				add := one.P50 - d1.P50
				goals = append(goals, benchkit.Goal{What: "warm p50 added latency, " + what, Target: "≤ " + benchkit.FmtDur(goalAddedP50), Got: benchkit.Signed(add), OK: add <= goalAddedP50})
			}
			if x, dx := t.at(goalConc), direct.at(goalConc); x != nil && dx != nil {
				ratio := x.RPS / dx.RPS
				goals = append(goals, benchkit.Goal{What: "throughput c=32 vs direct, " + what, Target: fmt.Sprintf("≥ %.2f", goalRatio32), Got: fmt.Sprintf("%.2f", ratio), OK: ratio >= goalRatio32})
			}
		}

		r.printFloors(w, direct, proxy, relay, concs, defaultSandbox, func(what, target, got string, ok bool) {
			goals10 = append(goals10, benchkit.Goal{What: what, Target: target, Got: got, OK: ok})
		})
	}

	if len(r.Cold) > 0 || r.ProcessPoll != nil {
		fmt.Fprintf(w, "\nCold start: scale from zero to the first answer (%v runs: deploy a fresh function, wait until it is ready (runc: its prepared sandbox up), %s more, one /v1 invoke), next to starting a static Go HTTP server as a plain process\n", r.Options["coldRuns"], matrixSettle)
		tw := benchkit.Table(w)
		fmt.Fprintln(tw, "what\tp50\tp99\tmin\tmax\tp50 vs process (poll)\tp50 vs process (inherited fd)\tp50 vs Runtime API floor\t")
		summary := func(c *coldResult) *benchkit.Summary {
			if c == nil {
				return nil
			}
			return &c.Summary
		}
		row := func(name string, c *coldResult) {
			if c != nil {
				fmt.Fprintln(tw, benchkit.SummaryCells(name, c.Summary, summary(r.ProcessPoll), summary(r.ProcessInherit), summary(r.RuntimeStart)))
			}
		}
		row("process start, poll the port", r.ProcessPoll)
		row("process start, inherited listening socket", r.ProcessInherit)
		row("Runtime API floor: exec bootstrap, answer 1st invoke", r.RuntimeStart)
		for i := range r.Cold {
			c := &r.Cold[i]
			name := "stratus cold invoke, " + c.Sandbox
			if c.CreateAhead {
				name += " (create-ahead)"
			}
			row(name, &c.coldResult)
		}
		tw.Flush()
		for i, c := range r.Cold {
			note := fmt.Sprintf("%s: the server's Init Duration (instance start → runtime's first invocation/next) p50 %s", c.Sandbox, benchkit.FmtDur(c.InitP50))
			if c.CreateAhead {
				note += fmt.Sprintf("; the prepared sandbox was up %s (p50) after the deploy answered", benchkit.FmtDur(c.ReadyP50))
			}
			fmt.Fprintln(w, "  note:", note)
			if i == 0 {
				goals = append(goals, benchkit.Goal{What: "cold start p50, " + c.Sandbox, Target: "≤ " + benchkit.FmtDur(goalColdP50), Got: benchkit.FmtDur(c.P50), OK: c.P50 <= goalColdP50})
			}
		}
		if len(r.Cold) == 2 && r.Cold[1].P50 > 0 {
			fmt.Fprintf(w, "  note: cold start p50, %s over %s: %.2f×\n", r.Cold[0].Sandbox, r.Cold[1].Sandbox, float64(r.Cold[0].P50)/float64(r.Cold[1].P50))
		}
	}

	if f := r.Fleet; f != nil {
		fmt.Fprintf(w, "\n%d deployed functions (same code, deployed through the API, 8 in parallel; --sandbox process)\n", f.Functions)
		tw := benchkit.List(w)
		fmt.Fprintf(tw, "deploy %d functions\t%s (%.0f/s)\n", f.Functions, benchkit.FmtDur(f.DeployElapsed), float64(f.Functions)/f.DeployElapsed.Seconds())
		fmt.Fprintf(tw, "stratus ls (table)\tmedian %s, best %s (%d runs)\n", benchkit.FmtDur(f.LsTable), benchkit.FmtDur(f.LsTableMin), f.LsRuns)
		fmt.Fprintf(tw, "stratus ls -o json\tmedian %s, best %s\n", benchkit.FmtDur(f.LsJSON), benchkit.FmtDur(f.LsJSONMin))
		fmt.Fprintf(tw, "GET /v1/functions (Go client, no CLI)\tmedian %s\n", benchkit.FmtDur(f.ListAPI))
		fmt.Fprintf(tw, "server VmRSS, fresh\t%s\n", benchkit.MB(f.RSSBefore))
		fmt.Fprintf(tw, "server VmRSS, %d functions, idle\t%s (+%s)\n", f.Functions, benchkit.MB(f.RSSAfter), benchkit.MB(f.RSSAfter-f.RSSBefore))
		fmt.Fprintf(tw, "server VmRSS after the ls runs\t%s (peak VmHWM %s)\n", benchkit.MB(f.RSSAfterLs), benchkit.MB(f.HWM))
		fmt.Fprintf(tw, "live instances (ls -o json) / server child processes\t%d / %d\n", f.LiveInstances, f.ChildProcs)
		tw.Flush()
		ok := f.RSSAfter < goalFleetRSS && f.LiveInstances == 0 && f.ChildProcs == 0
		goals = append(goals, benchkit.Goal{What: fmt.Sprintf("%d idle functions", f.Functions), Target: "< 100 MB, no instance",
			Got: fmt.Sprintf("%s, %d instances", benchkit.MB(f.RSSAfter), f.LiveInstances), OK: ok})
	}

	if r.ColdMatrix != nil {
		r.ColdMatrix.print(w)
	}
	benchkit.PrintGoals(w, "Goals of issue 10, point 3 (warm path, default sandbox "+defaultSandbox+")", goals10)
	benchkit.PrintGoals(w, "Goals (issue 2; warm and cold: the default sandbox, "+defaultSandbox+")", goals)
	for _, p := range r.Profiles {
		fmt.Fprintf(w, "\nCPU profile of the server: %s (%s)\n%s\n", p.What, p.File, p.Top)
	}
}

// printFloors writes the warm path of every Stratus target as ratios to
// the floors (issue 10, point 3), and runc against the process driver
// for the same route and function; it reports the goals of the default
// sandbox's targets through addGoal.
func (r *results) printFloors(w io.Writer, direct, proxy, relay *targetResult, concs []int, defaultSandbox string, addGoal func(what, target, got string, ok bool)) {
	var st []*targetResult
	for i := range r.Warm {
		if r.Warm[i].Kind == kindStratus {
			st = append(st, &r.Warm[i])
		}
	}
	if len(st) == 0 {
		return
	}
	hi := concs[len(concs)-1]
	fmt.Fprintf(w, "\nWarm path against its floors (issue 10, point 3): p50 added over direct at c=1 (goal ≤ %s); throughput at c=%d over the Runtime API floor's (relayfloor, goal ≥ %.2f) and direct's (≥ %.2f); the server's CPU per invocation at c=%d (front) over the bare proxy's (≤ %.2f×)\n",
		benchkit.FmtDur(goal10AddedP50), hi, goal10RelayRatio, goal10DirectRatio, hi, goal10ServerCPU)
	tw := benchkit.Table(w)
	fmt.Fprintf(tw, "target\tadded p50 c=1\treq/s c=%d\tvs relayfloor\tvs direct\tserver CPU c=%d\tbare proxy's\tratio\t\n", hi, hi)
	d1 := direct.at(1)
	var relayHi, proxyHi *point
	if relay != nil {
		relayHi = relay.at(hi)
	}
	if proxy != nil {
		proxyHi = proxy.at(hi)
	}
	dHi := direct.at(hi)
	for _, t := range st {
		line := t.Name + "\t"
		one, x := t.at(1), t.at(hi)
		what := fmt.Sprintf("%s %s %s", t.Sandbox, t.Path, t.Function)
		isDefault := t.Sandbox == defaultSandbox
		if one != nil && d1 != nil {
			add := one.P50 - d1.P50
			line += benchkit.Signed(add) + "\t"
			if isDefault {
				addGoal("added p50 c=1, "+what, "≤ "+benchkit.FmtDur(goal10AddedP50), benchkit.Signed(add), add <= goal10AddedP50)
			}
		} else {
			line += "n/a\t"
		}
		if x == nil {
			fmt.Fprintln(tw, line+"n/a\t\t\t\t\t\t")
			continue
		}
		line += fmt.Sprintf("%.0f\t", x.RPS)
		// ratio adds the column of x's throughput over floor's, and its
		// goal for the default sandbox.
		ratio := func(floor *point, name string, goal float64) {
			if floor == nil {
				line += "n/a\t"
				return
			}
			r := x.RPS / floor.RPS
			line += fmt.Sprintf("%.2f\t", r)
			if isDefault {
				addGoal(fmt.Sprintf("c=%d vs %s, %s", hi, name, what), fmt.Sprintf("≥ %.2f", goal), fmt.Sprintf("%.2f", r), r >= goal)
			}
		}
		ratio(relayHi, "relayfloor", goal10RelayRatio)
		ratio(dHi, "direct", goal10DirectRatio)
		line += benchkit.FmtDur(x.FrontCPUPerReq) + "\t"
		if proxyHi != nil && proxyHi.FrontCPUPerReq > 0 {
			ratio := float64(x.FrontCPUPerReq) / float64(proxyHi.FrontCPUPerReq)
			line += benchkit.FmtDur(proxyHi.FrontCPUPerReq) + fmt.Sprintf("\t%.2f×\t", ratio)
			if isDefault {
				addGoal(fmt.Sprintf("server CPU per invocation c=%d vs bare proxy's, %s", hi, what), fmt.Sprintf("≤ %.2f×", goal10ServerCPU),
					fmt.Sprintf("%.2f× (%s vs %s)", ratio, benchkit.FmtDur(x.FrontCPUPerReq), benchkit.FmtDur(proxyHi.FrontCPUPerReq)), ratio <= goal10ServerCPU)
			}
		} else {
			line += "n/a\t\t"
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()

	// runc against the process driver, same route and function.
	find := func(sandbox, path, fn string) *targetResult {
		for _, t := range st {
			if t.Sandbox == sandbox && t.Path == path && t.Function == fn {
				return t
			}
		}
		return nil
	}
	type pair struct{ runc, proc *targetResult }
	var pairs []pair
	for _, t := range st {
		if t.Sandbox != "runc" {
			continue
		}
		if p := find("process", t.Path, t.Function); p != nil {
			pairs = append(pairs, pair{t, p})
		}
	}
	if len(pairs) == 0 {
		return
	}
	fmt.Fprintf(w, "\nrunc against the process driver, same route and function (goal: runc's throughput ≥ %.2f of the process driver's)\n", goal10RuncRatio)
	tw = benchkit.Table(w)
	hdr := "route, function\t"
	for _, c := range concs {
		hdr += fmt.Sprintf("req/s c=%d runc / process\t", c)
	}
	hdr += "p50 c=1 runc\tprocess\tfunction CPU/s c=1 runc\tthrottled/s c=1\tc=" + strconv.Itoa(hi) + "\tfunction-side CPU/req c=" + strconv.Itoa(hi) + " runc\tprocess\t"
	fmt.Fprintln(tw, hdr)
	for _, p := range pairs {
		what := p.runc.Path + " " + p.runc.Function
		line := what + "\t"
		for _, c := range concs {
			a, b := p.runc.at(c), p.proc.at(c)
			if a == nil || b == nil {
				line += "n/a\t"
				continue
			}
			ratio := a.RPS / b.RPS
			line += fmt.Sprintf("%.2f\t", ratio)
			if defaultSandbox == "runc" && (c == 1 || c == hi) {
				addGoal(fmt.Sprintf("runc vs process c=%d, %s", c, what), fmt.Sprintf("≥ %.2f", goal10RuncRatio), fmt.Sprintf("%.2f (%.0f vs %.0f req/s)", ratio, a.RPS, b.RPS), ratio >= goal10RuncRatio)
			}
		}
		a1, b1, ah, bh := p.runc.at(1), p.proc.at(1), p.runc.at(hi), p.proc.at(hi)
		if a1 != nil && b1 != nil {
			// CPU the function side used per second of the c=1 run:
			// next to a 128 MB sandbox's quota, it tells throttling.
			fnCPU := time.Duration(a1.RPS * float64(a1.CPUPerReq-a1.FrontCPUPerReq))
			line += benchkit.FmtDur(a1.P50) + "\t" + benchkit.FmtDur(b1.P50) + "\t" + benchkit.FmtDur(fnCPU.Round(100*time.Microsecond)) + "\t" + perSecond(a1) + "\t"
		} else {
			line += "n/a\t\t\t\t"
		}
		if ah != nil {
			line += perSecond(ah) + "\t"
		} else {
			line += "n/a\t"
		}
		if ah != nil && bh != nil {
			line += benchkit.FmtDur(ah.CPUPerReq-ah.FrontCPUPerReq) + "\t" + benchkit.FmtDur(bh.CPUPerReq-bh.FrontCPUPerReq) + "\t"
		} else {
			line += "n/a\t\t"
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	fmt.Fprintf(w, "  note: function CPU/s = req/s × the function side's CPU per request at c=1 (one instance busy); a %d MB runc sandbox's CPU share is %d/%d of a core, %s per second: a weight under contention by default, a hard quota with --function-cpu quota\n",
		stratus.DefaultMemoryMB, stratus.DefaultMemoryMB, runcMBPerCPU, benchkit.FmtDur(time.Second*stratus.DefaultMemoryMB/runcMBPerCPU))
	fmt.Fprintln(w, "  note: throttled/s = CFS periods (100 ms) in which the quota held a sandbox back (cpu.stat nr_throttled, summed over the sandboxes) per second of the run: 10 = one sandbox throttled in every period")
}

// runcMBPerCPU is the memory size the runc driver gives one full core
// (internal/sandbox/runc); smaller sandboxes get a share in proportion.
const runcMBPerCPU = 1769

// perSecond is x's throttled periods per second of its run.
func perSecond(x *point) string {
	return fmt.Sprintf("%.1f", x.Throttled)
}

func orNone(s string) string {
	if s == "" {
		return "?"
	}
	return s
}

func joinInts(v []int, sep string) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, sep)
}
