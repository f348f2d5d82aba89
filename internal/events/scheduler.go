package events

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
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
	// DefaultScheduleReload is how often Run reads the schedules from the
	// store even when nothing told it they changed.
	DefaultScheduleReload = 30 * time.Second
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
// Several servers: every server's Scheduler reads the same schedules from
// the shared store (Reload, on a change notification, and every
// SchedulerConfig.ReloadInterval) and fires them all. A firing's request
// ID and event id are derived from the schedule and the firing time
// (firingID), and it is enqueued with that ID as its Nats-Msg-Id, so that
// JetStream stores one event of the twins two servers make within the
// async stream's duplicate window (two minutes). Before it fires, a
// Scheduler reads the schedule's last firing from the store and skips a
// firing another server has recorded, and a reload takes the stored last
// firing when it is later than its own: a server that falls behind by
// more than the window does not make a recorded firing again. What is
// left is a firing made twice when one server enqueued it and had not
// recorded it yet (a failing store) while another made it more than two
// minutes later.
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
	// ReloadInterval is how often Run reads the schedules from the store
	// when nothing told it they changed (DefaultScheduleReload): another
	// server may have created, deleted or fired one.
	ReloadInterval time.Duration
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
	c.ReloadInterval = orDefault(c.ReloadInterval, DefaultScheduleReload)
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

// Reload has Run read the schedules from the store now: another server
// changed them (a change notification). It does not block.
func (sc *Scheduler) Reload() { sc.wake() }

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
