package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // zones without the system database, as the server has

	"github.com/stratus-run/stratus/internal/eventually"
)

// scheduledEvent is an EventBridge Scheduled Event as a function gets it.
type scheduledEvent struct {
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

// scheduleView is what `stratus schedule get -o json` shows.
type scheduleView struct {
	Name         string          `json:"name"`
	Function     string          `json:"function"`
	Expression   string          `json:"expression"`
	Timezone     string          `json:"timezone"`
	Data         json.RawMessage `json:"data"`
	CreatedAt    time.Time       `json:"createdAt"`
	LastFiredAt  *time.Time      `json:"lastFiredAt"`
	NextFiringAt *time.Time      `json:"nextFiringAt"`
}

var schedIDRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// deployEventPrinter deploys a Python function that prints each event it
// gets on one line after "EVENT ".
func deployEventPrinter(t *testing.T, s *server, name string) {
	t.Helper()
	needTool(t, "python3")
	dir := writeFiles(t, map[string]string{"app.py": "import json\n" +
		"def handler(event, context):\n    print('EVENT ' + json.dumps(event), flush=True)\n    return {'ok': True}\n"})
	s.mustCLI("deploy", name, "--runtime", "python3", "--handler", "app.handler", dir)
}

// scheduledEventsOf reads, with `stratus logs`, the scheduled events that
// function fn printed, by schedule name.
func scheduledEventsOf(t *testing.T, s *server, fn string) map[string][]scheduledEvent {
	t.Helper()
	out := map[string][]scheduledEvent{}
	dec := json.NewDecoder(strings.NewReader(s.mustCLI("logs", fn, "-o", "json")))
	for {
		var l struct {
			Text string `json:"text"`
		}
		if err := dec.Decode(&l); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("stratus logs -o json: %v", err)
		}
		text, ok := strings.CutPrefix(l.Text, "EVENT ")
		if !ok {
			continue
		}
		var ev scheduledEvent
		if err := json.Unmarshal([]byte(text), &ev); err != nil {
			t.Fatalf("printed event %s: %v", text, err)
		}
		if len(ev.Resources) == 1 {
			_, rule, _ := strings.Cut(ev.Resources[0], ":rule/")
			out[rule] = append(out[rule], ev)
		}
	}
	return out
}

// waitScheduledEvents waits until schedule has made n events of fn.
func waitScheduledEvents(t *testing.T, s *server, fn, schedule string, n int, timeout time.Duration) []scheduledEvent {
	t.Helper()
	var evs []scheduledEvent
	eventually.True(t, timeout, "the firings of schedule "+schedule, func() bool {
		evs = scheduledEventsOf(t, s, fn)[schedule]
		return len(evs) >= n
	})
	return evs
}

func (s *server) schedule(name string) scheduleView {
	s.t.Helper()
	return decode[scheduleView](s.t, []byte(s.mustCLI("schedule", "get", name, "-o", "json")))
}

// atSoon returns an at() time d from now, in UTC, as --at takes it.
func atSoon(d time.Duration) (string, time.Time) {
	at := time.Now().UTC().Add(d).Truncate(time.Second)
	return at.Format("2006-01-02T15:04:05"), at
}

// TestSchedules creates schedules through the CLI and sees them fire: an
// at() schedule a few seconds ahead fires once, a rate fires at once (as
// on EventBridge Scheduler), each with EventBridge's Scheduled Event; ls,
// get and rm; every bad input is refused and changes nothing.
func TestSchedules(t *testing.T) {
	s := startServer(t, "--region", "eu-e2e-1")
	deployEventPrinter(t, s, "tick")

	atText, at := atSoon(3 * time.Second)
	out := s.mustCLI("schedule", "create", "once", "--function", "tick", "--at", atText)
	if !strings.Contains(out, "created schedule once: at("+atText+") invokes tick") {
		t.Errorf("create printed %q", out)
	}
	created := time.Now()
	s.mustCLI("schedule", "create", "every", "--function", "tick", "--rate", "1 minute", "--data", `{"job": "report", "n": [1, 2]}`)
	s.mustCLI("schedule", "create", "ny", "--function", "tick", "--cron", "0 9 ? * MON-FRI *", "--timezone", "America/New_York")

	// The rate fires at its creation.
	ev := waitScheduledEvents(t, s, "tick", "every", 1, 15*time.Second)[0]
	if !schedIDRE.MatchString(ev.ID) {
		t.Errorf("event id %q is not a UUID", ev.ID)
	}
	evTime, err := time.Parse(time.RFC3339, ev.Time)
	if err != nil || !strings.HasSuffix(ev.Time, "Z") || evTime.Sub(created).Abs() > 5*time.Second {
		t.Errorf("event time %q: want the creation time, about %s, in RFC 3339 UTC", ev.Time, created.UTC().Format(time.RFC3339))
	}
	ev.ID, ev.Time = "", ""
	want := scheduledEvent{
		Version: "0", DetailType: "Scheduled Event", Source: "aws.events", Account: "000000000000",
		Region: "eu-e2e-1", Resources: []string{"arn:aws:events:eu-e2e-1:000000000000:rule/every"},
		Detail: json.RawMessage(`{"job": "report", "n": [1, 2]}`), // as Python prints it
	}
	if g, w := schedJSON(t, ev), schedJSON(t, want); g != w {
		t.Errorf("rate event:\n got %s\nwant %s", g, w)
	}

	// The at() schedule fires once, at its time, with detail {}.
	once := waitScheduledEvents(t, s, "tick", "once", 1, 15*time.Second)
	if once[0].Time != at.Format(time.RFC3339) || string(once[0].Detail) != "{}" {
		t.Errorf("at event: time %q detail %s, want %s and {}", once[0].Time, once[0].Detail, at.Format(time.RFC3339))
	}
	eventually.True(t, 5*time.Second, "the at firing recorded", func() bool {
		v := s.schedule("once")
		return v.LastFiredAt != nil && v.LastFiredAt.Equal(at) && v.NextFiringAt == nil
	})

	// ls and get.
	table := s.mustCLI("schedule", "ls")
	for _, w := range []string{"NAME", "NEXT", "every", "rate(1 minute)", "once", "at(" + atText + ")", "ny", "cron(0 9 ? * MON-FRI *)", "America/New_York"} {
		if !strings.Contains(table, w) {
			t.Errorf("schedule ls lacks %q:\n%s", w, table)
		}
	}
	list := decode[[]scheduleView](t, []byte(s.mustCLI("schedule", "ls", "-o", "json")))
	if len(list) != 3 || list[0].Name != "every" || list[1].Name != "ny" || list[2].Name != "once" {
		t.Fatalf("schedule ls -o json: %+v", list)
	}
	every := list[0]
	if every.NextFiringAt == nil || every.NextFiringAt.Sub(every.CreatedAt) != time.Minute || every.Function != "tick" ||
		schedJSON(t, every.Data) != `{"job":"report","n":[1,2]}` {
		t.Errorf("every: %+v (next %v)", every, every.NextFiringAt)
	}
	if ny := list[1]; ny.NextFiringAt == nil || ny.Timezone != "America/New_York" {
		t.Errorf("ny: %+v", ny)
	} else if nyTime := ny.NextFiringAt.In(schedZone(t, "America/New_York")); nyTime.Hour() != 9 || nyTime.Minute() != 0 ||
		nyTime.Weekday() == time.Saturday || nyTime.Weekday() == time.Sunday {
		t.Errorf("ny next fires at %v, want 09:00 on a weekday in New York", nyTime)
	}
	get := s.mustCLI("schedule", "get", "every")
	for _, w := range []string{"Expression:", "rate(1 minute)", "Function:", "tick", `{"job":"report","n":[1,2]}`, "Next firing:"} {
		if !strings.Contains(get, w) {
			t.Errorf("schedule get lacks %q:\n%s", w, get)
		}
	}

	// Bad input: a clear error, nothing changed.
	before := s.mustCLI("schedule", "ls", "-o", "json")
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"a cron without ?", []string{"--function", "tick", "--cron", "0 12 * * * *"}, 1, `one of day-of-month and day-of-week must be "?"`},
		{"a cron of 5 fields", []string{"--function", "tick", "--cron", "0 12 * * ?"}, 1, "want 6 fields"},
		{"a rate of 0 minutes", []string{"--function", "tick", "--rate", "0 minutes"}, 1, "want a positive integer"},
		{"a rate in seconds", []string{"--function", "tick", "--rate", "30 seconds"}, 1, "want minute, minutes"},
		{"an unknown time zone", []string{"--function", "tick", "--rate", "5 minutes", "--timezone", "Mars/Olympus"}, 1, "not a known IANA time zone"},
		{"an at in the past", []string{"--function", "tick", "--at", "2020-01-01T00:00:00"}, 1, "in the past"},
		{"an at that is not a time", []string{"--function", "tick", "--at", "tomorrow"}, 1, "yyyy-mm-ddThh:mm:ss"},
		{"an unknown function", []string{"--function", "nope", "--rate", "5 minutes"}, 1, `function "nope"`},
		{"data that is not an object", []string{"--function", "tick", "--rate", "5 minutes", "--data", "[1]"}, 1, "JSON object"},
		{"data that is not JSON", []string{"--function", "tick", "--rate", "5 minutes", "--data", "{x"}, 2, "--data is not valid JSON"},
		{"both --cron and --rate", []string{"--function", "tick", "--cron", "0 12 * * ? *", "--rate", "5 minutes"}, 2, "only one of --cron, --rate and --at"},
		{"no expression", []string{"--function", "tick"}, 2, "give one of --cron, --rate and --at"},
		{"no function", []string{"--rate", "5 minutes"}, 2, "function"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.cli(append([]string{"schedule", "create", "bad"}, tc.args...)...)
			if r.Code != tc.code || !strings.Contains(r.Stderr, tc.msg) {
				t.Errorf("exit %d, stderr %q; want exit %d saying %q", r.Code, r.Stderr, tc.code, tc.msg)
			}
		})
	}
	r := s.cli("schedule", "create", "every", "--function", "tick", "--rate", "5 minutes")
	if r.Code != 1 || !strings.Contains(r.Stderr, `schedule "every" already exists`) {
		t.Errorf("duplicate name: exit %d, stderr %q", r.Code, r.Stderr)
	}
	r = s.cli("schedule", "create", "bad name", "--function", "tick", "--rate", "5 minutes")
	if r.Code != 2 || !strings.Contains(r.Stderr, "1-64 characters") {
		t.Errorf("bad name: exit %d, stderr %q", r.Code, r.Stderr)
	}
	for _, tc := range []struct {
		name, body string
		token      bool
		status     int
		code       string
	}{
		{"cron and rate", `{"name":"bad","function":"tick","cron":"0 12 * * ? *","rate":"5 minutes"}`, true, 400, "InvalidParameterValueException"},
		{"no expression", `{"name":"bad","function":"tick"}`, true, 400, "InvalidParameterValueException"},
		{"an unknown field", `{"name":"bad","function":"tick","rate":"5 minutes","schedule":"x"}`, true, 400, "InvalidParameterValueException"},
		{"not JSON", `name=bad`, true, 400, "InvalidParameterValueException"},
		{"data not an object", `{"name":"bad","function":"tick","rate":"5 minutes","data":"{}"}`, true, 400, "InvalidParameterValueException"},
		{"an unknown function", `{"name":"bad","function":"nope","rate":"5 minutes"}`, true, 404, "ResourceNotFoundException"},
		{"a taken name", `{"name":"once","function":"tick","rate":"5 minutes"}`, true, 409, "ResourceConflictException"},
		{"no token", `{"name":"bad","function":"tick","rate":"5 minutes"}`, false, 401, "UnauthorizedException"},
	} {
		t.Run("API "+tc.name, func(t *testing.T) {
			resp, body := s.do("POST", "/v1/schedules", []byte(tc.body), tc.token, "Content-Type", "application/json")
			e := decode[struct{ Code, Message string }](t, body)
			if resp.StatusCode != tc.status || e.Code != tc.code || e.Message == "" {
				t.Errorf("status %d %s, want %d %s", resp.StatusCode, body, tc.status, tc.code)
			}
		})
	}
	if after := s.mustCLI("schedule", "ls", "-o", "json"); after != before {
		t.Errorf("bad input changed the schedules:\nbefore %s\nafter %s", before, after)
	}

	// rm.
	if out := s.mustCLI("schedule", "rm", "every"); !strings.Contains(out, "removed schedule every") {
		t.Errorf("rm printed %q", out)
	}
	if r := s.cli("schedule", "rm", "every"); r.Code != 1 || !strings.Contains(r.Stderr, `schedule "every": not found`) {
		t.Errorf("second rm: exit %d, stderr %q", r.Code, r.Stderr)
	}
	if r := s.cli("schedule", "get", "every"); r.Code != 1 || !strings.Contains(r.Stderr, "ResourceNotFoundException") {
		t.Errorf("get after rm: exit %d, stderr %q", r.Code, r.Stderr)
	}
	if resp, body := s.do("GET", "/v1/schedules/every", nil, true); resp.StatusCode != 404 {
		t.Errorf("GET of a removed schedule: %d %s", resp.StatusCode, body)
	}
	if list := decode[[]scheduleView](t, []byte(s.mustCLI("schedule", "ls", "-o", "json"))); len(list) != 2 {
		t.Errorf("after rm: %+v", list)
	}
	// Each firing was one async invocation; the at() and the rate
	// schedules fired once each (ny may have fired too, at 09:00 New York).
	recs := decode[[]recordView](t, []byte(s.mustCLI("invocations", "tick", "-o", "json")))
	evs := scheduledEventsOf(t, s, "tick")
	if len(evs["once"]) != 1 || len(evs["every"]) != 1 || len(recs) != len(evs["once"])+len(evs["every"])+len(evs["ny"]) {
		t.Errorf("%d invocation records for %d, %d and %d events of once, every and ny; want one record per event and one event each of once and every",
			len(recs), len(evs["once"]), len(evs["every"]), len(evs["ny"]))
	}
}

// TestScheduleCatchUpAfterRestart stops the server before an at()
// schedule's time and starts it after: the missed firing is made once, at
// start.
func TestScheduleCatchUpAfterRestart(t *testing.T) {
	s := startServer(t)
	deployEventPrinter(t, s, "tick")
	atText, at := atSoon(4 * time.Second)
	s.mustCLI("schedule", "create", "missed", "--function", "tick", "--at", atText)
	s.Stop()
	if strings.Contains(s.Stderr(), "schedule fired") {
		t.Fatalf("the schedule fired before the server stopped; the test needs a faster stop:\n%s", s.Stderr())
	}
	eventually.True(t, 10*time.Second, "the at time to pass while the server is down", func() bool {
		return time.Now().After(at.Add(500 * time.Millisecond))
	})

	logStart := len(s.Stderr())
	s.Restart()
	evs := waitScheduledEvents(t, s, "tick", "missed", 1, 15*time.Second)
	if len(evs) != 1 || evs[0].Time != at.Format(time.RFC3339) {
		t.Errorf("catch-up events %+v, want one at %s", evs, at.Format(time.RFC3339))
	}
	eventually.True(t, 5*time.Second, "the catch-up firing recorded", func() bool {
		v := s.schedule("missed")
		return v.LastFiredAt != nil && v.LastFiredAt.Equal(at) && v.NextFiringAt == nil
	})
	if n := strings.Count(s.Stderr()[logStart:], "schedule fired"); n != 1 {
		t.Errorf("the restarted server logged %d firings, want 1:\n%s", n, s.Stderr()[logStart:])
	}

	// Recorded as made: a further restart does not fire it again. The
	// scheduler logs "scheduler started" after its first round of firings.
	s.Stop()
	logStart = len(s.Stderr())
	s.Restart()
	eventually.True(t, 10*time.Second, "the scheduler's first round", func() bool {
		return strings.Contains(s.Stderr()[logStart:], "scheduler started")
	})
	if strings.Contains(s.Stderr()[logStart:], "schedule fired") {
		t.Errorf("a restart fired the at schedule again:\n%s", s.Stderr()[logStart:])
	}
	if recs := decode[[]recordView](t, []byte(s.mustCLI("invocations", "tick", "-o", "json"))); len(recs) != 1 {
		t.Errorf("%d invocation records, want 1", len(recs))
	}
}

func schedJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func schedZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("time zone %s: %v", name, err)
	}
	return loc
}
