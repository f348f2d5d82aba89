package services

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sandbox"
)

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
	return startHarness(t, caps, tune...)
}

// startHarness is newHarnessWith without t.Parallel: for a second
// harness in one test.
func startHarness(t *testing.T, caps sandbox.Capabilities, tune ...func(*Config)) *harness {
	h := &harness{t: t, d: newFakeDriver(caps), store: newFakeStore(), logs: &fakeLogs{}}
	cfg := Config{
		Store: h.store, Images: fakeImages{}, Driver: h.d, Logs: h.logs,
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
	h.store, _ = cfg.Store.(*fakeStore) // nil over a real store
	h.m = New(cfg)
	if err := h.m.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
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
	if !ok || s.sets[s.latest.Number].prepared == nil {
		return ""
	}
	return s.sets[s.latest.Number].prepared.spec.ID
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
