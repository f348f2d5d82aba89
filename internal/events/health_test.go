package events

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	stratus "github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
)

// smallVolume mounts a tmpfs of size (e.g. "48m") and returns its path;
// it is unmounted at the end of the test. It needs root: without it the
// test is skipped, except in CI, where it fails.
func smallVolume(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("mounting a tmpfs needs root")
		}
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount: %v: %s", err, out)
		}
	})
	return dir
}

// fill writes path until the volume is full and returns its size.
func fill(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 256<<10)
	var n int64
	for {
		w, err := f.Write(buf)
		n += int64(w)
		if err != nil {
			if !strings.Contains(err.Error(), "no space left") {
				t.Fatalf("fill: %v", err)
			}
			return n
		}
	}
}

func TestStreamsFitASmallVolume(t *testing.T) {
	dir := smallVolume(t, "64m")
	b := openTestBus(t, BusConfig{StoreDir: dir})
	defer b.Close()
	q := NewQueue(QueueConfig{Bus: b, Invoker: &fakeInvoker{}, Policy: newPolicies().lookup, Log: testLog()})
	tp := NewTopics(TopicsConfig{Bus: b, Queue: q, FunctionExists: func(string) bool { return true }, Log: testLog()})
	if err := q.Ensure(t.Context(), "f"); err != nil {
		t.Fatalf("async stream on 64 MiB: %v", err)
	}
	if err := tp.Ensure(t.Context()); err != nil {
		t.Fatalf("topic stream on 64 MiB: %v", err)
	}
	for _, name := range []string{AsyncStream, TopicStream} {
		s, err := b.JetStream().Stream(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		if mb := s.CachedInfo().Config.MaxBytes; mb <= 0 || mb > 48<<20 {
			t.Errorf("%s MaxBytes %d, want within 3/4 of the volume", name, mb)
		}
	}
}

// TestQueueRecoversFromFullDisk fills the volume under JetStream: enqueues
// fail at once with ErrNoSpace (never hang), events accepted before wait,
// and once space is freed JetStream is re-enabled without a restart, new
// events are accepted and every event runs.
func TestQueueRecoversFromFullDisk(t *testing.T) {
	dir := smallVolume(t, "48m")
	gate := make(chan struct{})
	inv := &fakeInvoker{behave: func(ctx context.Context, req stratus.Request, call int) (*stratus.Response, error) {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return &stratus.Response{Body: []byte(`"ok"`)}, nil
	}}
	h := newWatchedHarness(t, dir, inv, newPolicies("f", AsyncPolicy{MaxConcurrency: 2}), 50*time.Millisecond, 10000)

	event := `"` + strings.Repeat("x", 16<<10) + `"`
	var accepted []string
	for range 20 {
		accepted = append(accepted, h.enqueue("f", event))
	}
	fill(t, filepath.Join(dir, "filler"))

	// The first publishes meet the write error; none may hang.
	var sawNoSpace bool
	for i := range 50 {
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		id, err := h.q.Enqueue(ctx, "f", []byte(event))
		cancel()
		if took := time.Since(start); took > 3*time.Second {
			t.Fatalf("enqueue %d on a full disk took %s (err %v)", i, took, err)
		}
		if err == nil {
			accepted = append(accepted, id)
			continue
		}
		if !errors.Is(err, stratus.ErrNoSpace) {
			t.Fatalf("enqueue on a full disk: %v, want ErrNoSpace", err)
		}
		sawNoSpace = true
		break
	}
	if !sawNoSpace {
		t.Fatal("a full disk never refused an enqueue")
	}
	if err := h.bus.Health(); !errors.Is(err, stratus.ErrNoSpace) {
		t.Fatalf("health on a full disk = %v, want ErrNoSpace", err)
	}
	t.Logf("health while full: %v", h.bus.Health())

	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 10*time.Second, "the bus to be healthy again", func() bool { return h.bus.Health() == nil })
	for range 5 {
		accepted = append(accepted, h.enqueue("f", event))
	}
	close(gate)
	done := map[string]bool{}
	deadline := time.After(30 * time.Second)
	for len(done) < len(accepted) {
		select {
		case d := <-h.done:
			if d.err != nil {
				t.Errorf("event %s failed: %v", d.id, d.err)
			}
			done[d.id] = true
		case <-deadline:
			t.Fatalf("%d of %d accepted events done after space was freed", len(done), len(accepted))
		}
	}
	for _, id := range accepted {
		if !done[id] {
			t.Errorf("accepted event %s never ran", id)
		}
	}
	// The stream is usable for good: its MaxBytes still fits the volume.
	s, err := h.bus.JetStream().Stream(t.Context(), AsyncStream)
	if err != nil {
		t.Fatal(err)
	}
	if mb := s.CachedInfo().Config.MaxBytes; mb > 48<<20 {
		t.Errorf("MaxBytes %d", mb)
	}
}

// TestUnstoredAttemptIsNotAcked: when what an attempt left cannot be
// stored (BeforeAck fails), its event is not acknowledged: it runs again
// until its trace is stored, and is never lost.
func TestUnstoredAttemptIsNotAcked(t *testing.T) {
	for _, tc := range []struct {
		name   string
		behave func(ctx context.Context, req stratus.Request, call int) (*stratus.Response, error)
	}{
		{"success", nil},
		{"retry", func(ctx context.Context, req stratus.Request, call int) (*stratus.Response, error) {
			if call == 1 {
				return fnError("Boom", "first"), nil
			}
			return &stratus.Response{Body: []byte(`"ok"`)}, nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv := &fakeInvoker{behave: tc.behave}
			h := newHarness(t, "", inv, newPolicies("f", AsyncPolicy{MaxRetries: 2}))
			var fails atomic.Int64
			fails.Store(3)
			h.configure(func(c *QueueConfig) {
				c.BeforeAck = func(context.Context) error {
					if fails.Add(-1) >= 0 {
						return errors.New("database or disk is full")
					}
					return nil
				}
			})
			h.run()
			id := h.enqueue("f", `{}`)
			// OnDone runs before its attempt's BeforeAck, which the queue
			// may call a moment later (for a batch): wait for the stored
			// one rather than count OnDones.
			eventually.True(t, 20*time.Second, "an attempt whose trace is stored", func() bool { return fails.Load() < 0 })
			if n := inv.callsFor(id); n < 2 {
				t.Errorf("%d calls; an attempt whose trace was not stored must run again", n)
			}
			eventually.True(t, 10*time.Second, "the stream to be empty", func() bool {
				n, _, err := h.q.Depth(t.Context(), "f")
				return err == nil && n == 0
			})
			dones := 0
			for len(h.done) > 0 {
				if d := <-h.done; d.id != id || d.err != nil {
					t.Errorf("done %+v", d)
				}
				dones++
			}
			if dones == 0 {
				t.Error("no OnDone for the event")
			}
		})
	}
}

// TestLowVolumeRefusesAtOnce: below MinFree the bus is unhealthy with
// ErrNoSpace from the start, and enqueues and publishes fail at once.
func TestLowVolumeRefusesAtOnce(t *testing.T) {
	b := openTestBus(t, BusConfig{StoreDir: t.TempDir(), MinFree: 1 << 60})
	defer b.Close()
	err := b.Health()
	if !errors.Is(err, stratus.ErrNoSpace) || !strings.Contains(err.Error(), "below the minimum") {
		t.Fatalf("health = %v, want ErrNoSpace saying the volume is below the minimum", err)
	}
	q := NewQueue(QueueConfig{Bus: b, Invoker: &fakeInvoker{}, Policy: newPolicies("f", AsyncPolicy{}).lookup, Log: testLog()})
	start := time.Now()
	if _, err := q.Enqueue(t.Context(), "f", []byte(`{}`)); !errors.Is(err, stratus.ErrNoSpace) {
		t.Errorf("enqueue = %v, want ErrNoSpace", err)
	}
	if _, _, err := q.Depth(t.Context(), "f"); !errors.Is(err, stratus.ErrNoSpace) {
		t.Errorf("depth = %v, want ErrNoSpace", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("refusals took %s", took)
	}
}

func TestServerErrorLines(t *testing.T) {
	for _, tc := range []struct {
		msg     string
		write   bool
		noSpace bool
	}{
		{"Filestore [STRATUS_ASYNC] Critical write error: write /data/nats/jetstream/$G/streams/STRATUS_ASYNC/msgs/1.blk: no space left on device", true, true},
		{"JetStream out of space, will be DISABLED", true, true},
		{"JetStream out of File resources, will be DISABLED", true, true},
		{"File system permission denied while writing, disabling JetStream", true, false},
		{"Error processing inbound source", false, false},
	} {
		if got := isWriteError(tc.msg); got != tc.write {
			t.Errorf("isWriteError(%q) = %v", tc.msg, got)
		}
		if got := errors.Is(errorKind(tc.msg, false), stratus.ErrNoSpace); got != tc.noSpace {
			t.Errorf("errorKind(%q) no space = %v", tc.msg, got)
		}
	}
	got := hidePaths("Critical write error: write /data/nats/jetstream/$G/streams/S/msgs/1.blk: no space left on device")
	if want := "Critical write error: write .../1.blk: no space left on device"; got != want {
		t.Errorf("hidePaths = %q, want %q", got, want)
	}
}

// TestDisabledJetStreamIsReEnabled: a JetStream that nats-server disabled
// (as it does after some write errors) makes the bus unhealthy, and Run
// enables it again while the volume has room: accepted events run, new
// ones are accepted, no restart of the process.
func TestDisabledJetStreamIsReEnabled(t *testing.T) {
	inv := &fakeInvoker{}
	h := newWatchedHarness(t, t.TempDir(), inv, newPolicies("f", AsyncPolicy{}), 20*time.Millisecond, 100)
	first := h.enqueue("f", `1`)
	if d := h.waitDone(1, 10*time.Second)[0]; d.id != first {
		t.Fatalf("done %+v", d)
	}
	// Its acknowledgement is batched: wait until it is stored, or the
	// event runs again after the restart (at least once, as promised).
	eventually.True(t, 5*time.Second, "the first event acknowledged", func() bool {
		n, _, err := h.q.Depth(t.Context(), "f")
		return err == nil && n == 0
	})

	restarted := h.bus.Restarted()
	if err := h.bus.srv.ShutdownJetStream(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-restarted:
	case <-time.After(10 * time.Second):
		t.Fatalf("JetStream not re-enabled; health %v", h.bus.Health())
	}
	eventually.True(t, 5*time.Second, "the bus to be healthy", func() bool { return h.bus.Health() == nil })
	second := h.enqueue("f", `2`)
	if d := h.waitDone(1, 10*time.Second)[0]; d.id != second {
		t.Fatalf("done %+v", d)
	}
}

// newWatchedHarness is a running harness on dir whose bus runs (Bus.Run),
// checking its health every interval; done holds up to doneBuf records.
func newWatchedHarness(t *testing.T, dir string, inv *fakeInvoker, pol *policies, interval time.Duration, doneBuf int) *harness {
	h := &harness{t: t, dir: dir, inv: inv, pol: pol, sink: &statusSink{}, done: make(chan doneRec, doneBuf)}
	h.bus = openTestBus(t, BusConfig{StoreDir: dir, HealthInterval: interval})
	h.q = h.newQueue(h.bus)
	t.Cleanup(h.close)
	busCtx, stopBus := context.WithCancel(context.Background())
	busDone := make(chan error, 1)
	go func() { busDone <- h.bus.Run(busCtx) }()
	t.Cleanup(func() { stopBus(); <-busDone })
	h.run()
	return h
}
