package services

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/sandbox"
)

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
