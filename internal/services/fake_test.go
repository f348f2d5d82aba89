package services

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// The fake driver runs each sandbox as an in-process HTTP server on
// 127.0.0.1:$PORT. It answers GET / with "<K_REVISION> <sandbox ID>",
// GET /sleep?ms=N after N ms, and GET /healthz with 200. Switches in the
// sandbox's environment (set through ServiceConfig.Env) change that:
//
//	FAKE_EXIT_AT_START=N      the sandbox exits with code N as it starts
//	FAKE_NO_LISTEN=1          it runs but never listens
//	FAKE_UNHEALTHY=1          GET /healthz answers 500
//	FAKE_UNHEALTHY_AFTER_MS=N GET /healthz answers 500 once it has run N ms
//	FAKE_WAIT_GATE=1          it listens once the test opens the driver's gate
//
// Once the test sets hangHealth, GET /healthz of every sandbox hangs
// until its client gives up; healthHung counts those requests.
type fakeDriver struct {
	caps     sandbox.Capabilities
	gate     chan struct{}
	gateOnce sync.Once

	hangHealth atomic.Bool
	healthHung atomic.Int32

	mu     sync.Mutex
	boxes  map[string]*fakeBox // live or not yet reaped by Wait
	all    []*fakeBox          // every sandbox made, in order
	starts []string            // the IDs passed to Start, in order
}

var _ sandbox.Driver = (*fakeDriver)(nil)

type fakeBox struct {
	drv      *fakeDriver
	id       string
	env      map[string]string
	argv     []string
	stdout   io.Writer
	prepared bool      // made by Prepare
	started  time.Time // set by Start; guarded by fakeDriver.mu, then read-only

	mu   sync.Mutex
	srv  *http.Server  // guarded
	quit chan struct{} // closed when the sandbox is told to end; guarded

	wg   sync.WaitGroup // the box's goroutines: gate wait, Serve
	once sync.Once
	done chan struct{}
	exit sandbox.Exit // set before done closes

	inflight, peak, served atomic.Int32 // of GET /sleep
	cpu                    atomic.Int64 // CPUNanos's reading, set by the test
}

func newFakeDriver(caps sandbox.Capabilities) *fakeDriver {
	return &fakeDriver{caps: caps, gate: make(chan struct{}), boxes: make(map[string]*fakeBox)}
}

func (d *fakeDriver) Name() string                       { return "fake" }
func (d *fakeDriver) Capabilities() sandbox.Capabilities { return d.caps }

func (d *fakeDriver) newBoxLocked(spec sandbox.Spec, prepared bool) *fakeBox {
	env := make(map[string]string)
	for _, kv := range spec.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	b := &fakeBox{
		drv: d, id: spec.ID, env: env, argv: slices.Clone(spec.Argv), stdout: spec.Stdout, prepared: prepared,
		quit: make(chan struct{}), done: make(chan struct{}),
	}
	d.boxes[spec.ID] = b
	d.all = append(d.all, b)
	return b
}

func (d *fakeDriver) Prepare(ctx context.Context, spec sandbox.Spec) error {
	if len(spec.Argv) == 0 {
		return fmt.Errorf("prepare sandbox %q: empty argv: %w", spec.ID, stratus.ErrInvalid)
	}
	if !d.caps.Prepare {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if b, ok := d.boxes[spec.ID]; ok && !b.ended() {
		return fmt.Errorf("prepare sandbox %q: already running: %w", spec.ID, stratus.ErrConflict)
	}
	d.newBoxLocked(spec, true)
	return nil
}

func (d *fakeDriver) Start(ctx context.Context, spec sandbox.Spec) error {
	if len(spec.Argv) == 0 {
		return fmt.Errorf("start sandbox %q: empty argv: %w", spec.ID, stratus.ErrInvalid)
	}
	d.mu.Lock()
	b, ok := d.boxes[spec.ID]
	switch {
	case !ok:
		b = d.newBoxLocked(spec, false)
	case b.prepared && b.started.IsZero() && !b.ended():
		// A prepared sandbox starts its program.
	default:
		d.mu.Unlock()
		return fmt.Errorf("start sandbox %q: already running: %w", spec.ID, stratus.ErrConflict)
	}
	b.started = time.Now()
	d.starts = append(d.starts, spec.ID)
	d.mu.Unlock()

	switch {
	case b.env["FAKE_EXIT_AT_START"] != "":
		code, _ := strconv.Atoi(b.env["FAKE_EXIT_AT_START"])
		b.finish(0, sandbox.Exit{Code: code})
	case b.env["FAKE_NO_LISTEN"] != "":
	case b.env["FAKE_WAIT_GATE"] != "":
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			select {
			case <-d.gate:
			case <-b.quit:
				return
			}
			if err := b.listen(); err != nil {
				go b.finish(0, sandbox.Exit{Code: 1})
			}
		}()
	default:
		if err := b.listen(); err != nil {
			b.finish(0, sandbox.Exit{Code: 1})
			d.mu.Lock()
			delete(d.boxes, spec.ID)
			d.mu.Unlock()
			return fmt.Errorf("start sandbox %q: %w", spec.ID, err)
		}
	}
	return nil
}

func (b *fakeBox) listen() error {
	ln, err := net.Listen("tcp", "127.0.0.1:"+b.env["PORT"])
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: b.handler(), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	b.mu.Lock()
	select {
	case <-b.quit:
		b.mu.Unlock()
		ln.Close()
		return errors.New("stopped before it listened")
	default:
	}
	b.srv = srv
	b.wg.Add(1)
	b.mu.Unlock()
	go func() {
		defer b.wg.Done()
		_ = srv.Serve(ln)
	}()
	if b.stdout != nil {
		fmt.Fprintf(b.stdout, "fake listening on %s\n", b.env["PORT"])
	}
	return nil
}

func (b *fakeBox) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", b.env["K_REVISION"], b.id)
	})
	mux.HandleFunc("GET /sleep", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		n := b.inflight.Add(1)
		for {
			p := b.peak.Load()
			if n <= p || b.peak.CompareAndSwap(p, n) {
				break
			}
		}
		b.served.Add(1)
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-r.Context().Done():
		}
		b.inflight.Add(-1)
		fmt.Fprintf(w, "%s slept %d ms", b.id, ms)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if b.drv.hangHealth.Load() {
			b.drv.healthHung.Add(1)
			<-r.Context().Done()
			return
		}
		sick := b.env["FAKE_UNHEALTHY"] != ""
		if s := b.env["FAKE_UNHEALTHY_AFTER_MS"]; s != "" {
			ms, _ := strconv.Atoi(s)
			sick = sick || time.Since(b.started) > time.Duration(ms)*time.Millisecond
		}
		if sick {
			http.Error(w, "sick", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// finish ends the sandbox once with e (a graceful shutdown of up to grace
// first) and returns when it has ended.
func (b *fakeBox) finish(grace time.Duration, e sandbox.Exit) {
	b.once.Do(func() {
		b.mu.Lock()
		close(b.quit)
		srv := b.srv
		b.mu.Unlock()
		if srv != nil {
			if grace > 0 {
				ctx, cancel := context.WithTimeout(context.Background(), grace)
				if srv.Shutdown(ctx) != nil {
					e = sandbox.Exit{Code: -1, Signal: "killed"}
				}
				cancel()
			}
			srv.Close()
		}
		b.wg.Wait()
		b.exit = e
		close(b.done)
	})
	<-b.done
}

func (b *fakeBox) ended() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

func (d *fakeDriver) get(id string) *fakeBox {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.boxes[id]
}

func (d *fakeDriver) Stop(ctx context.Context, id string, grace time.Duration) error {
	if b := d.get(id); b != nil {
		b.finish(grace, sandbox.Exit{Code: -1, Signal: "terminated"})
	}
	return nil
}

func (d *fakeDriver) Wait(ctx context.Context, id string) (sandbox.Exit, error) {
	b := d.get(id)
	if b == nil {
		return sandbox.Exit{}, fmt.Errorf("sandbox %q: %w", id, stratus.ErrNotFound)
	}
	select {
	case <-b.done:
		d.mu.Lock()
		if d.boxes[id] == b {
			delete(d.boxes, id)
		}
		d.mu.Unlock()
		return b.exit, nil
	case <-ctx.Done():
		return sandbox.Exit{}, ctx.Err()
	}
}

func (d *fakeDriver) SyncOutput(ctx context.Context, id string) error {
	if d.get(id) == nil {
		return fmt.Errorf("sandbox %q: %w", id, stratus.ErrNotFound)
	}
	return nil
}

func (d *fakeDriver) Addr(ctx context.Context, id string) (netip.Addr, error) {
	if b := d.get(id); b == nil || b.ended() {
		return netip.Addr{}, fmt.Errorf("sandbox %q: %w", id, stratus.ErrNotFound)
	}
	return netip.AddrFrom4([4]byte{127, 0, 0, 1}), nil
}

// Owns owns nothing: replicas have no Runtime API that would ask.
func (d *fakeDriver) Owns(ctx context.Context, id string, local, remote netip.AddrPort) (bool, error) {
	if b := d.get(id); b == nil || b.ended() {
		return false, fmt.Errorf("sandbox %q: %w", id, stratus.ErrNotFound)
	}
	return false, nil
}

// EndInit: services never call it, and the fake enforces no CPU quota.
func (d *fakeDriver) EndInit(ctx context.Context, id string) error { return nil }

func (d *fakeDriver) Stats(ctx context.Context, id string) (sandbox.Stats, error) {
	if b := d.get(id); b == nil || b.ended() {
		return sandbox.Stats{}, fmt.Errorf("sandbox %q: %w", id, stratus.ErrNotFound)
	}
	return sandbox.Stats{}, nil
}

// CPUNanos reads the CPU counter the test set on a live sandbox.
func (d *fakeDriver) CPUNanos(ctx context.Context, id string) (int64, error) {
	b := d.get(id)
	if b == nil || b.ended() {
		return 0, fmt.Errorf("sandbox %q: %w", id, stratus.ErrNotFound)
	}
	return b.cpu.Load(), nil
}

func (d *fakeDriver) List(ctx context.Context) ([]string, error) {
	return d.live(), nil
}

// live returns the IDs of the sandboxes that have not ended, prepared
// ones included.
func (d *fakeDriver) live() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ids []string
	for _, b := range d.all {
		if !b.ended() {
			ids = append(ids, b.id)
		}
	}
	return ids
}

// liveOf returns the sandboxes of revision rev that have not ended.
func (d *fakeDriver) liveOf(rev string) []*fakeBox {
	d.mu.Lock()
	defer d.mu.Unlock()
	var bs []*fakeBox
	for _, b := range d.all {
		if b.env["K_REVISION"] == rev && !b.ended() {
			bs = append(bs, b)
		}
	}
	return bs
}

// startedOf returns the sandboxes of revision rev whose program started.
func (d *fakeDriver) startedOf(rev string) []*fakeBox {
	d.mu.Lock()
	defer d.mu.Unlock()
	var bs []*fakeBox
	for _, b := range d.all {
		if b.env["K_REVISION"] == rev && !b.started.IsZero() {
			bs = append(bs, b)
		}
	}
	return bs
}

// idlePrepared returns the IDs of prepared sandboxes not started yet.
func (d *fakeDriver) idlePrepared() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ids []string
	for _, b := range d.all {
		if b.prepared && b.started.IsZero() && !b.ended() {
			ids = append(ids, b.id)
		}
	}
	return ids
}

func (d *fakeDriver) started() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.starts)
}

func (d *fakeDriver) box(id string) *fakeBox {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, b := range d.all {
		if b.id == id {
			return b
		}
	}
	return nil
}

// crash ends sandbox id as if its program exited with code.
func (d *fakeDriver) crash(t *testing.T, id string, code int) {
	t.Helper()
	b := d.box(id)
	if b == nil {
		t.Fatalf("crash: no sandbox %q", id)
	}
	b.finish(0, sandbox.Exit{Code: code})
}

func (d *fakeDriver) openGate() { d.gateOnce.Do(func() { close(d.gate) }) }

// stopAll ends whatever a failed test left running.
func (d *fakeDriver) stopAll() {
	d.mu.Lock()
	all := slices.Clone(d.all)
	d.mu.Unlock()
	for _, b := range all {
		b.finish(0, sandbox.Exit{Code: -1, Signal: "killed"})
	}
}

// fakeImages resolves every reference to an image with entrypoint
// /fake, except "missing" (not found) and "noentry" (no entrypoint).
type fakeImages struct{}

func (fakeImages) Resolve(ctx context.Context, ref string) (*Image, error) {
	switch ref {
	case "missing":
		return nil, fmt.Errorf("image %q: %w", ref, stratus.ErrNotFound)
	case "noentry":
		return &Image{Digest: "sha256:noentry", RootFS: "/nonexistent"}, nil
	}
	return &Image{Digest: "sha256:" + ref, RootFS: "/nonexistent", Entrypoint: []string{"/fake"}, Env: []string{"FROM_IMAGE=1"}}, nil
}

type fakeLogs struct {
	mu    sync.Mutex
	lines []stratus.LogLine
}

func (l *fakeLogs) Log(line stratus.LogLine) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
}

// has reports whether a line of service name's stream holds text.
func (l *fakeLogs) has(name, stream, text string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.ContainsFunc(l.lines, func(x stratus.LogLine) bool {
		return x.Function == stratus.ServiceLogKey(name) && x.Stream == stream && strings.Contains(x.Text, text)
	})
}
