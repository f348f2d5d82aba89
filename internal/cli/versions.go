package cli

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

func (e *env) publishCmd() *cobra.Command {
	var description string
	cmd := &cobra.Command{
		Use:   "publish NAME",
		Short: "Publish a function's $LATEST as a numbered version and print its number",
		Long: `Publish a function's $LATEST as a numbered version (1, 2, ... per function) and
print its number. Published versions never change: invoke one as NAME:N, or point
an alias at it (stratus alias set). Publishing when nothing changed since the last
published version prints that version's number again.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := stratus.ValidName(args[0]); err != nil {
				return usageErr("%v", err)
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			v, created, err := c.PublishVersion(cmd.Context(), args[0], description)
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(v)
			}
			if !created {
				fmt.Fprintf(e.stderr, "%s has not changed since version %s was published\n", args[0], v.Version)
			}
			fmt.Fprintln(e.stdout, v.Version)
			return nil
		},
	}
	cmd.Flags().StringVar(&description, "description", "", "the version's description")
	return cmd
}

func (e *env) versionsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "versions NAME",
		Short: "List a function's $LATEST and its published versions",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			vs, err := c.Versions(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(vs)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tCODE SHA256\tCREATED\tDESCRIPTION")
			for _, v := range vs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", v.Version, v.CodeSHA, v.CreatedAt.Local().Format(time.DateTime), orDash(v.Description))
			}
			return tw.Flush()
		},
	}
}

func (e *env) aliasCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "alias",
		Short: "Name a published version of a function, or split invocations between two",
	}
	cmd.AddCommand(e.aliasSetCmd(), e.aliasLsCmd(), e.aliasGetCmd(), e.aliasRmCmd())
	return cmd
}

// parseWeights reads repeated --weight VERSION=SHARE flags.
func parseWeights(flags []string) (map[string]float64, error) {
	if len(flags) == 0 {
		return nil, nil
	}
	m := map[string]float64{}
	for _, kv := range flags {
		k, v, ok := strings.Cut(kv, "=")
		w, err := strconv.ParseFloat(v, 64)
		if !ok || err != nil {
			return nil, usageErr("--weight %q: want VERSION=SHARE, e.g. 2=0.1", kv)
		}
		if _, dup := m[k]; dup {
			return nil, usageErr("--weight: version %s is given twice", k)
		}
		m[k] = w
	}
	return m, nil
}

// routes says where alias a sends invocations: "1", or "1 (90%), 2 (10%)".
func routes(a *stratus.Alias) string {
	if len(a.Weights) == 0 {
		return a.Version
	}
	rest := 1.0
	var parts []string
	for _, v := range slices.Sorted(maps.Keys(a.Weights)) {
		rest -= a.Weights[v]
		parts = append(parts, fmt.Sprintf("%s (%s%%)", v, percent(a.Weights[v])))
	}
	return fmt.Sprintf("%s (%s%%), %s", a.Version, percent(max(rest, 0)), strings.Join(parts, ", "))
}

// percent writes share w (0 to 1) as a percent, without float noise.
func percent(w float64) string {
	return strconv.FormatFloat(w*100, 'f', -1, 32)
}

func (e *env) aliasSetCmd() *cobra.Command {
	var (
		weights     []string
		description string
		revision    string
	)
	cmd := &cobra.Command{
		Use:   "set NAME ALIAS VERSION [--weight V2=SHARE]",
		Short: "Create or move an alias; with --weight it splits invocations between two versions",
		Long: `Create an alias of a function, or move it: invoking NAME:ALIAS runs VERSION (a
published version's number, or $LATEST). With --weight V2=SHARE (a share from 0 to
1), version V2 takes that share of the invocations and VERSION the rest; the
X-Amz-Executed-Version header of each answer says which ran. Rolling back is
setting the alias to the version before.`,
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			ws, err := parseWeights(weights)
			if err != nil {
				return err
			}
			if err := stratus.ValidName(args[0]); err != nil {
				return usageErr("%v", err)
			}
			a := stratus.Alias{Function: args[0], Name: args[1], Version: args[2], Weights: ws, Description: description}
			if err := a.Validate(); err != nil {
				return usageErr("%v", err)
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			out, created, err := c.SetAlias(cmd.Context(), a.Function, a.Name,
				v1.AliasSpec{Version: a.Version, Weights: a.Weights, Description: a.Description, RevisionID: revision})
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(out)
			}
			verb := "updated"
			if created {
				verb = "created"
			}
			fmt.Fprintf(e.stdout, "%s alias %s:%s: version %s\n", verb, out.Function, out.Name, routes(out))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&weights, "weight", nil, "another published version and the share of invocations it takes: V2=0.1")
	f.StringVar(&description, "description", "", "the alias's description")
	f.StringVar(&revision, "revision-id", "", "change the alias only if this is its current revision ID")
	return cmd
}

func (e *env) aliasLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ls NAME",
		Short: "List a function's aliases",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			as, err := c.Aliases(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(as)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ALIAS\tVERSION\tDESCRIPTION")
			for i := range as {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", as[i].Name, routes(&as[i]), orDash(as[i].Description))
			}
			return tw.Flush()
		},
	}
}

func (e *env) aliasGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME ALIAS",
		Short: "Show an alias",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			a, err := c.Alias(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(a)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			row := func(k string, v any) { fmt.Fprintf(tw, "%s:\t%v\n", k, v) }
			row("Alias", a.Name)
			row("Function", a.Function)
			row("Version", routes(a))
			row("Description", orDash(a.Description))
			row("Revision ID", a.RevisionID)
			row("Invoke as", a.Function+":"+a.Name)
			return tw.Flush()
		},
	}
}

func (e *env) aliasRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME ALIAS",
		Short: "Remove an alias (its versions stay)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			if err := c.RemoveAlias(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			key := args[0] + ":" + args[1]
			if e.output == "json" {
				return e.json(map[string]string{"removed": key})
			}
			fmt.Fprintf(e.stdout, "removed alias %s\n", key)
			return nil
		},
	}
}
