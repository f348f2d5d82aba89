package services

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/logs"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// run is a replica's goroutine: it starts the sandbox, waits for it to be
// ready, probes it while it serves, and restarts it with backoff when it
// exits or stops answering, until the replica is asked to stop. The
// first failure of a replica of a revision still being deployed fails
// the deploy, which then stops it.
func (m *Manager) run(r *replica) {
	defer m.wg.Done()
	defer m.forget(r)
	for {
		reason, stopped := m.runOnce(r)
		if stopped {
			return
		}
		m.mu.Lock()
		r.restarts++
		r.set.svc.restarts++
		r.lastErr = reason
		if r.state != stateStopping {
			r.state = stateBackoff
		}
		stableRun := !r.readyAt.IsZero() && m.cfg.Now().Sub(r.readyAt) > m.cfg.BackoffMax
		if stableRun {
			r.restarts = 1
		}
		n := r.restarts
		m.notifyLocked()
		m.mu.Unlock()
		m.platformLog(r, fmt.Sprintf("replica %s: %s", r.set.rev.Name(), reason))
		backoff := min(m.cfg.BackoffBase<<min(n-1, 16), m.cfg.BackoffMax)
		t := time.NewTimer(backoff)
		select {
		case <-r.stop:
			t.Stop()
			return
		case <-t.C:
		}
		m.mu.Lock()
		if r.state == stateBackoff {
			r.state = stateStarting
		}
		m.mu.Unlock()
	}
}

// forget removes a replica that ended from its revision.
func (m *Manager) forget(r *replica) {
	m.mu.Lock()
	defer m.mu.Unlock()
	set := r.set
	set.replicas = slices.DeleteFunc(set.replicas, func(x *replica) bool { return x == r })
	m.total--
	m.notifyLocked()
	// A replica that stopped for good may leave room for another service.
	if !set.retired && !m.stopping {
		m.reconcileLocked(set)
	}
}

// runOnce runs one sandbox of r. It returns why it ended, or stopped
// when r was asked to stop (the sandbox then drained and stopped).
func (m *Manager) runOnce(r *replica) (reason string, stopped bool) {
	if r.stopRequested() {
		return "", true
	}
	set := r.set
	c := set.rev.Config
	m.mu.Lock()
	p := set.prepared
	set.prepared = nil
	m.mu.Unlock()
	if p == nil {
		var err error
		if p, err = m.newSandbox(set); err != nil {
			return err.Error(), false
		}
	}
	id, port := p.spec.ID, p.port
	m.mu.Lock()
	r.id = id
	m.mu.Unlock()
	sctx, cancel := m.callCtx(m.cfg.ReadyTimeout)
	err := m.cfg.Driver.Start(sctx, p.spec)
	cancel()
	// The next replica of this revision, or this one's restart, starts
	// from a prepared sandbox too.
	m.prepareAhead(set)
	if err != nil {
		return "start: " + err.Error(), false
	}
	m.mu.Lock()
	m.beginRunLocked(r, id, m.cfg.Now())
	m.mu.Unlock()
	// Runs last, once the sandbox's end has been seen.
	defer m.endRun(r, id)
	// The Wait lasts as long as the sandbox, until stopSandbox gives up
	// on it (see stopSandbox), or until the lifetime ends.
	wctx, endWait := context.WithCancel(m.life)
	exited := make(chan sandbox.Exit, 1)
	var waited sync.WaitGroup
	waited.Add(1)
	go func() {
		defer waited.Done()
		e, err := m.cfg.Driver.Wait(wctx, id)
		if err != nil {
			if wctx.Err() != nil {
				m.log.Warn("the end of a stopped replica's sandbox was not seen; it may be left behind", "service", set.svc.name, "replica", id)
			}
			e = sandbox.Exit{Code: -1, Signal: "unknown"}
		}
		if e.OOM {
			m.mu.Lock()
			set.svc.oomKills++
			m.mu.Unlock()
		}
		exited <- e
	}()
	defer waited.Wait()
	defer endWait()
	stopSandbox := func() sandbox.Exit {
		m.sampleCPU(r, id) // its last reading, while it still runs
		giveUp := m.stopSandbox(set, id, m.cfg.StopGrace, endWait)
		defer giveUp.Stop()
		return <-exited
	}

	actx, cancel := m.callCtx(m.cfg.DriverTimeout)
	addr, err := m.cfg.Driver.Addr(actx, id)
	cancel()
	if err != nil {
		e := stopSandbox()
		if errors.Is(err, stratus.ErrNotFound) {
			// It ended already (a program that exits at once): say how.
			return exitReason(e, c.MemoryMB, "before it was ready"), false
		}
		return "address: " + err.Error(), false
	}
	target := Target{URL: &url.URL{Scheme: "http", Host: hostPort(addr, port)}, Transport: newTransport(c.H2C), Timeout: requestTimeout(c)}
	defer target.Transport.(*http.Transport).CloseIdleConnections()
	probe := newProber(addr, port, c.HealthPath, c.H2C)
	defer probe.close()
	// Liveness: the liveness path when set, else the readiness probe.
	live, livePath := probe, c.HealthPath
	if c.LivenessPath != "" {
		live, livePath = newProber(addr, port, c.LivenessPath, c.H2C), c.LivenessPath
		defer live.close()
	}

	// Readiness: probe often at first, so that a cold start is not
	// lengthened by the probe's period.
	deadline := time.NewTimer(m.cfg.ReadyTimeout)
	defer deadline.Stop()
	wait := 500 * time.Microsecond
	var lastProbe error
	for {
		// A stop comes before another probe: see Manager.stopBound.
		if r.stopRequested() {
			stopSandbox()
			return "", true
		}
		if lastProbe = probe.check(); lastProbe == nil {
			break
		}
		t := time.NewTimer(wait)
		select {
		case e := <-exited:
			t.Stop()
			return exitReason(e, c.MemoryMB, "before it was ready"), false
		case <-r.stop:
			t.Stop()
			stopSandbox()
			return "", true
		case <-deadline.C:
			t.Stop()
			stopSandbox()
			return fmt.Sprintf("not ready within %s: %s", m.cfg.ReadyTimeout, describeProbe(c.HealthPath, port, lastProbe)), false
		case <-t.C:
		}
		wait = min(wait*2, 50*time.Millisecond)
	}

	m.mu.Lock()
	r.target = target
	if r.state != stateStopping { // a scale-down may have picked it meanwhile
		r.state = stateReady
	}
	r.readyAt = m.cfg.Now()
	if !set.retired {
		m.grantLocked(set.svc)
	}
	m.notifyLocked()
	m.mu.Unlock()

	tick := time.NewTicker(m.cfg.ProbeInterval)
	defer tick.Stop()
	failures := 0
	for {
		select {
		case e := <-exited:
			m.unready(r)
			return exitReason(e, c.MemoryMB, "while serving"), false
		case <-r.stop:
			m.drain(r, exited)
			stopSandbox()
			return "", true
		case <-tick.C:
			if r.stopRequested() {
				continue // the stop comes before another probe
			}
			if err := live.check(); err != nil {
				failures++
				if failures < livenessFailures {
					continue
				}
				m.unready(r)
				m.drainFor(r, exited, m.cfg.StopGrace)
				stopSandbox()
				return fmt.Sprintf("liveness probe failed %d times: %s", failures, describeProbe(livePath, port, err)), false
			}
			failures = 0
		}
	}
}

// sandboxSpec is a replica's sandbox before it starts.
type sandboxSpec struct {
	spec sandbox.Spec
	port int // the port it listens on, in its own network or the host's
}

// newSandbox builds the spec of a new replica of set.
func (m *Manager) newSandbox(set *revSet) (*sandboxSpec, error) {
	c := set.rev.Config
	id := set.svc.name + "-" + strconv.Itoa(set.rev.Number) + "-" + newID()
	port := c.Port
	if !m.cfg.Driver.Capabilities().Isolated {
		p, err := freePort()
		if err != nil {
			return nil, fmt.Errorf("pick a port: %w", err)
		}
		port = p
	}
	spec := sandbox.Spec{
		ID:       id,
		Argv:     argv(c, set.img),
		Env:      env(set, port),
		Dir:      set.img.WorkingDir,
		RootFS:   set.img.RootFS,
		Hostname: replicaHostname(set.svc.name, id),
		User:     set.img.User,
		MemoryMB: c.MemoryMB,
		CPU:      c.CPU,
		Stdout:   m.lineWriter(set, id, "stdout"),
		Stderr:   m.lineWriter(set, id, "stderr"),
	}
	if spec.Dir == "" {
		spec.Dir = "/"
	}
	// Its CPU share is its request, else its limit, as a pod's is.
	spec.CPURequest = cmp.Or(c.CPURequest, c.CPU)
	spec.Env = hostnameEnv(spec.Env, spec.Hostname, m.cfg.Driver.Capabilities())
	return &sandboxSpec{spec: spec, port: port}, nil
}

// prepareAhead prepares a sandbox for set's next replica in the
// background, when the driver can and set has none: scaling up, scaling
// from zero and restarts then skip the slow part of a container start.
// A serving revision keeps one prepared sandbox; that is its idle cost.
func (m *Manager) prepareAhead(set *revSet) {
	if m.cfg.Revisions != nil || !m.cfg.Driver.Capabilities().Prepare {
		return
	}
	m.mu.Lock()
	if m.life == nil || m.stopping || set.retired || set.img == nil || set.prepared != nil || set.preparing {
		m.mu.Unlock()
		return
	}
	set.preparing = true
	m.wg.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.wg.Done()
		p, err := m.newSandbox(set)
		if err == nil {
			ctx, cancel := m.callCtx(m.cfg.ReadyTimeout)
			err = m.cfg.Driver.Prepare(ctx, p.spec)
			cancel()
		}
		m.mu.Lock()
		set.preparing = false
		stopping := m.stopping
		keep := err == nil && !stopping && !set.retired && set.prepared == nil
		if keep {
			set.prepared = p
		}
		m.mu.Unlock()
		switch {
		case err != nil:
			// Once Run's ctx has ended, a Prepare cut short is no news.
			if !stopping {
				m.log.Warn("prepare a replica", "service", set.svc.name, "revision", set.rev.Name(), "err", err)
			}
		case !keep:
			m.stopPrepared(set, p)
		}
	}()
}

// stopPrepared stops a prepared sandbox of set that will not be used,
// and reaps it.
func (m *Manager) stopPrepared(set *revSet, p *sandboxSpec) {
	wctx, endWait := context.WithCancel(m.life)
	defer endWait()
	giveUp := m.stopSandbox(set, p.spec.ID, 0, endWait)
	defer giveUp.Stop()
	_, _ = m.cfg.Driver.Wait(wctx, p.spec.ID)
}

// stopSandbox asks the driver to stop sandbox id of set, giving it grace,
// and gives up on the driver after grace and DriverTimeout. It then
// bounds the sandbox's Wait: endWait, which ends the Wait's context, runs
// DriverTimeout after Stop returned, or at once if Stop failed (then the
// Wait may never see an end). The caller stops the returned timer once
// its Wait has returned.
func (m *Manager) stopSandbox(set *revSet, id string, grace time.Duration, endWait func()) *time.Timer {
	ctx, cancel := m.callCtx(grace + m.cfg.DriverTimeout)
	err := m.cfg.Driver.Stop(ctx, id, grace)
	cancel()
	if err != nil {
		m.log.Warn("stop replica", "service", set.svc.name, "replica", id, "err", err)
		endWait()
	}
	return time.AfterFunc(m.cfg.DriverTimeout, endWait)
}

// unready takes r out of rotation.
func (m *Manager) unready(r *replica) {
	m.mu.Lock()
	if r.state == stateReady {
		r.state = stateStarting
	}
	m.notifyLocked()
	m.mu.Unlock()
}

// requestTimeout is how long a request to a replica of a revision
// configured with c may take: its TimeoutSec, or Knative's default.
func requestTimeout(c stratus.ServiceConfig) time.Duration {
	if c.TimeoutSec > 0 {
		return time.Duration(c.TimeoutSec) * time.Second
	}
	return stratus.DefaultServiceTimeoutSec * time.Second
}

// drain waits until r has no request in flight (it takes no new ones: its
// state is stopping), or its sandbox ended, for at most its revision's
// request timeout (by then the proxy has ended them); once the server
// stops, for at most StopGrace.
func (m *Manager) drain(r *replica, exited chan sandbox.Exit) {
	m.mu.Lock()
	r.state = stateStopping
	m.notifyLocked()
	m.mu.Unlock()
	m.drainFor(r, exited, requestTimeout(r.set.rev.Config))
}

func (m *Manager) drainFor(r *replica, exited chan sandbox.Exit, limit time.Duration) {
	deadline := time.Now().Add(limit)
	shortened := false
	for {
		m.mu.Lock()
		n := r.inflight
		changed := m.changed
		if m.stopping && !shortened {
			if d := time.Now().Add(m.cfg.StopGrace); d.Before(deadline) {
				deadline = d
			}
			shortened = true
		}
		m.mu.Unlock()
		if n == 0 {
			return
		}
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-changed:
			t.Stop()
		case e := <-exited:
			t.Stop()
			exited <- e
			return
		case <-t.C:
			return
		}
	}
}

func exitReason(e sandbox.Exit, memMB int, when string) string {
	if e.OOM {
		return OOMReason(memMB) + " " + when
	}
	return fmt.Sprintf("exited %s: %s", when, e.String())
}

// OOMReason says that a replica was killed for exceeding its memory
// limit of memoryMB; a Revisions backend says it in Endpoint.Reason.
func OOMReason(memoryMB int) string {
	return fmt.Sprintf("killed for exceeding its memory limit of %d MB (OOM)", memoryMB)
}

// argv is the replica's command line, as a container's command and args
// make it: the revision's command (else the image's entrypoint) followed
// by the revision's args, or, when the revision gives no command and no
// args, by the image's cmd.
func argv(c stratus.ServiceConfig, img *Image) []string {
	switch {
	case len(c.Command) > 0:
		return append(slices.Clip(c.Command), c.Args...)
	case len(c.Args) > 0:
		return append(slices.Clip(img.Entrypoint), c.Args...)
	}
	return append(slices.Clip(img.Entrypoint), img.Cmd...)
}

// env is the image's environment, the user's, then the platform's.
func env(set *revSet, port int) []string {
	c := set.rev.Config
	e := slices.Clone(set.img.Env)
	if !slices.ContainsFunc(e, func(s string) bool { return len(s) > 5 && s[:5] == "PATH=" }) {
		e = append(e, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	for k, v := range c.Env {
		e = append(e, k+"="+v)
	}
	return append(e,
		"PORT="+strconv.Itoa(port),
		"K_SERVICE="+set.rev.Service,
		"K_REVISION="+set.rev.Name(),
		"K_CONFIGURATION="+set.rev.Service,
	)
}

// lineWriter turns a replica's output into log lines of its service.
// Lines beyond the service's output rate are dropped before they are
// copied, and a platform line says how many.
func (m *Manager) lineWriter(set *revSet, id, stream string) *sandbox.LineWriter {
	key := stratus.ServiceLogKey(set.svc.name)
	var meter *logs.Meter
	if m.cfg.Output != nil {
		meter = m.cfg.Output.Meter(key, false, func(_, text string) {
			if m.cfg.Logs != nil {
				m.cfg.Logs.Log(stratus.LogLine{Function: key, Time: m.cfg.Now(), Instance: id, Stream: stratus.StreamPlatform, Text: text})
			}
		})
	}
	return &sandbox.LineWriter{
		Allow: func(n int) bool { return meter.Allow("", n) },
		Emit: func(text string) {
			if m.cfg.Logs == nil {
				return
			}
			m.cfg.Logs.Log(stratus.LogLine{Function: key, Time: m.cfg.Now(), Instance: id, Stream: stream, Text: text})
		},
	}
}

func (m *Manager) platformLog(r *replica, text string) {
	m.log.Warn("replica ended", "service", r.set.svc.name, "replica", r.id, "reason", text)
	if m.cfg.Logs == nil {
		return
	}
	m.cfg.Logs.Log(stratus.LogLine{
		Function: stratus.ServiceLogKey(r.set.svc.name), Time: m.cfg.Now(), Instance: r.id,
		Stream: "platform", Text: text,
	})
}

func newID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// freePort asks the kernel for a free loopback port, for drivers whose
// sandboxes share the host's network.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func hostPort(a netip.Addr, port int) string {
	return net.JoinHostPort(a.String(), strconv.Itoa(port))
}
