package services

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
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
	"github.com/stratus-run/stratus/internal/eventually"
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
type fakeDriver struct {
	caps     sandbox.Capabilities
	gate     chan struct{}
	gateOnce sync.Once

	mu     sync.Mutex
	boxes  map[string]*fakeBox // live or not yet reaped by Wait
	all    []*fakeBox          // every sandbox made, in order
	starts []string            // the IDs passed to Start, in order
}

var _ sandbox.Driver = (*fakeDriver)(nil)

type fakeBox struct {
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
		id: spec.ID, env: env, argv: slices.Clone(spec.Argv), stdout: spec.Stdout, prepared: prepared,
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

// fakeStore keeps services in memory.
type fakeStore struct {
	mu   sync.Mutex
	svcs map[string]stratus.Service
	revs map[string][]int
}

func newFakeStore() *fakeStore {
	return &fakeStore{svcs: make(map[string]stratus.Service), revs: make(map[string][]int)}
}

func (s *fakeStore) NextRevision(ctx context.Context, name string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.revs[name] {
		n = max(n, r)
	}
	return n + 1, nil
}

func (s *fakeStore) PutRevision(ctx context.Context, rev *stratus.Revision) (*stratus.Service, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.Contains(s.revs[rev.Service], rev.Number) {
		return nil, fmt.Errorf("put service %q: revision %d exists: %w", rev.Service, rev.Number, stratus.ErrConflict)
	}
	now := time.Now()
	c := rev.Config
	c.Env = maps.Clone(c.Env)
	svc := stratus.Service{Name: rev.Service, Revision: rev.Number, Config: c, Digest: rev.Digest, CreatedAt: now, UpdatedAt: now}
	if old, ok := s.svcs[rev.Service]; ok {
		svc.CreatedAt = old.CreatedAt
	}
	s.svcs[rev.Service] = svc
	s.revs[rev.Service] = append(s.revs[rev.Service], rev.Number)
	return &svc, nil
}

func (s *fakeStore) ListServices(ctx context.Context) ([]stratus.Service, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := slices.Collect(maps.Values(s.svcs))
	slices.SortFunc(list, func(a, b stratus.Service) int { return strings.Compare(a.Name, b.Name) })
	return list, nil
}

func (s *fakeStore) DeleteService(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.svcs[name]; !ok {
		return fmt.Errorf("service %q: %w", name, stratus.ErrNotFound)
	}
	delete(s.svcs, name)
	delete(s.revs, name)
	return nil
}

func (s *fakeStore) names() []string {
	list, _ := s.ListServices(context.Background())
	var names []string
	for _, svc := range list {
		names = append(names, svc.Name)
	}
	return names
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

// harness runs a Manager over the fakes; cleanup stops its Run and
// checks that no sandbox is left running.
type harness struct {
	t     *testing.T
	m     *Manager
	d     *fakeDriver
	store *fakeStore
	logs  *fakeLogs

	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
}

// waitFor bounds every wait on a condition: generous, since the tests
// assert outcomes, not timings.
const waitFor = 20 * time.Second

func newHarness(t *testing.T, tune ...func(*Config)) *harness {
	return newHarnessWith(t, sandbox.Capabilities{}, tune...)
}

func newHarnessWith(t *testing.T, caps sandbox.Capabilities, tune ...func(*Config)) *harness {
	t.Parallel()
	h := &harness{t: t, d: newFakeDriver(caps), store: newFakeStore(), logs: &fakeLogs{}}
	cfg := Config{
		Store: h.store, Images: fakeImages{}, Driver: h.d, Logs: h.logs,
		NameTaken:     func(name string) bool { return name == "taken" },
		ReadyTimeout:  2 * time.Second,
		ProbeInterval: 50 * time.Millisecond,
		Tick:          50 * time.Millisecond,
		BackoffBase:   20 * time.Millisecond,
		BackoffMax:    200 * time.Millisecond,
		StableWindow:  2 * time.Second, PanicWindow: time.Second, ScaleToZeroGrace: time.Nanosecond,
		StopGrace: 200 * time.Millisecond,
	}
	for _, f := range tune {
		f(&cfg)
	}
	h.store = cfg.Store.(*fakeStore)
	h.m = New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- h.m.Run(ctx) }()
	t.Cleanup(func() {
		h.d.openGate()
		h.stop()
		h.d.stopAll()
	})
	return h
}

// stop ends Run, waits for it and checks that it left no sandbox
// running.
func (h *harness) stop() {
	h.t.Helper()
	h.stopOnce.Do(func() {
		h.cancel()
		select {
		case err := <-h.done:
			if err != nil {
				h.t.Errorf("Run: %v", err)
			}
		case <-time.After(waitFor):
			h.t.Errorf("Run did not return within %s", waitFor)
			return
		}
		if live := h.d.live(); len(live) > 0 {
			h.t.Errorf("sandboxes left running after Run returned: %v", live)
		}
	})
}

func (h *harness) deploy(name string, c stratus.ServiceConfig) *stratus.Service {
	h.t.Helper()
	svc, err := h.m.Deploy(h.t.Context(), name, c)
	if err != nil {
		h.t.Fatalf("deploy %s: %v", name, err)
	}
	return svc
}

func (h *harness) status(name string) Status {
	h.t.Helper()
	_, st, err := h.m.Get(name)
	if err != nil {
		h.t.Fatalf("get %s: %v", name, err)
	}
	return st
}

func (h *harness) acquire(name string) (*Target, func()) {
	h.t.Helper()
	tg, release, err := h.m.Acquire(h.t.Context(), name)
	if err != nil {
		h.t.Fatalf("acquire %s: %v", name, err)
	}
	return tg, release
}

// hello acquires a replica of name, sends GET / and returns the revision
// and sandbox ID that answered.
func (h *harness) hello(name string) (rev, id string) {
	h.t.Helper()
	tg, release := h.acquire(name)
	defer release()
	body, err := fetch(tg, "/")
	if err != nil {
		h.t.Fatalf("GET / of %s: %v", name, err)
	}
	rev, id, _ = strings.Cut(body, " ")
	return rev, id
}

// prepared returns the ID of the sandbox service name's serving revision
// keeps prepared, or "".
func (h *harness) prepared(name string) string {
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	s, ok := h.m.services[name]
	if !ok || s.cur.prepared == nil {
		return ""
	}
	return s.cur.prepared.spec.ID
}

func fetch(tg *Target, path string) (string, error) {
	c := &http.Client{Transport: tg.Transport, Timeout: 10 * time.Second}
	resp, err := c.Get(tg.URL.String() + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	return string(b), nil
}

type acquired struct {
	tg      *Target
	release func()
	err     error
	took    time.Duration
}

// acquireAsync calls Acquire on its own goroutine.
func (h *harness) acquireAsync(ctx context.Context, name string) <-chan acquired {
	ch := make(chan acquired, 1)
	go func() {
		start := time.Now()
		tg, release, err := h.m.Acquire(ctx, name)
		ch <- acquired{tg, release, err, time.Since(start)}
	}()
	return ch
}

func receive(t *testing.T, ch <-chan acquired) acquired {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(waitFor):
		t.Fatalf("Acquire did not return within %s", waitFor)
		return acquired{}
	}
}

func TestDeployServes(t *testing.T) {
	h := newHarness(t)
	svc := h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 1, Env: map[string]string{"GREETING": "hi"}})
	if svc.Name != "web" || svc.Revision != 1 || svc.Digest != "sha256:app" {
		t.Errorf("deploy returned %+v", svc)
	}
	st := h.status("web")
	if st.State != StateReady || st.Ready != 1 || st.Desired != 1 || st.Live != 1 || st.Restarts != 0 || st.LastError != "" {
		t.Errorf("status after deploy: %+v", st)
	}
	if len(st.Replicas) != 1 || st.Replicas[0].Revision != 1 || st.Replicas[0].State != stateReady {
		t.Fatalf("replicas after deploy: %+v", st.Replicas)
	}
	if got := h.store.names(); !slices.Equal(got, []string{"web"}) {
		t.Errorf("stored services %v", got)
	}
	if !h.m.Exists("web") || !h.m.ImageInUse("sha256:app") {
		t.Errorf("Exists %v, ImageInUse %v", h.m.Exists("web"), h.m.ImageInUse("sha256:app"))
	}

	rev, id := h.hello("web")
	if rev != "web-00001" || id != st.Replicas[0].ID {
		t.Errorf("GET / answered by %s %s, want web-00001 %s", rev, id, st.Replicas[0].ID)
	}
	// The sandbox got the image's command and environment, the user's and
	// the platform's, with PORT the port the target points at.
	b := h.d.box(id)
	if !slices.Equal(b.argv, []string{"/fake"}) {
		t.Errorf("argv %q", b.argv)
	}
	_, port, _ := net.SplitHostPort(st.Replicas[0].Address)
	if b.env["PORT"] != port || b.env["K_SERVICE"] != "web" || b.env["GREETING"] != "hi" || b.env["FROM_IMAGE"] != "1" {
		t.Errorf("sandbox env %v, address %s", b.env, st.Replicas[0].Address)
	}
	eventually.True(t, waitFor, "the replica's output in the service's logs", func() bool {
		return h.logs.has("web", "stdout", "fake listening")
	})
}

func TestBalancing(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ReadyTimeout = 5 * time.Second })
	h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 2, MaxScale: 2, Concurrency: 1})

	// Sequential requests take turns between the idle replicas.
	var ids []string
	for range 10 {
		_, id := h.hello("web")
		ids = append(ids, id)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] == ids[i-1] {
			t.Errorf("sequential requests went to %v: not alternating", ids)
			break
		}
	}
	if n := len(h.d.liveOf("web-00001")); n != 2 {
		t.Fatalf("%d live replicas, want 2", n)
	}

	// Concurrent requests: never two at once on one replica.
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 8 {
		wg.Go(func() {
			for range 3 {
				tg, release, err := h.m.Acquire(t.Context(), "web")
				if err != nil {
					errs <- err
					return
				}
				_, err = fetch(tg, "/sleep?ms=20")
				release()
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent request: %v", err)
	}
	total := 0
	for _, b := range h.d.liveOf("web-00001") {
		if p := b.peak.Load(); p > 1 {
			t.Errorf("replica %s had %d requests at once, concurrency is 1", b.id, p)
		}
		if b.served.Load() == 0 {
			t.Errorf("replica %s took no request", b.id)
		}
		total += int(b.served.Load())
	}
	if total != 24 {
		t.Errorf("replicas served %d requests, want 24", total)
	}
	if st := h.status("web"); st.Waiting != 0 || st.Replicas[0].Inflight+st.Replicas[1].Inflight != 0 {
		t.Errorf("after the requests: %+v", st)
	}
}

func TestQueueBounds(t *testing.T) {
	const readyTimeout = time.Second
	h := newHarness(t, func(c *Config) { c.QueueSize, c.ReadyTimeout = 1, readyTimeout })
	h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 1, MaxScale: 1, Concurrency: 1})
	busy, release := h.acquire("web")
	defer release()

	// One request waits; the next finds the queue full.
	waiting := h.acquireAsync(t.Context(), "web")
	eventually.True(t, waitFor, "a request waiting", func() bool { return h.status("web").Waiting == 1 })
	if _, _, err := h.m.Acquire(t.Context(), "web"); !errors.Is(err, stratus.ErrCapacity) {
		t.Errorf("acquire with the queue full: %v, want ErrCapacity", err)
	}
	// The waiting one gives up after the ready timeout.
	a := receive(t, waiting)
	if !errors.Is(a.err, stratus.ErrUnavailable) {
		t.Errorf("waiting acquire: %v, want ErrUnavailable", a.err)
	}
	if a.took < readyTimeout {
		t.Errorf("waiting acquire gave up after %s, before the ready timeout %s", a.took, readyTimeout)
	}
	if st := h.status("web"); st.Waiting != 0 || st.Ready != 1 {
		t.Errorf("after the wait: %+v", st)
	}

	// A release hands the slot to a waiting request.
	waiting = h.acquireAsync(t.Context(), "web")
	eventually.True(t, waitFor, "a request waiting", func() bool { return h.status("web").Waiting == 1 })
	release()
	a = receive(t, waiting)
	if a.err != nil {
		t.Fatalf("acquire after a release: %v", a.err)
	}
	defer a.release()
	if a.tg.URL.Host != busy.URL.Host {
		t.Errorf("the waiter got %s, want the replica released, %s", a.tg.URL.Host, busy.URL.Host)
	}
	if _, err := fetch(a.tg, "/"); err != nil {
		t.Error(err)
	}
	if st := h.status("web"); st.Waiting != 0 || st.Replicas[0].Inflight != 1 {
		t.Errorf("after the hand-over: %+v", st)
	}
}

func TestRollingUpdate(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ReadyTimeout = 5 * time.Second })
	h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 1})
	held, release := h.acquire("web")
	defer release()

	// Revision 2's replica listens once the gate opens; until then,
	// requests go to revision 1.
	deployed := make(chan error, 1)
	go func() {
		_, err := h.m.Deploy(t.Context(), "web", stratus.ServiceConfig{Image: "app", MinScale: 1, Env: map[string]string{"FAKE_WAIT_GATE": "1"}})
		deployed <- err
	}()
	eventually.True(t, waitFor, "revision 2's replica started", func() bool { return len(h.d.startedOf("web-00002")) == 1 })
	if rev, _ := h.hello("web"); rev != "web-00001" {
		t.Errorf("while revision 2 starts, a request went to %s", rev)
	}
	if st := h.status("web"); st.State != StateReady {
		t.Errorf("while revision 2 starts: %+v", st)
	}
	h.d.openGate()
	select {
	case err := <-deployed:
		if err != nil {
			t.Fatalf("deploy revision 2: %v", err)
		}
	case <-time.After(waitFor):
		t.Fatal("deploy of revision 2 did not return")
	}
	if rev, _ := h.hello("web"); rev != "web-00002" {
		t.Errorf("after the deploy, a request went to %s", rev)
	}
	svc, st, _ := h.m.Get("web")
	if svc.Revision != 2 || st.State != StateReady || st.Ready != 1 {
		t.Errorf("after the deploy: revision %d, %+v", svc.Revision, st)
	}

	// The old replica drains: it serves the request it holds, then stops.
	eventually.True(t, waitFor, "the old replica draining", func() bool {
		st := h.status("web")
		return st.Draining == 1 && slices.ContainsFunc(st.Replicas, func(r ReplicaStatus) bool {
			return r.Revision == 1 && r.State == stateStopping && r.Inflight == 1
		})
	})
	if n := len(h.d.liveOf("web-00001")); n != 1 {
		t.Fatalf("%d sandboxes of revision 1 live while it holds a request, want 1", n)
	}
	if body, err := fetch(held, "/"); err != nil || !strings.HasPrefix(body, "web-00001 ") {
		t.Errorf("the held request on the old replica: %q %v", body, err)
	}
	release()
	eventually.True(t, waitFor, "the old replica stopped", func() bool {
		return len(h.d.liveOf("web-00001")) == 0 && h.status("web").Draining == 0
	})
	if rev, _ := h.hello("web"); rev != "web-00002" {
		t.Errorf("after the drain, a request went to %s", rev)
	}
}

func TestFailedDeploy(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ReadyTimeout = time.Second })
	h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 1})

	cases := []struct {
		name string
		cfg  stratus.ServiceConfig
		want []string
	}{
		{"exits at start", stratus.ServiceConfig{Image: "app", Env: map[string]string{"FAKE_EXIT_AT_START": "3"}},
			[]string{"exited before it was ready", "exit status 3"}},
		{"never listens", stratus.ServiceConfig{Image: "app", Env: map[string]string{"FAKE_NO_LISTEN": "1"}},
			[]string{"not ready within", "does not accept connections"}},
		{"unhealthy", stratus.ServiceConfig{Image: "app", HealthPath: "/healthz", Env: map[string]string{"FAKE_UNHEALTHY": "1"}},
			[]string{"not ready within", "GET /healthz: status 500"}},
	}
	for _, c := range cases {
		_, err := h.m.Deploy(t.Context(), "web", c.cfg)
		if !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("%s: deploy: %v, want ErrInvalid", c.name, err)
			continue
		}
		for _, w := range append(c.want, "web-00002") {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: deploy error %q does not say %q", c.name, err, w)
			}
		}
		// Revision 1 still serves; the failure is reported.
		svc, st, _ := h.m.Get("web")
		if svc.Revision != 1 || st.State != StateReady || st.Ready != 1 {
			t.Errorf("%s: after the failed deploy: revision %d, %+v", c.name, svc.Revision, st)
		}
		if !strings.Contains(st.LastError, "web-00002") || !strings.Contains(st.LastError, c.want[0]) {
			t.Errorf("%s: last error %q does not name the failed revision and why", c.name, st.LastError)
		}
		if rev, _ := h.hello("web"); rev != "web-00001" {
			t.Errorf("%s: after the failed deploy, a request went to %s", c.name, rev)
		}
		eventually.True(t, waitFor, "the failed revision's sandboxes stopped", func() bool { return len(h.d.liveOf("web-00002")) == 0 })
	}
	if n := len(h.d.live()); n != 1 {
		t.Errorf("%d live sandboxes, want revision 1's", n)
	}
	// A good deploy clears the error.
	h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 1})
	if svc, st, _ := h.m.Get("web"); svc.Revision != 2 || st.LastError != "" {
		t.Errorf("after a good deploy: revision %d, last error %q", svc.Revision, st.LastError)
	}
}

func TestFailedFirstDeploy(t *testing.T) {
	h := newHarness(t)
	_, err := h.m.Deploy(t.Context(), "web", stratus.ServiceConfig{Image: "app", Env: map[string]string{"FAKE_EXIT_AT_START": "3"}})
	if !errors.Is(err, stratus.ErrInvalid) || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("deploy: %v, want ErrInvalid saying exit status 3", err)
	}
	if _, _, err := h.m.Get("web"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("get after a failed first deploy: %v, want ErrNotFound", err)
	}
	if _, _, err := h.m.Acquire(t.Context(), "web"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("acquire after a failed first deploy: %v, want ErrNotFound", err)
	}
	if names := h.store.names(); len(names) != 0 || h.m.Exists("web") {
		t.Errorf("after a failed first deploy: stored %v, exists %v", names, h.m.Exists("web"))
	}
	eventually.True(t, waitFor, "no sandbox left", func() bool { return len(h.d.live()) == 0 })
}

func TestDeployRejects(t *testing.T) {
	h := newHarness(t)
	cases := []struct {
		name string
		cfg  stratus.ServiceConfig
		want error
		text string
	}{
		{"taken", stratus.ServiceConfig{Image: "app"}, stratus.ErrConflict, "a function has that name"},
		{"web", stratus.ServiceConfig{Image: "missing"}, stratus.ErrNotFound, "missing"},
		{"web", stratus.ServiceConfig{Image: "noentry"}, stratus.ErrInvalid, "no entrypoint"},
		{"web", stratus.ServiceConfig{Image: "app", MinScale: 3, MaxScale: 2}, stratus.ErrInvalid, "max 2"},
		{"bad/name", stratus.ServiceConfig{Image: "app"}, stratus.ErrInvalid, "name"},
	}
	for _, c := range cases {
		_, err := h.m.Deploy(t.Context(), c.name, c.cfg)
		if !errors.Is(err, c.want) || !strings.Contains(fmt.Sprint(err), c.text) {
			t.Errorf("deploy %s %+v: %v, want %v saying %q", c.name, c.cfg, err, c.want, c.text)
		}
	}
	// A command makes an image without entrypoint usable.
	h.deploy("web", stratus.ServiceConfig{Image: "noentry", Command: []string{"/bin/server"}})
	if names := h.store.names(); !slices.Equal(names, []string{"web"}) {
		t.Errorf("stored services %v, want only web", names)
	}
	if started := h.d.started(); len(started) != 1 || !slices.Equal(h.d.box(started[0]).argv, []string{"/bin/server"}) {
		t.Errorf("started %v", started)
	}
}

func TestRestartAfterExit(t *testing.T) {
	h := newHarness(t)
	h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 1, HealthPath: "/healthz"})
	first := h.status("web").Replicas[0].ID
	h.d.crash(t, first, 3)
	eventually.True(t, waitFor, "the replica restarted and ready", func() bool {
		st := h.status("web")
		return st.Restarts == 1 && st.Ready == 1 && len(st.Replicas) == 1 && st.Replicas[0].ID != first
	})
	st := h.status("web")
	if !strings.Contains(st.LastError, "exited while serving: exit status 3") || st.State != StateReady {
		t.Errorf("after the exit: state %s, last error %q", st.State, st.LastError)
	}
	if _, id := h.hello("web"); id != st.Replicas[0].ID {
		t.Errorf("GET / answered by %s, want the new sandbox %s", id, st.Replicas[0].ID)
	}
	eventually.True(t, waitFor, "the exit in the service's logs", func() bool { return h.logs.has("web", "platform", "exit status 3") })
	if n := len(h.d.live()); n != 1 {
		t.Errorf("%d live sandboxes after a restart, want 1", n)
	}
}

func TestLivenessAndCrashLoop(t *testing.T) {
	// Runs are short (unhealthy 300ms after start, three failed probes)
	// and BackoffMax is long, so restarts are not reset as stable runs.
	h := newHarness(t, func(c *Config) { c.BackoffMax = 3 * time.Second })
	h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 1, HealthPath: "/healthz",
		Env: map[string]string{"FAKE_UNHEALTHY_AFTER_MS": "300"}})
	eventually.True(t, waitFor, "a restart by the liveness probe", func() bool {
		st := h.status("web")
		return st.Restarts >= 1 && strings.Contains(st.LastError, "liveness probe failed 3 times: GET /healthz: status 500")
	})
	eventually.True(t, waitFor, "CrashLoopBackOff", func() bool { return h.status("web").State == StateCrashLoop })
	if st := h.status("web"); st.Restarts < crashLoopRestarts {
		t.Errorf("crash loop after %d restarts, want at least %d", st.Restarts, crashLoopRestarts)
	}
	if n := len(h.d.live()); n > 1 {
		t.Errorf("%d live sandboxes, want at most 1", n)
	}
}

func TestScaleToZeroAndBack(t *testing.T) {
	h := newHarness(t)
	h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 0})
	if st := h.status("web"); st.Ready != 1 {
		t.Errorf("after deploy with min 0: %+v", st)
	}
	eventually.True(t, waitFor, "scaled to zero", func() bool {
		st := h.status("web")
		return st.State == StateScaledToZero && st.Live == 0 && st.Ready == 0 && st.Desired == 0
	})
	eventually.True(t, waitFor, "no sandbox left at zero", func() bool { return len(h.d.live()) == 0 })

	// A request waits while a replica starts.
	rev, _ := h.hello("web")
	if rev != "web-00001" {
		t.Errorf("request from zero answered by %s", rev)
	}
	if st := h.status("web"); st.Ready != 1 || st.State != StateReady {
		t.Errorf("after a request from zero: %+v", st)
	}
	if n := len(h.d.started()); n != 2 {
		t.Errorf("%d sandboxes started, want 2", n)
	}
}

func TestRemove(t *testing.T) {
	h := newHarness(t)
	h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 1, MaxScale: 1, Concurrency: 1})
	_, release := h.acquire("web")
	defer release()
	waiting := h.acquireAsync(t.Context(), "web")
	eventually.True(t, waitFor, "a request waiting", func() bool { return h.status("web").Waiting == 1 })

	if err := h.m.Remove(t.Context(), "web"); err != nil {
		t.Fatal(err)
	}
	if a := receive(t, waiting); !errors.Is(a.err, stratus.ErrNotFound) {
		t.Errorf("waiting acquire after remove: %v, want ErrNotFound", a.err)
	}
	if _, _, err := h.m.Get("web"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("get after remove: %v", err)
	}
	if _, _, err := h.m.Acquire(t.Context(), "web"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("acquire after remove: %v", err)
	}
	if names := h.store.names(); len(names) != 0 {
		t.Errorf("stored services after remove: %v", names)
	}
	// The replica finishes the request it holds, then stops.
	if n := len(h.d.live()); n != 1 {
		t.Errorf("%d live sandboxes while a request is in flight, want 1", n)
	}
	release()
	eventually.True(t, waitFor, "the replica stopped", func() bool { return len(h.d.live()) == 0 })
	if err := h.m.Remove(t.Context(), "web"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("second remove: %v, want ErrNotFound", err)
	}
}

func TestPreparedSandboxes(t *testing.T) {
	h := newHarnessWith(t, sandbox.Capabilities{Prepare: true})
	h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 1, MaxScale: 1})
	eventually.True(t, waitFor, "a prepared sandbox", func() bool { return h.prepared("web") != "" })
	pid := h.prepared("web")
	if idle := h.d.idlePrepared(); !slices.Equal(idle, []string{pid}) {
		t.Errorf("prepared but not started: %v, want [%s]", idle, pid)
	}

	// The restart starts the prepared sandbox.
	first := h.status("web").Replicas[0].ID
	h.d.crash(t, first, 1)
	eventually.True(t, waitFor, "the replica restarted from the prepared sandbox", func() bool {
		st := h.status("web")
		return st.Ready == 1 && st.Replicas[0].ID == pid
	})
	if started := h.d.started(); !slices.Equal(started, []string{first, pid}) {
		t.Errorf("Start called with %v, want [%s %s]", started, first, pid)
	}
	if _, id := h.hello("web"); id != pid {
		t.Errorf("GET / answered by %s, want %s", id, pid)
	}
	// Another is prepared for the next start: one at a time.
	eventually.True(t, waitFor, "a new prepared sandbox", func() bool { p := h.prepared("web"); return p != "" && p != pid })
	if idle := h.d.idlePrepared(); len(idle) != 1 {
		t.Errorf("prepared but not started: %v, want one", idle)
	}

	// Remove stops the replica and the prepared sandbox.
	if err := h.m.Remove(t.Context(), "web"); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, waitFor, "no sandbox left after remove", func() bool { return len(h.d.live()) == 0 })

	// So does the end of Run.
	h.deploy("api", stratus.ServiceConfig{Image: "app", MinScale: 1})
	eventually.True(t, waitFor, "a prepared sandbox", func() bool { return h.prepared("api") != "" })
	h.stop()
	if live := h.d.live(); len(live) != 0 {
		t.Errorf("after Run returned: %v live", live)
	}
}

func TestLoad(t *testing.T) {
	store := newFakeStore()
	for _, rev := range []*stratus.Revision{
		{Service: "web", Number: 3, Digest: "sha256:app", Config: stratus.ServiceConfig{Image: "app", MinScale: 1, MaxScale: 1, Port: 8080}},
		{Service: "gone", Number: 1, Digest: "missing", Config: stratus.ServiceConfig{Image: "old", MinScale: 1, MaxScale: 1, Port: 8080}},
	} {
		if _, err := store.PutRevision(context.Background(), rev); err != nil {
			t.Fatal(err)
		}
	}
	h := newHarness(t, func(c *Config) { c.Store = store })
	if err := h.m.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, waitFor, "the stored service ready", func() bool { return h.status("web").Ready == 1 })
	if rev, _ := h.hello("web"); rev != "web-00003" {
		t.Errorf("GET / answered by %s, want web-00003", rev)
	}
	// A service whose image is gone is loaded, with no replicas.
	if _, _, err := h.m.Acquire(t.Context(), "gone"); !errors.Is(err, stratus.ErrUnavailable) {
		t.Errorf("acquire of a service without image: %v, want ErrUnavailable", err)
	}
	if st := h.status("gone"); st.Live != 0 || !strings.Contains(st.LastError, "image old") {
		t.Errorf("service without image: %+v", st)
	}
	// The next deploy follows the stored revisions.
	if svc := h.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 1}); svc.Revision != 4 {
		t.Errorf("deploy after load made revision %d, want 4", svc.Revision)
	}
}
