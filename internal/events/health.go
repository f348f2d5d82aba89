package events

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	stratus "github.com/stratus-run/stratus"
)

// DefaultHealthInterval is how often Bus.Run checks JetStream and the
// data volume.
const DefaultHealthInterval = time.Second

// PublishTimeout bounds the wait for JetStream's acknowledgement of one
// publish (an async event, a topic event, a retry); beyond it the publish
// fails with stratus.ErrUnavailable. A bus that turns unhealthy fails the
// publishes waiting on it at once.
const PublishTimeout = 10 * time.Second

// apiQuietWait bounds how long a re-enable of JetStream waits for the
// API requests under way to end.
const apiQuietWait = 15 * time.Second

// restartFree is the least free space on the volume needed to re-enable
// JetStream after a write error, whatever BusConfig.MinFree says.
const restartFree = 4 << 20

// Backoff between attempts to re-enable JetStream.
const (
	restartBackoffMin = time.Second
	restartBackoffMax = 30 * time.Second
)

// Shares of the embedded server's JetStream store that the streams may
// reserve (their MaxBytes), out of streamShareOf: the async queue half,
// topics a quarter; the rest is headroom for consumers' state.
const (
	asyncShare    = 2
	topicsShare   = 1
	streamShareOf = 4
)

// health is the state of a Bus as Run last checked it.
type health struct {
	kick chan struct{} // 1-buffered: check now

	mu        sync.Mutex
	err       error         // nil while healthy
	failing   chan struct{} // closed while err is not nil
	restarted chan struct{} // closed and replaced whenever JetStream is re-enabled
	// serverErr is the first write error the embedded server logged since
	// JetStream (re)started: its stream stays broken until re-enabled.
	serverErr string

	// Only check touches these (OpenBus once, then Run's goroutine).
	nextRestart time.Time
	lastRestart time.Time
	backoff     time.Duration
}

func (h *health) init() {
	h.kick = make(chan struct{}, 1)
	h.failing = make(chan struct{})
	h.restarted = make(chan struct{})
	h.backoff = restartBackoffMin
}

func (h *health) poke() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// noteServerError is the embedded server's error log hook: a line that
// says a write failed or JetStream is being disabled marks the bus
// unhealthy at once (publishes waiting for acknowledgements that will not
// come fail now, not at their timeout) and has Run check it.
func (h *health) noteServerError(msg string) {
	if !isWriteError(msg) {
		return
	}
	msg = hidePaths(msg)
	h.mu.Lock()
	if h.serverErr == "" {
		h.serverErr = msg
	}
	if h.err == nil {
		h.err = fmt.Errorf("JetStream: %s: %w", msg, errorKind(msg, false))
		close(h.failing)
	}
	h.mu.Unlock()
	h.poke()
}

// pathRE matches an absolute path in the embedded server's messages.
var pathRE = regexp.MustCompile(`/[^\s:'"]+`)

// hidePaths replaces the paths of files in the data dir in msg by their
// base name: Health's error is shown to clients (/readyz), the full
// message is in the log.
func hidePaths(msg string) string {
	return pathRE.ReplaceAllStringFunc(msg, func(p string) string { return ".../" + filepath.Base(p) })
}

// isWriteError reports whether a line the embedded server logged at error
// level says JetStream failed to write, or is being disabled.
func isWriteError(msg string) bool {
	m := strings.ToLower(msg)
	for _, s := range []string{"write error", "failed to store", "no space left", "out of space",
		"out of resources", "will be disabled", "disabling jetstream"} {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

// errorKind is stratus.ErrNoSpace for a full volume, else ErrUnavailable.
func errorKind(msg string, low bool) error {
	m := strings.ToLower(msg)
	// nats-server disables JetStream "out of File resources" only when a
	// write found no space.
	if low || strings.Contains(m, "no space left") || strings.Contains(m, "out of space") ||
		strings.Contains(m, "resources, will be disabled") || strings.Contains(m, "disk quota exceeded") {
		return stratus.ErrNoSpace
	}
	return stratus.ErrUnavailable
}

// Health returns nil while the bus can store events, else why not:
// wrapping stratus.ErrNoSpace (the data volume is below BusConfig.MinFree,
// or JetStream met a full disk) or ErrUnavailable (JetStream disabled or
// failing for another reason, an external server not connected). Run
// keeps it current; it does not block.
func (b *Bus) Health() error {
	b.health.mu.Lock()
	defer b.health.mu.Unlock()
	return b.health.err
}

// api marks one JetStream API request (stream or consumer made, read or
// deleted) under way until done is called; hold it across that one
// request only, never while taking it again.
func (b *Bus) api() (done func()) {
	b.apiMu.RLock()
	return b.apiMu.RUnlock
}

// failing returns a channel that is closed while the bus is unhealthy.
func (b *Bus) failing() <-chan struct{} {
	b.health.mu.Lock()
	defer b.health.mu.Unlock()
	return b.health.failing
}

// Restarted returns a channel closed the next time JetStream is re-enabled
// after a write error: pull requests made before are gone, and users of
// the bus make them again (and make sure their streams and consumers
// exist).
func (b *Bus) Restarted() <-chan struct{} {
	b.health.mu.Lock()
	defer b.health.mu.Unlock()
	return b.health.restarted
}

// StreamBytes is the MaxBytes of a stream that wants limit bytes and may
// take share quarters of the embedded server's JetStream store: a disk
// with little space gets smaller streams rather than no server. With an
// external server it is limit.
func (b *Bus) StreamBytes(limit int64, share int64) int64 {
	if b.srv == nil || b.jsConfig.MaxStore <= 0 || limit < 0 {
		return limit
	}
	return max(min(limit, b.jsConfig.MaxStore*share/streamShareOf), 1<<20)
}

// Run checks JetStream and the data volume every HealthInterval (and at
// once when the embedded server logs a write error) until ctx ends, keeps
// Health current, and re-enables a JetStream that a write error broke or
// disabled once the volume has room again (BusConfig.MinFree), with a
// backoff. It returns nil when ctx ends; stop it before Close.
func (b *Bus) Run(ctx context.Context) error {
	t := time.NewTicker(b.cfg.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			b.check(now)
		case <-b.health.kick:
			b.check(time.Now())
		}
	}
}

// check updates Health, re-enabling JetStream when it is broken and the
// volume has room.
func (b *Bus) check(now time.Time) {
	h := &b.health
	if b.srv == nil {
		var err error
		if !b.nc.IsConnected() {
			err = fmt.Errorf("NATS server not connected: %w", stratus.ErrUnavailable)
		}
		b.setHealth(err)
		return
	}
	free, ferr := FreeSpace(b.cfg.StoreDir)
	low := ferr == nil && free < b.cfg.MinFree
	jsErr := b.jetStreamErr()
	restarted := false
	if jsErr != nil && ferr == nil && free >= max(b.cfg.MinFree, restartFree) && !now.Before(h.nextRestart) {
		h.nextRestart, h.lastRestart = now.Add(h.backoff), now
		h.backoff = min(2*h.backoff, restartBackoffMax)
		if err := b.restartJetStream(); err != nil {
			b.log.Error("re-enable JetStream", "err", err, "retry_in", h.nextRestart.Sub(now))
		} else {
			b.log.Warn("JetStream re-enabled after a write error; the data volume has room again",
				"was", jsErr, "free_mib", free>>20)
			jsErr, restarted = b.jetStreamErr(), true
		}
	}
	if jsErr == nil && now.Sub(h.lastRestart) > time.Minute {
		h.backoff = restartBackoffMin
	}
	var err error
	switch {
	case jsErr != nil:
		err = fmt.Errorf("%w: %w", jsErr, errorKind(jsErr.Error(), low))
	case low:
		err = fmt.Errorf("data volume: %d MiB free, below the minimum of %d MiB (--min-free-bytes): %w",
			free>>20, b.cfg.MinFree>>20, stratus.ErrNoSpace)
	}
	b.setHealth(err)
	if restarted {
		// Healthy first: users re-make what they need at once.
		h.mu.Lock()
		close(h.restarted)
		h.restarted = make(chan struct{})
		h.mu.Unlock()
	}
}

// jetStreamErr says why the embedded JetStream cannot store, nil if it can.
func (b *Bus) jetStreamErr() error {
	b.health.mu.Lock()
	logged := b.health.serverErr
	b.health.mu.Unlock()
	if !b.srv.JetStreamEnabled() {
		if logged != "" {
			return fmt.Errorf("JetStream disabled: %s", logged)
		}
		return errors.New("JetStream disabled")
	}
	if logged != "" {
		return fmt.Errorf("JetStream write error: %s", logged)
	}
	if hs := b.srv.Healthz(nil); hs != nil && strings.Contains(hs.Error, "write error") {
		return fmt.Errorf("JetStream: %s", hidePaths(hs.Error))
	}
	return nil
}

// restartJetStream shuts the embedded JetStream down and enables it again:
// its streams and consumers are recovered from their files, without the
// write error that stopped them (nats-server keeps a stream's first write
// error until then).
func (b *Bus) restartJetStream() error {
	if b.srv.JetStreamEnabled() {
		if err := b.srv.ShutdownJetStream(); err != nil {
			return fmt.Errorf("shut JetStream down: %w", err)
		}
	}
	// nats-server disables JetStream in a goroutine of its own: it is
	// shut down once it has no configuration any more.
	for deadline := time.Now().Add(apiQuietWait); b.srv.JetStreamConfig() != nil; {
		if time.Now().After(deadline) {
			return fmt.Errorf("JetStream still shutting down after %s; trying later: %w", apiQuietWait, stratus.ErrUnavailable)
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.health.mu.Lock()
	b.health.serverErr = "" // what is logged from here on is new
	b.health.mu.Unlock()
	cfg := b.jsConfig
	// nats-server replaces its API request queues, unguarded, while it
	// enables JetStream: no request of ours may be under way then. Users
	// make none while the bus is unhealthy, and those under way end
	// within their timeouts.
	deadline := time.Now().Add(apiQuietWait)
	for !b.apiMu.TryLock() {
		if time.Now().After(deadline) {
			return fmt.Errorf("JetStream API requests still under way after %s; trying later: %w", apiQuietWait, stratus.ErrUnavailable)
		}
		time.Sleep(10 * time.Millisecond)
	}
	err := b.srv.EnableJetStream(&cfg)
	b.apiMu.Unlock()
	if err != nil {
		return fmt.Errorf("enable JetStream: %w", err)
	}
	return nil
}

func (b *Bus) setHealth(err error) {
	h := &b.health
	h.mu.Lock()
	defer h.mu.Unlock()
	was := h.err
	h.err = err
	switch {
	case err != nil && was == nil:
		close(h.failing)
	case err == nil && was != nil:
		h.failing = make(chan struct{})
	}
}

// await waits for the acknowledgement of a publish: at most
// PublishTimeout, within ctx, and no longer than the bus stays healthy.
func (b *Bus) await(ctx context.Context, paf jetstream.PubAckFuture) (*jetstream.PubAck, error) {
	failing := b.failing()
	timer := time.NewTimer(PublishTimeout)
	defer timer.Stop()
	select {
	case ack := <-paf.Ok():
		return ack, nil
	case err := <-paf.Err():
		return nil, b.publishErr(err)
	case <-failing:
		if err := b.Health(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("JetStream failed while publishing: %w", stratus.ErrUnavailable)
	case <-timer.C:
		return nil, b.publishErr(fmt.Errorf("no acknowledgement from JetStream within %s: %w", PublishTimeout, stratus.ErrUnavailable))
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// publishErr is publishErr with the bus's health added: a JetStream
// request that failed while the bus is unhealthy failed for that reason
// (a full disk makes JetStream answer "error creating store for
// consumer", or nothing at all).
func (b *Bus) publishErr(err error) error {
	err = publishErr(err)
	if h := b.Health(); h != nil && !errors.Is(err, stratus.ErrNoSpace) && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("%w (%w)", err, h)
	}
	return err
}

// FreeSpace returns the bytes available to an unprivileged user on the
// volume of path.
func FreeSpace(path string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// storeBudget sizes the embedded JetStream store when nothing else does:
// 3/4 of what the volume of dir has free plus what dir already holds (so
// that the budget does not shrink as the streams fill), as nats-server
// does from the free space alone.
func storeBudget(dir string) (int64, error) {
	// dir may not exist yet: its nearest existing parent is on its volume.
	at := filepath.Clean(dir)
	free, err := FreeSpace(at)
	for err != nil && errors.Is(err, fs.ErrNotExist) && filepath.Dir(at) != at {
		at = filepath.Dir(at)
		free, err = FreeSpace(at)
	}
	if err != nil {
		return 0, err
	}
	var used int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // gone meanwhile, or not there yet
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				used += fi.Size()
			}
		}
		return nil
	})
	return max((free+used)/4*3, 1<<20), nil
}
