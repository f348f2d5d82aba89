package main

import (
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// spread is "p50 [min–max]" of v, in ms.
func spread(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return fmt.Sprintf("%s [%s–%s]", fmtMs(benchkit.Median(s)), fmtMs(s[0]), fmtMs(s[len(s)-1]))
}

func fmtMs(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f ms", v)
	}
	return fmt.Sprintf("%.1f ms", v)
}

// figures of a cell: each a list over its functions, in ms.
type figures struct {
	cold, init, first, warm, warmClient []float64
	warmMean, warmCPU                   []float64
}

func (c *cell) figures() figures {
	var f figures
	for _, r := range c.Runs {
		f.cold = append(f.cold, ms(r.Cold))
		f.init = append(f.init, r.InitMs)
		f.first = append(f.first, r.FirstMs)
		f.warm = append(f.warm, benchkit.Median(r.WarmMs))
		f.warmCPU = append(f.warmCPU, benchkit.Median(r.WarmCPUMs))
		sum := 0.0
		for _, v := range r.WarmMs {
			sum += v
		}
		if len(r.WarmMs) > 0 {
			f.warmMean = append(f.warmMean, sum/float64(len(r.WarmMs)))
		}
		var wc []float64
		for _, d := range r.WarmClient {
			wc = append(wc, ms(d))
		}
		f.warmClient = append(f.warmClient, benchkit.Median(wc))
	}
	return f
}

func (r *results) print(w io.Writer) {
	fmt.Fprintf(w, "\nwebmem: Express 5 behind serverless-http, POST /json with a %d-byte JSON body, runc\n", r.Body)
	fmt.Fprintf(w, "  %s cores (%s), %s, %s, kernel %s, runc %s, cgroups %s, node %s, go %s, tree %s\n",
		r.Env["cpus"], r.Env["cpu"], r.Env["memory"], r.Env["os"], r.Env["kernel"], r.Env["runc"], r.Env["cgroups"], r.Node, r.Env["go"], r.Env["tree"])
	fmt.Fprintf(w, "  %s, load average %s at the start, %s at the end, %s in all\n",
		r.Env["date"], r.Env["loadavg at start"], r.Env["loadavg at end"], r.Elapsed.Round(time.Second))
	for _, n := range r.Notes {
		fmt.Fprintln(w, "  note:", n)
	}
	var fc, fw []float64
	for _, d := range r.Floor.Cold {
		fc = append(fc, ms(d))
	}
	for _, d := range r.Floor.Warm {
		fw = append(fw, ms(d))
	}
	floorCold, floorWarm := 0.0, 0.0
	if len(fc) > 0 {
		floorCold = benchkit.Median(append([]float64(nil), fc...))
	}
	if len(fw) > 0 {
		floorWarm = benchkit.Median(append([]float64(nil), fw...))
	}
	fmt.Fprintf(w, "\nfloor, node server.js on the host: cold (exec to first answer) %s; warm POST (client) %s\n", spread(fc), spread(fw))

	if len(r.Cells) == 0 || len(r.Cells[0].Runs) == 0 {
		return
	}
	fmt.Fprintf(w, "\nper cell: p50 [min–max] over %d fresh functions (warm: each function's median, or mean, of %v requests)\n\n",
		len(r.Cells[0].Runs), r.Options["warm"])
	tw := benchkit.List(w)
	fmt.Fprint(tw, "\t")
	figs := make([]figures, len(r.Cells))
	for i, c := range r.Cells {
		fmt.Fprintf(tw, "%d MB %s\t", c.MemoryMB, c.CPU)
		figs[i] = c.figures()
	}
	fmt.Fprintln(tw)
	row := func(label string, get func(figures) []float64) {
		fmt.Fprint(tw, label+"\t")
		for _, f := range figs {
			fmt.Fprint(tw, spread(get(f))+"\t")
		}
		fmt.Fprintln(tw)
	}
	row("first request (client wall time)", func(f figures) []float64 { return f.cold })
	row("  its Init Duration", func(f figures) []float64 { return f.init })
	row("  its Duration", func(f figures) []float64 { return f.first })
	row("warm Duration", func(f figures) []float64 { return f.warm })
	row("warm Duration, mean", func(f figures) []float64 { return f.warmMean })
	row("warm CPU time per invocation", func(f figures) []float64 { return f.warmCPU })
	row("warm request (client wall time)", func(f figures) []float64 { return f.warmClient })
	ratio := func(label string, get func(figures) []float64, floor float64) {
		fmt.Fprint(tw, label+"\t")
		for _, f := range figs {
			v := get(f)
			if len(v) == 0 || floor == 0 {
				fmt.Fprint(tw, "-\t")
				continue
			}
			fmt.Fprintf(tw, "%.1f×\t", benchkit.Median(append([]float64(nil), v...))/floor)
		}
		fmt.Fprintln(tw)
	}
	ratio("first request / floor's cold start", func(f figures) []float64 { return f.cold }, floorCold)
	ratio("warm Duration / floor's warm request", func(f figures) []float64 { return f.warm }, floorWarm)
	ratio("warm request / floor's warm request", func(f figures) []float64 { return f.warmClient }, floorWarm)
	tw.Flush()
}
