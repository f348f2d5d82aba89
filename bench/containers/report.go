package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Goals of the issue.
const (
	goalTputRatio = 0.90 // gateway ≥ 90 % of the bare proxy's requests/s at c=32
	goalAddedP50  = 30 * time.Microsecond
	goalColdSvc   = 25 * time.Millisecond
	goalColdFn    = 12 * time.Millisecond
	goalConc      = 32
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
	d = d.Round(time.Microsecond)
	if d >= 0 {
		return "+" + fmtDur(d)
	}
	return fmtDur(d)
}

func mb(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/(1<<20)) }

// seen is fmtDur, or "not seen" for 0.
func seen(d time.Duration) string {
	if d == 0 {
		return "not seen"
	}
	return fmtDur(d)
}

// smb is mb with a sign.
func smb(b int64) string {
	if b >= 0 {
		return "+" + mb(b)
	}
	return mb(b)
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

type goal struct {
	what, target, got string
	ok                bool
}

// print writes the report.
func (r *results) print(w io.Writer) {
	e := r.Env
	fmt.Fprintf(w, "\nStratus container bench — %s; %s CPUs (%s), %s; %s; %s; runc %s; cgroups %s; %s; source tree %s; load average %s at start\n",
		e["date"], e["cpus"], e["cpu"], e["memory"], e["uname"], e["os"], e["runc"], e["cgroups"], e["go"], e["tree"], e["loadavg at start"])
	var goals []goal
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
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, s := range r.Servers {
			fmt.Fprintf(tw, "%s\tstopped in %s\t%s\n", s.Name, fmtDur(s.StopTime), s.Left)
		}
		tw.Flush()
	}
	if len(goals) > 0 {
		fmt.Fprintln(w, "\nGoals")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, g := range goals {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", g.what, g.target, g.got, verdict(g.ok))
		}
		tw.Flush()
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
}

func (t *throughputResult) print(w io.Writer, opts map[string]any) []goal {
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
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	hdr := "target\tp50\tp99\tp50 vs direct\tp50 vs bare proxy\t"
	for _, c := range concs {
		hdr += fmt.Sprintf("req/s c=%d\tvs direct\tvs bare proxy\t", c)
	}
	fmt.Fprintln(tw, hdr)
	d1, b1 := direct.at(1), bare.at(1)
	for _, tr := range t.Targets {
		line := tr.Name + "\t"
		if one := tr.at(1); one != nil && d1 != nil && b1 != nil {
			line += fmtDur(one.P50) + "\t" + fmtDur(one.P99) + "\t" + signed(one.P50-d1.P50) + "\t" + signed(one.P50-b1.P50) + "\t"
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
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	hdr = "target\t"
	for _, c := range concs {
		hdr += fmt.Sprintf("c=%d server\tproxy\treplica\t", c)
	}
	fmt.Fprintln(tw, hdr)
	for _, tr := range t.Targets {
		line := tr.Name + "\t"
		for _, c := range concs {
			x := tr.at(c)
			line += fmtDur(x.ServerCPU) + "\t" + fmtDur(x.ProxyCPU) + "\t" + fmtDur(x.ReplicaCPU) + "\t"
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

	var goals []goal
	for _, tr := range t.Targets {
		if !strings.HasPrefix(tr.Name, "stratus") {
			continue
		}
		short := strings.TrimPrefix(tr.Name, "stratus /svc/NAME/ ")
		if x, bx := tr.at(goalConc), bare.at(goalConc); x != nil && bx != nil {
			ratio := x.RPS / bx.RPS
			goals = append(goals, goal{"gateway throughput c=32 vs bare proxy " + short, fmt.Sprintf("≥ %.2f", goalTputRatio), fmt.Sprintf("%.3f", ratio), ratio >= goalTputRatio})
		}
		if one := tr.at(1); one != nil && b1 != nil {
			add := one.P50 - b1.P50
			goals = append(goals, goal{"gateway p50 added over bare proxy " + short, "≤ +" + fmtDur(goalAddedP50), signed(add), add <= goalAddedP50})
		}
	}
	return goals
}

func (r *results) printCold(w io.Writer) []goal {
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
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "what\tp50\tp99\tmin\tmax\tp50 vs runc run (HTTP)\tp50 vs create+start\t")
	row := func(s series) {
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t", s.Name, fmtDur(s.P50), fmtDur(s.P99), fmtDur(s.Min), fmtDur(s.Max))
		for _, f := range []*series{runHTTP, createStart} {
			if f == nil || f.P50 == 0 {
				line += "\t"
			} else {
				line += fmt.Sprintf("%.2f×\t", float64(s.P50)/float64(f.P50))
			}
		}
		fmt.Fprintln(tw, line)
	}
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
			fmt.Fprintf(w, "  %s — p50 of %s: %s\n", s.Name, p, fmtDur(s.Parts[p]))
		}
		for _, n := range s.Notes {
			fmt.Fprintf(w, "  note: %s: %s\n", s.Name, n)
		}
	}
	var goals []goal
	for _, s := range r.ColdServices {
		goals = append(goals, goal{"p50 " + s.Name, "≤ " + fmtDur(goalColdSvc), fmtDur(s.P50), s.P50 <= goalColdSvc})
	}
	for _, s := range r.ColdFunctions {
		goals = append(goals, goal{"p50 " + s.Name, "≤ " + fmtDur(goalColdFn), fmtDur(s.P50), s.P50 <= goalColdFn})
	}
	return goals
}

func (d *densityResult) print(w io.Writer) {
	n := int64(d.Replicas)
	fmt.Fprintf(w, "\nDensity: one service, --min %d --max %d (gosvc, default --memory), on a fresh server\n", d.Replicas, d.Replicas)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "deploy until all %d ready (the deploy call returns)\t%s (first replica's program seen running after %s, all after %s)\n",
		d.Replicas, fmtDur(d.ReadyIn), seen(d.FirstStartedIn), seen(d.AllStartedIn))
	fmt.Fprintf(tw, "server RSS / PSS / USS / anon, no service\t%s / %s / %s / %s\n", mb(d.ServerBefore.RSS), mb(d.ServerBefore.PSS), mb(d.ServerBefore.USS), mb(d.ServerBefore.Anon))
	fmt.Fprintf(tw, "server RSS / PSS / USS / anon, %d replicas\t%s / %s / %s / %s (%s / %s / %s / %s)\n", d.Replicas,
		mb(d.ServerAfter.RSS), mb(d.ServerAfter.PSS), mb(d.ServerAfter.USS), mb(d.ServerAfter.Anon),
		smb(d.ServerAfter.RSS-d.ServerBefore.RSS), smb(d.ServerAfter.PSS-d.ServerBefore.PSS), smb(d.ServerAfter.USS-d.ServerBefore.USS), smb(d.ServerAfter.Anon-d.ServerBefore.Anon))
	fmt.Fprintf(tw, "server threads / open files\t%d → %d / %d → %d\n", d.ThreadsBefore, d.ThreadsAfter, d.FDsBefore, d.FDsAfter)
	for _, name := range groupNames(d.Helpers) {
		g := d.Helpers[name]
		fmt.Fprintf(tw, "outside the containers: %d × %s\tRSS / PSS / USS %s / %s / %s (each %s / %s / %s)\n", g.Count, name, mb(g.RSS), mb(g.PSS), mb(g.USS),
			mb(g.RSS/int64(g.Count)), mb(g.PSS/int64(g.Count)), mb(g.USS/int64(g.Count)))
	}
	for _, name := range groupNames(d.Inside) {
		g := d.Inside[name]
		fmt.Fprintf(tw, "inside the containers: %d × %s\tRSS / PSS / USS %s / %s / %s (each %s / %s / %s)\n", g.Count, name, mb(g.RSS), mb(g.PSS), mb(g.USS),
			mb(g.RSS/int64(g.Count)), mb(g.PSS/int64(g.Count)), mb(g.USS/int64(g.Count)))
	}
	if d.ContainerCount > 0 {
		c := int64(d.ContainerCount)
		fmt.Fprintf(tw, "containers' cgroups (%d): memory charged\t%s (%s each): anonymous %s each, page cache %s each, kernel %s each\n",
			d.ContainerCount, mb(d.Containers.Usage), mb(d.Containers.Usage/c), mb(d.Containers.RSS/c), mb(d.Containers.Cache/c), mb(d.Containers.Kernel/c))
	}
	fmt.Fprintf(tw, "host memory in use (MemTotal − MemAvailable)\t+%s (%s per replica; other work on the host moves it too)\n", mb(d.HostUsedDelta), mb(d.HostUsedDelta/n))
	fmt.Fprintf(tw, "Stratus's memory per replica beyond the container's own\t%s = (server anon delta + PSS of the processes outside the containers) / %d; %s counting RSS (upper bound)\n",
		mb(d.PerReplica), d.Replicas, mb(d.PerReplicaRSS))
	fmt.Fprintf(tw, "GET /svc/NAME/ through the gateway after deploy\t%d/20 answered\n", d.Answered)
	fmt.Fprintf(tw, "remove the service until no replica process and no container cgroup is left\t%s; then %s\n", fmtDur(d.RemovedIn), d.AfterRemove)
	fmt.Fprintf(tw, "server RSS after the removal\t%s\n", mb(d.ServerRemoved.RSS))
	tw.Flush()
	for _, note := range d.Notes {
		fmt.Fprintln(w, "  note:", note)
	}
}
