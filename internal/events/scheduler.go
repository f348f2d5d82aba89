package events

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/events/schedule"
	"github.com/stratus-run/stratus/internal/trace"
)

// Defaults of the Scheduler.
const (
	// DefaultFireAttempts is how many times a firing is tried before it is
	// given up (logged as an error and recorded as made).
	DefaultFireAttempts = 5
	// DefaultFireRetryDelay is the wait before a firing's second attempt;
	// it doubles with each further attempt, up to maxFireRetryDelay.
	DefaultFireRetryDelay = time.Second
	maxFireRetryDelay     = time.Minute
	// reloadRetry is how soon Run reads the schedules again after the
	// store failed to answer.
	reloadRetry = 5 * time.Second
	// maxSleep bounds one sleep of the loop, so that a change of the wall
	// clock or a suspended host delays a firing by at most this much.
	maxSleep = time.Minute
)

// scheduleAccount is the account of scheduled events and rule ARNs
// unless SchedulerConfig.AccountID names another.
const scheduleAccount = stratus.DefaultAccountID

// scheduleStore keeps the schedules; *store.Store is one.
type scheduleStore interface {
	CreateSchedule(ctx context.Context, sc stratus.Schedule) error
	ListSchedules(ctx context.Context) ([]stratus.Schedule, error)
	GetSchedule(ctx context.Context, name string) (*stratus.Schedule, error)
	DeleteSchedule(ctx context.Context, name string) error
	SetLastFired(ctx context.Context, name string, t time.Time) error
}

// firingQueue starts durable async invocations (with
// stratus.TriggerSchedule); *Queue is one.
type firingQueue interface {
	EnqueueWith(ctx context.Context, fn string, event []byte, opts EnqueueOptions) (string, error)
}

// ScheduleSpec is what a user gives to create a schedule. Exactly one of
// Cron (the six fields, "0 12 * * ? *"), Rate ("5 minutes") and At
// ("2026-12-01T10:00:00") is set.
type ScheduleSpec struct {
	Name     string
	Function string
	Cron     string
	Rate     string
	At       string
	// Timezone is the IANA zone of Cron and At; "" is UTC.
	Timezone string
	// Data is the JSON object sent as each event's detail; empty for {}.
	Data json.RawMessage
}

// Scheduler fires schedules: each firing is an async invocation of the
// schedule's function (Queue.Enqueue) with an EventBridge Scheduled Event
// as its event.
//
// Run owns one goroutine, the loop: it keeps every schedule's next firing
// in memory, sleeps until the earliest (woken early when Create or Delete
// changes the schedules, and after a minute at most, so that a jump of
// the wall clock is noticed), enqueues each firing that is due and then
// records it in the store (SetLastFired, the scheduled time). Firings of
// one wake go in order of their scheduled times, then names.
//
// Cron and at expressions are read in the schedule's time zone; a rate
// fires at its creation time and every interval after it. An at schedule
// fires once and then stays, with no next firing, until deleted.
//
// Catch-up: the firings a schedule missed (the server was down, or the
// loop woke late) collapse into one, the latest that was due, made at
// once; earlier ones are not made. A crash between enqueueing a firing
// and recording it makes that firing again at the next start (at least
// once).
//
// A firing whose enqueue fails (its function is gone, the queue is full or
// unavailable) is tried again after SchedulerConfig.RetryDelay, doubling
// up to a minute, SchedulerConfig.MaxAttempts attempts in all; then it is
// logged as an error and recorded as made. If a later firing of the
// schedule comes due while one waits for a retry, the later one replaces
// it (catch-up again).
type Scheduler struct {
	cfg     SchedulerConfig // defaults filled; read-only after NewScheduler
	st      scheduleStore
	q       firingQueue
	exists  func(fn string) bool
	log     *slog.Logger
	kick    chan struct{} // the schedules changed; buffered 1
	running atomic.Bool

	idle func(wake time.Time) // tests: called when the loop is about to sleep
}

// SchedulerConfig configures a Scheduler. Store, Queue and FunctionExists
// are required; every other zero field takes the default named after it.
type SchedulerConfig struct {
	// Store keeps the schedules; *store.Store is one.
	Store scheduleStore
	// Queue takes the firings; *Queue is one.
	Queue firingQueue
	// FunctionExists reports whether a function exists, given "NAME" or
	// "NAME:QUALIFIER" (false for a missing version or alias); Create
	// refuses schedules of unknown ones.
	FunctionExists func(fn string) bool
	// Region is the region in events and rule ARNs.
	Region string
	// AccountID is the account in events and rule ARNs:
	// stratus.DefaultAccountID when empty.
	AccountID string
	// MaxAttempts bounds the attempts of one firing (DefaultFireAttempts).
	MaxAttempts int
	// RetryDelay is the wait before a firing's second attempt
	// (DefaultFireRetryDelay).
	RetryDelay time.Duration
	// MaxEventSize bounds an event's bytes (DefaultMaxEventSize); Create
	// refuses data that would make it larger.
	MaxEventSize int
	// Now is the clock of every decision (time.Now).
	Now func() time.Time
	// NewTimer returns a channel that receives once d has passed on the
	// Now clock, and a function that stops it (a time.Timer by default).
	// Tests replace both with a clock they step.
	NewTimer func(d time.Duration) (<-chan time.Time, func() bool)
	// Tracer makes a span for each attempt of a firing ("schedule
	// <name>", a producer, the root of a new trace that the invocation
	// joins); nil makes none.
	Tracer oteltrace.Tracer
	// Log receives the Scheduler's log lines; nil discards them.
	Log *slog.Logger
}

func (c SchedulerConfig) withDefaults() SchedulerConfig {
	c.MaxAttempts = orDefault(c.MaxAttempts, DefaultFireAttempts)
	c.RetryDelay = orDefault(c.RetryDelay, DefaultFireRetryDelay)
	c.MaxEventSize = orDefault(c.MaxEventSize, DefaultMaxEventSize)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.NewTimer == nil {
		c.NewTimer = func(d time.Duration) (<-chan time.Time, func() bool) {
			t := time.NewTimer(d)
			return t.C, t.Stop
		}
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	c.Tracer = trace.Or(c.Tracer)
	return c
}

// NewScheduler returns a Scheduler configured by cfg. It does no I/O: Run
// reads the schedules.
func NewScheduler(cfg SchedulerConfig) *Scheduler {
	cfg = cfg.withDefaults()
	return &Scheduler{
		cfg: cfg, st: cfg.Store, q: cfg.Queue, exists: cfg.FunctionExists, log: cfg.Log,
		kick: make(chan struct{}, 1),
	}
}

func (sc *Scheduler) now() time.Time { return sc.cfg.Now() }

func (sc *Scheduler) newTimer(d time.Duration) (<-chan time.Time, func() bool) {
	return sc.cfg.NewTimer(d)
}

// wake has Run read the schedules again.
func (sc *Scheduler) wake() {
	select {
	case sc.kick <- struct{}{}:
	default:
	}
}

// Create validates spec, stores the schedule and has Run take it up. It
// returns the schedule as stored. Errors: stratus.ErrInvalid (a bad name,
// expression, time zone or data; an at time in the past), ErrNotFound (no
// such function), ErrConflict (the name is taken), ErrTooLarge (data too
// large for an event).
func (sc *Scheduler) Create(ctx context.Context, spec ScheduleSpec) (*stratus.Schedule, error) {
	s, err := newSchedule(spec, sc.now(), sc.cfg.Region, sc.cfg.MaxEventSize)
	if err != nil {
		return nil, err
	}
	// The version or alias too: a schedule of a missing one would fail
	// at every firing.
	if !sc.exists(s.Function) {
		return nil, fmt.Errorf("schedule %q: function %q: %w", s.Name, s.Function, stratus.ErrNotFound)
	}
	if err := sc.st.CreateSchedule(ctx, s); err != nil {
		return nil, err
	}
	sc.wake()
	return &s, nil
}

// Delete removes schedule name; it fires no more. Errors:
// stratus.ErrNotFound.
func (sc *Scheduler) Delete(ctx context.Context, name string) error {
	if err := sc.st.DeleteSchedule(ctx, name); err != nil {
		return err
	}
	sc.wake()
	return nil
}

// List returns every schedule, ordered by name.
func (sc *Scheduler) List(ctx context.Context) ([]stratus.Schedule, error) {
	return sc.st.ListSchedules(ctx)
}

// Get returns schedule name. Errors: stratus.ErrNotFound.
func (sc *Scheduler) Get(ctx context.Context, name string) (*stratus.Schedule, error) {
	return sc.st.GetSchedule(ctx, name)
}

// NextFiring returns the scheduled time of s's next firing not yet made,
// or the zero time if there is none (an at schedule that fired). It may
// be in the past for a firing that is due or waits for a retry.
func NextFiring(s *stratus.Schedule) time.Time {
	expr, err := parseStored(s)
	if err != nil {
		return time.Time{}
	}
	return expr.Next(firedUpTo(s))
}

// newSchedule validates spec and returns the schedule to store, created at
// now.
func newSchedule(spec ScheduleSpec, now time.Time, region string, maxEvent int) (stratus.Schedule, error) {
	fail := func(err error) (stratus.Schedule, error) {
		return stratus.Schedule{}, fmt.Errorf("schedule %q: %w", spec.Name, err)
	}
	if err := stratus.ValidName(spec.Name); err != nil {
		return stratus.Schedule{}, fmt.Errorf("schedule %w", err)
	}
	if spec.Function == "" {
		return fail(fmt.Errorf("a function is required: %w", stratus.ErrInvalid))
	}
	ref, err := validTarget(spec.Function)
	if err != nil {
		return fail(err)
	}
	spec.Function = ref.String()
	var kinds []string
	for _, k := range []struct{ name, value string }{{"cron", spec.Cron}, {"rate", spec.Rate}, {"at", spec.At}} {
		if strings.TrimSpace(k.value) != "" {
			kinds = append(kinds, k.name)
		}
	}
	switch len(kinds) {
	case 0:
		return fail(fmt.Errorf("give one of cron, rate and at: %w", stratus.ErrInvalid))
	case 1:
	default:
		return fail(fmt.Errorf("give only one of cron, rate and at, not %s: %w", strings.Join(kinds, " and "), stratus.ErrInvalid))
	}
	loc, err := schedule.LoadLocation(spec.Timezone)
	if err != nil {
		return fail(err)
	}
	var expr schedule.Schedule
	switch kinds[0] {
	case "cron":
		expr, err = schedule.ParseCron(spec.Cron, loc)
	case "rate":
		expr, err = schedule.ParseRate(spec.Rate, now)
	default:
		at := strings.TrimSpace(spec.At)
		if strings.HasPrefix(at, "at(") && strings.HasSuffix(at, ")") {
			at = at[3 : len(at)-1]
		}
		expr, err = schedule.Parse("at("+at+")", loc)
	}
	if err != nil {
		return fail(err)
	}
	if expr.Next(now).IsZero() && kinds[0] != "rate" {
		if kinds[0] == "at" {
			return fail(fmt.Errorf("%s is in the past (now %s): %w", expr, now.In(loc).Format(time.RFC3339), stratus.ErrInvalid))
		}
		return fail(fmt.Errorf("%s never fires after now: %w", expr, stratus.ErrInvalid))
	}
	data, err := detailData(spec.Data)
	if err != nil {
		return fail(err)
	}
	s := stratus.Schedule{
		Name: spec.Name, Function: spec.Function, Expression: expr.String(),
		Timezone: spec.Timezone, Data: data, CreatedAt: now,
	}
	if n := len(scheduledEvent(uuid.NewString(), region, s.Name, now, s.Data)); n > maxEvent {
		return fail(fmt.Errorf("data makes an event of %d bytes, more than %d: %w", n, maxEvent, stratus.ErrTooLarge))
	}
	return s, nil
}

// detailData checks that b is a JSON object and compacts it; empty or
// null is nil (detail {}).
func detailData(b json.RawMessage) (json.RawMessage, error) {
	t := bytes.TrimSpace(b)
	if len(t) == 0 || string(t) == "null" {
		return nil, nil
	}
	if !json.Valid(t) {
		return nil, fmt.Errorf("data is not valid JSON: %w", stratus.ErrInvalid)
	}
	if t[0] != '{' {
		return nil, fmt.Errorf("data must be a JSON object (it becomes each event's detail): %w", stratus.ErrInvalid)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, t); err != nil {
		return nil, fmt.Errorf("data: %v: %w", err, stratus.ErrInvalid)
	}
	return buf.Bytes(), nil
}

// parseStored parses a stored schedule's expression: a rate anchored at
// its creation, cron and at in its time zone.
func parseStored(s *stratus.Schedule) (schedule.Schedule, error) {
	if strings.HasPrefix(s.Expression, "rate(") {
		return schedule.ParseRate(s.Expression, s.CreatedAt)
	}
	loc, err := schedule.LoadLocation(s.Timezone)
	if err != nil {
		return nil, err
	}
	return schedule.Parse(s.Expression, loc)
}

// firedUpTo returns the time up to which s's firings are done: its last
// firing, else its creation (cron and at fire strictly after it), or just
// before it for a rate, which fires at once, as on EventBridge Scheduler.
func firedUpTo(s *stratus.Schedule) time.Time {
	last := s.CreatedAt
	if strings.HasPrefix(s.Expression, "rate(") {
		last = last.Add(-time.Nanosecond)
	}
	if s.LastFiredAt.After(last) {
		last = s.LastFiredAt
	}
	return last
}

// scheduledEventBody is an EventBridge Scheduled Event, fields in AWS's
// order.
type scheduledEventBody struct {
	Version    string          `json:"version"`
	ID         string          `json:"id"`
	DetailType string          `json:"detail-type"`
	Source     string          `json:"source"`
	Account    string          `json:"account"`
	Time       string          `json:"time"`
	Region     string          `json:"region"`
	Resources  []string        `json:"resources"`
	Detail     json.RawMessage `json:"detail"`
}

// scheduledEvent returns the event of a firing of schedule name at t, in
// the default account.
func scheduledEvent(id, region, name string, t time.Time, data json.RawMessage) []byte {
	return accountEvent(scheduleAccount, id, region, name, t, data)
}

// accountEvent is scheduledEvent in account account.
func accountEvent(account, id, region, name string, t time.Time, data json.RawMessage) []byte {
	if len(data) == 0 {
		data = json.RawMessage(`{}`)
	}
	b, err := json.Marshal(scheduledEventBody{
		Version: "0", ID: id, DetailType: "Scheduled Event", Source: "aws.events",
		Account: account, Time: t.UTC().Format(time.RFC3339), Region: region,
		Resources: []string{"arn:aws:events:" + region + ":" + account + ":rule/" + name},
		Detail:    data,
	})
	if err != nil {
		panic(err) // data is a compacted JSON object
	}
	return b
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
	for {
		var wake time.Time
		if stale {
			if err := sc.reload(ctx, entries); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				sc.log.Error("read schedules", "err", err, "retry_in", reloadRetry)
				wake = sc.now().Add(reloadRetry)
			} else {
				stale = false
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
		if !wake.IsZero() {
			timer, stop = sc.newTimer(min(wake.Sub(sc.now()), maxSleep))
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
// state of those it already has.
func (sc *Scheduler) reload(ctx context.Context, entries map[string]*schedEntry) error {
	list, err := sc.st.ListSchedules(ctx)
	if err != nil {
		return err
	}
	seen := make(map[string]bool, len(list))
	for _, s := range list {
		seen[s.Name] = true
		if e, ok := entries[s.Name]; ok && e.s.CreatedAt.Equal(s.CreatedAt) {
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
	if !f.Equal(e.firing) {
		if f.After(e.next) {
			log.Info("catching up: missed firings collapse into this one", "first_missed", e.next.UTC().Format(time.RFC3339))
		}
		e.firing, e.id, e.attempts = f, uuid.NewString(), 0
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
	reqID, err := sc.q.EnqueueWith(ectx, e.s.Function, ev, EnqueueOptions{Trigger: stratus.TriggerSchedule})
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
