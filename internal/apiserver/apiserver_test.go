package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stratus-run/stratus/internal/logtest"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/functions"
	"github.com/stratus-run/stratus/internal/store"
)

// Stand-ins for the parts New checks. Only stubFlusher is ever called.
type (
	stubManager struct{ serviceManager }
	stubQueue   struct{ asyncQueue }
	stubPools   struct{}
	stubFlusher struct{ flushed chan struct{} }
)

func (stubPools) Stats(string) stratus.InstanceStats { return stratus.InstanceStats{} }
func (stubPools) Invoke(context.Context, string, stratus.Request) (*stratus.Response, error) {
	return nil, stratus.ErrUnavailable
}

func (f stubFlusher) Flushed() <-chan struct{}       { return f.flushed }
func (f stubFlusher) Sync(ctx context.Context) error { return nil }

// TestNewPanicsWithoutARequiredField: a part that the routes served need
// is checked at New, which names the missing field, not at the first
// request.
func TestNewPanicsWithoutARequiredField(t *testing.T) {
	fns, st, logs := &functions.Service{}, &store.Store{}, stubFlusher{}
	svcs := ServicesConfig{Manager: stubManager{}}
	for _, tc := range []struct {
		cfg  Config
		want string // "" for no panic
	}{
		{Config{Functions: fns}, "Config.Store is nil; Functions needs it"},
		{Config{Functions: fns, Store: st}, "Config.Pools is nil; Functions needs it"},
		{Config{Functions: fns, Store: st, Pools: stubPools{}}, "Config.Logs is nil; Functions needs it"},
		{Config{Functions: fns, Store: st, Pools: stubPools{}, Logs: logs}, "Config.Queue is nil; Functions needs it"},
		{Config{Functions: fns, Store: st, Pools: stubPools{}, Logs: logs, Queue: stubQueue{}}, ""},
		{Config{Services: svcs}, "Config.Store is nil; Services.Manager needs it"},
		{Config{Services: svcs, Store: st}, "Config.Logs is nil; Services.Manager needs it"},
		{Config{Services: svcs, Store: st, Logs: logs}, ""},
		{Config{}, ""},
	} {
		func() {
			defer func() {
				got := ""
				if r := recover(); r != nil {
					got = fmt.Sprint(r)
				}
				if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
					t.Errorf("New(%+v): panic %q, want %q", tc.cfg, got, tc.want)
				}
			}()
			New(tc.cfg)
		}()
	}
}

// TestNoFunctionRoutesWithoutFunctions: a server without Functions
// answers the function routes 404, as any unknown route.
func TestNoFunctionRoutesWithoutFunctions(t *testing.T) {
	s := New(Config{Token: "tok"})
	for _, path := range []string{"/v1/functions", "/v1/functions/f/invoke", "/v1/invocations/x", "/fn/f", "/fn/f/x"} {
		r := httptest.NewRequest("POST", path, nil)
		r.Header.Set("Authorization", "Bearer tok")
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if w.Code != http.StatusNotFound {
			t.Errorf("POST %s: %d %s, want 404", path, w.Code, w.Body)
		}
	}
}

// TestFollowLogsLogsAFailedRead: a log follow whose read fails has sent
// its status; the stream ends, and the failure is logged once, unless
// the client had left.
func TestFollowLogsLogsAFailedRead(t *testing.T) {
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "stratus.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	for _, left := range []bool{false, true} {
		h := &logtest.Recorder{}
		s := &Server{st: st, logs: stubFlusher{flushed: make(chan struct{})}, answer: v1.Responder{Log: h.Logger()}, stopping: make(chan struct{})}
		r := httptest.NewRequest("GET", "/v1/functions/f/logs?follow=true", nil)
		if left {
			ctx, cancel := context.WithCancel(r.Context())
			cancel()
			r = r.WithContext(ctx)
		}
		w := httptest.NewRecorder()
		s.serveLogs(w, r, "f", "") // returns: the stream ended
		if w.Code != http.StatusOK || w.Body.Len() != 0 {
			t.Errorf("client left %v: %d %q, want 200 and no lines", left, w.Code, w.Body)
		}
		recs := h.Records()
		if left {
			if len(recs) != 0 {
				t.Errorf("the client left: %d lines logged, want none", len(recs))
			}
			continue
		}
		if len(recs) != 1 {
			t.Fatalf("%d lines logged, want 1", len(recs))
		}
		got := logtest.Attrs(recs[0])
		if recs[0].Level != slog.LevelError || got["path"] != "/v1/functions/f/logs" || got["status"] != "500" ||
			!strings.Contains(got["err"], `follow logs of "f"`) || got["req_id"] == "" {
			t.Errorf("logged at %v: %v", recs[0].Level, got)
		}
	}
}

// TestDecodeSpecBounds: each spec route reads one JSON object within its
// own bound.
func TestDecodeSpecBounds(t *testing.T) {
	s := New(Config{Token: "tok", Schedules: failingScheduler{stratus.ErrConflict}})
	for _, tc := range []struct {
		name, body string
		status     int
		message    string
	}{
		{"over the schedule bound", `{"name":"` + strings.Repeat("x", maxScheduleBody) + `"}`, 413,
			fmt.Sprintf("schedule: body over %d bytes: too large", maxScheduleBody)},
		// Over the other specs' bound, within the schedule's.
		{"a large event", `{"name":"s","data":"` + strings.Repeat("x", 2*maxSpecBody) + `"}`, 409, "conflict"},
		{"an unknown field", `{"name":"s","color":"red"}`, 400, `schedule: want a JSON object: json: unknown field "color": invalid`},
		{"two objects", `{"name":"s"} {}`, 400, "schedule: want one JSON object: invalid"},
	} {
		r := httptest.NewRequest("POST", "/v1/schedules", strings.NewReader(tc.body))
		r.Header.Set("Authorization", "Bearer tok")
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		var e v1.Error
		_ = json.Unmarshal(w.Body.Bytes(), &e)
		if w.Code != tc.status || e.Message != tc.message {
			t.Errorf("%s: %d %q, want %d %q", tc.name, w.Code, e.Message, tc.status, tc.message)
		}
	}
}
