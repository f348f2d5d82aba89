package sandboxtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/sandbox"
)

func testStopIdempotent(t *testing.T, h *harness) {
	h.stop(h.d, "never-started", 0)
	h.stop(h.d, "never-started", time.Second)

	h.run("live", "exec sleep 1000")
	h.stop(h.d, "live", 0)
	h.noneLeft("after Stop")
	h.stop(h.d, "live", 0)
	h.stop(h.d, "live", time.Second)
	if e := h.wait(h.d, "live"); e.Signal == "" {
		t.Errorf("stopped sandbox: Exit = %+v, want a signal", e)
	}
	// Stop after Wait: the sandbox is gone, and Stop still succeeds.
	h.stop(h.d, "live", 0)
}

func testStopAfterExit(t *testing.T, h *harness) {
	h.run("quick", "exit 5")
	// Wait until the driver no longer lists it, without calling Wait.
	eventually.True(t, 10*time.Second, "quick to leave List", func() bool {
		return !slices.Contains(h.list(h.d), "quick")
	})
	h.stop(h.d, "quick", time.Second)
	h.stop(h.d, "quick", 0)
	// Stop of an ended sandbox does not lose its exit status.
	if e := h.wait(h.d, "quick"); e != (sandbox.Exit{Code: 5}) {
		t.Errorf("Exit after Stop = %+v, want code 5", e)
	}
}

func testStopGraceTerm(t *testing.T, h *harness) {
	stdout, _ := h.run("term", `echo ready; exec sleep 1000`)
	stdout.WaitFor(t, "ready\n")
	const grace = 20 * time.Second
	if took := h.stop(h.d, "term", grace); took >= grace/2 {
		t.Errorf("Stop of a program that ends on SIGTERM took %s (grace %s)", took, grace)
	}
	h.noneLeft("after Stop")
	if e := h.wait(h.d, "term"); e != (sandbox.Exit{Code: -1, Signal: "terminated"}) {
		t.Errorf("Exit = %+v, want signal terminated", e)
	}
}

func testStopGraceKill(t *testing.T, h *harness) {
	// The shell and the sleep it forks both ignore SIGTERM (an ignored
	// signal stays ignored across fork and exec).
	stdout, _ := h.run("stubborn", `trap '' TERM; sleep 1000 & echo "ready"; while :; do wait; done`)
	stdout.WaitFor(t, "ready\n")
	const grace = 300 * time.Millisecond
	took := h.stop(h.d, "stubborn", grace)
	if took < grace {
		t.Errorf("Stop returned after %s, before the grace of %s", took, grace)
	}
	if took > grace+10*time.Second {
		t.Errorf("Stop took %s with a grace of %s", took, grace)
	}
	h.noneLeft("after Stop of a program ignoring SIGTERM")
	if e := h.wait(h.d, "stubborn"); e != (sandbox.Exit{Code: -1, Signal: "killed"}) {
		t.Errorf("Exit = %+v, want signal killed", e)
	}
}

func testStopTree(t *testing.T, h *harness) {
	for _, grace := range []time.Duration{0, 5 * time.Second} {
		id := fmt.Sprintf("tree-%d", grace.Milliseconds())
		// A child and a grandchild the sandbox forked.
		stdout, _ := h.run(id, `sh -c 'sleep 1000 & echo "grandchild $!"; wait' & sleep 1000 & echo "child $!"; wait`)
		stdout.WaitFor(t, "grandchild ")
		stdout.WaitFor(t, "child ")
		// A process in the middle of execve shows no environment for a
		// moment, so count until all four are seen.
		eventually.True(t, 10*time.Second, "4 processes in the sandbox (sh, sh, sleep, sleep)", func() bool {
			return len(Processes(h.marker)) >= 4
		})
		h.stop(h.d, id, grace)
		h.noneLeft(fmt.Sprintf("after Stop with grace %s", grace))
		h.wait(h.d, id)
	}
}

func testExitEndsTree(t *testing.T, h *harness) {
	// The main process exits while a child it forked still holds the
	// output: the sandbox has ended, so Wait returns and nothing is left.
	stdout, _ := h.run("orphan", `sleep 1000 & echo "child $!"; exit 9`)
	if e := h.wait(h.d, "orphan"); e.Code != 9 {
		t.Errorf("Exit = %+v, want code 9", e)
	}
	if !strings.Contains(stdout.String(), "child ") {
		t.Errorf("stdout = %q, want the child's pid", stdout.String())
	}
	h.noneLeft("after Wait of a sandbox whose main process exited")
}

func testWaitUnknown(t *testing.T, h *harness) {
	if _, err := h.d.Wait(h.ctx, "nobody"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("Wait(unknown): err = %v, want ErrNotFound", err)
	}
}

func testWaitContext(t *testing.T, h *harness) {
	h.run("long", "exec sleep 1000")
	ctx, cancel := context.WithCancel(h.ctx)
	cancel()
	if _, err := h.d.Wait(ctx, "long"); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait with a cancelled context: err = %v, want context.Canceled", err)
	}
	// The sandbox still runs and can be waited for.
	if ids := h.list(h.d); !slices.Contains(ids, "long") {
		t.Errorf("List = %v, want it to hold long", ids)
	}
	h.stop(h.d, "long", 0)
	h.wait(h.d, "long")
}

func testList(t *testing.T, h *harness) {
	if ids := h.list(h.d); len(ids) != 0 {
		t.Fatalf("List of a new driver = %v, want none", ids)
	}
	h.run("a", "exec sleep 1000")
	h.run("b", "exec sleep 1000")
	h.run("c", "exit 0")
	h.wait(h.d, "c")
	if got, want := h.list(h.d), []string{"a", "b"}; !slices.Equal(got, want) {
		t.Fatalf("List = %v, want %v", got, want)
	}
	h.stop(h.d, "a", 0)
	if got, want := h.list(h.d), []string{"b"}; !slices.Equal(got, want) {
		t.Fatalf("List after Stop(a) = %v, want %v", got, want)
	}
	h.wait(h.d, "a")
	if got, want := h.list(h.d), []string{"b"}; !slices.Equal(got, want) {
		t.Fatalf("List after Wait(a) = %v, want %v", got, want)
	}
}

func testRestart(t *testing.T, h *harness) {
	old := h.d
	tree, _ := h.run("tree", `sleep 1000 & echo "child $!"; wait`)
	h.run("plain", "exec sleep 1000")
	stubborn, _ := h.run("stubborn", `trap '' TERM; echo ready; while :; do sleep 1; done`)
	h.run("ended", "exit 0")
	h.wait(old, "ended")
	tree.WaitFor(t, "child ")
	stubborn.WaitFor(t, "ready\n")

	// A new server process builds a new driver on the same state dir.
	d := h.newDriver(t, h.stateDir)
	if got, want := h.list(d), []string{"plain", "stubborn", "tree"}; !slices.Equal(got, want) {
		t.Fatalf("List of the new driver = %v, want %v", got, want)
	}
	h.stop(d, "tree", 0)
	h.stop(d, "plain", 5*time.Second)
	took := h.stop(d, "stubborn", 300*time.Millisecond)
	if took < 300*time.Millisecond {
		t.Errorf("Stop of a program ignoring SIGTERM returned after %s, before its grace", took)
	}
	h.noneLeft("after the new driver stopped what the old one left")
	for _, id := range []string{"tree", "plain", "stubborn"} {
		h.nothingLeft(d, id)
	}
	if ids := h.list(d); len(ids) != 0 {
		t.Errorf("List of the new driver after Stop = %v, want none", ids)
	}
	// Stop stays idempotent for recovered IDs.
	h.stop(d, "tree", 0)
	// The old driver sees its sandboxes end.
	for _, id := range []string{"tree", "plain", "stubborn"} {
		h.wait(old, id)
	}
	if ids := h.list(old); len(ids) != 0 {
		t.Errorf("List of the old driver = %v, want none", ids)
	}
}
