package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

func (e *env) adviseCmd() *cobra.Command {
	var (
		window, budget string
		all            bool
	)
	cmd := &cobra.Command{
		Use:   "advise (NAME | --all) [--window 7d] [--latency-budget 800ms]",
		Short: "Advise whether a workload is cheaper as a function, a function with warm instances or a service",
		Long: `Advise how to run a function or service, from its measured traffic over --window
(a duration such as 36h, or days such as 7d): each way of running it (a function that
scales to zero, one with warm instances, a service; AWS Lambda and Cloud Run for
reference) priced for a month at that traffic, with its energy, carbon, expected p99 and
cold starts, and the one recommended: the cheapest that keeps the p99 within
--latency-budget, if given. --all ranks every function and service by what the
recommendation saves a month.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case all && len(args) > 0:
				return usageErr("give a NAME or --all, not both")
			case !all && len(args) == 0:
				return usageErr("give the NAME of a function or service, or --all")
			case !all && strings.TrimSpace(args[0]) == "":
				return usageErr("NAME is empty: give the NAME of a function or service, or --all")
			case all && budget != "":
				return usageErr("--latency-budget applies to one workload: give a NAME instead of --all")
			}
			if _, err := stratus.ParseWindow(window); err != nil {
				return usageErr("--window: %v", err)
			}
			if budget != "" {
				if d, err := time.ParseDuration(budget); err != nil || d < 0 {
					return usageErr("--latency-budget %q: want a duration of 0 or more, such as 800ms", budget)
				}
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			if all {
				l, err := c.AdviceAll(cmd.Context(), window)
				if err != nil {
					return err
				}
				if e.output == "json" {
					return e.json(l)
				}
				return printAdviceList(e.stdout, l)
			}
			a, err := c.Advice(cmd.Context(), args[0], window, budget)
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(a)
			}
			return printAdvice(e.stdout, a)
		},
	}
	f := cmd.Flags()
	f.StringVar(&window, "window", "7d", "traffic window back from now: a duration (36h) or days (7d)")
	f.StringVar(&budget, "latency-budget", "", "p99 the workload must keep (e.g. 800ms); default none")
	f.BoolVar(&all, "all", false, "advise every function and service, ranked by monthly saving")
	return cmd
}

// printAdvice prints a: the traffic, the options, the recommendation.
func printAdvice(w io.Writer, a *v1.Advice) error {
	t := a.Traffic
	fmt.Fprintf(w, "%s (%s), window %s\n", a.Name, a.Kind, a.Window)
	fmt.Fprintf(w, "traffic: %d requests, mean %.2f req/s, peak %.2f req/s, active %.0f%% of minutes, "+
		"duration mean %.1f ms, %s, %.2f%% cold starts\n\n",
		t.Requests, t.MeanRPS, t.PeakRPS, 100*t.ActiveShare, t.MeanDurationMs, p99Line(t), 100*t.ColdStartRate)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL\tINSTANCES/REPLICAS\tMONTHLY COST\tWH\tGCO2E\tP99\tCOLD STARTS")
	for _, o := range a.Options {
		held := "-" // a function scales from zero
		switch {
		case o.Replicas > 0 && o.MinInstances > 0 && o.MinInstances < o.Replicas:
			held = fmt.Sprintf("%d-%d", o.MinInstances, o.Replicas) // a service's range
		case o.Replicas > 0:
			held = fmt.Sprint(o.Replicas)
		case o.MinInstances > 0:
			held = fmt.Sprint(o.MinInstances)
		}
		ref := ""
		if o.Reference {
			ref = "\t(reference)"
		}
		fmt.Fprintf(tw, "%s\t%s\t$%.2f\t%.1f\t%.1f\t%.0f ms\t%.2f%%%s\n",
			o.Model, held, o.CostUSD, o.EnergyWh, o.CarbonG, o.P99Ms, 100*o.ColdStartRate, ref)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\nrecommended: %s — %s\nbreak-even: %s\nsaving: $%.2f/month\n",
		a.Recommended, a.Reason, breakEven(a.BreakEvenRPS), a.SavingUSD)
	return err
}

// p99Line says what the p99 of t is and where it came from: the number
// of records it was computed from, or an estimate from the usage minutes
// (the longest request they saw, so at most that).
func p99Line(t v1.Traffic) string {
	switch {
	case t.P99Sample == 1:
		return fmt.Sprintf("p99 %s ms of 1 record", sig3(t.P99DurationMs))
	case t.P99Sample > 1:
		return fmt.Sprintf("p99 %s ms of %d records", sig3(t.P99DurationMs), t.P99Sample)
	}
	return fmt.Sprintf("p99 ≤ %s ms (estimated)", sig3(t.P99DurationMs))
}

// breakEven is the break-even rate rps to three significant digits, or
// why there is none when it is 0.
func breakEven(rps float64) string {
	if rps == 0 {
		return "none (a function and a service never cost the same between 0.001 and 100000 req/s)"
	}
	return fmt.Sprintf("%.3g req/s", rps)
}

// printAdviceList prints one line per workload, ranked as l is.
func printAdviceList(w io.Writer, l *v1.AdviceList) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tCURRENT\tRECOMMENDED\tSAVING/MONTH\tREASON")
	for _, a := range l.Advice {
		// A workload runs as its kind: the function or service model.
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t$%.2f\t%s\n", a.Name, a.Kind, a.Kind, a.Recommended, a.SavingUSD,
			strings.ReplaceAll(a.Reason, "\t", " "))
	}
	return tw.Flush()
}
