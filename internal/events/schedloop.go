package events

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	oteltrace "go.opentelemetry.io/otel/trace"

	stratus "github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/events/schedule"
	"github.com/stratus-run/stratus/internal/trace"
)

// firingNamespace is the UUID namespace of firing IDs (see firingID).
var firingNamespace = uuid.MustParse("6f1d7c52-3b0e-4c8e-9a55-0e5d2f7b9c41")

// firingID is the request ID and event id of the firing of schedule s at
// f: the same on every server and every attempt (a name-based UUID of the
// schedule's name, its creation time and f), so that JetStream's
// duplicate window keeps one event of the firings several servers make.
func firingID(s *stratus.Schedule, f time.Time) string {
	return uuid.NewSHA1(firingNamespace, fmt.Appendf(nil, "%s\x00%d\x00%d", s.Name, s.CreatedAt.UnixNano(), f.UnixNano())).String()
}

// schedEntry is the loop's state of one schedule.
type schedEntry struct {
	s    stratus.Schedule
	expr schedule.Schedule
	last time.Time // firings up to last are done
	next time.Time // expr.Next(last); zero when none

	// A firing that failed and waits for retryAt (zero when none).
	firing   time.Time
	id       string // its event ID, the same on every attempt
	attempts int
	retryAt  time.Time
}

// firedElsewhere takes last, the last firing recorded in the store, if it
// is later than e's: another server made the firings up to last (a
// firing of e's waiting for a retry among them).
func (e *schedEntry) firedElsewhere(last time.Time) {
	if !last.After(e.last) {
		return
	}
	e.last, e.next = last, e.expr.Next(last)
	if !e.firing.IsZero() && !e.firing.After(last) {
		e.firing, e.id, e.attempts, e.retryAt = time.Time{}, "", 0, time.Time{}
	}
}

// wakeAt is when the entry wants the loop next, zero for never.
func (e *schedEntry) wakeAt() time.Time {
	if !e.retryAt.IsZero() {
		return e.retryAt
	}
	return e.next
}

// Run fires the schedules until ctx ends. It returns nil when ctx ends,
// after its one goroutine is done; an error only if it is already running.
func (sc *Scheduler) Run(ctx context.Context) error {
	if !sc.running.CompareAndSwap(false, true) {
		return fmt.Errorf("run scheduler: already running: %w", stratus.ErrConflict)
	}
	defer sc.running.Store(false)
	entries := make(map[string]*schedEntry)
	stale, started := true, false
	var reloadAt time.Time // when the schedules are read again unasked
	for {
		var wake time.Time
		if !stale && !sc.now().Before(reloadAt) {
			stale = true
		}
		if stale {
			if err := sc.reload(ctx, entries); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				sc.log.Error("read schedules", "err", err, "retry_in", reloadRetry)
				wake = sc.now().Add(reloadRetry)
			} else {
				stale = false
				reloadAt = sc.now().Add(sc.cfg.ReloadInterval)
			}
		}
		if w := sc.step(ctx, entries, sc.now()); !w.IsZero() && (wake.IsZero() || w.Before(wake)) {
			wake = w
		}
		if ctx.Err() != nil {
			return nil
		}
		if !started && !stale {
			started = true
			next := "none"
			if !wake.IsZero() {
				next = wake.UTC().Format(time.RFC3339)
			}
			sc.log.Info("scheduler started", "schedules", len(entries), "next_wake", next)
		}
		var timer <-chan time.Time
		stop := func() bool { return false }
		sleep := wake
		if !stale && (sleep.IsZero() || reloadAt.Before(sleep)) {
			sleep = reloadAt
		}
		if !sleep.IsZero() {
			timer, stop = sc.newTimer(min(sleep.Sub(sc.now()), maxSleep))
		}
		if sc.idle != nil {
			sc.idle(wake)
		}
		select {
		case <-ctx.Done():
			stop()
			return nil
		case <-sc.kick:
			stale = true
		case <-timer:
		}
		stop()
	}
}

// reload brings entries in line with the stored schedules, keeping the
// state of those it already has, except a last firing recorded by
// another server later than its own.
func (sc *Scheduler) reload(ctx context.Context, entries map[string]*schedEntry) error {
	list, err := sc.st.ListSchedules(ctx)
	if err != nil {
		return err
	}
	seen := make(map[string]bool, len(list))
	for _, s := range list {
		seen[s.Name] = true
		if e, ok := entries[s.Name]; ok && e.s.CreatedAt.Equal(s.CreatedAt) {
			e.firedElsewhere(s.LastFiredAt)
			continue
		}
		expr, err := parseStored(&s)
		if err != nil {
			sc.log.Error("schedule cannot be read and will not fire", "schedule", s.Name, "fn", s.Function, "err", err)
			delete(entries, s.Name)
			continue
		}
		last := firedUpTo(&s)
		entries[s.Name] = &schedEntry{s: s, expr: expr, last: last, next: expr.Next(last)}
	}
	for name := range entries {
		if !seen[name] {
			delete(entries, name)
		}
	}
	return nil
}

// step makes every firing due at now and returns when the loop should
// wake next (zero for never).
func (sc *Scheduler) step(ctx context.Context, entries map[string]*schedEntry, now time.Time) time.Time {
	type due struct {
		e *schedEntry
		f time.Time
	}
	var fire []due
	for _, e := range entries {
		if e.next.IsZero() || e.next.After(now) || (!e.retryAt.IsZero() && e.retryAt.After(now)) {
			continue
		}
		f, ok := schedule.Missed(e.expr, e.last, now)
		if !ok {
			continue // not reached: e.next <= now
		}
		fire = append(fire, due{e, f})
	}
	slices.SortFunc(fire, func(a, b due) int {
		return cmp.Or(a.f.Compare(b.f), strings.Compare(a.e.s.Name, b.e.s.Name))
	})
	for _, d := range fire {
		if ctx.Err() != nil {
			return time.Time{}
		}
		sc.fire(ctx, d.e, d.f, now)
	}
	var wake time.Time
	for _, e := range entries {
		if w := e.wakeAt(); !w.IsZero() && (wake.IsZero() || w.Before(wake)) {
			wake = w
		}
	}
	return wake
}

// fire makes e's firing scheduled at f: enqueues its event and records it,
// or sets a retry.
func (sc *Scheduler) fire(ctx context.Context, e *schedEntry, f, now time.Time) {
	log := sc.log.With("schedule", e.s.Name, "fn", e.s.Function, "scheduled", f.UTC().Format(time.RFC3339))
	if !sc.current(ctx, e, f, log) {
		return
	}
	if !f.Equal(e.firing) {
		if f.After(e.next) {
			log.Info("catching up: missed firings collapse into this one", "first_missed", e.next.UTC().Format(time.RFC3339))
		}
		e.firing, e.id, e.attempts = f, firingID(&e.s, f), 0
	}
	e.attempts++
	ev := accountEvent(cmp.Or(sc.cfg.AccountID, scheduleAccount), e.id, sc.cfg.Region, e.s.Name, f, e.s.Data)
	ectx, cancel := context.WithTimeout(ctx, opTimeout)
	ectx, span := sc.cfg.Tracer.Start(ectx, "schedule "+e.s.Name,
		oteltrace.WithNewRoot(),
		oteltrace.WithSpanKind(oteltrace.SpanKindProducer),
		oteltrace.WithAttributes(
			attribute.String(trace.AttrTrigger, "timer"),
			attribute.String(trace.AttrFaaSName, e.s.Function),
			attribute.String("faas.cron", e.s.Expression),
			attribute.String("faas.time", f.UTC().Format(time.RFC3339)),
			attribute.Int(attrAttempt, e.attempts),
		))
	reqID, err := sc.q.EnqueueWith(ectx, e.s.Function, ev, EnqueueOptions{ID: e.id, Trigger: stratus.TriggerSchedule})
	endSpan(span, err)
	cancel()
	switch {
	case err == nil:
		log.Info("schedule fired", "req_id", reqID, "late", now.Sub(f).Round(time.Millisecond), "attempt", e.attempts)
	case ctx.Err() != nil:
		return // stopping: not recorded, so the next start makes it
	case e.attempts < sc.cfg.MaxAttempts:
		delay := min(sc.cfg.RetryDelay<<(e.attempts-1), maxFireRetryDelay)
		e.retryAt = sc.now().Add(delay)
		log.Warn("schedule firing failed; retrying", "attempt", e.attempts, "retry_in", delay, "err", err)
		return
	default:
		log.Error("schedule firing failed; giving it up", "attempts", e.attempts, "err", err)
	}
	e.last, e.next = f, e.expr.Next(f)
	e.firing, e.id, e.attempts, e.retryAt = time.Time{}, "", 0, time.Time{}
	// Record it even when ctx has just ended: the firing was made.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	if err := sc.st.SetLastFired(rctx, e.s.Name, f); err != nil && !errors.Is(err, stratus.ErrNotFound) {
		log.Error("record schedule firing; it may be made again after a restart", "err", err)
	}
}

// current reads e's schedule from the store before its firing at f and
// reports whether the firing is still to be made here: not when the
// schedule was deleted or replaced (its entry fires no more until the
// reload Run is asked for), nor when another server recorded this
// firing or a later one (e takes that record). A store that does not
// answer leaves the firing to be made: JetStream's duplicate window drops
// a twin.
func (sc *Scheduler) current(ctx context.Context, e *schedEntry, f time.Time, log *slog.Logger) bool {
	rctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	cur, err := sc.st.GetSchedule(rctx, e.s.Name)
	switch {
	case errors.Is(err, stratus.ErrNotFound) || (err == nil && !cur.CreatedAt.Equal(e.s.CreatedAt)):
		e.next, e.firing, e.retryAt = time.Time{}, time.Time{}, time.Time{}
		sc.wake()
		return false
	case err != nil:
		if ctx.Err() == nil {
			log.Warn("read schedule before firing; firing anyway", "err", err)
		}
		return true
	case !cur.LastFiredAt.Before(f):
		log.Debug("firing made by another server", "last_fired", cur.LastFiredAt.UTC().Format(time.RFC3339))
		e.firedElsewhere(cur.LastFiredAt)
		return false
	}
	return true
}
