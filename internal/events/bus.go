package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
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
	// host:port on which any NATS client may connect ("127.0.0.1:0" picks a
	// free port; see Bus.ClientURL).
	Listen string
	// URL names an external NATS server or cluster (comma-separated URLs).
	// When set nothing is embedded and StoreDir and Listen are ignored.
	URL string
	// SyncAlways fsyncs every write before JetStream acknowledges it. The
	// default (false) writes every message to the file before the
	// acknowledgement (so a crash of the process loses nothing acknowledged)
	// and fsyncs on JetStream's sync interval (2 minutes), so a power loss
	// or kernel crash can lose what was acknowledged since the last sync.
	SyncAlways bool
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
}

// startTimeout bounds the embedded server's start when ctx has no deadline.
const startTimeout = 30 * time.Second

// OpenBus starts the embedded server (or connects to cfg.URL) and returns a
// connected Bus. With an external URL it waits, within ctx, until the
// server answers. Errors wrap stratus.ErrInvalid for a bad configuration
// and stratus.ErrUnavailable when the server cannot be reached or started.
func OpenBus(ctx context.Context, cfg BusConfig) (*Bus, error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Bus{log: log, closed: make(chan struct{}), streams: make(chan struct{}, 1)}
	if cfg.URL != "" {
		if err := b.connectURL(ctx, cfg.URL); err != nil {
			return nil, err
		}
	} else if err := b.embed(ctx, cfg); err != nil {
		return nil, err
	}
	js, err := jetstream.New(b.nc)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("open jetstream: %w", err)
	}
	b.js = js
	return b, nil
}

func (b *Bus) embed(ctx context.Context, cfg BusConfig) error {
	if cfg.StoreDir == "" {
		return fmt.Errorf("open bus: empty store dir: %w", stratus.ErrInvalid)
	}
	opts := &server.Options{
		ServerName: "stratus",
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		SyncAlways: cfg.SyncAlways,
		DontListen: cfg.Listen == "",
		NoSigs:     true,
	}
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
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("open bus: %v: %w", err, stratus.ErrInvalid)
	}
	srv.SetLoggerV2(slogLogger{b.log}, false, false, false)
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
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.Name("stratus"),
		nats.ClosedHandler(func(*nats.Conn) { close(b.closed) }))
	if err != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fmt.Errorf("open bus: connect in-process: %v: %w", err, stratus.ErrUnavailable)
	}
	b.nc = nc
	return nil
}

func (b *Bus) connectURL(ctx context.Context, url string) error {
	up := make(chan struct{}, 1)
	signal := func(*nats.Conn) {
		select {
		case up <- struct{}{}:
		default:
		}
	}
	nc, err := nats.Connect(url, nats.Name("stratus"),
		nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.ConnectHandler(signal), nats.ReconnectHandler(signal),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				b.log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(b.closed) }))
	if err != nil {
		return fmt.Errorf("open bus: connect %s: %v: %w", url, err, stratus.ErrInvalid)
	}
	b.nc = nc
	if nc.IsConnected() {
		return nil
	}
	select {
	case <-up:
		return nil
	case <-ctx.Done():
		b.Close()
		return fmt.Errorf("open bus: connect %s: %w: %w", url, ctx.Err(), stratus.ErrUnavailable)
	}
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

// JetStream returns the JetStream API of the bus.
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// Conn returns the NATS connection of the bus.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// ClientURL returns the URL NATS clients use to reach the bus over TCP:
// the embedded server's listen address, the connected server's URL with an
// external one, or "" when the embedded server has no TCP port.
func (b *Bus) ClientURL() string {
	if b.srv == nil {
		return b.nc.ConnectedUrlRedacted()
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
// (the start banner, stream recovery) are debug lines.
type slogLogger struct{ log *slog.Logger }

func (l slogLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l slogLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l slogLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l slogLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l slogLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l slogLogger) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
