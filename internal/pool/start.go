package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/runtimeapi"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// Starting, watching and stopping instances.

// startError is a platform failure of a start (building its spec, the
// driver's Start or Prepare): the caller sees ErrUnavailable, the cause
// goes to the log once, where the caller knows its request (Invoke), or
// where the start ran when no caller waited for it.
type startError struct {
	fn, instance string
	cause        error
}

func (e *startError) Error() string {
	return fmt.Sprintf("function %q: start an instance: %v (the server's log holds the cause, under the request's ID)", e.fn, stratus.ErrUnavailable)
}

// Unwrap gives the kind only: the cause's own kinds (a driver's
// ErrInvalid, an image's ErrNotFound) are not the caller's.
func (e *startError) Unwrap() error { return stratus.ErrUnavailable }

// goStartLocked runs startFor in a goroutine of the Manager's, in a slot
// the caller reserved. m.mu is held and Run has begun.
func (m *Manager) goStartLocked(p *fnPool, forQueue bool) {
	ctx, v := m.run, p.cur
	p.inFlight++
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.startFor(ctx, p, v, forQueue)
	}()
}

// startFor starts an instance of v in a slot reserved for it: for p's
// queue (forQueue, counted in p.starting; see scaleLocked), whose first
// waiter gets it or the failure of its start, or to keep p's MinInstances
// (see Reap). An instance no waiter takes is released, idle. A failed
// start gives its slot back; one no waiter learns of is logged here.
func (m *Manager) startFor(ctx context.Context, p *fnPool, v *stratus.Version, forQueue bool) {
	l, err := m.start(ctx, p, v, forQueue)
	m.mu.Lock()
	p.inFlight--
	var w *waiter
	if forQueue {
		p.starting--
		// The first waiter gets an instance of the head version, or the
		// start's failure; a surplus start has none left to tell.
		current := err == nil && !p.removed && !m.stopping && p.cur.Version == v.Version
		if current || err != nil && !errors.Is(err, errSurplus) {
			w = popWaiterLocked(p)
		}
	}
	if err != nil {
		m.freeSlotLocked(p)
	}
	if w != nil && err == nil {
		// The waiter's invocation is a cold start.
		p.coldStarts++
		switch {
		case !m.createAhead:
		case l.prepared:
			p.prepareHits++
		default:
			p.prepareMisses++
		}
	}
	m.mu.Unlock()
	switch {
	case w != nil:
		w.ch <- grant{lease: l, err: err}
	case err != nil:
		var se *startError
		if errors.As(err, &se) {
			m.log.Error("start instance", "fn", se.fn, "instance", se.instance, "err", se.cause)
		}
	default:
		if l.initErr != nil {
			m.log.Warn("instance failed its init", "fn", v.Function, "instance", l.in.ID, "err", string(l.initErr.Body))
		}
		m.release(l.in, l.initErr == nil)
	}
}

// start launches an instance and waits until its runtime asks for the first
// invocation. A start for the queue uses a prepared instance of v when
// there is one (see takePrepared); one for MinInstances does not (see
// lambdaenv.go), and has p prepare the next one once this start is done,
// whichever it used. Without one it waits for its turn to make a sandbox
// (see creation; forQueue as there). Failures of the function's own init
// come back as the lease's initErr, with a live-but-dead instance to
// release; platform failures as a *startError; ctx's end as errStopping
// (the instance, if any, is then stopped).
func (m *Manager) start(ctx context.Context, p *fnPool, v *stratus.Version, forQueue bool) (lease, error) {
	defer m.prepareAhead(p)
	from := m.cfg.Now()
	// A start for MinInstances makes its own sandbox: a prepared one's
	// AWS_LAMBDA_INITIALIZATION_TYPE is on-demand, fixed when it was made.
	initType := initProvisioned
	var in *Instance
	if forQueue {
		initType = initOnDemand
		in = m.takePrepared(p, v)
	}
	prepared := in != nil
	if prepared {
		// Only the program is left to start: the init duration counts
		// from here, not from the prepare.
		in.started = m.cfg.Now()
		cctx, cancel := context.WithTimeout(ctx, m.cfg.DriverTimeout)
		// The CPU the prepare used (the sandbox's own setup, made ahead
		// of any call) is not this invocation's: its count starts here.
		if m.cpu != nil {
			if n, err := m.cpu.CPUNanos(cctx, in.ID); err == nil {
				in.cpuNanos = n
			}
		}
		err := m.cfg.Driver.Start(cctx, in.spec)
		cancel()
		if err != nil {
			m.stopAsync(in)
			return lease{}, m.startFailed(ctx, v, in.ID, fmt.Errorf("start prepared instance of %s: %w", v.Key(), err))
		}
		in.launched = m.cfg.Now()
	} else {
		if err := m.creation(ctx, p, forQueue); err != nil {
			return lease{}, err
		}
		id := newID()
		var err error
		in, err = m.newInstance(ctx, p, v, id, initType)
		if err == nil {
			in.state = stateBusy
			in.started = m.cfg.Now()
			err = m.launch(ctx, in, m.cfg.Driver.Start)
			in.launched = m.cfg.Now()
		}
		m.created()
		if err != nil {
			return lease{}, m.startFailed(ctx, v, id, fmt.Errorf("start instance of %s: %w", v.Key(), err))
		}
	}
	in.from = from
	l, err := m.awaitInit(ctx, in)
	l.prepared = prepared
	return l, err
}

// startFailed is the error of a start that failed with err: errStopping
// once ctx has ended (the driver call was cut short), else a *startError.
func (m *Manager) startFailed(ctx context.Context, v *stratus.Version, id string, err error) error {
	if ctx.Err() != nil {
		return errStopping
	}
	return &startError{fn: v.Function, instance: id, cause: err}
}

// awaitInit waits for in's runtime to ask for its first invocation, then
// ends its init (Driver.EndInit). A runtime that reports an init error,
// exits or exceeds InitTimeout gives a lease with initErr set.
func (m *Manager) awaitInit(ctx context.Context, in *Instance) (lease, error) {
	t := time.NewTimer(m.cfg.InitTimeout)
	defer t.Stop()
	var r runtimeapi.Result
	select {
	case <-in.rapi.Ready():
		// Its runtime asks for its first invocation: the init is done,
		// and from now on the instance has its memory's share of CPU.
		in.ready = m.cfg.Now()
		ectx, cancel := context.WithTimeout(ctx, m.cfg.DriverTimeout)
		if err := m.cfg.Driver.EndInit(ectx, in.ID); err != nil {
			m.log.Warn("end instance init", "fn", in.Version.Function, "instance", in.ID, "err", err)
		}
		cancel()
		in.initEnd = m.cfg.Now()
		return lease{in: in, cold: true}, nil
	case r = <-in.rapi.InitError():
		// Lambda reports the runtime's own init error; the instance is done.
	case <-in.exited:
		// A runtime that reports its init error and exits: its own words.
		select {
		case r = <-in.rapi.InitError():
		default:
			r = runtimeapi.ErrorResult("Runtime.ExitError", exitMessage(in.exit))
		}
	case <-t.C:
		r = runtimeapi.ErrorResult("Runtime.InitTimeout", fmt.Sprintf("runtime did not ask for an invocation within %s of starting", m.cfg.InitTimeout))
	case <-ctx.Done():
		m.stopAsync(in)
		return lease{}, errStopping
	}
	in.initEnd = m.cfg.Now()
	return lease{in: in, cold: true, initErr: &r}, nil
}

// launch makes in's sandbox live with run (the driver's Start or
// Prepare), within DriverTimeout or the driver's longer StartTimeout,
// lets only that sandbox use its Runtime API and watches for its end in a
// goroutine of the Manager's. On failure in's Runtime API is closed.
func (m *Manager) launch(ctx context.Context, in *Instance, run func(context.Context, sandbox.Spec) error) error {
	cctx, cancel := context.WithTimeout(ctx, max(m.cfg.DriverTimeout, m.cfg.Driver.Capabilities().StartTimeout))
	err := run(cctx, in.spec)
	cancel()
	if err != nil {
		in.rapi.Close()
		return err
	}
	in.rapi.SetOwner(m.ownerCheck(in))
	// The watcher's Wait outlives Run's ctx, until the sandbox's stop is
	// over (see stop).
	wctx, endWait := context.WithCancel(m.life)
	in.endWait = endWait
	m.addSandbox(in)
	m.wg.Add(1)
	go m.watch(wctx, in)
	return nil
}

// ownerCheck is the check in's Runtime API makes of each new connection.
// Other instances reach this Runtime API too (on the sandboxes' network,
// or on the loopback they share with the host): it answers only
// connections of in's sandbox. The first refusal is a warning, later ones
// debug lines: a hostile function that keeps knocking cannot flood the
// log.
func (m *Manager) ownerCheck(in *Instance) func(ctx context.Context, local, remote netip.AddrPort) bool {
	drv, fn, id, d := m.cfg.Driver, in.Version.Function, in.ID, m.cfg.DriverTimeout
	var warned atomic.Bool
	return func(ctx context.Context, local, remote netip.AddrPort) bool {
		octx, cancel := context.WithTimeout(ctx, d)
		ok, err := drv.Owns(octx, id, local, remote)
		cancel()
		if ok {
			return true
		}
		level := slog.LevelWarn
		if warned.Swap(true) {
			level = slog.LevelDebug
		}
		if err != nil {
			m.log.Log(ctx, level, "runtime api: refused a connection of unknown origin", "fn", fn, "instance", id, "remote", remote, "err", err)
		} else {
			m.log.Log(ctx, level, "runtime api: refused a connection from outside the instance", "fn", fn, "instance", id, "remote", remote)
		}
		return false
	}
}

// watch waits for in's sandbox to end (or for ctx, see stop), then closes
// its output and Runtime API and has the pool forget it.
func (m *Manager) watch(ctx context.Context, in *Instance) {
	defer m.wg.Done()
	defer in.endWait()
	e, err := m.cfg.Driver.Wait(ctx, in.ID)
	if err != nil {
		if ctx.Err() != nil {
			m.log.Warn("the end of a stopped instance's sandbox was not seen; it may be left behind", "fn", in.Version.Function, "instance", in.ID)
		}
		e = sandbox.Exit{Code: -1, Signal: "unknown"}
	}
	in.stdout.Close()
	in.stderr.Close()
	in.exit = e
	close(in.exited)
	in.rapi.Close()
	m.onExit(in)
	m.removeSandbox(in)
}

// onExit forgets an instance whose sandbox ended on its own while idle or
// prepared.
func (m *Manager) onExit(in *Instance) {
	m.mu.Lock()
	p := in.pool
	switch in.state {
	case stateIdle:
		for i, x := range p.idle {
			if x == in {
				p.idle = append(p.idle[:i], p.idle[i+1:]...)
				break
			}
		}
		m.dropLocked(in)
		m.mu.Unlock()
		m.log.Info("idle instance exited", "fn", in.Version.Function, "instance", in.ID, "exit", in.exit.String())
	case statePrepared:
		m.dropPreparedLocked(p)
		m.mu.Unlock()
		m.log.Warn("prepared instance exited", "fn", in.Version.Function, "instance", in.ID, "exit", in.exit.String())
	default:
		m.mu.Unlock()
	}
}

// stopAsync stops instances in goroutines of the Manager's; nil entries
// are skipped.
func (m *Manager) stopAsync(ins ...*Instance) {
	for _, in := range ins {
		if in == nil {
			continue
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.stop(in)
		}()
	}
}

// stop stops in's sandbox: StopGrace after SIGTERM, DriverTimeout more
// for the driver. A stopped sandbox's Wait returns at once; the watcher
// gets DriverTimeout to see it, then gives up (at once if Stop failed).
func (m *Manager) stop(in *Instance) {
	in.rapi.Close()
	grace := max(m.cfg.StopGrace, 0)
	ctx, cancel := context.WithTimeout(m.life, grace+m.cfg.DriverTimeout)
	err := m.cfg.Driver.Stop(ctx, in.ID, m.cfg.StopGrace)
	cancel()
	if err != nil {
		m.log.Warn("stop instance", "fn", in.Version.Function, "instance", in.ID, "err", err)
	} else {
		t := time.NewTimer(m.cfg.DriverTimeout)
		select {
		case <-in.exited:
		case <-t.C:
		}
		t.Stop()
	}
	in.endWait()
}
