package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

func (e *env) usageCmd() *cobra.Command {
	var (
		since, by string
		energy    bool
	)
	cmd := &cobra.Command{
		Use:   "usage [--since 24h] [--by function|service|replica|day] [--energy]",
		Short: "Show what functions and services used and cost (GB-s, vCPU-s, CPU-s, USD; energy and carbon with --energy)",
		Long: `Show the usage of the window back from now (--since: a duration such as 90m or 36h,
or days such as 7d), summed by function (the default: functions only), by service or by
UTC day (both): requests, GB-seconds, vCPU-seconds allocated (what a service pays for),
CPU-seconds used and the cost at public list prices (functions priced as AWS Lambda,
services as Cloud Run). --by replica lists each life of a service's replica that
overlaps the window, with the figures of its whole life, also where it began before the
window. --energy adds the energy (Wh), the carbon (gCO2e, operational and embodied) and
where the energy figure came from (model or rapl). The footer names the region, its grid
intensity and the date of the price table.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := stratus.ParseWindow(since); err != nil {
				return usageErr("--since: %v", err)
			}
			switch by {
			case v1.ByFunction, v1.ByService, v1.ByReplica, v1.ByDay:
			default:
				return usageErr("--by %q: use %s, %s, %s or %s", by, v1.ByFunction, v1.ByService, v1.ByReplica, v1.ByDay)
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			rep, err := c.Usage(cmd.Context(), since, by)
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(rep)
			}
			if rep.By == v1.ByReplica {
				return printReplicaUsage(e.stdout, rep, energy)
			}
			return printUsage(e.stdout, rep, energy)
		},
	}
	f := cmd.Flags()
	f.StringVar(&since, "since", "24h", "window back from now: a duration (90m, 36h) or days (7d)")
	f.StringVar(&by, "by", v1.ByFunction, "sum by function, service or day, or list each replica's life (replica)")
	f.BoolVar(&energy, "energy", false, "add energy (Wh), carbon (gCO2e) and the energy figure's source")
	return cmd
}

// printUsage prints rep as a table, its total and a footer. The total
// says what it sums: functions only (by function), services only (by
// service) or both (by day).
func printUsage(w io.Writer, rep *v1.UsageReport, energy bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := []string{"NAME", "KIND", "REQUESTS", "GB-S", "VCPU-S", "CPU-S", "COST-USD"}
	if rep.By == v1.ByDay {
		head[0] = "DAY"
	}
	if energy {
		head = append(head, "WH", "GCO2E", "SOURCE")
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	row := func(key, kind string, u stratus.Usage) {
		cells := []string{key, orDash(kind), fmt.Sprint(u.Requests), fmt.Sprintf("%.3f", u.GBSeconds),
			fmt.Sprintf("%.3f", u.VCPUSeconds), fmt.Sprintf("%.3f", u.CPUSeconds), fmt.Sprintf("%.6f", u.CostUSD)}
		if energy {
			cells = append(cells, sig3(u.EnergyWh), sig3(u.CarbonG), orDash(u.EnergySource))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	for _, r := range rep.Rows {
		row(r.Key, r.Kind, r.Usage)
	}
	row(totalLabel(rep.By), "", rep.Total)
	if err := tw.Flush(); err != nil {
		return err
	}
	return printUsageFooter(w, rep)
}

// totalLabel names the total row of a report by by: what it sums.
func totalLabel(by string) string {
	switch by {
	case v1.ByFunction:
		return "TOTAL (functions)"
	case v1.ByService:
		return "TOTAL (services)"
	case v1.ByReplica:
		return "TOTAL (replicas)"
	}
	return "TOTAL"
}

// replicaTime is when a replica's life began or ended, in the local zone.
func replicaTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02T15:04:05")
}

// printReplicaUsage prints rep, a report by replica, as a table of the
// lives, their total and a footer that says their figures are whole.
func printReplicaUsage(w io.Writer, rep *v1.UsageReport, energy bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := []string{"REPLICA", "SERVICE", "REVISION", "START", "END", "VCPU-S", "CPU-S", "GB-S", "COST-USD"}
	if energy {
		head = append(head, "WH", "GCO2E")
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	row := func(replica, service, revision, start, end string, u stratus.Usage) {
		cells := []string{replica, service, revision, start, end, fmt.Sprintf("%.3f", u.VCPUSeconds),
			fmt.Sprintf("%.3f", u.CPUSeconds), fmt.Sprintf("%.3f", u.GBSeconds), fmt.Sprintf("%.6f", u.CostUSD)}
		if energy {
			cells = append(cells, sig3(u.EnergyWh), sig3(u.CarbonG))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	for _, r := range rep.Rows {
		row(r.Key, orDash(r.Service), fmt.Sprint(r.Revision), replicaTime(r.Start), replicaTime(r.End), r.Usage)
	}
	row(totalLabel(rep.By), "-", "-", "-", "-", rep.Total)
	if err := tw.Flush(); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(w, "each replica's figures are of its whole life (so far), also where it began before the window"); err != nil {
		return err
	}
	return printUsageFooter(w, rep)
}

// printUsageFooter prints the region, grid intensity and price table
// date the figures of rep were computed with.
func printUsageFooter(w io.Writer, rep *v1.UsageReport) error {
	_, err := fmt.Fprintf(w, "region %s, grid intensity %g gCO2e/kWh, prices as of %s\n",
		orDash(rep.Region), rep.GridIntensity, orDash(rep.PricesAsOf))
	return err
}

// sig3 is v to 3 significant digits, without an exponent: energy and
// carbon figures span many orders of magnitude (0.0000342, 12300).
func sig3(v float64) string {
	r, err := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 3, 64), 64)
	if err != nil { // not finite
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
	return strconv.FormatFloat(r, 'f', -1, 64)
}

// orDash is s, or "-" if it is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
