package apiserver

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

func TestReadyz(t *testing.T) {
	full := fmt.Errorf("store log lines: database or disk is full (13): %w", stratus.ErrNoSpace)
	tests := []struct {
		name   string
		checks []Check
		status int
		want   v1.Readiness
	}{
		{"all pass", []Check{{"store", nil}, {"events", nil}}, http.StatusOK, v1.Readiness{Status: "ready"}},
		{"store fails", []Check{{"store", full}, {"events", nil}}, http.StatusServiceUnavailable,
			v1.Readiness{Status: "not ready", Reason: "store: " + full.Error(),
				Checks: map[string]string{"store": full.Error(), "events": "ok"}}},
		{"two fail", []Check{{"events", fmt.Errorf("JetStream disabled: %w", stratus.ErrUnavailable)}, {"disk", full}},
			http.StatusServiceUnavailable,
			v1.Readiness{Status: "not ready", Reason: "events: JetStream disabled: unavailable; disk: " + full.Error(),
				Checks: map[string]string{"events": "JetStream disabled: unavailable", "disk": full.Error()}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Config{Log: slog.New(slog.DiscardHandler), Ready: func() []Check { return tt.checks }})
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
			if rec.Code != tt.status {
				t.Errorf("status %d, want %d", rec.Code, tt.status)
			}
			var got v1.Readiness
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("readyz (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("stopping", func(t *testing.T) {
		s := New(Config{Log: slog.New(slog.DiscardHandler), Ready: func() []Check { return nil }})
		s.Stopping()
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("status %d while stopping", rec.Code)
		}
	})
}
