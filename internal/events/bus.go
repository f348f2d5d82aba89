package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	stratus "github.com/stratus-run/stratus"
)

// BusConfig says where the event system lives.
type BusConfig struct {
	// StoreDir holds JetStream's file storage of the embedded server.
	StoreDir string
	// Listen is "" for no TCP port (in-process clients only), else the
	// host:port on which NATS clients with the credentials kept in
	// ClientCreds may connect ("127.0.0.1:0" picks a free port; see
	// Bus.ClientURL). Those clients may only publish to topic subjects
	// (see clientPermissions); the server's own connection has its own
	// key, made at each start.
	Listen string
	// ClientCreds is the file, required with Listen, that keeps the
	// outside clients' ClientCredentials: made with mode 0600 at the first
	// start, read at later ones and written again (0600) with the URL of
	// each start.
	ClientCreds string
	// URL names an external NATS server or cluster (comma-separated URLs,
	// each may carry user:password@ or token@). When set nothing is
	// embedded and StoreDir, Listen and ClientCreds are ignored.
	URL string
	// With URL: CredsFile is a .creds file (user JWT and nkey seed) and
	// NkeyFile an nkey seed file to authenticate with (at most one of
	// them); CAFile holds the CA certificates that sign the server's TLS
	// certificate, CertFile and KeyFile a client certificate and its key.
	// Any of the TLS files requires TLS, as a tls:// URL does.
	CredsFile, NkeyFile       string
	CAFile, CertFile, KeyFile string
	// SyncAlways fsyncs every write before JetStream acknowledges it. The
	// default (false) writes every message to the file before the
	// acknowledgement (so a crash of the process loses nothing acknowledged)
	// and fsyncs on JetStream's sync interval (2 minutes), so a power loss
	// or kernel crash can lose what was acknowledged since the last sync.
	SyncAlways bool
	// MaxStore bounds the embedded server's JetStream file storage; 0
	// sizes it from the volume of StoreDir at start: 3/4 of its free space
	// plus what StoreDir already holds. The streams' limits are sized from
	// it (see Bus.StreamBytes).
	MaxStore int64
	// MinFree is the free space StoreDir's volume must keep: below it the
	// bus reports stratus.ErrNoSpace (Health) and publishes fail at once,
	// and a JetStream disabled by a write error is re-enabled only once
	// there is at least this much (and at least restartFree) free again.
	MinFree int64
	// HealthInterval is how often Run checks JetStream and the volume
	// (DefaultHealthInterval).
	HealthInterval time.Duration
	// Replicas is how many copies JetStream keeps of the streams (and of
	// the key-value and object stores) made through the bus (see
	// Bus.Replicas): 1 to 5. 0 means 1 with the embedded server, and
	// with URL min(3, the size of the cluster the server belongs to).
	// The embedded server is alone: more than 1 needs URL.
	Replicas int
	// Log receives the embedded server's log lines; nil discards them.
	Log *slog.Logger
}

// Bus is a connection to JetStream: an embedded nats-server reached
// in-process, or an external server or cluster.
type Bus struct {
	srv    *server.Server // nil with an external URL
	nc     *nats.Conn
	js     jetstream.JetStream
	log    *slog.Logger
	closed chan struct{} // closed by the connection's ClosedHandler
	// streams has one slot, held while a stream is created or updated.
	streams chan struct{}

	cfg      BusConfig
	replicas int                    // of the streams; see Replicas
	jsConfig server.JetStreamConfig // of the embedded server, to re-enable it
	health   health
	// apiMu is read-held by each JetStream API request of the bus's users
	// (Bus.api) and held while JetStream is re-enabled.
	apiMu sync.RWMutex
	stats busStatsCache
}

// startTimeout bounds the embedded server's start when ctx has no deadline.
const startTimeout = 30 * time.Second

func (c BusConfig) withDefaults() BusConfig {
	if c.HealthInterval <= 0 {
		c.HealthInterval = DefaultHealthInterval
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// OpenBus starts the embedded server (or connects to cfg.URL) and returns a
// connected Bus. With an external URL it waits, within ctx, until the
// server answers. Errors wrap stratus.ErrInvalid for a bad configuration
// and stratus.ErrUnavailable when the server cannot be reached or started.
func OpenBus(ctx context.Context, cfg BusConfig) (*Bus, error) {
	cfg = cfg.withDefaults()
	switch {
	case cfg.Replicas < 0 || cfg.Replicas > maxReplicas:
		return nil, fmt.Errorf("open bus: %d replicas: want 1 to %d, or 0 for the default: %w", cfg.Replicas, maxReplicas, stratus.ErrInvalid)
	case cfg.Replicas > 1 && cfg.URL == "":
		return nil, fmt.Errorf("open bus: %d replicas need a NATS cluster (a NATS URL); the embedded server keeps one copy: %w", cfg.Replicas, stratus.ErrInvalid)
	}
	b := &Bus{log: cfg.Log, closed: make(chan struct{}), streams: make(chan struct{}, 1), cfg: cfg, replicas: 1}
	b.health.init()
	if cfg.URL != "" {
		if err := b.connectURL(ctx, cfg); err != nil {
			return nil, err
		}
		b.replicas = cfg.Replicas
		if b.replicas == 0 {
			b.replicas = clusterReplicas(b.nc)
		}
	} else if err := b.embed(ctx, cfg); err != nil {
		return nil, err
	}
	// Futures of publishes nobody waits for any more (see await) expire.
	js, err := jetstream.New(b.nc, jetstream.WithPublishAsyncTimeout(PublishTimeout))
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("open jetstream: %w", err)
	}
	b.js = js
	b.check(time.Now())
	return b, nil
}

func (b *Bus) embed(ctx context.Context, cfg BusConfig) error {
	if cfg.StoreDir == "" {
		return fmt.Errorf("open bus: empty store dir: %w", stratus.ErrInvalid)
	}
	maxStore := cfg.MaxStore
	if maxStore <= 0 {
		var err error
		if maxStore, err = storeBudget(cfg.StoreDir); err != nil {
			return fmt.Errorf("open bus: %w", err)
		}
	}
	opts := &server.Options{
		ServerName:        "stratus",
		JetStream:         true,
		JetStreamMaxStore: maxStore,
		StoreDir:          cfg.StoreDir,
		SyncAlways:        cfg.SyncAlways,
		DontListen:        cfg.Listen == "",
		NoSigs:            true,
	}
	// What the server enables JetStream with at start (see
	// nats-server's Server.Start), to enable it again after a write error.
	b.jsConfig = server.JetStreamConfig{
		StoreDir: cfg.StoreDir, SyncAlways: cfg.SyncAlways, MaxStore: maxStore,
		Strict: true, CompressOK: true,
	}
	// With Listen, outside clients need creds; the server's own
	// connection authenticates with ownAuth.
	var creds ClientCredentials
	var ownAuth nats.Option
	if cfg.Listen != "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return fmt.Errorf("open bus: listen address %q: %v: %w", cfg.Listen, err, stratus.ErrInvalid)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 0 || p > 65535 {
			return fmt.Errorf("open bus: listen port %q: %w", port, stratus.ErrInvalid)
		}
		if p == 0 {
			p = server.RANDOM_PORT // nats-server reads 0 as "the default, 4222"
		}
		opts.Host, opts.Port = host, p
		if cfg.ClientCreds == "" {
			return fmt.Errorf("open bus: listen address without a credentials file: %w", stratus.ErrInvalid)
		}
		if creds, err = loadClientCredentials(cfg.ClientCreds); err != nil {
			return fmt.Errorf("open bus: %w", err)
		}
		if ownAuth, err = authOptions(opts, creds); err != nil {
			return fmt.Errorf("open bus: %w", err)
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("open bus: %v: %w", err, stratus.ErrInvalid)
	}
	srv.SetLoggerV2(slogLogger{log: b.log, onError: b.health.noteServerError}, false, false, false)
	srv.Start()
	wait := startTimeout
	if d, ok := ctx.Deadline(); ok {
		wait = time.Until(d)
	}
	if !srv.ReadyForConnections(wait) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fmt.Errorf("open bus: embedded server not ready after %s: %w", wait, stratus.ErrUnavailable)
	}
	b.srv = srv
	connOpts := []nats.Option{nats.InProcessServer(srv), nats.Name("stratus"), nats.CustomInboxPrefix(ownInboxPrefix),
		nats.ClosedHandler(func(*nats.Conn) { close(b.closed) })}
	if ownAuth != nil {
		connOpts = append(connOpts, ownAuth)
	}
	nc, err := nats.Connect("", connOpts...)
	if err != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fmt.Errorf("open bus: connect in-process: %v: %w", err, stratus.ErrUnavailable)
	}
	b.nc = nc
	if cfg.Listen != "" {
		creds.URL = srv.ClientURL()
		if err := saveClientCredentials(cfg.ClientCreds, creds); err != nil {
			b.Close()
			return fmt.Errorf("open bus: %w", err)
		}
	}
	return nil
}

// urlOptions are the nats.go options of cfg's credentials and TLS files.
func urlOptions(cfg BusConfig) ([]nats.Option, error) {
	var opts []nats.Option
	if cfg.CredsFile != "" && cfg.NkeyFile != "" {
		return nil, fmt.Errorf("nats creds file and nkey file exclude each other: %w", stratus.ErrInvalid)
	}
	if cfg.CredsFile != "" {
		if _, err := os.Stat(cfg.CredsFile); err != nil {
			return nil, fmt.Errorf("nats creds file: %w: %w", err, stratus.ErrInvalid)
		}
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.NkeyFile != "" {
		o, err := nats.NkeyOptionFromSeed(cfg.NkeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats nkey file %s: %w: %w", cfg.NkeyFile, err, stratus.ErrInvalid)
		}
		opts = append(opts, o)
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, fmt.Errorf("nats client certificate: give both the cert and the key file: %w", stratus.ErrInvalid)
	}
	if cfg.CAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.CAFile))
	}
	if cfg.CertFile != "" {
		opts = append(opts, nats.ClientCert(cfg.CertFile, cfg.KeyFile))
	}
	return opts, nil
}

// connectWarnEvery is how often connectURL logs why it is not connected yet.
const connectWarnEvery = 5 * time.Second

func (b *Bus) connectURL(ctx context.Context, cfg BusConfig) error {
	shown := RedactURLs(cfg.URL)
	up := make(chan struct{}, 1)
	signal := func(*nats.Conn) {
		select {
		case up <- struct{}{}:
		default:
		}
	}
	var mu sync.Mutex
	var lastErr error // of a failed connection attempt
	opts, err := urlOptions(cfg)
	if err != nil {
		return fmt.Errorf("open bus: %w", err)
	}
	opts = append(opts, nats.Name("stratus"),
		nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.ConnectHandler(signal), nats.ReconnectHandler(signal),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			mu.Lock()
			lastErr = err
			mu.Unlock()
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			b.log.Warn("nats error", "err", err)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				b.log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(b.closed) }))
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return fmt.Errorf("open bus: connect %s: %v: %w", shown, err, stratus.ErrInvalid)
	}
	b.nc = nc
	why := func() error {
		if err := nc.LastError(); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if lastErr != nil {
			return lastErr
		}
		return errors.New("no answer yet")
	}
	tick := time.NewTicker(connectWarnEvery)
	defer tick.Stop()
	for !nc.IsConnected() {
		select {
		case <-up:
			return nil
		case <-b.closed:
			// nats.go gives up on a server that refused the same
			// credentials twice.
			err := why()
			kind := stratus.ErrUnavailable
			if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
				kind = stratus.ErrInvalid
			}
			return fmt.Errorf("open bus: connect %s: %v (check the credentials in the URL, --nats-creds or --nats-nkey): %w", shown, err, kind)
		case <-tick.C:
			b.log.Warn("nats not connected yet, retrying", "url", shown, "err", why())
		case <-ctx.Done():
			err := why()
			b.Close()
			return fmt.Errorf("open bus: connect %s: %w (last error: %v): %w", shown, ctx.Err(), err, stratus.ErrUnavailable)
		}
	}
	return nil
}

// RedactURLs returns urls (comma-separated NATS URLs) with the user
// information of each (user:password or a token) replaced by "redacted".
func RedactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if u, err := url.Parse(p); err == nil && u.User != nil {
			u.User = url.User("redacted")
			p = u.String()
		} else if at := strings.LastIndex(p, "@"); at >= 0 {
			// Not a URL url.Parse reads (nats.go takes host:port
			// without a scheme): hide all before the @.
			scheme := ""
			if i := strings.Index(p, "://"); i >= 0 && i < at {
				scheme = p[:i+3]
			}
			p = scheme + "redacted" + p[at:]
		}
		parts[i] = p
	}
	return strings.Join(parts, ",")
}

// lockStreams waits, within ctx, until no stream is being created or
// updated through the bus, and returns the release of its turn. A caller
// that caches its stream checks the cache again once it has the turn:
// nats-server reads a stream's store configuration unlocked while it
// creates a consumer of the stream, so a stream must not be updated (as
// CreateOrUpdateStream does even with an unchanged configuration) while a
// consumer of it is created, and a stream is made once, not once per
// concurrent first use.
func (b *Bus) lockStreams(ctx context.Context) (release func(), err error) {
	select {
	case b.streams <- struct{}{}:
		return func() { <-b.streams }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// maxReplicas is the most copies JetStream keeps of a stream.
const maxReplicas = 5

// defaultReplicas is the most copies a stream gets by default.
const defaultReplicas = 3

// clusterReplicas is the default replica count with an external server:
// 1 for a server in no cluster, else min(3, the servers of its cluster).
// A connected server names its cluster and the client URLs of the
// cluster's servers (nats.go adds those to the URLs it was given): their
// distinct host:port pairs are counted.
func clusterReplicas(nc *nats.Conn) int {
	if nc.ConnectedClusterName() == "" {
		return 1
	}
	hosts := make(map[string]bool)
	for _, s := range nc.Servers() {
		if u, err := url.Parse(s); err == nil && u.Host != "" {
			hosts[u.Host] = true
		}
	}
	return min(max(len(hosts), 1), defaultReplicas)
}

// Replicas returns how many copies JetStream keeps of what is made
// through the bus: BusConfig.Replicas, or its default as computed at
// OpenBus. The Queue and Topics make their streams with it; other users
// (the object store of blobs) should too.
func (b *Bus) Replicas() int { return b.replicas }

// makeStream creates stream cfg, with the bus's replicas, or updates it to
// cfg (see upsert).
func (b *Bus) makeStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	cfg.Replicas = b.replicas
	return upsert(ctx, b, func(ctx context.Context) (jetstream.Stream, error) {
		return b.js.CreateOrUpdateStream(ctx, cfg)
	})
}

// MakeObjectStore creates object store cfg, with the bus's replicas, or
// updates it to cfg, as makeStream does a stream (see upsert).
func (b *Bus) MakeObjectStore(ctx context.Context, cfg jetstream.ObjectStoreConfig) (jetstream.ObjectStore, error) {
	cfg.Replicas = b.replicas
	return upsert(ctx, b, func(ctx context.Context) (jetstream.ObjectStore, error) {
		return b.js.CreateOrUpdateObjectStore(ctx, cfg)
	})
}

// Bounds of upsert.
const (
	upsertAttempts = 3
	upsertTimeout  = 3 * time.Second
	// upsertPatience bounds the retries while a NATS cluster has too few
	// servers up for the replicas (it forms, or one restarts), retried
	// every upsertPause.
	upsertPatience = 30 * time.Second
	upsertPause    = 500 * time.Millisecond
)

// JetStream's error codes for a cluster that cannot place or answer for a
// stream now: "no suitable peers for placement" and "JetStream cluster not
// available".
const (
	jsErrCodeClusterNoPeers  jetstream.ErrorCode = 10005
	jsErrCodeClusterNotAvail jetstream.ErrorCode = 10008
)

// upsert runs op, the creation or update of a stream or consumer through
// b. With an external server it runs op up to upsertAttempts times, each
// bounded by upsertTimeout (and ctx), while it fails for a reason that a
// second request fixes and b is healthy: several servers make the same
// streams and consumers, at once when they start together, and of two
// creates of one stream in a NATS cluster one may fail (the name in use)
// or go unanswered although the stream is made; the next request updates
// what is there. While the cluster has too few servers up to place the
// replicas (it is forming, or one restarts) op is retried for up to
// upsertPatience. The embedded server has no other client making them:
// op runs once.
func upsert[T any](ctx context.Context, b *Bus, op func(context.Context) (T, error)) (T, error) {
	if b.srv != nil {
		return op(ctx)
	}
	start := time.Now()
	for n := 1; ; n++ {
		actx, cancel := context.WithTimeout(ctx, upsertTimeout)
		v, err := op(actx)
		cancel()
		var apiErr *jetstream.APIError
		isAPI := errors.As(err, &apiErr)
		if isAPI && (apiErr.ErrorCode == jsErrCodeClusterNoPeers || apiErr.ErrorCode == jsErrCodeClusterNotAvail) {
			// Too few servers up: wait for them, within upsertPatience.
			if time.Since(start) >= upsertPatience || ctx.Err() != nil {
				return v, err
			}
			b.log.Warn("nats cluster cannot place a stream yet; retrying", "err", err)
			select {
			case <-ctx.Done():
				return v, err
			case <-time.After(upsertPause):
			}
			continue
		}
		again := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
			(isAPI && apiErr.ErrorCode == jetstream.JSErrCodeStreamNameInUse)
		if !again || n >= upsertAttempts || ctx.Err() != nil || b.Health() != nil {
			return v, err
		}
	}
}

// JetStream returns the JetStream API of the bus.
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// Conn returns the NATS connection of the bus.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// ClientURL returns the URL NATS clients use to reach the bus over TCP:
// the embedded server's listen address, the connected server's URL with an
// external one (its credentials redacted), or "" when the embedded server
// has no TCP port.
func (b *Bus) ClientURL() string {
	if b.srv == nil {
		if !b.nc.IsConnected() {
			return ""
		}
		return RedactURLs(b.nc.ConnectedUrl())
	}
	if b.srv.Addr() == nil {
		return ""
	}
	return b.srv.ClientURL()
}

// drainTimeout bounds how long Close waits for the connection to drain.
const drainTimeout = 10 * time.Second

// Close drains the connection (in-flight publishes and acknowledgements
// finish), then shuts the embedded server down and waits until it has
// stopped. Stop everything that uses the bus (the Queue's Run) first.
func (b *Bus) Close() error {
	var errs []error
	switch {
	case b.nc.IsConnected():
		if err := b.nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			errs = append(errs, fmt.Errorf("drain nats connection: %w", err))
			b.nc.Close()
		}
	case !b.nc.IsClosed():
		b.nc.Close() // reconnecting: nothing can drain
	}
	select {
	case <-b.closed:
	case <-time.After(drainTimeout):
		b.nc.Close()
		<-b.closed
	}
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
	return errors.Join(errs...)
}

// slogLogger sends the embedded server's log lines to slog; its notices
// (the start banner, stream recovery) are debug lines. Its error lines
// also go to onError, which must not block: that is how a write error
// (a full disk) is noticed the moment JetStream meets it.
type slogLogger struct {
	log     *slog.Logger
	onError func(msg string)
}

func (l slogLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l slogLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l slogLogger) Fatalf(format string, v ...any)  { l.errorf(format, v...) }
func (l slogLogger) Errorf(format string, v ...any)  { l.errorf(format, v...) }
func (l slogLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l slogLogger) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }

func (l slogLogger) errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error(msg)
	if l.onError != nil {
		l.onError(msg)
	}
}
