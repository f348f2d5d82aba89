package cli

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stratus-run/stratus/client"
)

func (e *env) keysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage the access keys that sign AWS SDK and AWS CLI requests (SigV4)",
		Long: `Manage the server's access keys. A request to the Lambda API
(/2015-03-31/...) or to a function deployed with --auth signed is admitted
with the server's token or with an AWS Signature Version 4 made with one of
these keys (service "lambda", any region), as the AWS SDKs and the AWS CLI
sign requests.`,
	}
	cmd.AddCommand(e.keysCreateCmd(), e.keysLsCmd(), e.keysRmCmd())
	return cmd
}

func (e *env) keysCreateCmd() *cobra.Command {
	var description string
	cmd := &cobra.Command{
		Use:   "create [--description D]",
		Short: "Create an access key and print its ID and secret (shown only this once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			k, err := c.CreateKey(cmd.Context(), description)
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(k)
			}
			fmt.Fprintf(e.stdout, "AccessKeyId:     %s\nSecretAccessKey: %s\n", k.AccessKeyID, k.SecretAccessKey)
			fmt.Fprintf(e.stderr, `
The secret is shown only this once: keep it now. Use the key as an AWS key,
with "aws configure" or in the environment:
  export AWS_ACCESS_KEY_ID=%s
  export AWS_SECRET_ACCESS_KEY=<the secret above>
  aws lambda list-functions --endpoint-url %s
`, k.AccessKeyID, c.BaseURL())
			return nil
		},
	}
	cmd.Flags().StringVar(&description, "description", "", "what the key is for")
	return cmd
}

func (e *env) keysLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List access keys (without their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			keys, err := c.Keys(cmd.Context())
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(keys)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tDESCRIPTION\tCREATED\tLAST USED")
			for _, k := range keys {
				used := "-"
				if k.LastUsedAt != nil {
					used = k.LastUsedAt.Local().Format(time.DateTime)
				}
				desc := k.Description
				if desc == "" {
					desc = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.AccessKeyID, desc, k.CreatedAt.Local().Format(time.DateTime), used)
			}
			return tw.Flush()
		},
	}
}

func (e *env) keysRmCmd() *cobra.Command {
	cmd := e.removeCmd("Remove an access key: requests signed with it are refused at once", "access key ", func(ctx context.Context, c *client.Client, id string) error {
		return c.RemoveKey(ctx, id)
	})
	cmd.Use = "rm ID"
	return cmd
}
