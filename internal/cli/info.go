package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func (e *env) infoCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "info",
		Short: "Show the server's version, region and sandbox driver (and whether it isolates)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			info, err := c.Info(cmd.Context())
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(info)
			}
			sandbox := info.Sandbox.Driver + " (isolated)"
			if !info.Sandbox.Isolated {
				sandbox = info.Sandbox.Driver + " (NOT isolated: functions and services run as processes of the host)"
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			row := func(k string, v any) { fmt.Fprintf(tw, "%s:\t%v\n", k, v) }
			row("Version", info.Version)
			row("Region", info.Region)
			row("Sandbox", sandbox)
			row("Why", info.Sandbox.Why)
			return tw.Flush()
		},
	}
}
