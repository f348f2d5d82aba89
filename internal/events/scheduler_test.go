package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // zones on hosts without zoneinfo

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/stratus-run/stratus"
)

func TestSchedulerFiresInOrderWithScheduledEvents(t *testing.T) {
	t0 := utcTime("2025-01-06T09:58:00Z")
	r := newSchedRig(t, openScheduleStore(t), t0).start()
	r.wantWake(time.Time{})
	r.create(ScheduleSpec{Name: "b-rate", Function: "fb", Rate: "2 minutes", Data: json.RawMessage(`{ "k": [1, 2] }`)})
	r.create(ScheduleSpec{Name: "a-cron", Function: "fa", Cron: "0/5 * * * ? *"})
	r.create(ScheduleSpec{Name: "c-at", Function: "fc", At: "2025-01-06T10:01:00"})
	r.advanceTo(utcTime("2025-01-06T10:06:30Z"))
	// A rate fires at its creation; firings due at the same time go in
	// name order.
	r.wantFired(
		"b-rate@2025-01-06T09:58:00Z",
		"a-cron@2025-01-06T10:00:00Z", "b-rate@2025-01-06T10:00:00Z",
		"c-at@2025-01-06T10:01:00Z",
		"b-rate@2025-01-06T10:02:00Z",
		"b-rate@2025-01-06T10:04:00Z",
		"a-cron@2025-01-06T10:05:00Z",
		"b-rate@2025-01-06T10:06:00Z",
	)
	r.wantWake(utcTime("2025-01-06T10:08:00Z"))

	// The events: EventBridge's Scheduled Event, to the schedule's
	// function, with the schedule's data as detail (else {}).
	r.enq.mu.Lock()
	attempts := slices.Clone(r.enq.attempts)
	r.enq.mu.Unlock()
	ids := map[string]bool{}
	for _, a := range attempts {
		if _, err := uuid.Parse(a.ev.ID); err != nil || ids[a.ev.ID] {
			t.Errorf("event id %q: want a fresh UUID per firing", a.ev.ID)
		}
		ids[a.ev.ID] = true
	}
	got := attempts[0]
	got.ev.ID = ""
	want := schedCall{fn: "fb", trigger: stratus.TriggerSchedule, ev: scheduledEventBody{
		Version: "0", DetailType: "Scheduled Event", Source: "aws.events", Account: "000000000000",
		Time: "2025-01-06T09:58:00Z", Region: "eu-test-1",
		Resources: []string{"arn:aws:events:eu-test-1:000000000000:rule/b-rate"},
		Detail:    json.RawMessage(`{"k":[1,2]}`),
	}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(schedCall{})); diff != "" {
		t.Errorf("first event (-want +got):\n%s", diff)
	}
	if a := attempts[1]; a.fn != "fa" || string(a.ev.Detail) != `{}` {
		t.Errorf("cron event to %s with detail %s, want fa and {}", a.fn, a.ev.Detail)
	}

	// Each firing is recorded.
	if got := r.get("b-rate").LastFiredAt; !got.Equal(utcTime("2025-01-06T10:06:00Z")) {
		t.Errorf("b-rate last fired at %v", got)
	}
}

func TestScheduledEventJSON(t *testing.T) {
	got := scheduledEvent("53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "local", "nightly",
		time.Date(2025, 10, 8, 18, 53, 6, 500, time.FixedZone("CEST", 2*3600)), nil)
	want := `{"version":"0","id":"53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa","detail-type":"Scheduled Event",` +
		`"source":"aws.events","account":"000000000000","time":"2025-10-08T16:53:06Z","region":"local",` +
		`"resources":["arn:aws:events:local:000000000000:rule/nightly"],"detail":{}}`
	if string(got) != want {
		t.Errorf("scheduledEvent =\n%s\nwant\n%s", got, want)
	}
}

func TestSchedulerTimeZones(t *testing.T) {
	// New York springs forward on 2025-03-09 at 02:00 (EST, UTC-5, to
	// EDT, UTC-4) and falls back on 2025-11-02 at 02:00; Tokyo has no
	// daylight saving time.
	for _, tc := range []struct {
		name     string
		spec     ScheduleSpec
		from, to string
		want     []string
	}{{
		name: "Tokyo, no DST", spec: ScheduleSpec{Cron: "0 9 * * ? *", Timezone: "Asia/Tokyo"},
		from: "2025-03-07T12:00:00Z", to: "2025-03-10T12:00:00Z",
		want: []string{"2025-03-08T00:00:00Z", "2025-03-09T00:00:00Z", "2025-03-10T00:00:00Z"},
	}, {
		name: "New York spring forward skips 02:30", spec: ScheduleSpec{Cron: "30 2 * * ? *", Timezone: "America/New_York"},
		from: "2025-03-07T12:00:00Z", to: "2025-03-10T12:00:00Z",
		want: []string{"2025-03-08T07:30:00Z", "2025-03-10T06:30:00Z"},
	}, {
		name: "New York daily 09:00 moves an hour in UTC", spec: ScheduleSpec{Cron: "0 9 * * ? *", Timezone: "America/New_York"},
		from: "2025-03-07T12:00:00Z", to: "2025-03-10T12:00:00Z",
		want: []string{"2025-03-07T14:00:00Z", "2025-03-08T14:00:00Z", "2025-03-09T13:00:00Z"},
	}, {
		name: "New York fall back fires 01:30 once", spec: ScheduleSpec{Cron: "30 1 * * ? *", Timezone: "America/New_York"},
		from: "2025-11-01T12:00:00Z", to: "2025-11-03T12:00:00Z",
		want: []string{"2025-11-02T05:30:00Z", "2025-11-03T06:30:00Z"},
	}, {
		name: "New York at in the skipped hour", spec: ScheduleSpec{At: "2025-03-09T02:30:00", Timezone: "America/New_York"},
		from: "2025-03-07T12:00:00Z", to: "2025-03-10T12:00:00Z",
		want: []string{"2025-03-09T07:30:00Z"}, // 03:30 EDT
	}, {
		name: "rate ignores DST", spec: ScheduleSpec{Rate: "1 day", Timezone: "America/New_York"},
		from: "2025-03-08T12:00:00Z", to: "2025-03-10T12:00:00Z",
		want: []string{"2025-03-08T12:00:00Z", "2025-03-09T12:00:00Z", "2025-03-10T12:00:00Z"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newSchedRig(t, openScheduleStore(t), utcTime(tc.from)).start()
			tc.spec.Name, tc.spec.Function = "tz", "fn"
			r.create(tc.spec)
			r.advanceTo(utcTime(tc.to))
			var want []string
			for _, w := range tc.want {
				want = append(want, "tz@"+w)
			}
			r.wantFired(want...)
		})
	}
}

func TestSchedulerCreateDeleteWhileRunning(t *testing.T) {
	t0 := utcTime("2025-05-01T12:00:00Z")
	r := newSchedRig(t, openScheduleStore(t), t0).start()
	r.create(ScheduleSpec{Name: "hourly", Function: "fn", Cron: "0 * * * ? *"})
	r.wantWake(utcTime("2025-05-01T13:00:00Z"))
	// A new schedule that fires earlier wakes the sleeping loop early.
	r.create(ScheduleSpec{Name: "soon", Function: "fn", At: "2025-05-01T12:10:00"})
	r.wantWake(utcTime("2025-05-01T12:10:00Z"))
	r.advanceTo(utcTime("2025-05-01T12:30:00Z"))
	r.wantFired("soon@2025-05-01T12:10:00Z")
	r.wantWake(utcTime("2025-05-01T13:00:00Z"))

	// Deleted, it fires no more, though its time passes.
	r.delete("hourly")
	r.wantWake(time.Time{})
	r.advanceTo(utcTime("2025-05-01T15:00:00Z"))
	r.wantFired("soon@2025-05-01T12:10:00Z")

	// A schedule made again under a deleted name starts afresh.
	r.create(ScheduleSpec{Name: "hourly", Function: "fn", Rate: "30 minutes"})
	r.delete("soon")
	r.advanceTo(utcTime("2025-05-01T16:00:00Z"))
	r.wantFired("soon@2025-05-01T12:10:00Z",
		"hourly@2025-05-01T15:00:00Z", "hourly@2025-05-01T15:30:00Z", "hourly@2025-05-01T16:00:00Z")
}

func TestSchedulerAtFiresOnce(t *testing.T) {
	st := openScheduleStore(t)
	r := newSchedRig(t, st, utcTime("2025-05-01T12:00:00Z")).start()
	r.create(ScheduleSpec{Name: "once", Function: "fn", At: "2025-05-01T12:00:05"})
	r.advanceTo(utcTime("2025-05-02T12:00:00Z"))
	r.wantFired("once@2025-05-01T12:00:05Z")
	r.wantWake(time.Time{})
	s := r.get("once")
	if !s.LastFiredAt.Equal(utcTime("2025-05-01T12:00:05Z")) || !NextFiring(s).IsZero() {
		t.Errorf("after its firing: last fired %v, next %v; want 12:00:05 and none", s.LastFiredAt, NextFiring(s))
	}
	// A restart does not fire it again.
	r.stop()
	r2 := newSchedRig(t, st, utcTime("2025-05-03T12:00:00Z")).start()
	r2.advanceTo(utcTime("2025-05-04T12:00:00Z"))
	r2.wantFired()
}

func TestSchedulerCatchUp(t *testing.T) {
	// The server was down from `last` (the last firing made, or the
	// creation) to `now`.
	for _, tc := range []struct {
		name        string
		expr, tz    string
		created     string
		lastFired   string // "" before the first firing
		now         string
		wantFired   []string
		wantNext    string
		wantRecords string // LastFiredAt after the start
	}{{
		name: "rate missed 119 times fires once, the latest", expr: "rate(1 minute)",
		created: "2025-05-01T09:00:30Z", lastFired: "2025-05-01T10:00:30Z", now: "2025-05-01T12:00:00Z",
		wantFired: []string{"2025-05-01T11:59:30Z"}, wantNext: "2025-05-01T12:00:30Z", wantRecords: "2025-05-01T11:59:30Z",
	}, {
		name: "cron missed for days fires once", expr: "cron(0 * * * ? *)", tz: "Europe/Berlin",
		created: "2025-04-01T00:00:00Z", lastFired: "2025-04-20T00:00:00Z", now: "2025-05-01T12:34:00Z",
		wantFired: []string{"2025-05-01T12:00:00Z"}, wantNext: "2025-05-01T13:00:00Z", wantRecords: "2025-05-01T12:00:00Z",
	}, {
		name: "never fired, created before the stop", expr: "cron(0 8 * * ? *)",
		created: "2025-04-28T12:00:00Z", now: "2025-05-01T12:00:00Z",
		wantFired: []string{"2025-05-01T08:00:00Z"}, wantNext: "2025-05-02T08:00:00Z", wantRecords: "2025-05-01T08:00:00Z",
	}, {
		name: "an at time passed while down fires once", expr: "at(2025-05-01T11:00:00)",
		created: "2025-05-01T10:00:00Z", now: "2025-05-01T12:00:00Z",
		wantFired: []string{"2025-05-01T11:00:00Z"}, wantRecords: "2025-05-01T11:00:00Z",
	}, {
		name: "nothing missed", expr: "rate(1 hour)",
		created: "2025-05-01T09:15:00Z", lastFired: "2025-05-01T11:15:00Z", now: "2025-05-01T12:00:00Z",
		wantNext: "2025-05-01T12:15:00Z", wantRecords: "2025-05-01T11:15:00Z",
	}, {
		name: "nothing missed, never fired", expr: "cron(0 8 * * ? *)",
		created: "2025-05-01T09:00:00Z", now: "2025-05-01T12:00:00Z",
		wantNext: "2025-05-02T08:00:00Z",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := openScheduleStore(t)
			s := stratus.Schedule{Name: "s", Function: "fn", Expression: tc.expr, Timezone: tc.tz, CreatedAt: utcTime(tc.created)}
			if tc.lastFired != "" {
				s.LastFiredAt = utcTime(tc.lastFired)
			}
			if err := st.CreateSchedule(context.Background(), s); err != nil {
				t.Fatal(err)
			}
			r := newSchedRig(t, st, utcTime(tc.now)).start()
			var want []string
			for _, w := range tc.wantFired {
				want = append(want, "s@"+w)
			}
			r.wantFired(want...)
			var next time.Time
			if tc.wantNext != "" {
				next = utcTime(tc.wantNext)
			}
			r.wantWake(next)
			var rec time.Time
			if tc.wantRecords != "" {
				rec = utcTime(tc.wantRecords)
			}
			if got := r.get("s"); !got.LastFiredAt.Equal(rec) {
				t.Errorf("last fired at %v, want %v", got.LastFiredAt, rec)
			}
		})
	}
}

// TestSchedulerNoticesClockJumps: the loop sleeps at most maxSleep, so a
// wall clock that jumps (a suspended host, a clock set forward) makes the
// latest firing it passed within maxSleep, once.
func TestSchedulerNoticesClockJumps(t *testing.T) {
	r := newSchedRig(t, openScheduleStore(t), utcTime("2025-05-01T10:00:30Z")).start()
	r.create(ScheduleSpec{Name: "hourly", Function: "fn", Cron: "0 * * * ? *"})
	r.wantWake(utcTime("2025-05-01T11:00:00Z"))
	if n := r.clk.Set(utcTime("2025-05-01T15:20:00Z")); n != 1 { // the loop's one timer, at most a minute out
		t.Fatalf("the jump fired %d timers, want 1", n)
	}
	r.sync()
	r.wantFired("hourly@2025-05-01T15:00:00Z")
	r.wantWake(utcTime("2025-05-01T16:00:00Z"))
}

func TestSchedulerRateAnchoredAtCreation(t *testing.T) {
	r := newSchedRig(t, openScheduleStore(t), utcTime("2025-05-01T10:03:17Z")).start()
	s := r.create(ScheduleSpec{Name: "r", Function: "fn", Rate: "7 minutes"})
	if s.Expression != "rate(7 minutes)" {
		t.Errorf("expression %q", s.Expression)
	}
	r.advanceTo(utcTime("2025-05-01T10:20:00Z"))
	r.wantFired("r@2025-05-01T10:03:17Z", "r@2025-05-01T10:10:17Z", "r@2025-05-01T10:17:17Z")
	r.wantWake(utcTime("2025-05-01T10:24:17Z"))
	if n := NextFiring(r.get("r")); !n.Equal(utcTime("2025-05-01T10:24:17Z")) {
		t.Errorf("NextFiring = %v", n)
	}
}

func TestSchedulerRetriesFailedFirings(t *testing.T) {
	t.Run("succeeds on the third attempt", func(t *testing.T) {
		r := newSchedRig(t, openScheduleStore(t), utcTime("2025-05-01T10:00:00Z"))
		r.enq.fail = func(fn string, n int) error {
			if n <= 2 {
				return fmt.Errorf("enqueue: function %q: %w", fn, stratus.ErrNotFound)
			}
			return nil
		}
		r.start()
		r.create(ScheduleSpec{Name: "once", Function: "fn", At: "2025-05-01T10:01:00"})
		r.advanceTo(utcTime("2025-05-01T10:01:00Z"))
		r.wantWake(utcTime("2025-05-01T10:01:01Z")) // first retry after 1 s
		if got := r.get("once").LastFiredAt; !got.IsZero() {
			t.Errorf("a failed firing is recorded as made (%v)", got)
		}
		r.advanceTo(utcTime("2025-05-01T10:01:02Z"))
		r.wantWake(utcTime("2025-05-01T10:01:03Z")) // then 2 s
		r.advanceTo(utcTime("2025-05-01T10:05:00Z"))
		r.wantFired("once@2025-05-01T10:01:00Z")
		r.enq.mu.Lock()
		defer r.enq.mu.Unlock()
		if len(r.enq.attempts) != 3 {
			t.Fatalf("%d attempts, want 3", len(r.enq.attempts))
		}
		for _, a := range r.enq.attempts {
			if a.ev.ID != r.enq.attempts[0].ev.ID {
				t.Errorf("attempts of one firing carry event ids %q and %q", r.enq.attempts[0].ev.ID, a.ev.ID)
			}
		}
		if got := r.get("once").LastFiredAt; !got.Equal(utcTime("2025-05-01T10:01:00Z")) {
			t.Errorf("last fired at %v", got)
		}
	})
	t.Run("gives up after MaxAttempts", func(t *testing.T) {
		r := newSchedRig(t, openScheduleStore(t), utcTime("2025-05-01T10:00:00Z"),
			func(c *SchedulerConfig) { c.MaxAttempts = 3 })
		r.enq.fail = func(fn string, n int) error { return fmt.Errorf("stream full: %w", stratus.ErrCapacity) }
		r.start()
		r.create(ScheduleSpec{Name: "hourly", Function: "fn", Cron: "0 * * * ? *"})
		r.advanceTo(utcTime("2025-05-01T11:30:00Z"))
		r.enq.mu.Lock()
		n := len(r.enq.attempts)
		r.enq.mu.Unlock()
		if n != 3 {
			t.Errorf("%d attempts, want 3", n)
		}
		// Given up: recorded, and the next firing is the next hour's.
		if got := r.get("hourly").LastFiredAt; !got.Equal(utcTime("2025-05-01T11:00:00Z")) {
			t.Errorf("last fired at %v", got)
		}
		r.wantWake(utcTime("2025-05-01T12:00:00Z"))
	})
}

func TestSchedulerCreateRejectsBadInput(t *testing.T) {
	st := openScheduleStore(t)
	r := newSchedRig(t, st, utcTime("2025-05-01T10:00:00Z")).start()
	r.create(ScheduleSpec{Name: "taken", Function: "fn", Rate: "1 hour"})
	ok := ScheduleSpec{Name: "new", Function: "fn", Cron: "0 12 * * ? *"}
	with := func(f func(*ScheduleSpec)) ScheduleSpec { s := ok; f(&s); return s }
	for _, tc := range []struct {
		name string
		spec ScheduleSpec
		kind error
		msg  string
	}{
		{"a bad name", with(func(s *ScheduleSpec) { s.Name = "a b" }), stratus.ErrInvalid, "1-64 characters"},
		{"no name", with(func(s *ScheduleSpec) { s.Name = "" }), stratus.ErrInvalid, "1-64 characters"},
		{"no function", with(func(s *ScheduleSpec) { s.Function = "" }), stratus.ErrInvalid, "function is required"},
		{"an unknown function", with(func(s *ScheduleSpec) { s.Function = "ghost" }), stratus.ErrNotFound, `function "ghost"`},
		{"no expression", with(func(s *ScheduleSpec) { s.Cron = "" }), stratus.ErrInvalid, "one of cron, rate and at"},
		{"cron and rate", with(func(s *ScheduleSpec) { s.Rate = "5 minutes" }), stratus.ErrInvalid, "only one of cron, rate and at, not cron and rate"},
		{"a cron without ?", with(func(s *ScheduleSpec) { s.Cron = "0 12 * * * *" }), stratus.ErrInvalid, `must be "?"`},
		{"a cron of 5 fields", with(func(s *ScheduleSpec) { s.Cron = "0 12 * * ?" }), stratus.ErrInvalid, "want 6 fields"},
		{"a cron that never fires again", with(func(s *ScheduleSpec) { s.Cron = "0 12 * * ? 2020" }), stratus.ErrInvalid, "never fires"},
		{"a rate of 0 minutes", with(func(s *ScheduleSpec) { s.Cron, s.Rate = "", "0 minutes" }), stratus.ErrInvalid, "positive integer"},
		{"a rate of 1 minutes", with(func(s *ScheduleSpec) { s.Cron, s.Rate = "", "1 minutes" }), stratus.ErrInvalid, `use "minute"`},
		{"a rate in seconds", with(func(s *ScheduleSpec) { s.Cron, s.Rate = "", "5 seconds" }), stratus.ErrInvalid, "unit"},
		{"an at in the past", with(func(s *ScheduleSpec) { s.Cron, s.At = "", "2025-05-01T09:59:59" }), stratus.ErrInvalid, "in the past"},
		{"an at with a zone offset", with(func(s *ScheduleSpec) { s.Cron, s.At = "", "2025-06-01T10:00:00Z" }), stratus.ErrInvalid, "yyyy-mm-ddThh:mm:ss"},
		{"an unknown time zone", with(func(s *ScheduleSpec) { s.Timezone = "Mars/Olympus" }), stratus.ErrInvalid, "not a known IANA time zone"},
		{"the local time zone", with(func(s *ScheduleSpec) { s.Timezone = "Local" }), stratus.ErrInvalid, "IANA name"},
		{"data not JSON", with(func(s *ScheduleSpec) { s.Data = json.RawMessage(`{x}`) }), stratus.ErrInvalid, "not valid JSON"},
		{"data not an object", with(func(s *ScheduleSpec) { s.Data = json.RawMessage(`[1]`) }), stratus.ErrInvalid, "JSON object"},
		{"data over the event size", with(func(s *ScheduleSpec) {
			s.Data = json.RawMessage(`{"x":"` + strings.Repeat("a", DefaultMaxEventSize) + `"}`)
		}), stratus.ErrTooLarge, "more than"},
		{"a taken name", with(func(s *ScheduleSpec) { s.Name = "taken" }), stratus.ErrConflict, "already exists"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.sc.Create(context.Background(), tc.spec)
			if !errors.Is(err, tc.kind) {
				t.Fatalf("Create: %v, want %v", err, tc.kind)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Create: %q does not say %q", err, tc.msg)
			}
		})
	}
	list, err := st.ListSchedules(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "taken" || list[0].Function != "fn" {
		t.Errorf("bad input changed the schedules: %+v", list)
	}
	if err := r.sc.Delete(context.Background(), "nope"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("Delete of a missing schedule: %v, want ErrNotFound", err)
	}
}

// A schedule names a function, a published version or an alias that
// exists: one of a missing version or alias is refused like one of a
// missing function, and NAME:$LATEST is the head, stored as NAME.
func TestSchedulerCreateChecksQualifier(t *testing.T) {
	st := openScheduleStore(t)
	r := newSchedRig(t, st, utcTime("2025-05-01T10:00:00Z"), func(c *SchedulerConfig) {
		c.FunctionExists = func(fn string) bool { return fn == "fn" || fn == "fn:1" || fn == "fn:live" }
	}).start()
	for _, fn := range []string{"fn:typo", "fn:2", "ghost:1"} {
		if _, err := r.sc.Create(t.Context(), ScheduleSpec{Name: "s", Function: fn, Rate: "1 hour"}); !errors.Is(err, stratus.ErrNotFound) {
			t.Errorf("Create of a schedule of %s: %v, want ErrNotFound", fn, err)
		}
	}
	for fn, stored := range map[string]string{"fn:1": "fn:1", "fn:live": "fn:live", "fn:$LATEST": "fn"} {
		s, err := r.sc.Create(t.Context(), ScheduleSpec{Name: "s", Function: fn, Rate: "1 hour"})
		if err != nil {
			t.Fatalf("Create of a schedule of %s: %v", fn, err)
		}
		if s.Function != stored {
			t.Errorf("schedule of %s stored for %q, want %q", fn, s.Function, stored)
		}
		if err := r.sc.Delete(t.Context(), "s"); err != nil {
			t.Fatal(err)
		}
	}
}
