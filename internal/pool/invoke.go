package pool

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/runtimeapi"
	"github.com/stratus-run/stratus/internal/trace"
)

// One invocation by Lambda's rules: its START line, its record (duration,
// billed time, memory, CPU time), its REPORT line, its spans.

// Attribute keys of Stratus's own, next to those of the OpenTelemetry FaaS
// conventions (package trace).
const (
	attrTrigger   = "stratus.trigger"  // req.Trigger: sync, http, async, topic, schedule
	attrPrepared  = "stratus.prepared" // a cold start found a prepared sandbox
	attrInstance  = "faas.instance"    // the instance's ID
	attrErrorType = "error.type"       // the function's errorType, Sandbox.Timedout, Runtime.ExitError...
)

// Invoke runs req on an instance of the pool with key name: a function's
// head (its name) or a published version ("NAME:N", see
// stratus.Version.PoolKey); InvokeAs with the qualifier the key names.
func (m *Manager) Invoke(ctx context.Context, name string, req stratus.Request) (*stratus.Response, error) {
	_, q, _ := strings.Cut(name, ":")
	return m.InvokeAs(ctx, name, q, req)
}

// InvokeAs runs req on an instance of the pool with key key; invokedAs
// is the qualifier the caller named (an alias, a number,
// stratus.LatestVersion, or "" for none), which the invoked function's
// ARN carries. The record's Qualifier is what ran: stratus.LatestVersion
// or the published version's number.
// It returns ErrNotFound for an unknown pool, ErrCapacity when no
// instance could be had within ThrottleWait or QueueSize invocations wait
// already (a throttle in Stats, and no record), ErrUnavailable while
// stopping or when the platform failed to start an instance (logged here,
// with the request's ID).
// Function errors, timeouts and crashes are not Go errors: they come back
// as a Response with ErrorType set.
//
// With Config.Tracer, the invocation is a span "invoke NAME", a child of
// ctx's span (kind server; consumer for a topic's message), with the
// FaaS conventions' attributes; its children are "queue wait" when it
// waited for an instance and, on a cold start, "cold start" with
// "sandbox start" (the driver's start) and "runtime init" (until the
// runtime asked for its first event). A cold start begun for an earlier
// invocation that this one took over begins before its parent. The span
// has the error status on function errors, timeouts, crashes and Go
// errors. The runtime's Lambda-Runtime-Trace-Id names this span (without
// a tracer: ctx's span, if any; else a new unsampled trace ID).
func (m *Manager) InvokeAs(ctx context.Context, key, invokedAs string, req stratus.Request) (*stratus.Response, error) {
	name := key
	arrived := m.cfg.Now()
	trigger := cmp.Or(req.Trigger, stratus.TriggerSync)
	var span oteltrace.Span // nil without Config.Tracer
	if m.traced {
		ctx, span = m.startSpan(ctx, name, req.RequestID, trigger, arrived)
	}
	l, err := m.acquire(ctx, name, arrived)
	if err != nil {
		var se *startError
		if errors.As(err, &se) {
			m.log.Error("start instance", "fn", se.fn, "instance", se.instance, "req_id", req.RequestID, "err", se.cause)
		}
		if span != nil {
			span.SetStatus(codes.Error, err.Error())
			span.End(oteltrace.WithTimestamp(m.cfg.Now()))
		}
		return nil, err
	}
	in := l.in
	v := in.Version
	c := v.Config
	start := m.cfg.Now()
	if span != nil {
		m.traceAcquired(ctx, span, l, arrived, start)
	}
	traceID := traceIDOf(ctx)
	if l.initErr != nil {
		// The instance never became ready: answer with its init failure.
		rec := m.record(in, l.cold, req.RequestID, trigger, traceID, start, 0, stratus.OutcomeCrash, l.initErr.ErrorType)
		uctx, cancel := context.WithTimeout(ctx, m.cfg.DriverTimeout)
		rec.MaxMemoryMB, rec.CPUMs = m.usage(uctx, in, start)
		cancel()
		m.emitReport(in, rec)
		m.release(in, false)
		if span != nil {
			endSpan(span, &rec, start)
		}
		return &stratus.Response{Body: l.initErr.Body, ErrorType: l.initErr.ErrorType, Record: rec}, nil
	}
	m.platform(in, req.RequestID, "START RequestId: "+req.RequestID+" Version: "+v.RunsAs())
	timeout := time.Duration(c.TimeoutSec) * time.Second
	header := trace.LambdaHeader(ctx)
	if header == "" {
		header = newTraceHeader(start)
	}
	inv := &runtimeapi.Invocation{
		RequestID:       req.RequestID,
		Event:           req.Event,
		Deadline:        start.Add(timeout),
		FunctionARN:     m.arn(v.Function, invokedAs),
		TraceID:         header,
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
		if span != nil {
			span.SetStatus(codes.Error, err.Error())
			span.End(oteltrace.WithTimestamp(m.cfg.Now()))
		}
		return nil, err
	}
	end := m.cfg.Now()
	if healthy {
		// Lines printed before the answer belong to this invocation: take
		// them before END and before another invocation can.
		_ = m.cfg.Driver.SyncOutput(ictx, in.ID)
	}
	rec := m.record(in, l.cold, req.RequestID, trigger, traceID, start, end.Sub(start), outcome, res.ErrorType)
	rec.MaxMemoryMB, rec.CPUMs = m.usage(ictx, in, end)
	m.release(in, healthy)
	m.emitReport(in, rec)
	if span != nil {
		endSpan(span, &rec, end)
	}
	return &stratus.Response{Body: res.Body, ErrorType: res.ErrorType, Record: rec}, nil
}

// startSpan starts the span of an invocation of function name that
// arrived at at, as a child of ctx's span.
func (m *Manager) startSpan(ctx context.Context, name, reqID, trigger string, at time.Time) (context.Context, oteltrace.Span) {
	// The FaaS conventions: the invoked side is a server span, or a
	// consumer span for a message (the messaging conventions).
	kind := oteltrace.SpanKindServer
	if trigger == stratus.TriggerTopic {
		kind = oteltrace.SpanKindConsumer
	}
	return m.tracer.Start(ctx, "invoke "+name,
		oteltrace.WithSpanKind(kind), oteltrace.WithTimestamp(at),
		oteltrace.WithAttributes(
			attribute.String(trace.AttrInvocationID, reqID),
			attribute.String(trace.AttrTrigger, faasTrigger(trigger)),
			attribute.String(attrTrigger, trigger),
			attribute.String(trace.AttrFaaSName, name),
			attribute.String(trace.AttrCloudRegion, m.cfg.Region),
		))
}

// faasTrigger is the FaaS conventions' faas.trigger of a Stratus trigger:
// http, pubsub (a topic), timer (a schedule), else other (a synchronous
// or asynchronous invoke, which the conventions have no word for).
func faasTrigger(trigger string) string {
	switch trigger {
	case stratus.TriggerHTTP:
		return "http"
	case stratus.TriggerTopic:
		return "pubsub"
	case stratus.TriggerSchedule:
		return "timer"
	}
	return "other"
}

// traceAcquired adds to span (ctx's) what the lease tells: the version,
// the instance, whether it is a cold start; and its children for the wait
// in the queue (from arrived to acquired) and for the cold start, from
// the times its start kept on the instance.
func (m *Manager) traceAcquired(ctx context.Context, span oteltrace.Span, l lease, arrived, acquired time.Time) {
	in := l.in
	span.SetAttributes(
		attribute.Bool(trace.AttrColdStart, l.cold),
		attribute.String(trace.AttrFaaSVersion, strconv.Itoa(in.Version.Version)),
		attribute.String(attrInstance, in.ID),
	)
	if l.waited {
		_, w := m.tracer.Start(ctx, "queue wait", oteltrace.WithTimestamp(arrived))
		w.End(oteltrace.WithTimestamp(acquired))
	}
	if !l.cold {
		return
	}
	cctx, cold := m.tracer.Start(ctx, "cold start", oteltrace.WithTimestamp(in.from),
		oteltrace.WithAttributes(attribute.Bool(attrPrepared, l.prepared)))
	_, sb := m.tracer.Start(cctx, "sandbox start", oteltrace.WithTimestamp(in.started))
	sb.End(oteltrace.WithTimestamp(in.launched))
	_, ri := m.tracer.Start(cctx, "runtime init", oteltrace.WithTimestamp(in.launched))
	initEnd := in.ready
	if l.initErr != nil {
		// It never asked for an event: its init ended when it failed.
		initEnd = in.initEnd
		ri.SetStatus(codes.Error, l.initErr.ErrorType)
		cold.SetStatus(codes.Error, l.initErr.ErrorType)
	}
	ri.End(oteltrace.WithTimestamp(initEnd))
	cold.End(oteltrace.WithTimestamp(in.initEnd))
}

// endSpan ends an invocation's span at end, with the error status unless
// r succeeded.
func endSpan(span oteltrace.Span, r *stratus.Invocation, end time.Time) {
	if r.Outcome != stratus.OutcomeSuccess {
		span.SetAttributes(attribute.String(attrErrorType, r.ErrorType))
		span.SetStatus(codes.Error, r.Outcome+": "+r.ErrorType)
	}
	span.End(oteltrace.WithTimestamp(end))
}

// traceIDOf is the trace ID of ctx's span in hex, "" when it has none.
func traceIDOf(ctx context.Context) string {
	sc := oteltrace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	return sc.TraceID().String()
}

// statsEvery bounds how often an instance's peak memory is read; the peak
// only grows, so a reading this fresh is good enough for a REPORT line.
// A read costs the server 50–100 µs (the process driver reads
// /proc/PID/status): once a second it is a few µs per invocation of a
// busy instance, where every 100 ms was about 5 % of the server's CPU.
const statsEvery = time.Second

// usage reads what in used for the invocation that just ended on it: its
// peak memory in MB (see statsEvery) and the CPU time since the
// previous invocation's reading, in ms. Only the invocation in flight on
// in calls it.
//
// The CPU time is one driver read per invocation: the driver's CPUNanos
// (cpuReader), which costs a few µs. A driver without one gives it in
// Stats, which is then read at every invocation, not once a second:
// 50–100 µs each with the process driver. The first invocation of an
// instance counts from 0, so a cold invocation's CPU time holds its
// instance's init, as Lambda bills the init. A sandbox that ended before
// the read (a crash, a timeout's kill) counts nothing for its last
// invocation.
func (m *Manager) usage(ctx context.Context, in *Instance, now time.Time) (maxMemMB int, cpuMs float64) {
	select {
	case <-in.exited:
		// Killed for exceeding its memory: it used all of it, as Lambda
		// reports (its figures went with its sandbox).
		if in.exit.OOM {
			return in.Version.Config.MemoryMB, 0
		}
	default:
	}
	cpu, cpuOK := int64(0), false
	if m.cpu != nil {
		n, err := m.cpu.CPUNanos(ctx, in.ID)
		cpu, cpuOK = n, err == nil
	}
	if m.cpu == nil || in.statsAt.IsZero() || now.Sub(in.statsAt) >= statsEvery {
		if st, err := m.cfg.Driver.Stats(ctx, in.ID); err == nil {
			in.maxMemMB = int(math.Ceil(float64(st.MaxRSSBytes) / (1 << 20)))
			in.statsAt = now
			if m.cpu == nil {
				cpu, cpuOK = st.CPUNanos, true
			}
		}
	}
	if cpuOK {
		cpuMs = float64(max(0, cpu-in.cpuNanos)) / 1e6
		in.cpuNanos = max(in.cpuNanos, cpu)
	}
	return in.maxMemMB, cpuMs
}

// record is the record of an invocation of request reqID on in, made by
// trigger in trace traceID, that started at start and took d, after its
// instance's init if cold.
func (m *Manager) record(in *Instance, cold bool, reqID, trigger, traceID string, start time.Time, d time.Duration, outcome, errType string) stratus.Invocation {
	r := stratus.Invocation{
		RequestID: reqID, Function: in.Version.Function, Version: in.Version.Version, Qualifier: in.Version.RunsAs(),
		Start: start, DurationMs: ms(d), MemoryMB: in.Version.Config.MemoryMB,
		Cold: cold, Outcome: outcome, ErrorType: errType, Instance: in.ID,
		Trigger: trigger, Arch: m.arch, TraceID: traceID,
	}
	if cold {
		r.InitDurationMs = ms(start.Sub(in.started))
	}
	r.BilledMs = billedMs(r.DurationMs, r.InitDurationMs)
	return r
}

// billedMs is Lambda's billed duration of an invocation that took dms
// milliseconds after an init of initMs (0 when warm): their sum rounded
// up to the millisecond, at least one. Since 1 August 2025 Lambda bills
// the INIT phase of on-demand functions of every kind (before, that of
// zip functions on managed runtimes was free): "AWS Lambda standardizes
// billing for INIT Phase", AWS Compute Blog, 29 April 2025,
// https://aws.amazon.com/blogs/compute/aws-lambda-standardizes-billing-for-init-phase/.
// A cold REPORT line's Billed Duration thus holds its Init Duration.
func billedMs(dms, initMs float64) int64 {
	return max(1, int64(math.Ceil(dms+initMs)))
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
