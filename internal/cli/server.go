package cli

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/stratus-run/stratus/internal/config"
	"github.com/stratus-run/stratus/internal/server"
)

func (e *env) serverCmd() *cobra.Command {
	var file, trusted string
	flags := config.Default()
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the Stratus server (gateway, control API, pools, store) in this process",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(file, e.environ)
			if err != nil {
				return err
			}
			fs := cmd.Flags()
			set := func(name string, apply func()) {
				if fs.Changed(name) {
					apply()
				}
			}
			set("listen", func() { cfg.Listen = flags.Listen })
			set("data", func() { cfg.DataDir = flags.DataDir })
			set("token", func() { cfg.Token = flags.Token })
			set("region", func() { cfg.Region = flags.Region })
			set("account-id", func() { cfg.AccountID = flags.AccountID })
			set("sandbox", func() { cfg.Sandbox = flags.Sandbox })
			set("kubeconfig", func() { cfg.Kubeconfig = flags.Kubeconfig })
			set("namespace", func() { cfg.Namespace = flags.Namespace })
			set("agent-image", func() { cfg.AgentImage = flags.AgentImage })
			set("kube-address", func() { cfg.KubeAddress = flags.KubeAddress })
			set("max-instances", func() { cfg.MaxInstances = flags.MaxInstances })
			set("max-prepared", func() { cfg.MaxPrepared = flags.MaxPrepared })
			set("max-creating", func() { cfg.MaxCreating = flags.MaxCreating })
			set("function-cpu", func() { cfg.FunctionCPU = flags.FunctionCPU })
			set("idle-timeout", func() { cfg.IdleTimeout = flags.IdleTimeout })
			set("throttle-wait", func() { cfg.ThrottleWait = flags.ThrottleWait })
			set("retain-invocations", func() { cfg.RetainInvocations = flags.RetainInvocations })
			set("retain-log-lines", func() { cfg.RetainLogLines = flags.RetainLogLines })
			set("retain-age", func() { cfg.RetainAge = flags.RetainAge })
			set("prune-interval", func() { cfg.PruneInterval = flags.PruneInterval })
			set("log-level", func() { cfg.LogLevel = flags.LogLevel })
			set("log-format", func() { cfg.LogFormat = flags.LogFormat })
			set("otlp-endpoint", func() { cfg.OTLPEndpoint = flags.OTLPEndpoint })
			set("meter-file", func() { cfg.MeterFile = flags.MeterFile })
			set("metrics-public", func() { cfg.MetricsPublic = flags.MetricsPublic })
			set("console", func() { cfg.Console = flags.Console })
			set("store", func() { cfg.Store = flags.Store })
			set("node-name", func() { cfg.NodeName = flags.NodeName })
			set("advertise", func() { cfg.Advertise = flags.Advertise })
			set("nats-listen", func() { cfg.NatsListen = flags.NatsListen })
			set("nats-url", func() { cfg.NatsURL = flags.NatsURL })
			set("nats-sync-always", func() { cfg.NatsSyncAlways = flags.NatsSyncAlways })
			set("nats-creds", func() { cfg.NatsCreds = flags.NatsCreds })
			set("nats-nkey", func() { cfg.NatsNkey = flags.NatsNkey })
			set("nats-ca", func() { cfg.NatsCA = flags.NatsCA })
			set("nats-cert", func() { cfg.NatsCert = flags.NatsCert })
			set("nats-key", func() { cfg.NatsKey = flags.NatsKey })
			set("max-async-event-size", func() { cfg.MaxAsyncEventBytes = flags.MaxAsyncEventBytes })
			set("max-retries", func() { cfg.MaxRetries = flags.MaxRetries })
			set("domain", func() { cfg.Domain = flags.Domain })
			set("trusted-proxies", func() { cfg.TrustedProxies = config.SplitList(trusted) })
			set("max-replicas", func() { cfg.MaxReplicas = flags.MaxReplicas })
			set("service-ready-timeout", func() { cfg.ServiceReadyTimeout = flags.ServiceReadyTimeout })
			set("service-probe-interval", func() { cfg.ServiceProbeInterval = flags.ServiceProbeInterval })
			set("service-stop-grace", func() { cfg.ServiceStopGrace = flags.ServiceStopGrace })
			set("service-queue-size", func() { cfg.ServiceQueueSize = flags.ServiceQueueSize })
			set("autoscale-tick", func() { cfg.AutoscaleTick = flags.AutoscaleTick })
			set("stable-window", func() { cfg.StableWindow = flags.StableWindow })
			set("panic-window", func() { cfg.PanicWindow = flags.PanicWindow })
			set("scale-to-zero-grace", func() { cfg.ScaleToZeroGrace = flags.ScaleToZeroGrace })
			set("max-zip-bytes", func() { cfg.MaxZipBytes = flags.MaxZipBytes })
			set("max-unzipped-bytes", func() { cfg.MaxUnzippedBytes = flags.MaxUnzippedBytes })
			set("max-event-bytes", func() { cfg.MaxEventBytes = flags.MaxEventBytes })
			set("max-output-bytes", func() { cfg.MaxOutputBytes = flags.MaxOutputBytes })
			set("output-rate", func() { cfg.OutputRate = flags.OutputRate })
			set("log-queue-bytes", func() { cfg.LogQueueBytes = flags.LogQueueBytes })
			set("read-timeout", func() { cfg.ReadTimeout = flags.ReadTimeout })
			set("max-header-bytes", func() { cfg.MaxHeaderBytes = flags.MaxHeaderBytes })
			set("max-request-bytes", func() { cfg.MaxRequestBytes = flags.MaxRequestBytes })
			set("max-connections", func() { cfg.MaxConnections = flags.MaxConnections })
			set("function-queue-size", func() { cfg.FunctionQueueSize = flags.FunctionQueueSize })
			set("keep-versions", func() { cfg.KeepVersions = flags.KeepVersions })
			set("max-image-bytes", func() { cfg.MaxImageBytes = flags.MaxImageBytes })
			set("image-store-bytes", func() { cfg.ImageStoreBytes = flags.ImageStoreBytes })
			set("min-free-bytes", func() { cfg.MinFreeBytes = flags.MinFreeBytes })
			if err := cfg.Validate(); err != nil {
				return usageErr("%v", err)
			}
			log := newLogger(e.stderr, cfg.LogLevel, cfg.LogFormat)
			return server.Run(cmd.Context(), cfg, log, func(addr string) {
				fmt.Fprintf(e.stdout, "stratus server listening on http://%s (data %s)\n", addr, cfg.DataDir)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&file, "config", "", "JSON config file (optional; flags override it)")
	f.StringVar(&flags.Listen, "listen", flags.Listen, "address to serve on")
	// --data and --token are the root's persistent flags; the server reads
	// them through its own copies.
	f.StringVar(&flags.DataDir, "data", flags.DataDir, "data dir (database, code, token)")
	f.StringVar(&flags.Token, "token", "", "API token (default $STRATUS_TOKEN, else generated and kept in the data dir)")
	f.StringVar(&flags.Region, "region", flags.Region, "region this server runs in")
	f.StringVar(&flags.AccountID, "account-id", flags.AccountID, "account ID (12 digits) in the ARNs the server writes")
	f.StringVar(&flags.Sandbox, "sandbox", flags.Sandbox, "sandbox driver: auto (runc when runc is on PATH and the server runs as root, else process), runc, process, or kube (function instances as pods of a Kubernetes cluster, see --kubeconfig)")
	f.StringVar(&flags.Kubeconfig, "kubeconfig", "", "with --sandbox kube: the kubeconfig file of the cluster (default: the in-cluster configuration of the server's pod)")
	f.StringVar(&flags.Namespace, "namespace", "", "with --sandbox kube: the namespace the server places pods in (default: its own pod's, else default)")
	f.StringVar(&flags.AgentImage, "agent-image", "", "with --sandbox kube: the image of function pods, holding the stratus binary (see deploy/)")
	f.StringVar(&flags.KubeAddress, "kube-address", "", "with --sandbox kube: the address pods reach this server at (default: the host's first non-loopback address)")
	f.IntVar(&flags.MaxInstances, "max-instances", flags.MaxInstances, "instances across all functions, at most")
	f.IntVar(&flags.MaxPrepared, "max-prepared", flags.MaxPrepared, "function sandboxes prepared ahead (one per function at most) so that cold starts are faster, across all functions; 0 turns this off; they do not count in --max-instances, and a function unused for its idle timeout drops its own")
	f.IntVar(&flags.MaxCreating, "max-creating", flags.MaxCreating, "function sandboxes made at once (cold starts without a prepared sandbox, and prepares); more wait their turn, and calls meanwhile take the first instance that comes free; 0 means half the CPUs, at least one")
	f.StringVar(&flags.FunctionCPU, "function-cpu", flags.FunctionCPU, "how a function's CPU share (in proportion to its memory, a core at 1769 MB) applies in the runc sandbox: weight (only under contention; an instance may use up to a core while CPUs are free) or quota (a hard limit at all times, as on Lambda)")
	f.TextVar(&flags.IdleTimeout, "idle-timeout", flags.IdleTimeout, "how long an idle instance lives (functions may set their own)")
	f.TextVar(&flags.ThrottleWait, "throttle-wait", flags.ThrottleWait, "how long an invocation waits for an instance at the concurrency cap before 429")
	f.IntVar(&flags.RetainInvocations, "retain-invocations", flags.RetainInvocations, "invocation records kept per function")
	f.IntVar(&flags.RetainLogLines, "retain-log-lines", flags.RetainLogLines, "log lines kept per function")
	f.TextVar(&flags.RetainAge, "retain-age", flags.RetainAge, "records and log lines older than this are dropped")
	f.TextVar(&flags.PruneInterval, "prune-interval", flags.PruneInterval, "how often records and log lines beyond the retention are deleted")
	f.StringVar(&flags.LogLevel, "log-level", flags.LogLevel, "debug, info, warn or error")
	f.StringVar(&flags.LogFormat, "log-format", flags.LogFormat, "server log format: text (key=value lines) or json (one object per line)")
	f.StringVar(&flags.OTLPEndpoint, "otlp-endpoint", "", "export trace spans over OTLP to this collector: http(s)://HOST:PORT[/PATH] (OTLP/HTTP, default path /v1/traces) or grpc(s)://HOST:PORT (OTLP/gRPC); default: spans go nowhere")
	f.StringVar(&flags.MeterFile, "meter-file", "", "JSON file of prices, energy coefficients and grid intensities over the defaults (see docs/metering.md)")
	f.BoolVar(&flags.MetricsPublic, "metrics-public", false, "serve /metrics without the token (it lists function names)")
	f.BoolVar(&flags.Console, "console", flags.Console, "serve the web console at / (sign in with the token); --console=false leaves it out")
	f.StringVar(&flags.Store, "store", "", "where the state is kept: a SQLite file (default DATA/stratus.db), or postgres://USER@HOST[:PORT]/DB to share PostgreSQL with other servers as one cluster (then --nats-url and the same --token on every server are required; the password comes best from PGPASSWORD or ~/.pgpass)")
	f.StringVar(&flags.NodeName, "node-name", "", "this server's name among the servers sharing a store (default: the host name)")
	f.StringVar(&flags.Advertise, "advertise", "", "base URL the other servers of a cluster reach this one at (default: http:// and the listen address)")
	f.StringVar(&flags.NatsListen, "nats-listen", "", "expose the embedded NATS server on this address to clients with the credentials kept in the data dir (see stratus nats credentials), who may only publish to topics (default: no port)")
	f.StringVar(&flags.NatsURL, "nats-url", "", "use this NATS server or cluster (with JetStream) instead of the embedded one: comma-separated URLs, nats://user:password@host:port or nats://token@host:port for credentials, tls:// for TLS")
	f.StringVar(&flags.NatsCreds, "nats-creds", "", "with --nats-url: authenticate with this .creds file (user JWT and nkey seed)")
	f.StringVar(&flags.NatsNkey, "nats-nkey", "", "with --nats-url: authenticate with the nkey seed in this file")
	f.StringVar(&flags.NatsCA, "nats-ca", "", "with --nats-url: trust the NATS servers' TLS certificates signed by the CA certificates in this PEM file (requires TLS)")
	f.StringVar(&flags.NatsCert, "nats-cert", "", "with --nats-url: client certificate (PEM) for TLS, with --nats-key")
	f.StringVar(&flags.NatsKey, "nats-key", "", "with --nats-url: key (PEM) of the --nats-cert client certificate")
	f.BoolVar(&flags.NatsSyncAlways, "nats-sync-always", false, "fsync every accepted event (default: JetStream's sync interval; a crash of the server loses nothing either way)")
	f.Int64Var(&flags.MaxAsyncEventBytes, "max-async-event-size", flags.MaxAsyncEventBytes, "largest asynchronous event in bytes")
	f.IntVar(&flags.MaxRetries, "max-retries", flags.MaxRetries, "most async retries a function may ask for")
	f.StringVar(&flags.Domain, "domain", flags.Domain, "domain of host routes: NAME.<domain> reaches service or function NAME")
	f.StringVar(&trusted, "trusted-proxies", "", "comma-separated CIDR prefixes or IP addresses of the proxies in front whose X-Forwarded-* and Forwarded headers are kept and appended to (default: none; every peer's are replaced)")
	f.IntVar(&flags.MaxReplicas, "max-replicas", flags.MaxReplicas, "replicas across all services, at most")
	f.TextVar(&flags.ServiceReadyTimeout, "service-ready-timeout", flags.ServiceReadyTimeout, "how long a new replica may take to become ready (and a request may wait for one)")
	f.TextVar(&flags.ServiceProbeInterval, "service-probe-interval", flags.ServiceProbeInterval, "period of the liveness probe; 3 failures in a row restart a replica")
	f.TextVar(&flags.ServiceStopGrace, "service-stop-grace", flags.ServiceStopGrace, "time a stopping replica gets between SIGTERM and SIGKILL")
	f.IntVar(&flags.ServiceQueueSize, "service-queue-size", flags.ServiceQueueSize, "requests that may wait for a replica per service before 429")
	f.TextVar(&flags.AutoscaleTick, "autoscale-tick", flags.AutoscaleTick, "how often the autoscaler decides")
	f.TextVar(&flags.StableWindow, "stable-window", flags.StableWindow, "autoscaler: window of the average concurrency")
	f.TextVar(&flags.PanicWindow, "panic-window", flags.PanicWindow, "autoscaler: short window that triggers panic mode on bursts")
	f.TextVar(&flags.ScaleToZeroGrace, "scale-to-zero-grace", flags.ScaleToZeroGrace, "autoscaler: extra idle time before a service with --min 0 goes to zero")
	f.Int64Var(&flags.MaxZipBytes, "max-zip-bytes", flags.MaxZipBytes, "largest code zip upload in bytes")
	f.Int64Var(&flags.MaxUnzippedBytes, "max-unzipped-bytes", flags.MaxUnzippedBytes, "largest code zip, unzipped, in bytes")
	f.Int64Var(&flags.MaxEventBytes, "max-event-bytes", flags.MaxEventBytes, "largest invocation payload (request body of a function) in bytes")
	f.Int64Var(&flags.MaxOutputBytes, "max-output-bytes", flags.MaxOutputBytes, "output stored per invocation of a function; beyond it lines are dropped and counted")
	f.Int64Var(&flags.OutputRate, "output-rate", flags.OutputRate, "output bytes per second stored per function or service; beyond it lines are dropped and counted")
	f.Int64Var(&flags.LogQueueBytes, "log-queue-bytes", flags.LogQueueBytes, "log lines, records and statuses waiting to be stored, in bytes, at most")
	f.TextVar(&flags.ReadTimeout, "read-timeout", flags.ReadTimeout, "time a client has to send a request's body; slower: 408")
	f.IntVar(&flags.MaxHeaderBytes, "max-header-bytes", flags.MaxHeaderBytes, "largest request header in bytes")
	f.Int64Var(&flags.MaxRequestBytes, "max-request-bytes", flags.MaxRequestBytes, "largest request body sent to a service, in bytes (a function's: 6 MB)")
	f.IntVar(&flags.MaxConnections, "max-connections", flags.MaxConnections, "open client connections, at most; more wait to be accepted")
	f.IntVar(&flags.FunctionQueueSize, "function-queue-size", flags.FunctionQueueSize, "invocations of one function that may wait beyond the instances being started for them; one more gets 429 at once")
	f.IntVar(&flags.KeepVersions, "keep-versions", flags.KeepVersions, "versions kept per function; older ones and their code are removed once nothing uses them")
	f.Int64Var(&flags.MaxImageBytes, "max-image-bytes", flags.MaxImageBytes, "largest image, its layers decompressed, in bytes")
	f.Int64Var(&flags.ImageStoreBytes, "image-store-bytes", flags.ImageStoreBytes, "everything the image store keeps, in bytes, at most")
	f.Int64Var(&flags.MinFreeBytes, "min-free-bytes", flags.MinFreeBytes, "free space on the data volume below which the server does not start (and, running, refuses async accepts and topic publishes with 507 and is not ready)")
	return cmd
}

// newLogger is the server's logger at level (debug, info, warn, error) in
// format: "json", one object per line, else key=value text.
func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lvl}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
