package cli

import (
	"errors"
	"fmt"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/events"
	"github.com/stratus-run/stratus/internal/server"
)

func (e *env) natsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "nats",
		Short: "The embedded NATS server that --nats-listen exposes",
	}
	cmd.AddCommand(e.natsCredentialsCmd())
	return cmd
}

// natsCredentials is what "nats credentials -o json" prints.
type natsCredentials struct {
	URL      string `json:"url"`
	User     string `json:"user"`
	Password string `json:"password"`
	// URLWithAuth is URL with the user and password in it.
	URLWithAuth string `json:"urlWithAuth"`
}

func (e *env) natsCredentialsCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "credentials",
		Aliases: []string{"creds"},
		Short:   "Show the URL, user and password NATS clients connect with (read from the data dir, like the token)",
		Long: `Show the URL, user and password NATS clients connect with to the embedded
NATS server of "stratus server --nats-listen ADDR". The server makes them at
its first start with --nats-listen and keeps them in DATA/` + server.NATSCredsFile + ` (mode 0600);
this command reads that file, so it runs on the server's machine with the
same --data. Clients with these credentials may publish CloudEvents to
subjects stratus.topic.NAME and receive replies on _INBOX.>, nothing else.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if e.output != "table" && e.output != "json" {
				return usageErr("output %q: use table or json", e.output)
			}
			p := filepath.Join(e.data(), server.NATSCredsFile)
			c, err := events.ReadClientCredentials(p)
			if errors.Is(err, stratus.ErrNotFound) {
				return fmt.Errorf("no NATS credentials in %s: start the server with --nats-listen (and this --data) first", e.data())
			}
			if err != nil {
				return err
			}
			out := natsCredentials{URL: c.URL, User: c.User, Password: c.Password, URLWithAuth: c.URLWithAuth()}
			if e.output == "json" {
				return e.json(out)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "URL\t%s\n", out.URL)
			fmt.Fprintf(tw, "USER\t%s\n", out.User)
			fmt.Fprintf(tw, "PASSWORD\t%s\n", out.Password)
			fmt.Fprintf(tw, "CONNECT\t%s\n", out.URLWithAuth)
			fmt.Fprintf(tw, "PUBLISH\t%s\n", events.TopicSubject("NAME"))
			return tw.Flush()
		},
	}
}
