package services

import (
	"cmp"
	"context"
	"runtime"
	"slices"
	"time"

	"github.com/stratus-run/stratus"
)

// UsageSink receives what the services used. Its methods are called
// without the Manager's lock held, from the Manager's goroutines; they
// should not block long.
type UsageSink interface {
	// UsageMinute receives one minute of one service's use, once the
	// minute has ended (or, when Run returns, the minute in progress):
	// one record per service and minute, for the minutes in which the
	// service had replicas or requests.
	UsageMinute(stratus.UsageMinute)
	// ReplicaUsage receives what one replica's sandbox held and used over
	// its life, once it has ended.
	ReplicaUsage(stratus.ReplicaUsage)
}

// ServiceStats are one service's figures for metrics.
type ServiceStats struct {
	Name string
	// ReadyReplicas and DesiredReplicas are the replicas that take
	// requests and those that should run, of the revisions the traffic
	// reaches.
	ReadyReplicas, DesiredReplicas int
	// Draining counts the replicas stopping while they finish their
	// requests: scaled down, or of a revision the traffic left.
	Draining int
	// InFlight counts the requests a replica holds; Queued those waiting
	// for a replica.
	InFlight, Queued int
	// AutoscalerDesired and Panic are the autoscalers' last decisions for
	// the revisions the traffic reaches, summed (before the floor of one
	// replica while requests wait), and whether one was in panic mode.
	AutoscalerDesired int
	Panic             bool
	// Restarts and OOMKills count, since the service was loaded or first
	// deployed by this server, the replica restarts (exits and failed
	// liveness probes) and the replica sandboxes the kernel killed for
	// exceeding their memory limit; on a Revisions backend, the growth of
	// its endpoints' restarts and the restarts after an OOM kill (see
	// Endpoint.OOMKilled).
	Restarts, OOMKills int64
}

// Stats returns every service's figures, by name. It does not block
// beyond the Manager's lock.
func (m *Manager) Stats() []ServiceStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]ServiceStats, 0, len(m.services))
	for _, s := range m.services {
		st := ServiceStats{
			Name:     s.name,
			InFlight: s.inflight,
			Queued:   len(s.waiters),
			Restarts: s.restarts,
			OOMKills: s.oomKills,
		}
		for _, set := range s.sets {
			st.ReadyReplicas += set.readyLocked()
			st.DesiredReplicas += set.desired
			st.AutoscalerDesired += set.decision.Desired
			st.Panic = st.Panic || set.decision.Panic
			for _, r := range set.replicas {
				if r.state == stateStopping {
					st.Draining++
				}
			}
		}
		for _, old := range s.draining {
			st.Draining += len(old.replicas)
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b ServiceStats) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Observe records one request to service that was answered with status
// after d (a client that went away before an answer is status 499), for
// the service's usage minutes: it counts in the minute it started, or,
// if that minute was reported already, in the earliest one not reported
// yet. The server calls it from the service proxy's
// gateway.ProxyConfig.Observe. Unknown services and calls without
// Config.Usage are ignored; it does not block beyond the Manager's lock.
func (m *Manager) Observe(service string, status int, d time.Duration) {
	if m.cfg.Usage == nil {
		return
	}
	start := m.cfg.Now().Add(-d)
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.services[service]
	if !ok || m.usageDone {
		return
	}
	a := m.minuteLocked(s, start)
	a.Requests++
	if status >= 500 {
		a.Errors++
	}
	ms := float64(d) / float64(time.Millisecond)
	a.DurationMs += ms
	a.MaxDuration = max(a.MaxDuration, ms)
}

// cpuCounter is the CPU counter of a driver that has one (the process and
// runc drivers); other drivers' Stats give it.
type cpuCounter interface {
	// CPUNanos returns the CPU time sandbox id has used so far.
	CPUNanos(ctx context.Context, id string) (int64, error)
}

// runMeter is the metering of one sandbox of a replica, from its start to
// its end; on a Revisions backend, of one pod, from the first sight of
// its endpoint's address to the endpoint's end (see syncLocked), with no
// CPU time: the pods' CPU counters are not read (there is no metrics
// API to read them from), so their cpuNow stays 0. Every field is
// guarded by Manager.mu.
type runMeter struct {
	id       string
	start    time.Time
	metered  time.Time // its replica time is counted in minutes up to here
	cpuNow   int64     // the last reading of its CPU counter, ns
	cpuBase  int64     // the part of cpuNow counted in minutes already
	requests int64
}

// meteringLocked reports whether usage is being measured.
func (m *Manager) meteringLocked() bool { return m.cfg.Usage != nil && !m.usageDone }

// minuteLocked returns s's usage minute that holds t: the minute that
// begins at t truncated to the minute, or, if that minute was reported
// already, the earliest one not reported yet.
func (m *Manager) minuteLocked(s *service, t time.Time) *stratus.UsageMinute {
	k := t.Truncate(time.Minute)
	if k.Before(m.flushed) {
		k = m.flushed
	}
	key := k.Unix()
	a := s.minutes[key]
	if a == nil {
		if s.minutes == nil {
			s.minutes = make(map[int64]*stratus.UsageMinute)
		}
		a = &stratus.UsageMinute{Kind: stratus.KindService, Name: s.name, Minute: k, Arch: hostArch}
		if s.latest != nil { // else a first deploy in progress: its replicas say
			a.MemoryMB, a.VCPU = s.latest.Config.MemoryMB, s.latest.Config.CPU
		}
		s.minutes[key] = a
		m.metered[s] = struct{}{}
	}
	return a
}

// beginRunLocked starts metering sandbox id of r, whose program started
// at now. Its CPU counter starts at zero.
func (m *Manager) beginRunLocked(r *replica, id string, now time.Time) {
	r.run = &runMeter{id: id, start: now, metered: now}
	m.runs[r] = struct{}{}
}

// spreadLocked counts replica time from..to of a sandbox of set in the
// minutes it covers.
func (m *Manager) spreadLocked(set *revSet, from, to time.Time) {
	c := set.rev.Config
	for from.Before(to) {
		end := from.Truncate(time.Minute).Add(time.Minute)
		if end.After(to) {
			end = to
		}
		if !end.After(from) { // from before the Unix epoch: never in practice
			return
		}
		secs := end.Sub(from).Seconds()
		a := m.minuteLocked(set.svc, from)
		a.Replicas += secs // replica-seconds until the minute is reported
		a.VCPUSeconds += secs * c.CPU
		a.GBSeconds += secs * float64(c.MemoryMB) / 1024
		a.MemoryMB, a.VCPU = c.MemoryMB, c.CPU
		from = end
	}
}

// cpuLocked counts the CPU time run used since it was last counted in
// the minute that holds t.
func (m *Manager) cpuLocked(s *service, run *runMeter, t time.Time) {
	if d := run.cpuNow - run.cpuBase; d > 0 {
		m.minuteLocked(s, t).CPUMs += float64(d) / 1e6
		run.cpuBase = run.cpuNow
	}
}

// readCPU reads the CPU counter of sandbox id within ctx and
// DriverTimeout: the driver's CPUNanos if it has one, else its Stats.
func (m *Manager) readCPU(ctx context.Context, id string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.DriverTimeout)
	defer cancel()
	if c, ok := m.cfg.Driver.(cpuCounter); ok {
		return c.CPUNanos(ctx, id)
	}
	st, err := m.cfg.Driver.Stats(ctx, id)
	return st.CPUNanos, err
}

// sampleCPU takes a last reading of the CPU counter of r's sandbox id
// before it stops; a failed reading keeps the previous one.
func (m *Manager) sampleCPU(r *replica, id string) {
	if m.cfg.Usage == nil {
		return
	}
	ns, err := m.readCPU(m.life, id)
	if err != nil {
		return
	}
	m.mu.Lock()
	if run := r.run; run != nil && run.id == id {
		run.cpuNow = max(run.cpuNow, ns)
	}
	m.mu.Unlock()
}

// endRun ends the metering of r's sandbox id, which has ended: its
// replica time and last CPU go into the minutes, and the sink gets its
// ReplicaUsage.
func (m *Manager) endRun(r *replica, id string) {
	end := m.cfg.Now()
	m.mu.Lock()
	u, ok := m.endRunLocked(r, id, end)
	m.mu.Unlock()
	if ok {
		m.cfg.Usage.ReplicaUsage(u)
	}
}

// endRunLocked ends the metering of r's sandbox id at end: its replica
// time and last CPU go into the minutes. It returns the ReplicaUsage for
// the sink, and whether there is one (r's sandbox id is metered and
// usage is being measured). m.mu is held.
func (m *Manager) endRunLocked(r *replica, id string, end time.Time) (stratus.ReplicaUsage, bool) {
	run := r.run
	if run == nil || run.id != id {
		return stratus.ReplicaUsage{}, false
	}
	r.run = nil
	delete(m.runs, r)
	set := r.set
	if !m.meteringLocked() {
		return stratus.ReplicaUsage{}, false
	}
	m.spreadLocked(set, run.metered, end)
	m.cpuLocked(set.svc, run, end)
	c := set.rev.Config
	return stratus.ReplicaUsage{
		Service: set.svc.name, Revision: set.rev.Number, Replica: id,
		Start: run.start, End: end, CPU: c.CPU, MemoryMB: c.MemoryMB,
		CPUMs: float64(run.cpuNow) / 1e6, Requests: run.requests, Arch: hostArch,
	}, true
}

// meter reports the services' usage minutes as they end, until ctx ends.
// Run starts it, when there is a Config.Usage, and waits for it.
func (m *Manager) meter(ctx context.Context) {
	t := time.NewTicker(m.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.meterTick(ctx, m.cfg.Now())
		}
	}
}

// meterTick reports the minutes that ended before now, if any has since
// the last report: it reads the CPU counters of the live sandboxes, then
// closes the minutes. Once ctx ends it gives up: Run's end reports them.
func (m *Manager) meterTick(ctx context.Context, now time.Time) {
	b := now.Truncate(time.Minute)
	type live struct {
		r  *replica
		id string
	}
	m.mu.Lock()
	if !b.After(m.flushed) || !m.meteringLocked() {
		m.mu.Unlock()
		return
	}
	runs := make([]live, 0, len(m.runs))
	for r := range m.runs {
		if r.set.backend != nil {
			// A backend's pods have no CPU counter here (no metrics
			// API): their CPUMs stay 0.
			continue
		}
		runs = append(runs, live{r, r.run.id})
	}
	m.mu.Unlock()
	for _, l := range runs {
		if ctx.Err() != nil {
			return
		}
		if ns, err := m.readCPU(ctx, l.id); err == nil {
			m.mu.Lock()
			if run := l.r.run; run != nil && run.id == l.id {
				run.cpuNow = max(run.cpuNow, ns)
			}
			m.mu.Unlock()
		}
	}
	m.emit(m.closeMinutes(b, false))
}

// closeMinutes counts the live sandboxes' replica time and CPU up to b
// and returns the usage minutes before b (every one, if final), which
// are then reported; a final close ends the metering.
func (m *Manager) closeMinutes(b time.Time, final bool) []stratus.UsageMinute {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.meteringLocked() {
		return nil
	}
	if !final {
		if !b.After(m.flushed) {
			return nil
		}
		for r := range m.runs {
			run := r.run
			m.spreadLocked(r.set, run.metered, b)
			run.metered = b
			// The CPU read for this close counts in the minute it ends.
			m.cpuLocked(r.set.svc, run, b.Add(-time.Nanosecond))
		}
		// Requests in flight across the boundary count in the next
		// minute's peak too.
		for _, s := range m.services {
			if s.inflight > 0 {
				a := m.minuteLocked(s, b)
				a.MaxInFlight = max(a.MaxInFlight, s.inflight)
			}
		}
	}
	var out []stratus.UsageMinute
	for s := range m.metered {
		for key, a := range s.minutes {
			if final || a.Minute.Before(b) {
				a.Replicas /= 60 // replica-seconds → mean replicas
				out = append(out, *a)
				delete(s.minutes, key)
			}
		}
		if len(s.minutes) == 0 {
			delete(m.metered, s)
		}
	}
	if final {
		m.usageDone = true
	} else {
		m.flushed = b
	}
	slices.SortFunc(out, func(x, y stratus.UsageMinute) int {
		return cmp.Or(x.Minute.Compare(y.Minute), cmp.Compare(x.Name, y.Name))
	})
	// A service removed and deployed again under its name within a
	// minute has two records of it: one minute is one record.
	merged := out[:0]
	for _, y := range out {
		n := len(merged)
		if n == 0 || merged[n-1].Name != y.Name || !merged[n-1].Minute.Equal(y.Minute) {
			merged = append(merged, y)
			continue
		}
		merged[n-1].Add(y)
	}
	return merged
}

func (m *Manager) emit(minutes []stratus.UsageMinute) {
	for _, u := range minutes {
		m.cfg.Usage.UsageMinute(u)
	}
}

// hostArch is the Arch of this machine.
var hostArch = stratus.ArchOf(runtime.GOARCH)
