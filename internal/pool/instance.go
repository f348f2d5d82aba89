package pool

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/logs"
	"github.com/stratus-run/stratus/internal/runtimeapi"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// instance states, guarded by Manager.mu.
const (
	stateStarting = iota
	statePrepared // its sandbox is prepared, its program not started
	stateIdle
	stateBusy
	stateDead
)

// Instance is one running copy of a function version: a sandbox and the
// Runtime API it talks to.
type Instance struct {
	ID      string
	Version *stratus.Version
	pool    *fnPool

	rapi    *runtimeapi.Server
	started time.Time // when its sandbox's program was started

	// spec is what its sandbox runs; a prepared instance starts with it.
	spec sandbox.Spec
	// stdout and stderr are spec's output writers; the exit watcher
	// closes them.
	stdout, stderr *sandbox.LineWriter
	// out bounds what is stored of both; nil allows everything.
	out *logs.Meter

	// Guarded by Manager.mu.
	state    int
	lastUsed time.Time

	// Peak memory, as last read; used by the invocation in flight only.
	statsAt  time.Time
	maxMemMB int
	// cpuNanos is its sandbox's CPU time as last read (0 before its
	// first invocation's end); used by the invocation in flight only.
	cpuNanos int64

	// Its start, for the spans of its cold start (Config.Now times, set
	// by the start before it hands the instance over): from when the
	// start began, started (above) to launched around the driver's Start,
	// ready when its runtime first asked for an event (zero if it never
	// did), initEnd when the start was over.
	from, launched, ready, initEnd time.Time

	exited chan struct{} // closed when the sandbox has ended
	exit   sandbox.Exit  // valid after exited is closed
	// endWait ends the exit watcher's Wait (see Manager.stop); set when
	// the sandbox is launched.
	endWait context.CancelFunc

	// reqID is the request ID output lines are tied to: the invocation in
	// flight, else the last one.
	reqID atomic.Pointer[string]
}

// exitMessage is how Lambda reports a runtime that ended.
func exitMessage(e sandbox.Exit) string {
	return "Runtime exited with error: " + e.String()
}

// invoke hands inv to the runtime and waits for its answer, the timeout or
// the instance's end. ctx is the caller's; hctx is ctx ending at the
// timeout (made before invoke's own timer). healthy is false when the
// instance must not be reused. err is set only when the invocation never
// reached the runtime because ctx ended (the caller left); the instance
// is then still healthy.
func (in *Instance) invoke(ctx, hctx context.Context, inv *runtimeapi.Invocation, timeout time.Duration) (res runtimeapi.Result, outcome string, healthy bool, err error) {
	in.reqID.Store(&inv.RequestID)
	t := time.NewTimer(timeout)
	defer t.Stop()
	ch, herr := in.rapi.Invoke(hctx, inv)
	if herr != nil {
		select {
		case <-in.exited:
			return runtimeapi.ErrorResult("Runtime.ExitError", exitMessage(in.exit)), stratus.OutcomeCrash, false, nil
		default:
		}
		if ctx.Err() != nil {
			return runtimeapi.Result{}, "", true, ctx.Err()
		}
		if hctx.Err() != nil {
			return in.timedOut(inv, timeout), stratus.OutcomeTimeout, false, nil
		}
		return runtimeapi.ErrorResult("Runtime.Unavailable", fmt.Sprintf("hand invocation to runtime: %v", herr)), stratus.OutcomeCrash, false, nil
	}
	select {
	case res = <-ch:
		if res.ErrorType != "" {
			return res, stratus.OutcomeError, true, nil
		}
		return res, stratus.OutcomeSuccess, true, nil
	case <-in.exited:
		// The runtime may have answered just before it ended.
		select {
		case res = <-ch:
			return res, outcomeOf(res), false, nil
		default:
		}
		return runtimeapi.ErrorResult("Runtime.ExitError", exitMessage(in.exit)), stratus.OutcomeCrash, false, nil
	case <-hctx.Done():
		if ctx.Err() == nil {
			return in.timedOut(inv, timeout), stratus.OutcomeTimeout, false, nil
		}
		// The caller left; the invocation runs on, as on Lambda, and its
		// outcome is still recorded.
		select {
		case res = <-ch:
			return res, outcomeOf(res), true, nil
		case <-in.exited:
			return runtimeapi.ErrorResult("Runtime.ExitError", exitMessage(in.exit)), stratus.OutcomeCrash, false, nil
		case <-t.C:
			return in.timedOut(inv, timeout), stratus.OutcomeTimeout, false, nil
		}
	}
}

func (in *Instance) timedOut(inv *runtimeapi.Invocation, timeout time.Duration) runtimeapi.Result {
	msg := fmt.Sprintf("%s %s Task timed out after %.2f seconds", time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), inv.RequestID, timeout.Seconds())
	return runtimeapi.ErrorResult("Sandbox.Timedout", msg)
}

func outcomeOf(r runtimeapi.Result) string {
	if r.ErrorType != "" {
		return stratus.OutcomeError
	}
	return stratus.OutcomeSuccess
}
