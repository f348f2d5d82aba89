package sandboxtest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
)

// testEndInit: EndInit of a sandbox with an init quota leaves it running,
// and is idempotent: again, for an unknown or an ended sandbox it returns
// nil. (What it does to the CPU quota is the driver's to test.)
func testEndInit(t *testing.T, h *harness) {
	if err := h.d.EndInit(h.ctx, "nobody"); err != nil {
		t.Errorf("EndInit of an unknown sandbox: %v, want nil", err)
	}
	spec := h.spec("init", `echo ready; exec sleep 1000`)
	spec.InitCPU = 1
	var stdout Buffer
	spec.Stdout = &stdout
	h.start(h.d, spec)
	stdout.WaitFor(t, "ready\n")
	for i := range 2 {
		if err := h.d.EndInit(h.ctx, "init"); err != nil {
			t.Errorf("EndInit #%d: %v, want nil", i+1, err)
		}
	}
	if ids := h.list(h.d); !slices.Contains(ids, "init") {
		t.Errorf("List after EndInit = %v, want it to hold init", ids)
	}
	if _, err := h.d.Stats(h.ctx, "init"); err != nil {
		t.Errorf("Stats after EndInit: %v", err)
	}
	h.stop(h.d, "init", 0)
	if e := h.wait(h.d, "init"); e.Signal == "" {
		t.Errorf("stopped sandbox: Exit = %+v, want a signal", e)
	}
	if err := h.d.EndInit(h.ctx, "init"); err != nil {
		t.Errorf("EndInit of an ended sandbox: %v, want nil", err)
	}
}

// testPrepareStart: a prepared sandbox runs nothing of its program until
// Start, then runs it as Start would.
func testPrepareStart(t *testing.T, h *harness) {
	stdout := new(Buffer)
	spec := h.spec("prepared", "echo started; exit 4")
	spec.Stdout = stdout
	if err := h.d.Prepare(h.ctx, spec); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	t.Cleanup(func() { _ = h.d.Stop(context.Background(), "prepared", 0) })
	if h.d.Capabilities().Prepare {
		if ids := h.list(h.d); !slices.Contains(ids, "prepared") {
			t.Errorf("List after Prepare = %v, want it to hold the prepared sandbox", ids)
		}
		if err := h.d.SyncOutput(h.ctx, "prepared"); err != nil {
			t.Errorf("SyncOutput of a prepared sandbox: %v", err)
		}
		if got := stdout.String(); got != "" {
			t.Fatalf("output before Start: %q", got)
		}
	}
	h.start(h.d, spec)
	if e := h.wait(h.d, "prepared"); e.Code != 4 {
		t.Errorf("Exit = %+v, want code 4", e)
	}
	if got := stdout.String(); got != "started\n" {
		t.Errorf("stdout = %q", got)
	}
	if err := h.d.Start(h.ctx, spec); err == nil {
		// Started again under the same ID: a new sandbox, which is fine
		// once the first has ended; stop it.
		_ = h.d.Stop(h.ctx, "prepared", 0)
	}
}

// testPrepareStop: a prepared sandbox that is stopped never runs its
// program and leaves nothing.
func testPrepareStop(t *testing.T, h *harness) {
	stdout := new(Buffer)
	spec := h.spec("unused", "echo should not run")
	spec.Stdout = stdout
	if err := h.d.Prepare(h.ctx, spec); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	h.stop(h.d, "unused", time.Second)
	if h.d.Capabilities().Prepare {
		h.wait(h.d, "unused")
	}
	if got := stdout.String(); got != "" {
		t.Errorf("a stopped prepared sandbox printed %q", got)
	}
	if ids := h.list(h.d); slices.Contains(ids, "unused") {
		t.Errorf("List after Stop = %v", ids)
	}
	h.noneLeft("after Stop of a prepared sandbox")
	if h.opts.leftovers != nil {
		if left := h.opts.leftovers(h.d, "unused"); len(left) > 0 {
			t.Errorf("left after Stop of a prepared sandbox: %v", left)
		}
	}
}

// testPrepareChecks: Prepare refuses what Start refuses.
func testPrepareChecks(t *testing.T, h *harness) {
	spec := h.spec("bad", "true")
	spec.Argv = nil
	if err := h.d.Prepare(h.ctx, spec); !errors.Is(err, stratus.ErrInvalid) {
		t.Errorf("Prepare with empty argv: %v, want ErrInvalid", err)
	}
}
