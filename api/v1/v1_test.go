package v1

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"

	"github.com/stratus-run/stratus/internal/logtest"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
)

func TestErrorFrom(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("function %q: %w", "f", err) }
	tests := []struct {
		name   string
		err    error
		status int
		want   Error
	}{
		{"invalid", stratus.ErrInvalid, 400, Error{CodeInvalid, "invalid"}},
		{"not found", stratus.ErrNotFound, 404, Error{CodeNotFound, "not found"}},
		{"conflict", stratus.ErrConflict, 409, Error{CodeConflict, "conflict"}},
		{"capacity", stratus.ErrCapacity, 429, Error{CodeTooMany, "too many requests"}},
		{"too large", stratus.ErrTooLarge, 413, Error{CodeTooLarge, "too large"}},
		{"timeout", stratus.ErrTimeout, 504, Error{CodeTimeout, "timed out"}},
		{"deadline", context.DeadlineExceeded, 504, Error{CodeTimeout, "context deadline exceeded"}},
		{"unavailable", stratus.ErrUnavailable, 503, Error{CodeUnavailable, "unavailable"}},
		{"no space", stratus.ErrNoSpace, 507, Error{CodeNoSpace, stratus.ErrNoSpace.Error()}},
		{"ENOSPC", syscall.ENOSPC, 507, Error{CodeNoSpace, stratus.ErrNoSpace.Error() + ": " + syscall.ENOSPC.Error()}},
		{"EDQUOT", syscall.EDQUOT, 507, Error{CodeNoSpace, stratus.ErrNoSpace.Error() + ": " + syscall.EDQUOT.Error()}},
		{"request timeout", stratus.ErrRequestTimeout, 408, Error{CodeRequestTimeout, stratus.ErrRequestTimeout.Error()}},
		{"unauthorized", ErrUnauthorized, 401, Error{CodeUnauthorized, ErrUnauthorized.Error()}},
		{"forbidden", stratus.ErrForbidden, 403, Error{CodeForbidden, "forbidden"}},
		{"precondition", stratus.ErrPrecondition, 412, Error{CodePrecondition, "precondition failed"}},
		{"upstream", &UpstreamError{Code: "ValueError", Message: "boom"}, 502, Error{"ValueError", "boom"}},
		{"no kind", errors.New("open /data/x: permission denied"), 500, Error{CodeInternal, "internal error"}},

		// Wrapped, the kind still decides; the message is the whole text.
		{"wrapped not found", wrap(stratus.ErrNotFound), 404, Error{CodeNotFound, `function "f": not found`}},
		{"wrapped twice", fmt.Errorf("get: %w", wrap(stratus.ErrConflict)), 409, Error{CodeConflict, `get: function "f": conflict`}},
		{"wrapped ENOSPC", &fs.PathError{Op: "write", Path: "/d/f", Err: syscall.ENOSPC}, 507,
			Error{CodeNoSpace, stratus.ErrNoSpace.Error() + ": write /d/f: " + syscall.ENOSPC.Error()}},
		{"wrapped upstream", wrap(&UpstreamError{Code: "Function.MalformedResponse", Message: "bad"}), 502,
			Error{"Function.MalformedResponse", "bad"}},
		{"wrapped unauthorized", fmt.Errorf("fn route: %w", ErrUnauthorized), 401, Error{CodeUnauthorized, ErrUnauthorized.Error()}},
		{"wrapped no kind", fmt.Errorf("list: %w", errors.New("disk I/O error")), 500, Error{CodeInternal, "internal error"}},

		// Order: a full disk wins over the kind it surfaces in; a late
		// body over invalid.
		{"invalid and no space", fmt.Errorf("extract: %w", errors.Join(stratus.ErrInvalid, syscall.ENOSPC)), 507,
			Error{CodeNoSpace, stratus.ErrNoSpace.Error() + ": extract: invalid\n" + syscall.ENOSPC.Error()}},
		{"request timeout and invalid", errors.Join(stratus.ErrRequestTimeout, stratus.ErrInvalid), 408,
			Error{CodeRequestTimeout, stratus.ErrRequestTimeout.Error() + "\ninvalid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, got := ErrorFrom(tt.err)
			if status != tt.status {
				t.Errorf("status %d, want %d", status, tt.status)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
}

func TestResponderError(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		reqID   string // the client's X-Request-Id
		setID   string // the answer's request ID, set before the error (invoke routes)
		status  int
		body    Error
		header  map[string]string // answer headers that must be there
		logged  bool
		level   slog.Level
		wantID  string // the req_id logged; "new" for a generated one
		wantErr string
	}{
		{name: "4xx not logged", err: fmt.Errorf("function %q: %w", "f", stratus.ErrNotFound), status: 404,
			body: Error{CodeNotFound, `function "f": not found`}},
		{name: "401 asks for the token", err: ErrUnauthorized, status: 401, body: Error{CodeUnauthorized, ErrUnauthorized.Error()},
			header: map[string]string{"WWW-Authenticate": `Bearer realm="stratus"`}},
		{name: "408 closes", err: stratus.ErrRequestTimeout, status: 408, body: Error{CodeRequestTimeout, stratus.ErrRequestTimeout.Error()},
			header: map[string]string{"Connection": "close"}},
		{name: "500 with a new request ID", err: errors.New("database is locked"), status: 500,
			body: Error{CodeInternal, "internal error"}, logged: true, level: slog.LevelError, wantID: "new", wantErr: "database is locked"},
		{name: "503 under the client's ID", err: fmt.Errorf("enqueue: %w", stratus.ErrUnavailable), reqID: "client-1", status: 503,
			body: Error{CodeUnavailable, "enqueue: unavailable"}, logged: true, level: slog.LevelWarn, wantID: "client-1",
			header: map[string]string{HeaderRequestID: "client-1"}},
		{name: "503 under a client's ID of every allowed character", err: stratus.ErrUnavailable, reqID: "aZ09._:-", status: 503,
			body: Error{CodeUnavailable, "unavailable"}, logged: true, level: slog.LevelWarn, wantID: "aZ09._:-"},
		{name: "503 under a new ID, the client's not valid", err: stratus.ErrUnavailable, reqID: "id\x1b[31m red", status: 503,
			body: Error{CodeUnavailable, "unavailable"}, logged: true, level: slog.LevelWarn, wantID: "new"},
		{name: "503 under a new ID, the client's too long", err: stratus.ErrUnavailable, reqID: strings.Repeat("x", 129), status: 503,
			body: Error{CodeUnavailable, "unavailable"}, logged: true, level: slog.LevelWarn, wantID: "new"},
		{name: "504 under the invocation's ID", err: stratus.ErrTimeout, reqID: "client-2", setID: "inv-1", status: 504,
			body: Error{CodeTimeout, "timed out"}, logged: true, level: slog.LevelWarn, wantID: "inv-1",
			header: map[string]string{HeaderRequestID: "inv-1"}},
		{name: "507", err: syscall.ENOSPC, status: 507, body: Error{CodeNoSpace, stratus.ErrNoSpace.Error() + ": " + syscall.ENOSPC.Error()},
			logged: true, level: slog.LevelWarn, wantID: "new"},
		{name: "502 of the workload", err: &UpstreamError{Code: "Runtime.ExitError", Message: "exit status 3"}, setID: "inv-2", status: 502,
			body: Error{"Runtime.ExitError", "exit status 3"}, logged: true, level: slog.LevelInfo, wantID: "inv-2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &logtest.Recorder{}
			a := Responder{Log: slog.New(h)}
			r := httptest.NewRequest("POST", "/v1/functions/f/invoke", nil)
			if tt.reqID != "" {
				r.Header.Set(HeaderClientRequestID, tt.reqID)
			}
			w := httptest.NewRecorder()
			if tt.setID != "" {
				w.Header().Set(HeaderRequestID, tt.setID)
			}
			a.Error(w, r, tt.err)

			if w.Code != tt.status {
				t.Errorf("status %d, want %d", w.Code, tt.status)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var body Error
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", w.Body, err)
			}
			if diff := cmp.Diff(tt.body, body); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			for k, v := range tt.header {
				if got := w.Header().Get(k); got != v {
					t.Errorf("header %s: %q, want %q", k, got, v)
				}
			}
			if !tt.logged {
				if len(h.Records()) != 0 {
					t.Errorf("logged %d lines for a %d, want none", len(h.Records()), tt.status)
				}
				return
			}
			if len(h.Records()) != 1 {
				t.Fatalf("logged %d lines, want 1", len(h.Records()))
			}
			rec := h.Records()[0]
			got := logtest.Attrs(rec)
			if rec.Level != tt.level {
				t.Errorf("level %v, want %v", rec.Level, tt.level)
			}
			id := got["req_id"]
			switch {
			case tt.wantID == "new" && (len(id) != 36 || id != w.Header().Get(HeaderRequestID)):
				t.Errorf("req_id %q: want a new request ID, also in the answer's %s (%q)", id, HeaderRequestID, w.Header().Get(HeaderRequestID))
			case tt.wantID != "new" && id != tt.wantID:
				t.Errorf("req_id %q, want %q", id, tt.wantID)
			}
			if got["status"] != fmt.Sprint(tt.status) || got["code"] != tt.body.Code || got["path"] != "/v1/functions/f/invoke" || got["method"] != "POST" {
				t.Errorf("log attributes %v", got)
			}
			if tt.wantErr != "" && got["err"] != tt.wantErr {
				t.Errorf("err %q, want %q", got["err"], tt.wantErr)
			}
		})
	}
}

func TestValidClientRequestID(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"a", true},
		{"req-1", true},
		{"0190b1c2-7d3e-7f00-8000-000000000000", true},
		{"trace:abc.DEF_9", true},
		{strings.Repeat("x", 128), true},
		{"", false},
		{strings.Repeat("x", 129), false},
		{"a b", false},
		{"a\nb", false},
		{"a\x00", false},
		{"a/b", false},
		{"a=b", false},
		{"é", false},
		{`"a"`, false},
	} {
		if got := validClientRequestID(tc.id); got != tc.ok {
			t.Errorf("validClientRequestID(%q) = %v, want %v", tc.id, got, tc.ok)
		}
	}
}

// TestResponderRequestIDWithoutLog checks that the answers do not
// depend on logging: every 5xx carries a request ID, with or without a
// logger; a 4xx none.
func TestResponderRequestIDWithoutLog(t *testing.T) {
	for _, a := range []Responder{{}, {Log: slog.New(&logtest.Recorder{})}} {
		for _, tc := range []struct {
			err      error
			clientID string
			want     string // "new" for a generated ID, "" for none
		}{
			{errors.New("disk I/O error"), "", "new"},
			{stratus.ErrUnavailable, "client-1", "client-1"},
			{&UpstreamError{Code: "Function.MalformedResponse", Message: "bad"}, "bad id", "new"},
			{stratus.ErrNotFound, "client-2", ""},
		} {
			r := httptest.NewRequest("GET", "/fn/f", nil)
			if tc.clientID != "" {
				r.Header.Set(HeaderClientRequestID, tc.clientID)
			}
			w := httptest.NewRecorder()
			a.Error(w, r, tc.err)
			got := w.Header().Get(HeaderRequestID)
			switch {
			case tc.want == "new" && len(got) != 36:
				t.Errorf("logging %v, %d for %v: %s %q, want a new request ID", a.Log != nil, w.Code, tc.err, HeaderRequestID, got)
			case tc.want != "new" && got != tc.want:
				t.Errorf("logging %v, %d for %v: %s %q, want %q", a.Log != nil, w.Code, tc.err, HeaderRequestID, got, tc.want)
			}
		}
	}
}

// TestResponderStatus checks the mapping for answers whose status has
// gone: a 5xx is logged, nothing is written.
func TestResponderStatus(t *testing.T) {
	h := &logtest.Recorder{}
	a := Responder{Log: slog.New(h)}
	w := httptest.NewRecorder()
	status, e := a.Status(w, httptest.NewRequest("POST", "/v1/images/pull", nil), errors.New("registry said 500"))
	if status != 500 || e.Code != CodeInternal || len(h.Records()) != 1 || w.Body.Len() != 0 {
		t.Errorf("Status: %d %+v, %d lines logged, body %q", status, e, len(h.Records()), w.Body)
	}
	if _, e := a.Status(w, httptest.NewRequest("GET", "/", nil), stratus.ErrNotFound); e.Code != CodeNotFound || len(h.Records()) != 1 {
		t.Errorf("a 404: %+v, %d lines logged", e, len(h.Records()))
	}
}

func TestResponderJSON(t *testing.T) {
	h := &logtest.Recorder{}
	a := Responder{Log: slog.New(h)}
	w := httptest.NewRecorder()
	a.JSON(w, httptest.NewRequest("GET", "/v1/info", nil), http.StatusCreated, Accepted{RequestID: "x"})
	if w.Code != 201 || w.Body.String() != `{"requestId":"x"}` || w.Header().Get("Content-Length") != "17" {
		t.Errorf("JSON: %d %v %q", w.Code, w.Header(), w.Body)
	}
	// A value that does not encode is an internal error, logged.
	w = httptest.NewRecorder()
	a.JSON(w, httptest.NewRequest("GET", "/v1/info", nil), http.StatusOK, map[string]any{"f": func() {}})
	if w.Code != 500 || len(h.Records()) != 1 {
		t.Errorf("JSON of a func: %d %q, %d lines logged", w.Code, w.Body, len(h.Records()))
	}
	// RawJSON answers JSON already encoded, as it is.
	w = httptest.NewRecorder()
	a.RawJSON(w, http.StatusOK, []byte(`{"a":1}`))
	if w.Code != 200 || w.Body.String() != `{"a":1}` || w.Header().Get("Content-Type") != "application/json" || w.Header().Get("Content-Length") != "7" {
		t.Errorf("RawJSON: %d %v %q", w.Code, w.Header(), w.Body)
	}
	// The zero Responder answers and logs nothing.
	w = httptest.NewRecorder()
	Responder{}.Error(w, httptest.NewRequest("GET", "/", nil), errors.New("x"))
	if w.Code != 500 {
		t.Errorf("zero Responder: %d", w.Code)
	}
}
