package cli

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/client"
)

func (e *env) logsCmd() *cobra.Command {
	return e.newLogsCmd("Print a function's log lines (its output and START/END/REPORT lines)", true,
		(*client.Client).Logs, (*client.Client).FollowLogs)
}

// newLogsCmd builds a `logs NAME` command over list and follow, the
// client's reads of a function's or a service's lines; request adds the
// --request filter.
func (e *env) newLogsCmd(short string, request bool,
	list func(*client.Client, context.Context, string, client.LogQuery) ([]stratus.LogLine, error),
	follow func(*client.Client, context.Context, string, client.LogQuery, func(stratus.LogLine) error) error,
) *cobra.Command {
	var (
		following bool
		q         client.LogQuery
	)
	cmd := &cobra.Command{
		Use:   "logs NAME",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if q.Since < 0 {
				return usageErr("--since %s: must not be negative", q.Since)
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			return e.printLogs(cmd.Context(), following, q,
				func(ctx context.Context, q client.LogQuery) ([]stratus.LogLine, error) {
					return list(c, ctx, args[0], q)
				},
				func(ctx context.Context, q client.LogQuery, fn func(stratus.LogLine) error) error {
					return follow(c, ctx, args[0], q, fn)
				})
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&following, "follow", "f", false, "keep printing new lines")
	f.DurationVar(&q.Since, "since", 0, "only lines newer than this (e.g. 10m)")
	if request {
		f.StringVar(&q.RequestID, "request", "", "only lines of this request ID")
	}
	return cmd
}

// printLogs prints stored lines page by page (list), or all of them and
// then new ones as they come (follow).
func (e *env) printLogs(ctx context.Context, follow bool, q client.LogQuery,
	list func(context.Context, client.LogQuery) ([]stratus.LogLine, error),
	followFn func(context.Context, client.LogQuery, func(stratus.LogLine) error) error,
) error {
	print := func(l stratus.LogLine) error {
		if e.output == "json" {
			return e.json(l)
		}
		_, err := fmt.Fprintf(e.stdout, "%s %s %s\n", l.Time.Local().Format("2006-01-02T15:04:05.000"), lineID(l), l.Text)
		return err
	}
	if follow {
		return followFn(ctx, q, print)
	}
	// The server answers a page of lines at a time, oldest first: page on
	// until every stored line is printed.
	for {
		lines, err := list(ctx, q)
		if err != nil {
			return err
		}
		if len(lines) == 0 {
			return nil
		}
		for _, l := range lines {
			if err := print(l); err != nil {
				return err
			}
		}
		q.AfterID = lines[len(lines)-1].ID
	}
}

// lineID is who a log line is of: its request ID, else its instance's
// (or replica's) name, else "-". Each is printed whole: request IDs are
// time-ordered (stratus.NewRequestID), so those of requests made close
// together share their first characters, and a replica's name begins
// with its service's; a whole ID is also what --request takes.
func lineID(l stratus.LogLine) string {
	switch {
	case l.RequestID != "":
		return l.RequestID
	case l.Instance != "":
		return l.Instance
	}
	return "-"
}

func (e *env) invocationsCmd() *cobra.Command {
	var q client.InvocationQuery
	cmd := &cobra.Command{
		Use:   "invocations NAME",
		Short: "List a function's invocation records, newest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if q.Since < 0 || q.Limit < 0 {
				return usageErr("--since and --limit must not be negative")
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			recs, err := c.Invocations(cmd.Context(), args[0], q)
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(recs)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REQUEST ID\tSTART\tTRIGGER\tDURATION\tBILLED\tMEMORY\tMAX USED\tINIT\tCPU-MS\tWH\tGCO2E\tOUTCOME\tERROR")
			for _, r := range recs {
				init := "-"
				if r.Cold {
					init = fmt.Sprintf("%.2f ms", r.InitDurationMs)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f ms\t%d ms\t%d MB\t%d MB\t%s\t%.1f\t%s\t%s\t%s\t%s\n", r.RequestID,
					r.Start.Local().Format("2006-01-02T15:04:05.000"), orDash(r.Trigger), r.DurationMs, r.BilledMs, r.MemoryMB, r.MaxMemoryMB, init,
					r.CPUMs, sig3(r.Usage.EnergyWh), sig3(r.Usage.CarbonG), r.Outcome, r.ErrorType)
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.DurationVar(&q.Since, "since", 0, "only invocations newer than this (e.g. 1h)")
	f.StringVar(&q.RequestID, "request", "", "only this request ID")
	f.IntVar(&q.Limit, "limit", 100, "records at most")
	return cmd
}

func (e *env) invocationCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "invocation ID",
		Short: "Show the state of an asynchronous invocation",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			st, err := c.Invocation(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(st)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			row := func(k string, v any) { fmt.Fprintf(tw, "%s:\t%v\n", k, v) }
			row("Request ID", st.RequestID)
			row("Function", st.Function)
			state := st.State
			if st.State == stratus.AsyncRetrying || st.State == stratus.AsyncRunning {
				state = fmt.Sprintf("%s (attempt %d)", st.State, st.Attempt)
			}
			row("State", state)
			row("Attempts", st.Attempt)
			row("Queued", st.EnqueuedAt.Local().Format("2006-01-02T15:04:05.000"))
			row("Updated", st.UpdatedAt.Local().Format("2006-01-02T15:04:05.000"))
			if st.ErrorType != "" {
				row("Error", st.ErrorType+": "+st.ErrorMessage)
			}
			if st.Destination != "" {
				row("Destination", st.Destination+" ("+st.DestinationState+")")
			}
			return tw.Flush()
		},
	}
}
