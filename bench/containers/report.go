package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

// Goals of the issue.
const (
	goalTputRatio = 0.90 // gateway ≥ 90 % of the bare proxy's requests/s at c=32
	goalAddedP50  = 30 * time.Microsecond
	goalColdSvc   = 25 * time.Millisecond
	goalColdFn    = 12 * time.Millisecond
	goalConc      = 32
)

// seen is benchkit.FmtDur of d, or "not seen" for 0.
func seen(d time.Duration) string {
	if d == 0 {
		return "not seen"
	}
	return benchkit.FmtDur(d)
}

// smb is benchkit.MB with a sign.
func smb(b int64) string {
	if b >= 0 {
		return "+" + benchkit.MB(b)
	}
	return benchkit.MB(b)
}

// print writes the report.
func (r *results) print(w io.Writer) {
	e := r.Env
	fmt.Fprintf(w, "\nStratus container bench — %s; %s CPUs (%s), %s; %s; %s; runc %s; cgroups %s; %s; source tree %s; load average %s at start\n",
		e["date"], e["cpus"], e["cpu"], e["memory"], e["uname"], e["os"], e["runc"], e["cgroups"], e["go"], e["tree"], e["loadavg at start"])
	var goals []benchkit.Goal
	if t := r.Throughput; t != nil {
		goals = append(goals, t.print(w, r.Options)...)
	}
	if len(r.Floors) > 0 || len(r.ColdServices) > 0 || len(r.ColdFunctions) > 0 {
		goals = append(goals, r.printCold(w)...)
	}
	if d := r.Density; d != nil {
		d.print(w)
	}
	if len(r.Servers) > 0 {
		fmt.Fprintln(w, "\nServers stopped with SIGTERM")
		tw := benchkit.List(w)
		for _, s := range r.Servers {
			fmt.Fprintf(tw, "%s\tstopped in %s\t%s\n", s.Name, benchkit.FmtDur(s.StopTime), s.Left)
		}
		tw.Flush()
	}
	benchkit.PrintGoals(w, "Goals", goals)
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
}

func (t *throughputResult) print(w io.Writer, opts map[string]any) []benchkit.Goal {
	var direct, bare *targetResult
	for i := range t.Targets {
		switch t.Targets[i].Name {
		case tDirect:
			direct = &t.Targets[i]
		case tBare:
			bare = &t.Targets[i]
		}
	}
	if direct == nil || bare == nil {
		return nil
	}
	var concs []int
	for _, p := range direct.Runs {
		concs = append(concs, p.Conc)
	}
	fmt.Fprintf(w, "\nThroughput: GET / of gosvc (one replica, --memory %d --cpu %g), keep-alive; c=1 is one connection (p50/p99); median of %v rounds of %v\n",
		t.MemoryMB, t.CPU, opts["rounds"], opts["duration"])
	tw := benchkit.Table(w)
	hdr := "target\tp50\tp99\tp50 vs direct\tp50 vs bare proxy\t"
	for _, c := range concs {
		hdr += fmt.Sprintf("req/s c=%d\tvs direct\tvs bare proxy\t", c)
	}
	fmt.Fprintln(tw, hdr)
	d1, b1 := direct.at(1), bare.at(1)
	for _, tr := range t.Targets {
		line := tr.Name + "\t"
		if one := tr.at(1); one != nil && d1 != nil && b1 != nil {
			line += benchkit.FmtDur(one.P50) + "\t" + benchkit.FmtDur(one.P99) + "\t" + benchkit.Signed(one.P50-d1.P50) + "\t" + benchkit.Signed(one.P50-b1.P50) + "\t"
		} else {
			line += "\t\t\t\t"
		}
		for _, c := range concs {
			x, dx, bx := tr.at(c), direct.at(c), bare.at(c)
			line += fmt.Sprintf("%.0f\t%.2f\t%.2f\t", x.RPS, x.RPS/dx.RPS, x.RPS/bx.RPS)
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nCPU time per answered request (user + system): the Stratus server process (/proc), the bare proxy process, the replicas' containers (cgroup cpuacct)")
	tw = benchkit.Table(w)
	hdr = "target\t"
	for _, c := range concs {
		hdr += fmt.Sprintf("c=%d server\tproxy\treplica\t", c)
	}
	fmt.Fprintln(tw, hdr)
	for _, tr := range t.Targets {
		line := tr.Name + "\t"
		for _, c := range concs {
			x := tr.at(c)
			line += benchkit.FmtDur(x.ServerCPU) + "\t" + benchkit.FmtDur(x.ProxyCPU) + "\t" + benchkit.FmtDur(x.ReplicaCPU) + "\t"
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	maxLoad := 0.0
	for _, tr := range t.Targets {
		for _, x := range tr.Runs {
			maxLoad = max(maxLoad, x.LoadAvg)
			if x.Errs > 0 {
				fmt.Fprintf(w, "  note: %s c=%d: %d errors\n", tr.Name, x.Conc, x.Errs)
			}
		}
	}
	fmt.Fprintf(w, "  note: direct and the bare proxy hit the replica at %s (the --concurrency 0 service's); machine load average (1 min) up to %.1f during these runs\n", t.Replica, maxLoad)

	var goals []benchkit.Goal
	for _, tr := range t.Targets {
		if !strings.HasPrefix(tr.Name, "stratus") {
			continue
		}
		short := strings.TrimPrefix(tr.Name, "stratus /svc/NAME/ ")
		if x, bx := tr.at(goalConc), bare.at(goalConc); x != nil && bx != nil {
			ratio := x.RPS / bx.RPS
			goals = append(goals, benchkit.Goal{What: "gateway throughput c=32 vs bare proxy " + short, Target: fmt.Sprintf("≥ %.2f", goalTputRatio), Got: fmt.Sprintf("%.3f", ratio), OK: ratio >= goalTputRatio})
		}
		if one := tr.at(1); one != nil && b1 != nil {
			add := one.P50 - b1.P50
			goals = append(goals, benchkit.Goal{What: "gateway p50 added over bare proxy " + short, Target: "≤ +" + benchkit.FmtDur(goalAddedP50), Got: benchkit.Signed(add), OK: add <= goalAddedP50})
		}
	}
	return goals
}

func (r *results) printCold(w io.Writer) []benchkit.Goal {
	var runHTTP, createStart *series
	for i := range r.Floors {
		switch r.Floors[i].Name {
		case floorRunHTTP:
			runHTTP = &r.Floors[i]
		case floorCreateStart:
			createStart = &r.Floors[i]
		}
	}
	fmt.Fprintf(w, "\nCold starts and their floors (%v runs each; p99 by nearest rank)\n", r.Options["coldRuns"])
	tw := benchkit.Table(w)
	fmt.Fprintln(tw, "what\tp50\tp99\tmin\tmax\tp50 vs runc run (HTTP)\tp50 vs create+start\t")
	var floors []*benchkit.Summary
	for _, f := range []*series{runHTTP, createStart} {
		if f == nil {
			floors = append(floors, nil)
		} else {
			floors = append(floors, &f.Summary)
		}
	}
	row := func(s series) { fmt.Fprintln(tw, benchkit.SummaryCells(s.Name, s.Summary, floors...)) }
	for _, s := range r.Floors {
		row(s)
	}
	for _, s := range r.ColdServices {
		row(s)
	}
	for _, s := range r.ColdFunctions {
		row(s)
	}
	tw.Flush()
	for _, s := range append(append(append([]series{}, r.Floors...), r.ColdServices...), r.ColdFunctions...) {
		for _, p := range s.PartNames {
			fmt.Fprintf(w, "  %s — p50 of %s: %s\n", s.Name, p, benchkit.FmtDur(s.Parts[p]))
		}
		for _, n := range s.Notes {
			fmt.Fprintf(w, "  note: %s: %s\n", s.Name, n)
		}
	}
	var goals []benchkit.Goal
	for _, s := range r.ColdServices {
		goals = append(goals, benchkit.Goal{What: "p50 " + s.Name, Target: "≤ " + benchkit.FmtDur(goalColdSvc), Got: benchkit.FmtDur(s.P50), OK: s.P50 <= goalColdSvc})
	}
	for _, s := range r.ColdFunctions {
		goals = append(goals, benchkit.Goal{What: "p50 " + s.Name, Target: "≤ " + benchkit.FmtDur(goalColdFn), Got: benchkit.FmtDur(s.P50), OK: s.P50 <= goalColdFn})
	}
	return goals
}

func (d *densityResult) print(w io.Writer) {
	n := int64(d.Replicas)
	fmt.Fprintf(w, "\nDensity: one service, --min %d --max %d (gosvc, default --memory), on a fresh server\n", d.Replicas, d.Replicas)
	tw := benchkit.List(w)
	fmt.Fprintf(tw, "deploy until all %d ready (the deploy call returns)\t%s (first replica's program seen running after %s, all after %s)\n",
		d.Replicas, benchkit.FmtDur(d.ReadyIn), seen(d.FirstStartedIn), seen(d.AllStartedIn))
	fmt.Fprintf(tw, "server RSS / PSS / USS / anon, no service\t%s / %s / %s / %s\n", benchkit.MB(d.ServerBefore.RSS), benchkit.MB(d.ServerBefore.PSS), benchkit.MB(d.ServerBefore.USS), benchkit.MB(d.ServerBefore.Anon))
	fmt.Fprintf(tw, "server RSS / PSS / USS / anon, %d replicas\t%s / %s / %s / %s (%s / %s / %s / %s)\n", d.Replicas,
		benchkit.MB(d.ServerAfter.RSS), benchkit.MB(d.ServerAfter.PSS), benchkit.MB(d.ServerAfter.USS), benchkit.MB(d.ServerAfter.Anon),
		smb(d.ServerAfter.RSS-d.ServerBefore.RSS), smb(d.ServerAfter.PSS-d.ServerBefore.PSS), smb(d.ServerAfter.USS-d.ServerBefore.USS), smb(d.ServerAfter.Anon-d.ServerBefore.Anon))
	fmt.Fprintf(tw, "server threads / open files\t%d → %d / %d → %d\n", d.ThreadsBefore, d.ThreadsAfter, d.FDsBefore, d.FDsAfter)
	for _, name := range groupNames(d.Helpers) {
		g := d.Helpers[name]
		fmt.Fprintf(tw, "outside the containers: %d × %s\tRSS / PSS / USS %s / %s / %s (each %s / %s / %s)\n", g.Count, name, benchkit.MB(g.RSS), benchkit.MB(g.PSS), benchkit.MB(g.USS),
			benchkit.MB(g.RSS/int64(g.Count)), benchkit.MB(g.PSS/int64(g.Count)), benchkit.MB(g.USS/int64(g.Count)))
	}
	for _, name := range groupNames(d.Inside) {
		g := d.Inside[name]
		fmt.Fprintf(tw, "inside the containers: %d × %s\tRSS / PSS / USS %s / %s / %s (each %s / %s / %s)\n", g.Count, name, benchkit.MB(g.RSS), benchkit.MB(g.PSS), benchkit.MB(g.USS),
			benchkit.MB(g.RSS/int64(g.Count)), benchkit.MB(g.PSS/int64(g.Count)), benchkit.MB(g.USS/int64(g.Count)))
	}
	if d.ContainerCount > 0 {
		c := int64(d.ContainerCount)
		fmt.Fprintf(tw, "containers' cgroups (%d): memory charged\t%s (%s each): anonymous %s each, page cache %s each, kernel %s each\n",
			d.ContainerCount, benchkit.MB(d.Containers.Usage), benchkit.MB(d.Containers.Usage/c), benchkit.MB(d.Containers.RSS/c), benchkit.MB(d.Containers.Cache/c), benchkit.MB(d.Containers.Kernel/c))
	}
	fmt.Fprintf(tw, "host memory in use (MemTotal − MemAvailable)\t+%s (%s per replica; other work on the host moves it too)\n", benchkit.MB(d.HostUsedDelta), benchkit.MB(d.HostUsedDelta/n))
	fmt.Fprintf(tw, "Stratus's memory per replica beyond the container's own\t%s = (server anon delta + PSS of the processes outside the containers) / %d; %s counting RSS (upper bound)\n",
		benchkit.MB(d.PerReplica), d.Replicas, benchkit.MB(d.PerReplicaRSS))
	fmt.Fprintf(tw, "GET /svc/NAME/ through the gateway after deploy\t%d/20 answered\n", d.Answered)
	fmt.Fprintf(tw, "remove the service until no replica process and no container cgroup is left\t%s; then %s\n", benchkit.FmtDur(d.RemovedIn), d.AfterRemove)
	fmt.Fprintf(tw, "server RSS after the removal\t%s\n", benchkit.MB(d.ServerRemoved.RSS))
	tw.Flush()
	for _, note := range d.Notes {
		fmt.Fprintln(w, "  note:", note)
	}
}
