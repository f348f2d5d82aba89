package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/client"
)

func (e *env) serviceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "service",
		Aliases: []string{"svc"},
		Short:   "Run long-lived container services (OCI images, Knative / Cloud Run contract)",
	}
	cmd.AddCommand(e.serviceDeployCmd(), e.serviceLsCmd(), e.serviceGetCmd(), e.serviceLogsCmd(), e.serviceRmCmd())
	return cmd
}

func (e *env) serviceDeployCmd() *cobra.Command {
	var (
		cfg  stratus.ServiceConfig
		envs []string
	)
	cmd := &cobra.Command{
		Use:   "deploy NAME --image REF [flags] [-- COMMAND ARGS...]",
		Short: "Deploy a service from an image (creates it, or rolls out a new revision)",
		Long: `Deploy a service from an image in the server's store (stratus image import or pull).
The container gets PORT and must listen on it. The new revision takes traffic once its
replicas are ready; a revision that never becomes ready fails the deploy and the previous
one keeps serving. A command after -- replaces the image's entrypoint and command.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := stratus.ValidName(name); err != nil {
				return usageErr("%v", err)
			}
			if dash := cmd.ArgsLenAtDash(); dash >= 0 {
				if dash != 1 {
					return usageErr("want: deploy NAME --image REF [flags] [-- COMMAND ARGS...]")
				}
				if len(cfg.Command) > 0 {
					return usageErr("give the command either with --command or after --, not both")
				}
				cfg.Command = args[1:]
			} else if len(args) > 1 {
				return usageErr("unexpected %q: a command goes after --", args[1])
			}
			if cfg.Image == "" {
				return usageErr("--image is required")
			}
			var err error
			if cfg.Env, err = parseEnv(envs); err != nil {
				return err
			}
			// On the wire zero means "the default"; typed on the command
			// line it is a value out of range.
			for flag, v := range map[string]float64{"memory": float64(cfg.MemoryMB), "cpu": cfg.CPU, "port": float64(cfg.Port), "max": float64(cfg.MaxScale)} {
				if cmd.Flags().Changed(flag) && v == 0 {
					return usageErr("--%s 0: out of range", flag)
				}
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			svc, err := c.DeployService(cmd.Context(), name, cfg)
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(svc)
			}
			fmt.Fprintf(e.stdout, "deployed %s revision %s (%s), %d/%d replicas ready\nurl: %s\nhost: %s\n",
				svc.Name, svc.RevisionName, svc.Config.Image, svc.Replicas.Ready, svc.Replicas.Desired, svc.URL, svc.HostURL)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.Image, "image", "", "image reference or digest in the server's image store (required)")
	fl.IntVar(&cfg.Port, "port", stratus.DefaultServicePort, "port the container listens on; it gets it as $PORT")
	fl.StringArrayVar(&envs, "env", nil, "environment variable KEY=VALUE (repeatable)")
	fl.IntVar(&cfg.MinScale, "min", 0, "replicas kept running; 0 lets the service scale to zero")
	fl.IntVar(&cfg.MaxScale, "max", stratus.DefaultServiceMaxScale, "replicas at most")
	fl.IntVar(&cfg.Concurrency, "concurrency", stratus.DefaultServiceConcurrency, "requests one replica takes at once (0 = no limit)")
	fl.IntVar(&cfg.MemoryMB, "memory", stratus.DefaultServiceMemoryMB, fmt.Sprintf("memory limit in MB (%d-%d); exceeding it kills the replica", stratus.MinServiceMemoryMB, stratus.MaxServiceMemoryMB))
	fl.Float64Var(&cfg.CPU, "cpu", stratus.DefaultServiceCPU, "CPU quota in cores")
	fl.StringVar(&cfg.HealthPath, "health", "", "HTTP path probed for readiness and liveness (default: a TCP connect to the port)")
	fl.StringArrayVar(&cfg.Command, "command", nil, "command replacing the image's entrypoint (repeat for each argument)")
	fl.StringVar(&cfg.Auth, "auth", stratus.AuthToken, "auth of the service's routes: token or none")
	return cmd
}

func (e *env) serviceLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List services",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			svcs, err := c.Services(cmd.Context())
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(svcs)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tREVISION\tSTATUS\tREADY\tIMAGE\tURL")
			for _, s := range svcs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\n", s.Name, s.RevisionName, s.Status,
					s.Replicas.Ready, s.Replicas.Desired, s.Config.Image, s.URL)
			}
			return tw.Flush()
		},
	}
}

func (e *env) serviceGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show a service: revision, replicas ready/desired, restarts, URLs, last error",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			s, err := c.Service(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(s)
			}
			printService(e, s)
			return nil
		},
	}
}

func printService(e *env, s *v1.Service) {
	c := s.Config
	conc := "no limit"
	if c.Concurrency > 0 {
		conc = fmt.Sprint(c.Concurrency)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "name:\t%s\n", s.Name)
	fmt.Fprintf(tw, "revision:\t%s\n", s.RevisionName)
	fmt.Fprintf(tw, "status:\t%s\n", s.Status)
	fmt.Fprintf(tw, "replicas:\t%d/%d ready (min %d, max %d), %d draining, %d requests waiting\n",
		s.Replicas.Ready, s.Replicas.Desired, c.MinScale, c.MaxScale, s.Replicas.Draining, s.Replicas.Waiting)
	fmt.Fprintf(tw, "restarts:\t%d\n", s.Restarts)
	fmt.Fprintf(tw, "image:\t%s (%s)\n", c.Image, s.ImageDigest)
	fmt.Fprintf(tw, "port:\t%d\n", c.Port)
	fmt.Fprintf(tw, "concurrency:\t%s\n", conc)
	fmt.Fprintf(tw, "memory:\t%d MB\n", c.MemoryMB)
	fmt.Fprintf(tw, "cpu:\t%g\n", c.CPU)
	if c.HealthPath != "" {
		fmt.Fprintf(tw, "health:\t%s\n", c.HealthPath)
	}
	if len(c.Command) > 0 {
		fmt.Fprintf(tw, "command:\t%s\n", strings.Join(c.Command, " "))
	}
	fmt.Fprintf(tw, "auth:\t%s\n", c.Auth)
	fmt.Fprintf(tw, "url:\t%s\n", s.URL)
	fmt.Fprintf(tw, "host:\t%s\n", s.HostURL)
	if s.LastError != "" {
		fmt.Fprintf(tw, "last error:\t%s\n", s.LastError)
	}
	tw.Flush()
	if len(s.Detail) > 0 {
		tw = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "\nREPLICA\tREVISION\tADDRESS\tSTATE\tIN FLIGHT\tRESTARTS\tLAST ERROR")
		for _, r := range s.Detail {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%d\t%s\n", r.ID, r.Revision, r.Address, r.State, r.Inflight, r.Restarts, r.LastError)
		}
		tw.Flush()
	}
}

func (e *env) serviceLogsCmd() *cobra.Command {
	return e.newLogsCmd("Print a service's log lines (its replicas' output and the platform's lines)", false,
		(*client.Client).ServiceLogs, (*client.Client).FollowServiceLogs)
}

func (e *env) serviceRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a service: its replicas finish their requests and stop",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			if err := c.RemoveService(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "removed service %s\n", args[0])
			return nil
		},
	}
}
