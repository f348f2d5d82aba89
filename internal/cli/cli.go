// Package cli is Stratus's command line: one file per noun. Every command
// runs through Main with its own arguments, output streams and
// environment, so it can be tested without a terminal.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stratus-run/stratus/client"
	"github.com/stratus-run/stratus/internal/config"
	"github.com/stratus-run/stratus/internal/server"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

// env is what a command sees of its world.
type env struct {
	stdout, stderr io.Writer
	vars           map[string]string
	environ        []string

	serverURL string
	token     string
	dataDir   string
	output    string
}

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

// usageErr is a mistake in the command line.
func usageErr(format string, a ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, a...)}
}

// Main runs the stratus command line with args (without the program name)
// and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, environ []string) int {
	e := &env{stdout: stdout, stderr: stderr, vars: config.Env(environ), environ: environ}
	root := e.rootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var xe *exitError
	if errors.As(err, &xe) {
		if xe.err != nil && xe.err.Error() != "" {
			fmt.Fprintln(stderr, "error:", xe.err)
		}
		return xe.code
	}
	fmt.Fprintln(stderr, "error:", err)
	if strings.HasPrefix(err.Error(), "unknown command") || strings.HasPrefix(err.Error(), "unknown flag") ||
		strings.Contains(err.Error(), "flag needs an argument") || strings.Contains(err.Error(), "invalid argument") ||
		strings.Contains(err.Error(), "accepts ") || strings.Contains(err.Error(), "required flag") {
		return ExitUsage
	}
	return ExitError
}

func (e *env) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "stratus",
		Short:         "Stratus runs Lambda-compatible functions on your own machine",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&e.serverURL, "server", "", "server URL (default $STRATUS_SERVER, else http://127.0.0.1:8080)")
	pf.StringVar(&e.token, "token", "", "API token (default $STRATUS_TOKEN, else the token file in the data dir)")
	pf.StringVar(&e.dataDir, "data", "", "data dir (default $STRATUS_DATA, else ./.stratus)")
	pf.StringVarP(&e.output, "output", "o", "table", "output format: table or json")
	root.AddCommand(e.serverCmd(), e.deployCmd(), e.invokeCmd(), e.lsCmd(), e.getCmd(), e.rmCmd(), e.logsCmd(), e.invocationsCmd(), e.invocationCmd())
	root.AddCommand(e.scheduleCmd())
	root.AddCommand(e.topicCmd(), e.subscribeCmd(), e.subscriptionsCmd(), e.unsubscribeCmd(), e.natsCmd())
	root.AddCommand(e.imageCmd(), e.serviceCmd())
	root.AddCommand(e.infoCmd())
	return root
}

func (e *env) data() string {
	if e.dataDir != "" {
		return e.dataDir
	}
	if v := e.vars["STRATUS_DATA"]; v != "" {
		return v
	}
	return config.Default().DataDir
}

// client builds the API client from flags, environment and the data dir.
func (e *env) client() (*client.Client, error) {
	if e.output != "table" && e.output != "json" {
		return nil, usageErr("output %q: use table or json", e.output)
	}
	base := e.serverURL
	if base == "" {
		base = e.vars["STRATUS_SERVER"]
	}
	if base == "" {
		base = "http://" + config.Default().Listen
	}
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	tok := e.token
	if tok == "" {
		tok = e.vars["STRATUS_TOKEN"]
	}
	if tok == "" {
		b, err := os.ReadFile(filepath.Join(e.data(), server.TokenFile))
		if err == nil {
			tok = strings.TrimSpace(string(b))
		}
	}
	return client.New(base, tok), nil
}

func (e *env) json(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// removeCmd is "rm NAME" for a noun: remove calls the API; what prints
// is "removed LABELNAME", or {"removed": NAME} with -o json.
func (e *env) removeCmd(short, label string, remove func(ctx context.Context, c *client.Client, name string) error) *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			if err := remove(cmd.Context(), c, args[0]); err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(map[string]string{"removed": args[0]})
			}
			fmt.Fprintf(e.stdout, "removed %s%s\n", label, args[0])
			return nil
		},
	}
}
