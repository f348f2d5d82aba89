package cli

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

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
	cmd.AddCommand(e.serviceDeployCmd(), e.serviceLsCmd(), e.serviceGetCmd(), e.serviceTrafficCmd(), e.serviceRevisionsCmd(), e.serviceLogsCmd(), e.serviceRmCmd())
	return cmd
}

func (e *env) serviceDeployCmd() *cobra.Command {
	var (
		cfg     stratus.ServiceConfig
		envs    []string
		initial int
		window  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "deploy NAME --image REF [flags] [-- COMMAND ARGS...]",
		Short: "Deploy a service from an image (creates it, or rolls out a new revision)",
		Long: `Deploy a service from an image in the server's store (stratus image import or pull).
The container gets PORT and must listen on it. The new revision takes traffic once its
replicas are ready (as the latest revision: see "service traffic"); a revision that never
becomes ready fails the deploy and the previous one keeps serving. A deploy that changes
nothing (same configuration, same image) makes no revision. A command after -- replaces the
image's entrypoint and command; --arg gives arguments in place of the image's command.`,
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
			for flag, v := range map[string]float64{"memory": float64(cfg.MemoryMB), "cpu": cfg.CPU, "cpu-request": cfg.CPURequest, "port": float64(cfg.Port), "max": float64(cfg.MaxScale),
				"timeout": float64(cfg.TimeoutSec), "target": cfg.Target, "window": float64(window)} {
				if cmd.Flags().Changed(flag) && v == 0 {
					return usageErr("--%s 0: out of range", flag)
				}
			}
			if cmd.Flags().Changed("initial-scale") {
				cfg.InitialScale = &initial
			}
			cfg.Window = stratus.Duration(window)
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
	fl.Float64Var(&cfg.CPURequest, "cpu-request", 0, "CPU share in cores under contention, at most --cpu, as a pod's CPU request (default: --cpu)")
	fl.StringVar(&cfg.HealthPath, "health", "", "HTTP path probed for readiness, and liveness without --liveness (default: a TCP connect to the port)")
	fl.StringVar(&cfg.LivenessPath, "liveness", "", "HTTP path probed for liveness (--health is then readiness only)")
	fl.StringArrayVar(&cfg.Command, "command", nil, "command replacing the image's entrypoint (repeat for each argument)")
	fl.StringArrayVar(&cfg.Args, "arg", nil, "argument replacing the image's command, after the entrypoint (repeatable)")
	fl.IntVar(&cfg.TimeoutSec, "timeout", 0, fmt.Sprintf("seconds a request may take before it gets 504 (default %d, at most %d)", stratus.DefaultServiceTimeoutSec, stratus.MaxServiceTimeoutSec))
	fl.Float64Var(&cfg.Target, "target", 0, "autoscaler's target of requests in flight per replica (default: 70% of --concurrency)")
	fl.IntVar(&initial, "initial-scale", 1, "replicas a new revision starts before it takes traffic (0 only with --min 0)")
	fl.DurationVar(&window, "window", 0, fmt.Sprintf("autoscaler's averaging window, %s to %s (default: the server's)", stratus.MinServiceWindow, stratus.MaxServiceWindow))
	fl.StringVar(&cfg.Auth, "auth", stratus.AuthToken, "auth of the service's routes: token or none")
	fl.BoolVar(&cfg.H2C, "h2c", false, "speak HTTP/2 without TLS (h2c, prior knowledge) to the container, as gRPC servers need; default HTTP/1.1")
	regionsFlag(fl, &cfg.Regions)
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

func (e *env) serviceRevisionsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "revisions NAME",
		Short: "List a service's revisions, newest first, with the traffic each takes now",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			revs, err := c.ServiceRevisions(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(revs)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REVISION\tLATEST\tTRAFFIC\tTAGS\tREADY\tIMAGE\tCREATED")
			for _, r := range revs {
				latest, tags := "-", "-"
				if r.Latest {
					latest = "yes"
				}
				if len(r.Tags) > 0 {
					tags = strings.Join(r.Tags, ",")
				}
				fmt.Fprintf(tw, "%s\t%s\t%d%%\t%s\t%d\t%s\t%s\n", r.Name, latest, r.Percent, tags, r.Ready, r.Image,
					r.CreatedAt.Local().Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
}

func (e *env) serviceGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show a service: revision, replicas ready/desired, restarts, URLs, last error, traffic",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if e.output == "yaml" {
				// A Knative Service (apply -f takes it back).
				return e.serviceYAML(cmd.Context(), args[0])
			}
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
	if c.H2C {
		fmt.Fprintf(tw, "port:\t%d (h2c)\n", c.Port)
	} else {
		fmt.Fprintf(tw, "port:\t%d\n", c.Port)
	}
	fmt.Fprintf(tw, "concurrency:\t%s\n", conc)
	fmt.Fprintf(tw, "memory:\t%d MB\n", c.MemoryMB)
	if c.CPURequest != 0 {
		fmt.Fprintf(tw, "cpu:\t%g (request %g)\n", c.CPU, c.CPURequest)
	} else {
		fmt.Fprintf(tw, "cpu:\t%g\n", c.CPU)
	}
	if c.HealthPath != "" {
		fmt.Fprintf(tw, "health:\t%s\n", c.HealthPath)
	}
	if c.LivenessPath != "" {
		fmt.Fprintf(tw, "liveness:\t%s\n", c.LivenessPath)
	}
	if len(c.Command) > 0 {
		fmt.Fprintf(tw, "command:\t%s\n", strings.Join(c.Command, " "))
	}
	if len(c.Args) > 0 {
		fmt.Fprintf(tw, "args:\t%s\n", strings.Join(c.Args, " "))
	}
	timeout := c.TimeoutSec
	if timeout == 0 {
		timeout = stratus.DefaultServiceTimeoutSec
	}
	fmt.Fprintf(tw, "timeout:\t%ds\n", timeout)
	if c.Target > 0 {
		fmt.Fprintf(tw, "target:\t%g requests per replica\n", c.Target)
	}
	if c.InitialScale != nil {
		fmt.Fprintf(tw, "initial scale:\t%d\n", *c.InitialScale)
	}
	if c.Window > 0 {
		fmt.Fprintf(tw, "window:\t%s\n", c.Window)
	}
	fmt.Fprintf(tw, "auth:\t%s\n", c.Auth)
	if len(c.Regions) > 0 {
		fmt.Fprintf(tw, "regions:\t%s\n", strings.Join(c.Regions, ", "))
	}
	fmt.Fprintf(tw, "url:\t%s\n", s.URL)
	fmt.Fprintf(tw, "host:\t%s\n", s.HostURL)
	if s.LastError != "" {
		fmt.Fprintf(tw, "last error:\t%s\n", s.LastError)
	}
	tw.Flush()
	printTraffic(e, s)
	if len(s.Detail) > 0 {
		// Replicas that are pods show their node.
		nodes := slices.ContainsFunc(s.Detail, func(r v1.Replica) bool { return r.Node != "" })
		tw = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		if nodes {
			fmt.Fprintln(tw, "\nREPLICA\tREVISION\tNODE\tADDRESS\tSTATE\tIN FLIGHT\tRESTARTS\tLAST ERROR")
		} else {
			fmt.Fprintln(tw, "\nREPLICA\tREVISION\tADDRESS\tSTATE\tIN FLIGHT\tRESTARTS\tLAST ERROR")
		}
		for _, r := range s.Detail {
			if nodes {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%d\t%s\n", r.ID, r.Revision, r.Node, r.Address, r.State, r.Inflight, r.Restarts, r.LastError)
			} else {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%d\t%s\n", r.ID, r.Revision, r.Address, r.State, r.Inflight, r.Restarts, r.LastError)
			}
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

func (e *env) serviceTrafficCmd() *cobra.Command {
	var tags []string
	cmd := &cobra.Command{
		Use:   "traffic NAME REV=PERCENT... [--tag TAG=REV]...",
		Short: "Split a service's requests between its revisions by percent, and tag revisions",
		Long: `Split a service's requests between its revisions. REV is a revision number (2), a
revision name (NAME-00002) or "latest", which follows each new ready revision; the
percents sum to 100. Pinned revisions keep serving across deploys; a revision no target
names drains and stops. --tag TAG=REV gives a revision its own route, /svc/NAME@TAG and
TAG-NAME.<domain>, whatever its percent (a revision given no percent gets 0%).
"service traffic NAME latest=100" sends every request to the latest revision again.`,
		Example: `  stratus service traffic web 1=90 latest=10 --tag canary=latest
  stratus service traffic web web-00003=100 --tag old=2`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := stratus.ValidName(name); err != nil {
				return usageErr("%v", err)
			}
			split, err := parseTraffic(name, args[1:], tags)
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			svc, err := c.SetTraffic(cmd.Context(), name, split)
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.json(svc)
			}
			fmt.Fprintf(e.stdout, "traffic of %s set\n", svc.Name)
			printTraffic(e, svc)
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&tags, "tag", nil, "TAG=REV: a route of its own to revision REV (repeatable)")
	return cmd
}

// parseTraffic reads the split of service name from REV=PERCENT arguments
// and TAG=REV tags. A tag goes on its revision's target, or on a target
// of its own at 0% when its revision has no percent given (or has a tag
// already).
func parseTraffic(name string, args, tags []string) ([]stratus.TrafficTarget, error) {
	if len(args) == 0 && len(tags) == 0 {
		return nil, usageErr("give the split as REV=PERCENT (e.g. 1=90 latest=10)")
	}
	var split []stratus.TrafficTarget
	for _, a := range args {
		rev, pct, ok := strings.Cut(a, "=")
		if !ok {
			return nil, usageErr("%q: want REV=PERCENT", a)
		}
		t, err := parseRev(name, rev)
		if err != nil {
			return nil, err
		}
		p, err := strconv.Atoi(strings.TrimSuffix(pct, "%"))
		if err != nil || p < 0 || p > 100 {
			return nil, usageErr("%q: the percent must be a whole number from 0 to 100", a)
		}
		for _, x := range split {
			if x.Latest == t.Latest && x.Revision == t.Revision {
				return nil, usageErr("%q: revision %s is given twice", a, rev)
			}
		}
		t.Percent = p
		split = append(split, t)
	}
	for _, a := range tags {
		tag, rev, ok := strings.Cut(a, "=")
		if !ok || tag == "" {
			return nil, usageErr("--tag %q: want TAG=REV", a)
		}
		t, err := parseRev(name, rev)
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(split, func(x stratus.TrafficTarget) bool {
			return x.Latest == t.Latest && x.Revision == t.Revision && x.Tag == ""
		})
		if i >= 0 {
			split[i].Tag = tag
			continue
		}
		t.Tag = tag
		split = append(split, t)
	}
	return split, nil
}

// parseRev reads a revision of service name: a number, a revision name
// (NAME-00002) or "latest".
func parseRev(name, rev string) (stratus.TrafficTarget, error) {
	if rev == "latest" {
		return stratus.TrafficTarget{Latest: true}, nil
	}
	num := strings.TrimPrefix(rev, name+"-")
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || strings.HasPrefix(num, "+") {
		return stratus.TrafficTarget{}, usageErr("revision %q: want a number, a revision name such as %s-00002, or latest", rev, name)
	}
	return stratus.TrafficTarget{Revision: n}, nil
}

// printTraffic writes how s's requests are split.
func printTraffic(e *env, s *v1.Service) {
	if len(s.Traffic) == 0 {
		return
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nTRAFFIC\tREVISION\tLATEST\tTAG\tREADY\tURL")
	for _, t := range s.Traffic {
		latest, tag, url := "-", "-", "-"
		if t.Latest {
			latest = "yes"
		}
		if t.Tag != "" {
			tag, url = t.Tag, t.URL
		}
		fmt.Fprintf(tw, "%d%%\t%s\t%s\t%s\t%d\t%s\n", t.Percent, t.RevisionName, latest, tag, t.Ready, url)
	}
	tw.Flush()
}
