// Package server wires Stratus's parts into one process: it builds them in
// order, runs the long-lived ones in one errgroup and stops them in order:
// mark not ready, stop accepting, drain in-flight invocations (bounded by
// the longest function timeout), stop every instance, flush logs, close the
// store.
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/apiserver"
	"github.com/stratus-run/stratus/internal/archive"
	"github.com/stratus-run/stratus/internal/config"
	"github.com/stratus-run/stratus/internal/events"
	"github.com/stratus-run/stratus/internal/functions"
	"github.com/stratus-run/stratus/internal/gateway"
	"github.com/stratus-run/stratus/internal/image"
	"github.com/stratus-run/stratus/internal/kube"
	"github.com/stratus-run/stratus/internal/lambdaapi"
	"github.com/stratus-run/stratus/internal/logs"
	"github.com/stratus-run/stratus/internal/meter"
	"github.com/stratus-run/stratus/internal/pool"
	"github.com/stratus-run/stratus/internal/sandbox/pods"
	"github.com/stratus-run/stratus/internal/series"
	"github.com/stratus-run/stratus/internal/services"
	"github.com/stratus-run/stratus/internal/services/kubedeploy"
	"github.com/stratus-run/stratus/internal/sigv4"
	"github.com/stratus-run/stratus/internal/store"
	"github.com/stratus-run/stratus/internal/trace"
	"github.com/stratus-run/stratus/runtimes"
)

// TokenFile is the name of the token file in the data dir.
const TokenFile = "token"

// NATSCredsFile is the name of the file in the data dir that keeps the
// credentials of outside clients of the embedded NATS server
// (events.ClientCredentials, mode 0600), made when it first listens.
const NATSCredsFile = "nats-client.json"

// Run runs the server until ctx ends, then stops it cleanly. ready, if not
// nil, is called with the listening address once requests are served.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger, ready func(addr string)) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	// Instances run in their code folder: paths into the data dir must
	// not be relative to the server's working directory.
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	cfg.DataDir = dataDir
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if err := secureDataDir(cfg.DataDir, log); err != nil {
		return err
	}
	if err := checkStartSpace(cfg.DataDir, cfg.MinFreeBytes); err != nil {
		return err
	}
	token, err := loadToken(cfg.DataDir, cfg.Token)
	if err != nil {
		return err
	}
	mtr, power, err := newMeter(cfg, log)
	if err != nil {
		return err
	}
	// Spans are made and exported only with --otlp-endpoint. Without it
	// the parts get no tracer: a caller's trace context is passed on as it
	// came (a function's Parent is the caller's span, not one of ours that
	// no backend would ever receive), and nothing is sent anywhere.
	tracing, err := trace.New(ctx, trace.Config{
		Endpoint: cfg.OTLPEndpoint, Region: cfg.Region, Version: stratus.ServerVersion(), Log: log.With("component", "trace"),
	})
	if err != nil {
		return err
	}
	tracer := func(component string) oteltrace.Tracer {
		if cfg.OTLPEndpoint == "" {
			return nil
		}
		return tracing.Tracer(component)
	}
	// Deferred: the last spans are flushed once every part has stopped.
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := tracing.Shutdown(sctx); err != nil {
			log.Warn("flush trace spans", "err", err)
		}
	}()
	target := cfg.Store
	if target == "" {
		target = filepath.Join(cfg.DataDir, "stratus.db")
	}
	st, err := store.Open(ctx, target)
	if err != nil {
		return err
	}
	defer st.Close()
	// The listener comes first: the other servers of a cluster learn
	// this one's address from its heartbeats.
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	// The event bus comes before the parts that keep code and images:
	// in a cluster they share them through its blobs.
	bus, err := events.OpenBus(ctx, events.BusConfig{
		StoreDir: filepath.Join(cfg.DataDir, "nats"), Listen: cfg.NatsListen, URL: cfg.NatsURL,
		ClientCreds: filepath.Join(cfg.DataDir, NATSCredsFile),
		CredsFile:   cfg.NatsCreds, NkeyFile: cfg.NatsNkey,
		CAFile: cfg.NatsCA, CertFile: cfg.NatsCert, KeyFile: cfg.NatsKey,
		SyncAlways: cfg.NatsSyncAlways, MinFree: cfg.MinFreeBytes, Log: log.With("component", "nats"),
	})
	if err != nil {
		return err
	}
	defer bus.Close()
	if cfg.NatsListen != "" {
		log.Info("NATS clients may connect", "url", bus.ClientURL(),
			"credentials", filepath.Join(cfg.DataDir, NATSCredsFile), "show", "stratus nats credentials")
	}
	// With --sandbox kube, one connection to the cluster serves the
	// leases, the function pods and the services' Deployments.
	var kc *kube.Client
	if cfg.Sandbox == pods.Name {
		if kc, err = kube.Connect(cfg.Kubeconfig, cfg.Namespace); err != nil {
			return err
		}
	}
	node, err := newNode(ctx, cfg, st, bus, kc, token, ln.Addr().String(), log)
	if err != nil {
		return err
	}

	rawDriver, why, err := newDriver(ctx, cfg, kc, log.With("component", "sandbox"))
	if err != nil {
		return err
	}
	// Deferred: runs once every part, the pools first, has stopped.
	defer closeDriver(rawDriver, log)
	// The pools and services use the driver through a counter of its
	// starts (for /metrics).
	driver, starts := counted(rawDriver)
	if caps := driver.Capabilities(); caps.Isolated {
		log.Info("sandbox driver", "driver", driver.Name(), "why", why)
	} else {
		// Said plainly, where the user sees it: what functions and
		// services can reach (the host and each other, or, rootless, its
		// network and all its memory).
		log.Warn("sandbox driver", "driver", driver.Name(), "why", why)
	}
	if err := stopLeftovers(ctx, driver, log); err != nil {
		return err
	}
	if err := stopOtherLeftovers(ctx, cfg, driver, log); err != nil {
		return err
	}
	rtDir := filepath.Join(cfg.DataDir, "runtimes")
	if err := runtimes.Install(rtDir); err != nil {
		return err
	}

	stored := newTimedStore(st)
	writer := logs.New(logs.Config{
		Store: stored,
		Retention: logs.Retention{
			Invocations: cfg.RetainInvocations, LogLines: cfg.RetainLogLines, MaxAge: time.Duration(cfg.RetainAge),
			Every: time.Duration(cfg.PruneInterval),
		},
		QueueBytes: cfg.LogQueueBytes,
		Log:        log.With("component", "logs"),
	})
	// Output beyond its bounds is dropped before it reaches the writer.
	output := logs.NewLimiter(logs.LimiterConfig{PerInvocation: cfg.MaxOutputBytes, BytesPerSecond: cfg.OutputRate})
	met := newMetrics(writer, mtr)
	met.reg.MustRegister(stored.took, stored.errs)
	met.logs(writer, output)
	met.sandboxes(driver.Name(), starts)

	// Sandboxes with ids of their own see an image's files owned as the
	// image says only if the host's owners are shifted into their range.
	var idBase uint32
	if d, ok := rawDriver.(interface{ IDBase() uint32 }); ok {
		idBase = d.IDBase()
	}
	images, err := image.Open(image.Config{
		Dir: filepath.Join(cfg.DataDir, "images"), IDBase: idBase,
		MaxImage: cfg.MaxImageBytes, MaxStore: cfg.ImageStoreBytes,
		Blobs: node.imageBlobs(),
	})
	if err != nil {
		return err
	}
	// Each part is built before it is handed to another: the pools take
	// the code folder's layout, not the functions service, which they
	// feed.
	pools := pool.New(pool.Config{
		Log:          log.With("component", "pool"),
		Driver:       driver,
		Placer:       placerOf(rawDriver),
		Command:      newCommander().command,
		Root:         newRoots(filepath.Join(cfg.DataDir, "roots")).root,
		CodeDir:      functions.CodeDirs(cfg.DataDir),
		RuntimeDir:   rtDir,
		Image:        imageResolver{images}.run,
		Region:       cfg.Region,
		AccountID:    cfg.AccountID,
		MaxInstances: cfg.MaxInstances,
		MaxPrepared:  cfg.MaxPrepared,
		MaxCreating:  cfg.MaxCreating,
		CPUQuota:     cfg.FunctionCPU == "quota",
		IdleTimeout:  time.Duration(cfg.IdleTimeout),
		ThrottleWait: time.Duration(cfg.ThrottleWait),
		QueueSize:    cfg.FunctionQueueSize,
		InitTimeout:  time.Duration(cfg.InitTimeout),
		StopGrace:    time.Duration(cfg.StopGrace),
		Sink:         met,
		Output:       output,
		Tracer:       tracer("pool"),
	})
	// Per function: its versions' pools summed.
	met.functionStats(pools.AllFunctionStats)
	lim := archive.DefaultLimits()
	lim.MaxZipped, lim.MaxUnzipped = cfg.MaxZipBytes, cfg.MaxUnzippedBytes
	// Functions and services share one namespace of names, kept by the
	// store's registry: neither asks the other.
	fns, err := functions.Open(ctx, functions.Config{
		Store: st, Pools: pools, DataDir: cfg.DataDir, Limits: lim,
		MaxConcurrency: cfg.MaxInstances, MaxRetries: cfg.MaxRetries, Log: log.With("component", "functions"),
		Images: imageResolver{images},
		// Idle and prepared instances are always of the head version, so
		// only a function with busy (or starting) instances may have old
		// versions in use: its old versions wait for a later prune.
		KeepVersions:  cfg.KeepVersions,
		HasInstances:  func(fn string, _ int) bool { return pools.Stats(fn).Busy > 0 },
		InstanceGrace: time.Duration(cfg.InitTimeout) + time.Duration(cfg.StopGrace) + 5*time.Second,
		// A removed function's series leave /metrics with it.
		Removed: met.forgetFunction,
		Route:   node.route(),
		Blobs:   node.codeBlobs(),
	})
	if err != nil {
		return err
	}
	// A destination is an async invocation or a topic, both built below
	// from the queue: dests gets them once they exist.
	dests := &events.Destinations{
		Config: func(fn string) (stratus.FunctionConfig, bool) {
			v, ok := fns.Head(fn)
			if !ok {
				return stratus.FunctionConfig{}, false
			}
			return v.Config, true
		},
		Region: cfg.Region, AccountID: cfg.AccountID, Log: log.With("component", "destinations"),
	}
	queue := events.NewQueue(events.QueueConfig{
		Bus: bus, Invoker: fns, Policy: asyncPolicy(fns), Sink: statusSink{writer},
		OnDone: dests.Done,
		Exists: node.functionExists(st),
		// An attempt's record and status are stored before its event is acked.
		BeforeAck:    writer.Sync,
		MaxEventSize: int(cfg.MaxAsyncEventBytes),
		Tracer:       tracer("events"),
		Log:          log.With("component", "async"),
	})
	met.eventStats(queue.Stats, bus.Stats)
	dests.Enqueue = queue.Enqueue
	topics, err := newTopics(ctx, bus, st, queue, fns, cfg, met, tracer("events"), log.With("component", "topics"))
	if err != nil {
		return err
	}
	dests.Publish = topics.Publish
	sched := events.NewScheduler(events.SchedulerConfig{
		Store: st, Queue: queue, FunctionExists: func(fn string) bool { _, ok := fns.Head(fn); return ok },
		Region: cfg.Region, AccountID: cfg.AccountID, MaxEventSize: int(cfg.MaxAsyncEventBytes),
		Tracer: tracer("events"),
		Log:    log.With("component", "scheduler"),
	})

	svcMet := met.serviceRequests()
	// On --sandbox kube, services run as Deployments, one per revision
	// (kubedeploy), not as sandboxes.
	var revisions services.Revisions
	if kc != nil {
		kctx, cancel := context.WithTimeout(ctx, kubeConnectTimeout)
		b, err := kubedeploy.New(kctx, kubedeploy.Config{Client: kc, Node: cfg.Node(), Region: kubeRegion(cfg), Log: log.With("component", "services")})
		cancel()
		if err != nil {
			return err
		}
		defer b.Close()
		revisions = b
	}
	svcs := services.New(services.Config{
		Store: st, Images: imageResolver{images}, Driver: driver, Revisions: revisions, Logs: met, Output: output,
		Log:           log.With("component", "services"),
		ReadyTimeout:  time.Duration(cfg.ServiceReadyTimeout),
		ProbeInterval: time.Duration(cfg.ServiceProbeInterval),
		StopGrace:     time.Duration(cfg.ServiceStopGrace),
		QueueSize:     cfg.ServiceQueueSize,
		Tick:          time.Duration(cfg.AutoscaleTick),
		StableWindow:  time.Duration(cfg.StableWindow), PanicWindow: time.Duration(cfg.PanicWindow),
		ScaleToZeroGrace: time.Duration(cfg.ScaleToZeroGrace),
		MaxReplicas:      cfg.MaxReplicas,
		Region:           cfg.Region,
		Usage:            writer,
		Removed:          svcMet.forget,
		Owns:             node.ownsService(),
		Owner:            node.serviceOwner(),
	})
	met.serviceStats(svcs.Stats)
	// The console's time series: samples of the families they read, off
	// the requests' path.
	sampler := series.New(series.Config{Gatherer: met.seriesGatherer(pools.AllFunctionStats, svcs.Stats, svcMet), Store: st, Log: log.With("component", "series")})
	if err := svcs.Load(ctx); err != nil {
		return err
	}

	// Ready while the store keeps what it is given, JetStream can store,
	// the data volume has --min-free-bytes free and, in a cluster, the
	// node's heartbeats reach the store.
	health := newReadiness(log.With("component", "health"), met.reg,
		healthCheck{"store", writer.Health},
		healthCheck{"events", bus.Health},
		healthCheck{"disk", diskCheck(cfg.DataDir, cfg.MinFreeBytes)},
		healthCheck{"cluster", node.health})
	node.follow(workloads{fns: fns, svcs: svcs, pools: pools, sched: sched, topics: topics, sync: writer.Sync}, health)
	// Access keys of the Lambda API and the signed function routes: their
	// secrets sealed under DATA/access-keys.key, signatures checked by
	// SigV4 (service lambda).
	keys := sigv4.NewKeys(sigv4.KeysConfig{
		Table: st, SealKeyPath: filepath.Join(cfg.DataDir, sigv4.SealKeyFile), Log: log.With("component", "keys"),
	})
	verifier := sigv4.New(sigv4.Config{Keys: keys, Log: log.With("component", "sigv4")})
	// The Lambda API: a CreateFunction carries the zip in base64.
	lambda := lambdaapi.New(lambdaapi.Config{
		Functions: fns, Queue: queue, Region: cfg.Region, AccountID: cfg.AccountID, Token: token,
		Verify: verifier.Verify, Precheck: verifier.Precheck,
		Logs: func(ctx context.Context, fn, id string) ([]stratus.LogLine, error) {
			_ = writer.Sync(ctx)
			return st.TailLogs(ctx, fn, id, lambdaapi.LogResultBytes)
		},
		MaxBody:    max(lambdaapi.DefaultMaxBody, cfg.MaxZipBytes/3*4+1<<20),
		MaxPayload: cfg.MaxEventBytes,
		Log:        log.With("component", "lambda"),
	})
	trusted, err := config.ParseTrustedProxies(cfg.TrustedProxies)
	if err != nil {
		return err
	}
	api := apiserver.New(apiserver.Config{
		Functions: fns, Store: st, Pools: invoker{fns, pools}, Logs: writer, Token: token, Queue: queue,
		MaxUpload: cfg.MaxZipBytes, MaxEventBytes: cfg.MaxEventBytes, TrustedProxies: trusted,
		Metrics: met.handler(), MetricsPublic: cfg.MetricsPublic, Log: log.With("component", "api"),
		Console:   cfg.Console,
		Ready:     health.Checks,
		AccountID: cfg.AccountID,
		Info: v1.Info{
			Version: stratus.ServerVersion(), Region: cfg.Region,
			Sandbox: v1.Sandbox{Driver: driver.Name(), Why: why, Isolated: driver.Capabilities().Isolated},
		},
		Schedules: sched,
		Topics:    topics, MaxAsyncEventBytes: cfg.MaxAsyncEventBytes,
		Images: apiserver.ImagesConfig{
			Store: images, UploadDir: filepath.Join(cfg.DataDir, "uploads", "images"),
			InUse: func(d string) bool { return svcs.ImageInUse(d) || fns.ImageInUse(d) },
		},
		Services: apiserver.ServicesConfig{
			Manager: svcs, Domain: cfg.Domain, MaxRequestBytes: cfg.MaxRequestBytes,
			Observe: func(name string, status int, d time.Duration) {
				svcs.Observe(name, status, d)
				svcMet.observe(name, status, d)
			},
		},
		Meter:    mtr,
		Lambda:   lambda,
		Series:   sampler,
		Keys:     apiserver.KeysConfig{Keys: keys, Verify: verifier.Verify, Precheck: verifier.Precheck},
		Nodes:    node.cl,
		Internal: node.internal(),
		Wrap:     node.forwarder(cfg.Domain),

		// The cluster's nodes, with --sandbox kube.
		KubeNodes: kubeNodes(rawDriver),
	})
	// Open connections are bounded (more wait in the listen backlog), a
	// header by its size, a request's header and body by time from its
	// start (--read-timeout; authenticated uploads get longer, see
	// gateway.BoundBodies).
	ln = gateway.LimitListener(ln, cfg.MaxConnections)
	readTimeout := time.Duration(cfg.ReadTimeout)
	srv := &http.Server{
		Handler:           gateway.Trace(tracer("gateway"), cfg.Region)(gateway.IgnoreH2CUpgrade(gateway.BoundBodies(api, readTimeout, gateway.NewToken(token), verifier.Precheck))),
		ReadTimeout:       readTimeout,
		ReadHeaderTimeout: min(10*time.Second, readTimeout),
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		// HTTP/1.1 and h2c by prior knowledge (gRPC), on the same port.
		Protocols: gateway.Protocols(),
		HTTP2:     gateway.HTTP2Config(),
	}

	// Each long-lived part runs with a context of its own, so that parts
	// stop one by one, each after those that use it: the scheduler and
	// topics enqueue on the queue, the queue invokes on the pools, and
	// everything writes through the log writer.
	failed := make(chan error, 8)
	busPart := startPart(ctx, "event bus health", bus.Run, failed)
	readyPart := startPart(ctx, "readiness", health.Run, failed)
	writerPart := startPart(ctx, "log writer", writer.Run, failed)
	poolsPart := startPart(ctx, "pools", pools.Run, failed)
	queuePart := startPart(ctx, "async queue", queue.Run, failed)
	schedPart := startPart(ctx, "scheduler", sched.Run, failed)
	topicsPart := startPart(ctx, "topics", topics.Run, failed)
	svcsPart := startPart(ctx, "services", svcs.Run, failed)
	seriesPart := startPart(ctx, "series", sampler.Run, failed)
	clusterPart := startPart(ctx, "cluster", node.cl.Run, failed)
	// The series' last sample comes after the last invocation ended; the
	// node keeps its leases until its instances and replicas stopped.
	stopOrder := []*part{schedPart, topicsPart, queuePart, svcsPart, poolsPart, clusterPart, seriesPart, writerPart, readyPart, busPart}
	if power != nil {
		stopOrder = append(stopOrder, startPart(ctx, "power", power, failed))
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("stratus is serving", "addr", ln.Addr().String(), "data", cfg.DataDir, "region", cfg.Region)
	if cfg.Console {
		signIn := "the token of --token or STRATUS_TOKEN"
		if cfg.Token == "" {
			signIn = "the token in " + filepath.Join(cfg.DataDir, TokenFile)
		}
		log.Info("web console", "url", "http://"+ln.Addr().String()+"/", "sign in with", signIn)
	}
	if ready != nil {
		ready(ln.Addr().String())
	}

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		if !errors.Is(err, http.ErrServerClosed) {
			runErr = fmt.Errorf("serve: %w", err)
		}
	case runErr = <-failed:
		log.Error("a part of the server failed; stopping", "err", runErr)
	}
	log.Info("stopping: draining in-flight invocations")
	api.Stopping()
	// ctx may have ended: what stopping still reads and waits for gets a
	// context of its own, bounded by the longest function timeout.
	stopCtx := context.WithoutCancel(ctx)
	drain := time.Duration(maxTimeout(stopCtx, fns))*time.Second + 5*time.Second
	dctx, cancel := context.WithTimeout(stopCtx, drain)
	// The other servers of a cluster take this one's functions and
	// services now, not once its instances have drained.
	node.cl.Leave(stopCtx)
	if err := srv.Shutdown(dctx); err != nil {
		log.Warn("drain ended before every request finished", "err", err)
		_ = srv.Close()
	}
	cancel()
	// Other servers' changes are no longer followed: the parts stop.
	node.close()
	// Async events in flight finish (bounded) or go back to the stream.
	for _, p := range stopOrder {
		if err := p.halt(); err != nil && runErr == nil {
			runErr = err
		}
	}
	log.Info("stopped")
	return runErr
}

// part is a long-lived part of the server, run by its own goroutine
// until halted.
type part struct {
	name string
	stop context.CancelFunc
	done chan error // receives Run's result once
}

// startPart runs run in a goroutine with a context that ends at halt (not
// with ctx: parts stop in the server's order). A part that ends on its own
// with an error reports it on failed.
func startPart(ctx context.Context, name string, run func(context.Context) error, failed chan<- error) *part {
	pctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	p := &part{name: name, stop: stop, done: make(chan error, 1)}
	go func() {
		err := run(pctx)
		if errors.Is(err, context.Canceled) && pctx.Err() != nil {
			err = nil // halted while it started: it stopped as asked
		}
		if err != nil {
			err = fmt.Errorf("%s: %w", name, err)
			if pctx.Err() == nil {
				select {
				case failed <- err:
				default:
				}
			}
		}
		p.done <- err
	}()
	return p
}

// halt stops the part and waits for it.
func (p *part) halt() error {
	p.stop()
	return <-p.done
}

// invoker runs invocations through the functions service, which resolves
// qualified names ("NAME:ALIAS") to the pool of a version, and reports a
// function's instances summed over its versions.
type invoker struct {
	fns   *functions.Service
	pools *pool.Manager
}

func (i invoker) Invoke(ctx context.Context, name string, req stratus.Request) (*stratus.Response, error) {
	return i.fns.Invoke(ctx, name, req)
}

func (i invoker) Stats(name string) stratus.InstanceStats { return i.pools.FunctionStats(name) }

// Instances lists a function's sandboxes and where they run (the API's
// instance items).
func (i invoker) Instances(name string) []v1.Instance {
	var out []v1.Instance
	for _, in := range i.pools.Instances(name) {
		out = append(out, v1.Instance{
			ID: in.ID, Version: in.Version, State: in.State, Since: in.Since,
			Pod: in.Placement.Pod, Node: in.Placement.Node,
		})
	}
	return out
}

// asyncPolicy reads a function's async settings from its head version (a
// qualified name's: see functions.Service.Head).
func asyncPolicy(fns *functions.Service) events.PolicyFunc {
	return func(fn string) (events.AsyncPolicy, bool) {
		v, ok := fns.Head(fn)
		if !ok {
			return events.AsyncPolicy{}, false
		}
		c := &v.Config
		maxConc := c.MaxConcurrency
		if name, _, qualified := strings.Cut(fn, ":"); qualified {
			// Concurrency is the function's, its head's setting.
			if h, ok := fns.Head(name); ok {
				maxConc = h.Config.MaxConcurrency
			}
		}
		return events.AsyncPolicy{
			MaxRetries: c.Retries(), MaxEventAge: c.EventAge(),
			MaxConcurrency: maxConc, Timeout: time.Duration(c.TimeoutSec) * time.Second,
		}, true
	}
}

// statusSink stores the states of async invocations through the writer.
type statusSink struct{ w *logs.Writer }

func (s statusSink) AsyncStatus(st events.Status) { s.w.AsyncStatus(stratus.AsyncStatus(st)) }

// maxTimeout is the longest timeout of any function, in seconds.
func maxTimeout(ctx context.Context, fns *functions.Service) int {
	list, err := fns.List(ctx)
	if err != nil {
		return stratus.MaxTimeoutSec
	}
	m := stratus.DefaultTimeoutSec
	for _, f := range list {
		m = max(m, f.Config.TimeoutSec)
	}
	return m
}

// loadToken returns the configured token, else the one kept in dir, else
// a new one saved there with mode 0600.
func loadToken(dir, configured string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	p := filepath.Join(dir, TokenFile)
	if b, err := os.ReadFile(p); err == nil {
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
	}
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	t := hex.EncodeToString(b[:])
	if err := os.WriteFile(p, []byte(t+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("save token: %w", err)
	}
	return t, nil
}

// commander resolves how each runtime runs, once per interpreter and
// runtime dir.
type commander struct {
	mu    sync.Mutex
	cache map[[2]string][]string // by runtime and runtime dir
}

func newCommander() *commander {
	return &commander{cache: make(map[[2]string][]string)}
}

// command is the argv of v with its code in taskDir and the runtime
// clients in rtDir, paths in the sandbox (/var/task and /var/runtime, or
// the host's folders). The interpreters are the host's.
func (c *commander) command(v *stratus.Version, taskDir, rtDir string) ([]string, error) {
	r := v.Config.Runtime
	if stratus.IsProvided(r) {
		return []string{path.Join(taskDir, "bootstrap")}, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	key := [2]string{r, rtDir}
	if argv, ok := c.cache[key]; ok {
		return argv, nil
	}
	argv, err := runtimes.Command(r, rtDir)
	if err != nil {
		return nil, err
	}
	if r == stratus.RuntimePython3 && rtDir != pool.RuntimeRoot {
		// Run the interpreter itself, not a version manager's shim. Not
		// where the sandbox has a file system of its own, with the
		// clients mounted at /var/runtime (pods of the Stratus image):
		// its python3 is found on the function's PATH there.
		if out, err := exec.Command(argv[0], "-c", "import sys; print(sys.executable)").Output(); err == nil {
			if p := strings.TrimSpace(string(out)); p != "" {
				argv = append([]string{p}, argv[1:]...)
			}
		}
	}
	c.cache[key] = argv
	return argv, nil
}

// newMeter builds the meter from the defaults and --meter-file, for the
// server's region. Where the host exposes RAPL, power measures the CPU
// energy (sampling every 10 s); else it is nil and the model serves.
func newMeter(cfg config.Config, log *slog.Logger) (*meter.Meter, func(context.Context) error, error) {
	t := meter.Default()
	if cfg.MeterFile != "" {
		var err error
		if t, err = meter.Load(cfg.MeterFile); err != nil {
			return nil, nil, err
		}
	}
	m := meter.New(t, cfg.Region)
	p, err := meter.OpenPower(meter.PowercapRoot, meter.ProcStat)
	if err != nil {
		log.Info("energy from the model", "region", cfg.Region, "gco2e_per_kwh", m.Intensity(), "prices", t.Prices.AsOf, "why", err)
		return m, nil, nil
	}
	m.SetPower(p)
	log.Info("energy measured by RAPL", "domains", p.Domains(), "region", cfg.Region, "gco2e_per_kwh", m.Intensity())
	return m, func(ctx context.Context) error {
		tick := time.NewTicker(10 * time.Second)
		defer tick.Stop()
		for {
			p.Sample(time.Now())
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
		}
	}, nil
}
