package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/client"
)

func (e *env) scheduleCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Invoke functions on a clock: EventBridge cron, rate and one-time schedules",
	}
	cmd.AddCommand(e.scheduleCreateCmd(), e.scheduleLsCmd(), e.scheduleGetCmd(), e.scheduleRmCmd())
	return cmd
}

func (e *env) scheduleCreateCmd() *cobra.Command {
	var (
		spec v1.ScheduleSpec
		data string
	)
	cmd := &cobra.Command{
		Use:   "create NAME --function FN (--cron EXPR | --rate EXPR | --at TIME)",
		Short: "Create a schedule; each firing is an async invocation with an EventBridge Scheduled Event",
		Long: `Create a schedule. Each firing is an asynchronous invocation of the function
with an EventBridge Scheduled Event whose detail is --data (default {}).

  --cron "0 12 * * ? *"          EventBridge cron: minutes hours day-of-month month day-of-week year
  --rate "5 minutes"             every 5 minutes from now (fires at once, then every interval)
  --at "2026-12-01T10:00:00"     once, at that wall-clock time in --timezone

Cron and at are read in --timezone (an IANA name such as Europe/Berlin; default UTC).
Firings missed while the server was down make one catch-up firing at start.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec.Name = args[0]
			if err := stratus.ValidName(spec.Name); err != nil {
				return usageErr("%v", err)
			}
			var given []string
			for _, f := range []string{"cron", "rate", "at"} {
				if cmd.Flags().Changed(f) {
					given = append(given, "--"+f)
				}
			}
			switch len(given) {
			case 0:
				return usageErr("give one of --cron, --rate and --at")
			case 1:
			default:
				return usageErr("give only one of --cron, --rate and --at, not %s", strings.Join(given, " and "))
			}
			if data != "" {
				b := []byte(data)
				if strings.HasPrefix(data, "@") {
					var err error
					if b, err = os.ReadFile(data[1:]); err != nil {
						return usageErr("--data %s: %v", data, err)
					}
				}
				if !json.Valid(b) {
					return usageErr("--data is not valid JSON")
				}
				spec.Data = b
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			sc, err := c.CreateSchedule(cmd.Context(), spec)
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(sc)
			}
			fmt.Fprintf(e.stdout, "created schedule %s: %s%s invokes %s\nnext firing: %s\n", sc.Name, sc.Expression,
				scheduleZoneSuffix(sc.Timezone), sc.Function, scheduleTime(sc.NextFiringAt, time.RFC3339))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&spec.Function, "function", "", "function to invoke (required)")
	f.StringVar(&spec.Cron, "cron", "", `cron fields, e.g. "0 12 * * ? *" (minutes hours day-of-month month day-of-week year)`)
	f.StringVar(&spec.Rate, "rate", "", `interval, e.g. "5 minutes", "1 hour", "2 days"`)
	f.StringVar(&spec.At, "at", "", `one time, e.g. "2026-12-01T10:00:00" (wall clock in --timezone)`)
	f.StringVar(&spec.Timezone, "timezone", "", "IANA time zone of --cron and --at (default UTC)")
	f.StringVar(&data, "data", "", "JSON object sent as each event's detail, or @FILE (default {})")
	_ = cmd.MarkFlagRequired("function")
	return cmd
}

// scheduleTime formats an optional time in the local zone, "-" if absent.
func scheduleTime(t *time.Time, layout string) string {
	if t == nil {
		return "-"
	}
	return t.Local().Format(layout)
}

func scheduleZoneSuffix(tz string) string {
	if tz == "" {
		return ""
	}
	return " (" + tz + ")"
}

func (e *env) scheduleLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List schedules with their next firing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			list, err := c.Schedules(cmd.Context())
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(list)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tFUNCTION\tEXPRESSION\tTIMEZONE\tNEXT\tLAST")
			for _, sc := range list {
				tz := sc.Timezone
				if tz == "" {
					tz = "UTC"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", sc.Name, sc.Function, sc.Expression, tz,
					scheduleTime(sc.NextFiringAt, time.DateTime), scheduleTime(sc.LastFiredAt, time.DateTime))
			}
			return tw.Flush()
		},
	}
}

func (e *env) scheduleGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show a schedule",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			sc, err := c.Schedule(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(sc)
			}
			tz := sc.Timezone
			if tz == "" {
				tz = "UTC"
			}
			detail := string(sc.Data)
			if detail == "" {
				detail = "{}"
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			row := func(k string, v any) { fmt.Fprintf(tw, "%s:\t%v\n", k, v) }
			row("Name", sc.Name)
			row("Function", sc.Function)
			row("Expression", sc.Expression)
			row("Timezone", tz)
			row("Detail", detail)
			row("Next firing", scheduleTime(sc.NextFiringAt, time.RFC3339))
			row("Last firing", scheduleTime(sc.LastFiredAt, time.RFC3339))
			row("Created", sc.CreatedAt.Local().Format(time.RFC3339))
			return tw.Flush()
		},
	}
}

func (e *env) scheduleRmCmd() *cobra.Command {
	return e.removeCmd("Remove a schedule; it fires no more", "schedule ", func(ctx context.Context, c *client.Client, name string) error {
		return c.RemoveSchedule(ctx, name)
	})
}
