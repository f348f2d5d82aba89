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

	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/client"
	"github.com/stratus-run/stratus/internal/config"
	"github.com/stratus-run/stratus/internal/server"
)

// Exit codes. Each error kind has one: the command line's own mistakes
// exit ExitUsage, the API's errors exit by their code (exitCodes), the
// rest ExitError. The root command's help lists them (exitHelp).
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
	// ExitRetry is a request the server could not take now (busy,
	// unavailable, timed out): the same command may pass later.
	ExitRetry = 3
)

// exitCodes maps the API's error codes to exit codes; a code not listed
// exits ExitError.
var exitCodes = map[string]int{
	v1.CodeTooMany:        ExitRetry,
	v1.CodeUnavailable:    ExitRetry,
	v1.CodeTimeout:        ExitRetry,
	v1.CodeRequestTimeout: ExitRetry,
}

// exitHelp is the exit code section of the root command's help.
const exitHelp = `Exit codes:
  0  success
  1  error: the server refused or failed the request (not found, invalid,
     conflict, unauthorized, too large, ...), the function returned an
     error, or the server could not be reached
  2  usage: the command line is wrong (unknown command or flag, missing or
     extra arguments, a bad flag value); nothing was sent
  3  try again: the server is busy, unavailable or timed out
     (TooManyRequestsException, ServiceUnavailableException,
     TimeoutException, RequestTimeoutException)`

// env is what a command sees of its world.
type env struct {
	stdout, stderr io.Writer
	vars           map[string]string
	environ        []string

	serverURL string
	token     string
	dataDir   string
	output    string

	// ran is set once a command's RunE starts: an error before it is
	// cobra's refusal of the command line.
	ran bool
}

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErr is a mistake in the command line.
func usageErr(format string, a ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, a...)}
}

// exitCode is the exit code of err, the error a command returned.
func exitCode(err error) int {
	var xe *exitError
	if errors.As(err, &xe) {
		return xe.code
	}
	var ae *client.APIError
	if errors.As(err, &ae) {
		if code, ok := exitCodes[ae.Code]; ok {
			return code
		}
	}
	return ExitError
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
	if msg := err.Error(); msg != "" {
		fmt.Fprintln(stderr, "error:", msg)
	}
	if !e.ran {
		// Cobra refused the command line (unknown command or flag, a
		// bad flag value, wrong arguments) before any command ran.
		return ExitUsage
	}
	return exitCode(err)
}

// markRun makes every command under c set e.ran when its RunE starts.
func (e *env) markRun(c *cobra.Command) {
	if run := c.RunE; run != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			e.ran = true
			return run(cmd, args)
		}
	}
	for _, sub := range c.Commands() {
		e.markRun(sub)
	}
}

func (e *env) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "stratus",
		Short:         "Stratus runs Lambda-compatible functions on your own machine",
		Long:          "Stratus runs Lambda-compatible functions and container services on your own machine.\n\n" + exitHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&e.serverURL, "server", "", "server URL (default $STRATUS_SERVER, else http://127.0.0.1:8080)")
	pf.StringVar(&e.token, "token", "", "API token (default $STRATUS_TOKEN, else the token file in the data dir)")
	pf.StringVar(&e.dataDir, "data", "", "data dir (default $STRATUS_DATA, else ./.stratus)")
	pf.StringVarP(&e.output, "output", "o", "table", "output format: table or json (or yaml: apply, service get)")
	root.AddCommand(e.serverCmd(), e.deployCmd(), e.invokeCmd(), e.lsCmd(), e.getCmd(), e.rmCmd(), e.logsCmd(), e.invocationsCmd(), e.invocationCmd())
	root.AddCommand(e.publishCmd(), e.versionsCmd(), e.aliasCmd())
	root.AddCommand(e.scheduleCmd())
	root.AddCommand(e.topicCmd(), e.subscribeCmd(), e.subscriptionsCmd(), e.unsubscribeCmd(), e.natsCmd())
	root.AddCommand(e.imageCmd(), e.serviceCmd())
	root.AddCommand(e.applyCmd())
	root.AddCommand(e.usageCmd(), e.adviseCmd())
	root.AddCommand(e.infoCmd())
	root.AddCommand(e.keysCmd())
	root.AddCommand(e.nodesCmd())
	root.AddCommand(e.agentCmd())
	e.markRun(root)
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
