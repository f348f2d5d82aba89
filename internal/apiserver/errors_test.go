package apiserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/stratus-run/stratus/internal/logtest"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/events"
)

// failingScheduler fails every call with err.
type failingScheduler struct{ err error }

func (f failingScheduler) Create(context.Context, events.ScheduleSpec) (*stratus.Schedule, error) {
	return nil, f.err
}
func (f failingScheduler) Delete(context.Context, string) error                   { return f.err }
func (f failingScheduler) List(context.Context) ([]stratus.Schedule, error)       { return nil, f.err }
func (f failingScheduler) Get(context.Context, string) (*stratus.Schedule, error) { return nil, f.err }

// TestErrorAnswers checks that the control API answers its errors as
// {"code","message"} with their kind's status, and logs each 5xx under
// the client's X-Request-Id (or a new ID the answer carries).
func TestErrorAnswers(t *testing.T) {
	for _, tc := range []struct {
		name         string
		err          error
		path, token  string
		clientID     string
		status       int
		body         string
		logged       bool
		wantLogLevel slog.Level
	}{
		{name: "internal", err: errors.New("database is locked"), path: "/v1/schedules", token: "tok", clientID: "client-7",
			status: 500, body: `{"code":"ServiceException","message":"internal error"}`, logged: true, wantLogLevel: slog.LevelError},
		{name: "unavailable", err: fmt.Errorf("list schedules: %w", stratus.ErrUnavailable), path: "/v1/schedules", token: "tok",
			status: 503, body: `{"code":"ServiceUnavailableException","message":"list schedules: unavailable"}`, logged: true, wantLogLevel: slog.LevelWarn},
		{name: "not found", err: stratus.ErrNotFound, path: "/v1/schedules/x", token: "tok",
			status: 404, body: `{"code":"ResourceNotFoundException","message":"not found"}`},
		{name: "no endpoint", path: "/v1/nothing", token: "tok",
			status: 404, body: `{"code":"ResourceNotFoundException","message":"no endpoint GET /v1/nothing: not found"}`},
		{name: "no route", path: "/nothing",
			status: 404, body: `{"code":"ResourceNotFoundException","message":"no route for GET /nothing: not found"}`},
		{name: "no token", path: "/v1/schedules",
			status: 401, body: `{"code":"UnauthorizedException","message":"` + v1.ErrUnauthorized.Error() + `"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &logtest.Recorder{}
			s := New(Config{Token: "tok", Log: slog.New(h), Schedules: failingScheduler{tc.err}})
			r := httptest.NewRequest("GET", tc.path, nil)
			if tc.token != "" {
				r.Header.Set("Authorization", "Bearer "+tc.token)
			}
			if tc.clientID != "" {
				r.Header.Set(v1.HeaderClientRequestID, tc.clientID)
			}
			w := httptest.NewRecorder()
			s.ServeHTTP(w, r)
			if w.Code != tc.status || w.Body.String() != tc.body {
				t.Errorf("answer %d %s, want %d %s", w.Code, w.Body, tc.status, tc.body)
			}
			if !tc.logged {
				if len(h.Records()) != 0 {
					t.Errorf("a %d logged %d lines", w.Code, len(h.Records()))
				}
				return
			}
			if len(h.Records()) != 1 {
				t.Fatalf("%d lines logged, want 1", len(h.Records()))
			}
			var reqID, errText string
			h.Records()[0].Attrs(func(a slog.Attr) bool {
				switch a.Key {
				case "req_id":
					reqID = a.Value.String()
				case "err":
					errText = a.Value.String()
				}
				return true
			})
			if reqID == "" || reqID != w.Header().Get(v1.HeaderRequestID) || (tc.clientID != "" && reqID != tc.clientID) {
				t.Errorf("logged under req_id %q, answer's %q, client's %q", reqID, w.Header().Get(v1.HeaderRequestID), tc.clientID)
			}
			if errText != tc.err.Error() || h.Records()[0].Level != tc.wantLogLevel {
				t.Errorf("logged %v err %q, want %v %q", h.Records()[0].Level, errText, tc.wantLogLevel, tc.err)
			}
		})
	}
}
