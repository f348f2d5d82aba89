package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/client"
	"github.com/stratus-run/stratus/internal/archive"
)

func (e *env) deployCmd() *cobra.Command {
	var (
		cfg      stratus.FunctionConfig
		envs     []string
		idle     time.Duration
		retries  int
		maxEvAge time.Duration
	)
	cmd := &cobra.Command{
		Use:   "deploy NAME (PATH --runtime R | --image REF)",
		Short: "Deploy a function from a folder, a .zip or an image (creates it, or makes a new version)",
		Long: `Deploy a function from a folder or a .zip with --runtime, or from an image in the
server's store (stratus image import or pull) whose entrypoint is a Runtime API client,
as Lambda's container images are; --handler then replaces the image's command.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, path := args[0], ""
			if len(args) == 2 {
				path = args[1]
			}
			switch {
			case cfg.Image != "" && path != "":
				return usageErr("give a PATH or --image, not both")
			case cfg.Image != "" && cfg.Runtime != "" && cfg.Runtime != stratus.RuntimeImage:
				return usageErr("--runtime %s: a function from an image has no runtime to choose", cfg.Runtime)
			case cfg.Image == "" && path == "":
				return usageErr("give the code's PATH (with --runtime) or --image REF")
			case cfg.Image == "" && cfg.Runtime == "":
				return usageErr("--runtime is required with a PATH (one of %s)", strings.Join(stratus.Runtimes(), ", "))
			}
			if err := stratus.ValidName(name); err != nil {
				return usageErr("%v", err)
			}
			var err error
			if cfg.Env, err = parseEnv(envs); err != nil {
				return err
			}
			if idle < 0 {
				return usageErr("--idle-timeout %s: must not be negative", idle)
			}
			cfg.IdleTimeout = stratus.Duration(idle)
			if cmd.Flags().Changed("max-retries") {
				cfg.MaxRetries = &retries
			}
			cfg.MaxEventAge = stratus.Duration(maxEvAge)
			// On the wire zero means "the default"; typed on the command
			// line it is a value out of range, not a request for 128 MB / 3 s.
			if cfg.MemoryMB == 0 {
				return usageErr("--memory 0: must be between %d and %d MB", stratus.MinMemoryMB, stratus.MaxMemoryMB)
			}
			if cfg.TimeoutSec == 0 {
				return usageErr("--timeout 0: must be between %d and %d seconds", stratus.MinTimeoutSec, stratus.MaxTimeoutSec)
			}
			if !cmd.Flags().Changed("max-concurrency") {
				// Zero: the server's default, which respects its own cap.
				cfg.MaxConcurrency = 0
			}
			var code io.ReadCloser
			if path != "" {
				if code, err = openCode(path); err != nil {
					return usageErr("%v", err)
				}
				defer code.Close()
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			f, err := c.Deploy(cmd.Context(), name, cfg, readerOrNil(code))
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(f)
			}
			if f.Config.Image != "" {
				fmt.Fprintf(e.stdout, "deployed %s version %d (image %s, %s)\nurl: %s\n", f.Name, f.Version, f.Config.Image, f.CodeSHA, f.URL)
				return nil
			}
			fmt.Fprintf(e.stdout, "deployed %s version %d (%s, %d bytes of code)\nurl: %s\n", f.Name, f.Version, f.Config.Runtime, f.CodeSize, f.URL)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.Runtime, "runtime", "", "runtime: "+strings.Join(stratus.Runtimes(), ", "))
	fl.StringVar(&cfg.Handler, "handler", "", "handler: module.function (python3), file.function (nodejs); optional for provided runtimes")
	fl.IntVar(&cfg.MemoryMB, "memory", stratus.DefaultMemoryMB, "memory in MB (128-10240)")
	fl.IntVar(&cfg.TimeoutSec, "timeout", stratus.DefaultTimeoutSec, "timeout in seconds (1-900)")
	fl.StringArrayVar(&envs, "env", nil, "environment variable KEY=VALUE (repeatable)")
	fl.IntVar(&cfg.MaxConcurrency, "max-concurrency", stratus.DefaultMaxConc, "instances at most; left unset, 100 or the server's --max-instances if lower")
	fl.IntVar(&cfg.MinInstances, "min-instances", 0, "instances kept warm")
	fl.DurationVar(&idle, "idle-timeout", 0, "how long an idle instance lives (default: the server's)")
	fl.StringVar(&cfg.Auth, "auth", stratus.AuthToken, "auth of the /fn/NAME route: token, none (public) or signed (AWS SigV4 by a key from `stratus keys create`, or the token)")
	fl.IntVar(&retries, "max-retries", stratus.DefaultMaxRetries, "async: how often a failed event is tried again")
	fl.DurationVar(&maxEvAge, "max-event-age", 0, "async: how long an event may wait in all (default 6h, at least 1m)")
	fl.StringVar(&cfg.OnSuccess, "on-success", "", "async: where successes go: function:NAME or topic:NAME")
	fl.StringVar(&cfg.OnFailure, "on-failure", "", "async: where final failures go: function:NAME or topic:NAME")
	fl.StringVar(&cfg.Image, "image", "", "deploy from this image (its entrypoint is a Runtime API client) instead of a PATH")
	regionsFlag(fl, &cfg.Regions)
	return cmd
}

// regionsFlag is --regions of a deploy: the regions a function or service
// may run in, checked as the server checks them.
func regionsFlag(fl *pflag.FlagSet, regions *[]string) {
	fl.Func("regions", "regions it may run in, comma-separated (default: any); on Kubernetes, the nodes of those regions", func(s string) error {
		r, err := stratus.ParseRegions(s)
		if err != nil {
			return err
		}
		*regions = r
		return nil
	})
}

// readerOrNil keeps a nil ReadCloser nil as an io.Reader.
func readerOrNil(rc io.ReadCloser) io.Reader {
	if rc == nil {
		return nil
	}
	return rc
}

// parseEnv reads repeated --env KEY=VALUE flags.
func parseEnv(envs []string) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range envs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageErr("--env %q: want KEY=VALUE", kv)
		}
		m[k] = v
	}
	return m, nil
}

// openCode returns the zip of path: the file itself for a .zip, else the
// folder zipped on the fly.
func openCode(path string) (io.ReadCloser, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("code %s: %w", path, err)
	}
	if !fi.IsDir() {
		if !strings.HasSuffix(strings.ToLower(path), ".zip") {
			return nil, fmt.Errorf("code %s: give a folder or a .zip file", path)
		}
		return os.Open(path)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(archive.ZipDir(path, pw)) }()
	return pr, nil
}

func (e *env) invokeCmd() *cobra.Command {
	var (
		data  string
		async bool
	)
	cmd := &cobra.Command{
		Use:   "invoke NAME[:VERSION|:ALIAS]",
		Short: "Invoke a function (or one of its versions or aliases) and print its result",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			event := []byte(data)
			if strings.HasPrefix(data, "@") {
				b, err := os.ReadFile(data[1:])
				if err != nil {
					return usageErr("--data %s: %v", data, err)
				}
				event = b
			}
			if len(bytes.TrimSpace(event)) > 0 && !json.Valid(event) {
				return usageErr("--data is not valid JSON")
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			if async {
				id, err := c.InvokeAsync(cmd.Context(), args[0], event)
				if err != nil {
					return err
				}
				if e.output == "json" {
					return e.json(map[string]string{"requestId": id})
				}
				fmt.Fprintln(e.stdout, id)
				return nil
			}
			r, err := c.Invoke(cmd.Context(), args[0], event)
			if err != nil {
				return err
			}
			if strings.Contains(args[0], ":") && r.Version != "" {
				// Which version an alias (or a qualifier) ran.
				fmt.Fprintf(e.stderr, "ran %s version %s\n", args[0], r.Version)
			}
			if e.output == "json" && r.FunctionError == "" {
				var v any
				if json.Unmarshal(r.Body, &v) == nil {
					if err := e.json(v); err != nil {
						return err
					}
				}
			} else {
				e.stdout.Write(r.Body)
				fmt.Fprintln(e.stdout)
			}
			if r.FunctionError != "" {
				return &exitError{code: ExitError, err: fmt.Errorf("function %s returned an error (request %s)", args[0], r.RequestID)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&data, "data", "", "event JSON, or @FILE to read it from a file (default {})")
	cmd.Flags().BoolVar(&async, "async", false, "queue the event (invocation type Event) and print its request ID")
	return cmd
}

func (e *env) lsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List functions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			fns, err := c.List(cmd.Context())
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(fns)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tRUNTIME\tMEMORY\tTIMEOUT\tINSTANCES\tAUTH\tUPDATED")
			for _, f := range fns {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%d MB\t%d s\t%d\t%s\t%s\n", f.Name, f.Version, f.Config.Runtime,
					f.Config.MemoryMB, f.Config.TimeoutSec, f.Instances.Live, f.Config.Auth, f.UpdatedAt.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
}

func (e *env) getCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show a function",
		Long: `Show a function: its configuration, its code, its instance counts and
then, one row each, the sandboxes it has on the answering server (live
instances, and the one prepared ahead for the next cold start): ID, the
version it runs, its state and since when. On a server with --sandbox kube
the rows also show each one's POD and the NODE the pod runs on.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			f, err := c.Get(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(f)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			row := func(k string, v any) { fmt.Fprintf(tw, "%s:\t%v\n", k, v) }
			row("Name", f.Name)
			row("Version", f.Version)
			row("Runtime", f.Config.Runtime)
			row("Handler", f.Config.Handler)
			row("Memory", fmt.Sprintf("%d MB", f.Config.MemoryMB))
			row("Timeout", fmt.Sprintf("%d s", f.Config.TimeoutSec))
			row("Max concurrency", f.Config.MaxConcurrency)
			row("Min instances", f.Config.MinInstances)
			if f.Config.IdleTimeout > 0 {
				row("Idle timeout", f.Config.IdleTimeout)
			} else {
				row("Idle timeout", "server default")
			}
			row("Auth", f.Config.Auth)
			if len(f.Config.Regions) > 0 {
				row("Regions", strings.Join(f.Config.Regions, ", "))
			}
			row("URL", f.URL)
			row("Code", fmt.Sprintf("sha256 %s, %d bytes", f.CodeSHA, f.CodeSize))
			row("Instances", fmt.Sprintf("%d live (%d busy, %d idle)", f.Instances.Live, f.Instances.Busy, f.Instances.Idle))
			row("Async retries", f.Config.Retries())
			row("Async max event age", f.Config.EventAge())
			if f.Config.OnSuccess != "" {
				row("On success", f.Config.OnSuccess)
			}
			if f.Config.OnFailure != "" {
				row("On failure", f.Config.OnFailure)
			}
			if f.Async != nil {
				row("Async queue", fmt.Sprintf("%d waiting, oldest %.1f s", f.Async.Depth, f.Async.OldestAgeSec))
			}
			row("Created", f.CreatedAt.Local().Format(time.RFC3339))
			row("Updated", f.UpdatedAt.Local().Format(time.RFC3339))
			for k, v := range f.Config.Env {
				row("Env "+k, v)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			return e.instancesTable(f.Instances.Items)
		},
	}
}

// instancesTable prints a function's sandboxes after a blank line, none
// when it has none; POD and NODE only when one of them has a pod (a
// server with --sandbox kube).
func (e *env) instancesTable(items []v1.Instance) error {
	if len(items) == 0 {
		return nil
	}
	placed := slices.ContainsFunc(items, func(in v1.Instance) bool { return in.Pod != "" || in.Node != "" })
	fmt.Fprintln(e.stdout)
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	head := "INSTANCE\tVERSION\tSTATE\tSINCE"
	if placed {
		head += "\tPOD\tNODE"
	}
	fmt.Fprintln(tw, head)
	for _, in := range items {
		line := fmt.Sprintf("%s\t%s\t%s\t%s", in.ID, in.Version, in.State, in.Since.Local().Format(time.DateTime))
		if placed {
			line += "\t" + orDash(in.Pod) + "\t" + orDash(in.Node)
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

func (e *env) rmCmd() *cobra.Command {
	return e.removeCmd("Remove a function and stop its instances", "", func(ctx context.Context, c *client.Client, name string) error {
		return c.Remove(ctx, name)
	})
}
