package pool

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/runtimeapi"
)

// One invocation by Lambda's rules: its START line, its record (duration,
// billed time, memory), its REPORT line.

// Invoke runs req on an instance of the current version of function name.
// It returns ErrNotFound for an unknown function, ErrCapacity when no
// instance could be had within ThrottleWait or QueueSize invocations wait
// already, ErrUnavailable while stopping or when the platform failed to
// start an instance (logged here, with the request's ID).
// Function errors, timeouts and crashes are not Go errors: they come back
// as a Response with ErrorType set.
func (m *Manager) Invoke(ctx context.Context, name string, req stratus.Request) (*stratus.Response, error) {
	l, err := m.acquire(ctx, name)
	if err != nil {
		var se *startError
		if errors.As(err, &se) {
			m.log.Error("start instance", "fn", se.fn, "instance", se.instance, "req_id", req.RequestID, "err", se.cause)
		}
		return nil, err
	}
	in := l.in
	v := in.Version
	c := v.Config
	if l.initErr != nil {
		// The instance never became ready: answer with its init failure.
		rec := record(in, req.RequestID, m.cfg.Now(), 0, true, stratus.OutcomeCrash, l.initErr.ErrorType)
		rec.InitDurationMs = ms(m.cfg.Now().Sub(in.started))
		m.emitReport(in, rec)
		m.release(in, false)
		return &stratus.Response{Body: l.initErr.Body, ErrorType: l.initErr.ErrorType, Record: rec}, nil
	}
	start := m.cfg.Now()
	m.platform(in, req.RequestID, "START RequestId: "+req.RequestID+" Version: "+stratus.LatestVersion)
	timeout := time.Duration(c.TimeoutSec) * time.Second
	inv := &runtimeapi.Invocation{
		RequestID:       req.RequestID,
		Event:           req.Event,
		Deadline:        start.Add(timeout),
		FunctionARN:     m.arn(v.Function),
		TraceID:         traceID(start),
		ClientContext:   req.ClientContext,
		CognitoIdentity: req.CognitoIdentity,
	}
	// The invocation's driver calls end with it: when the caller leaves
	// or, a moment before invoke's own timer fires, at its timeout.
	ictx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, outcome, healthy, err := in.invoke(ctx, ictx, inv, timeout)
	if err != nil {
		// The caller left before the runtime took the event.
		m.release(in, healthy)
		return nil, err
	}
	end := m.cfg.Now()
	if healthy {
		// Lines printed before the answer belong to this invocation: take
		// them before END and before another invocation can.
		_ = m.cfg.Driver.SyncOutput(ictx, in.ID)
	}
	rec := record(in, req.RequestID, start, end.Sub(start), l.cold, outcome, res.ErrorType)
	if l.cold {
		rec.InitDurationMs = ms(start.Sub(in.started))
	}
	rec.MaxMemoryMB = m.maxMemoryMB(ictx, in, end)
	m.release(in, healthy)
	m.emitReport(in, rec)
	return &stratus.Response{Body: res.Body, ErrorType: res.ErrorType, Record: rec}, nil
}

// statsEvery bounds how often an instance's peak memory is read; the peak
// only grows, so a reading this fresh is good enough for a REPORT line.
// A read costs the server 50–100 µs (the process driver reads
// /proc/PID/status): once a second it is a few µs per invocation of a
// busy instance, where every 100 ms was about 5 % of the server's CPU.
const statsEvery = time.Second

// maxMemoryMB is the instance's peak memory in MB. Only the invocation in
// flight on in calls it.
func (m *Manager) maxMemoryMB(ctx context.Context, in *Instance, now time.Time) int {
	select {
	case <-in.exited:
		// Killed for exceeding its memory: it used all of it, as Lambda
		// reports (its figures went with its sandbox).
		if in.exit.OOM {
			return in.Version.Config.MemoryMB
		}
	default:
	}
	if in.statsAt.IsZero() || now.Sub(in.statsAt) >= statsEvery {
		if st, err := m.cfg.Driver.Stats(ctx, in.ID); err == nil {
			in.maxMemMB = int(math.Ceil(float64(st.MaxRSSBytes) / (1 << 20)))
			in.statsAt = now
		}
	}
	return in.maxMemMB
}

// record is the record of an invocation on in that started at start and
// took d.
func record(in *Instance, reqID string, start time.Time, d time.Duration, cold bool, outcome, errType string) stratus.Invocation {
	dms := ms(d)
	return stratus.Invocation{
		RequestID: reqID, Function: in.Version.Function, Version: in.Version.Version,
		Start: start, DurationMs: dms, BilledMs: billedMs(dms), MemoryMB: in.Version.Config.MemoryMB,
		Cold: cold, Outcome: outcome, ErrorType: errType, Instance: in.ID,
	}
}

// billedMs is Lambda's billed duration of an invocation that took dms
// milliseconds: rounded up to the millisecond, at least one.
func billedMs(dms float64) int64 {
	return max(1, int64(math.Ceil(dms)))
}

// emitReport ends an invocation's output: what was dropped of it, then
// one line that the store shows as END and REPORT; then its record.
func (m *Manager) emitReport(in *Instance, r stratus.Invocation) {
	in.out.Done(r.RequestID)
	line := fmt.Sprintf("REPORT RequestId: %s\tDuration: %.2f ms\tBilled Duration: %d ms\tMemory Size: %d MB\tMax Memory Used: %d MB",
		r.RequestID, r.DurationMs, r.BilledMs, r.MemoryMB, r.MaxMemoryMB)
	if r.Cold {
		line += fmt.Sprintf("\tInit Duration: %.2f ms", r.InitDurationMs)
	}
	if r.Outcome == stratus.OutcomeTimeout {
		line += "\tStatus: timeout"
	}
	m.emit(in, r.RequestID, stratus.StreamReport, line)
	if m.cfg.Sink != nil {
		m.cfg.Sink.Record(r)
	}
}

func (m *Manager) platform(in *Instance, reqID, text string) {
	m.emit(in, reqID, stratus.StreamPlatform, text)
}

func (m *Manager) emit(in *Instance, reqID, stream, text string) {
	if m.cfg.Sink == nil {
		return
	}
	m.cfg.Sink.Log(stratus.LogLine{
		Function: in.Version.Function, Time: m.cfg.Now(), RequestID: reqID,
		Instance: in.ID, Stream: stream, Text: text,
	})
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
