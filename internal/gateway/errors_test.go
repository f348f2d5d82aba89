package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stratus-run/stratus/internal/logtest"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

// scripted is a function "f" (auth none) whose invocations answer resp
// or err.
type scripted struct {
	resp *stratus.Response
	err  error
}

func (s *scripted) Head(name string) (*stratus.Version, bool) {
	if name != "f" {
		return nil, false
	}
	return &stratus.Version{Function: name, Version: 1, Config: stratus.FunctionConfig{Auth: stratus.AuthNone}}, true
}

func (s *scripted) Invoke(ctx context.Context, name string, req stratus.Request) (*stratus.Response, error) {
	if s.err != nil {
		return nil, s.err
	}
	resp := *s.resp
	resp.Record.RequestID = req.RequestID
	return &resp, nil
}

// noQueue takes no asynchronous invocations.
type noQueue struct{}

func (noQueue) Enqueue(ctx context.Context, fn string, event []byte) (string, error) {
	return "", fmt.Errorf("enqueue: %w", stratus.ErrUnavailable)
}

// TestNewPanicsWithoutARequiredField: a Gateway or ServiceProxy missing
// a part it needs fails at New, naming the field, not at its first
// request.
func TestNewPanicsWithoutARequiredField(t *testing.T) {
	fn := &scripted{}
	for _, tc := range []struct {
		field string
		new   func()
	}{
		{"Config.Invoker", func() { New(Config{Queue: noQueue{}, Heads: fn}) }},
		{"Config.Queue", func() { New(Config{Invoker: fn, Heads: fn}) }},
		{"Config.Heads", func() { New(Config{Invoker: fn, Queue: noQueue{}}) }},
		{"ProxyConfig.Services", func() { NewServiceProxy(ProxyConfig{Domain: "localhost"}) }},
	} {
		func() {
			defer func() {
				if msg := fmt.Sprint(recover()); !strings.Contains(msg, tc.field+" is nil") {
					t.Errorf("without %s: panic %q, want one naming it", tc.field, msg)
				}
			}()
			tc.new()
		}()
	}
	// With every required field, the defaults fill in the rest.
	New(Config{Invoker: fn, Queue: noQueue{}, Heads: fn})
	NewServiceProxy(ProxyConfig{Services: fakeServices{}})
}

// TestErrorAnswers checks the answers of the invoke routes' failures:
// their statuses and bodies (on /fn, a function URL's generic 502 unless
// the caller holds the token), and that each 5xx is logged, with its
// detail, under the request ID the answer carries.
func TestErrorAnswers(t *testing.T) {
	fnErr := &stratus.Response{Body: []byte(`{"errorType":"ValueError","errorMessage":"boom","stackTrace":[]}`)}
	fnErr.ErrorType = "ValueError"
	tests := []struct {
		name     string
		fn       *scripted
		method   string
		path     string
		status   int
		body     v1.Error
		fnError  bool // X-Amz-Function-Error: Unhandled
		logLevel slog.Level
		logged   bool
		token    bool // the request carries the server's token
		generic  bool // the body is a function URL's "Internal Server Error"
	}{
		{name: "function error on /fn", fn: &scripted{resp: fnErr}, method: "GET", path: "/fn/f/x",
			status: 502, body: v1.Error{Code: "ValueError", Message: "boom"}, fnError: true, logged: true, logLevel: slog.LevelInfo, generic: true},
		{name: "function error on /fn with the token", fn: &scripted{resp: fnErr}, method: "GET", path: "/fn/f/x", token: true,
			status: 502, body: v1.Error{Code: "ValueError", Message: "boom"}, fnError: true, logged: true, logLevel: slog.LevelInfo},
		{name: "malformed response on /fn", fn: &scripted{resp: &stratus.Response{Body: []byte(`{"statusCode":"nope"}`)}}, method: "GET", path: "/fn/f",
			status: 502, body: v1.Error{Code: "Function.MalformedResponse", Message: `function response: statusCode "nope" is not an integer in 200-599: invalid`},
			logged: true, logLevel: slog.LevelInfo, generic: true},
		{name: "malformed response on /fn with the token", fn: &scripted{resp: &stratus.Response{Body: []byte(`{"statusCode":"nope"}`)}}, method: "GET", path: "/fn/f", token: true,
			status: 502, body: v1.Error{Code: "Function.MalformedResponse", Message: `function response: statusCode "nope" is not an integer in 200-599: invalid`},
			logged: true, logLevel: slog.LevelInfo},
		{name: "pool unavailable on /fn", fn: &scripted{err: fmt.Errorf("start instance: %w", stratus.ErrUnavailable)}, method: "POST", path: "/fn/f",
			status: 503, body: v1.Error{Code: v1.CodeUnavailable, Message: "start instance: unavailable"}, logged: true, logLevel: slog.LevelWarn},
		{name: "internal error on invoke", fn: &scripted{err: fmt.Errorf("record: disk I/O error")}, method: "POST", path: "/v1/functions/f/invoke",
			status: 500, body: v1.Error{Code: v1.CodeInternal, Message: "internal error"}, logged: true, logLevel: slog.LevelError},
		{name: "capacity on invoke", fn: &scripted{err: fmt.Errorf("function %q: %w", "f", stratus.ErrCapacity)}, method: "POST", path: "/v1/functions/f/invoke",
			status: 429, body: v1.Error{Code: v1.CodeTooMany, Message: `function "f": too many requests`}},
		{name: "unknown function", fn: &scripted{}, method: "POST", path: "/v1/functions/nope/invoke",
			status: 404, body: v1.Error{Code: v1.CodeNotFound, Message: `function "nope": not found`}},
		{name: "bad invocation type", fn: &scripted{}, method: "PUT", path: "/v1/functions/f/invoke",
			status: 400, body: v1.Error{Code: v1.CodeInvalid, Message: `invocation type "Later": want RequestResponse or Event: invalid`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &logtest.Recorder{}
			g := New(Config{Invoker: tt.fn, Queue: noQueue{}, Heads: tt.fn, Token: NewToken(secret), Log: slog.New(h)})
			mux := http.NewServeMux()
			mux.HandleFunc("/fn/{name}", g.ServeFunctionURL)
			mux.HandleFunc("/fn/{name}/{path...}", g.ServeFunctionURL)
			mux.HandleFunc("POST /v1/functions/{name}/invoke", g.ServeInvoke)
			mux.HandleFunc("PUT /v1/functions/{name}/invoke", func(w http.ResponseWriter, r *http.Request) {
				r.Header.Set(v1.HeaderInvocationType, "Later")
				g.ServeInvoke(w, r)
			})
			w := httptest.NewRecorder()
			r := httptest.NewRequest(tt.method, tt.path, strings.NewReader(`{}`))
			if tt.token {
				r.Header.Set("Authorization", "Bearer "+secret)
			}
			mux.ServeHTTP(w, r)

			if w.Code != tt.status {
				t.Errorf("status %d, want %d", w.Code, tt.status)
			}
			if tt.generic {
				if w.Body.String() != "Internal Server Error" || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
					t.Errorf("body %q (%s), want a function URL's generic one", w.Body, w.Header().Get("Content-Type"))
				}
			} else {
				var body v1.Error
				if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
					t.Fatalf("body %q: %v", w.Body, err)
				}
				if diff := cmp.Diff(tt.body, body); diff != "" {
					t.Errorf("body (-want +got):\n%s", diff)
				}
			}
			if got := w.Header().Get(v1.HeaderFunctionError) == "Unhandled"; got != tt.fnError {
				t.Errorf("%s: %q", v1.HeaderFunctionError, w.Header().Get(v1.HeaderFunctionError))
			}
			if !tt.logged {
				if len(h.Records()) != 0 {
					t.Errorf("a %d logged %d lines", tt.status, len(h.Records()))
				}
				return
			}
			if len(h.Records()) != 1 {
				t.Fatalf("%d lines logged, want 1", len(h.Records()))
			}
			rec := h.Records()[0]
			var reqID, logged string
			rec.Attrs(func(a slog.Attr) bool {
				switch a.Key {
				case "req_id":
					reqID = a.Value.String()
				case "err":
					logged = a.Value.String()
				}
				return true
			})
			// The log has the detail the answer may not.
			if tt.status == http.StatusBadGateway && !strings.Contains(logged, tt.body.Message) {
				t.Errorf("logged err %q, want it to hold %q", logged, tt.body.Message)
			}
			if rec.Level != tt.logLevel || reqID == "" || reqID != w.Header().Get(v1.HeaderRequestID) {
				t.Errorf("logged at %v under req_id %q (answer's %q), want %v", rec.Level, reqID, w.Header().Get(v1.HeaderRequestID), tt.logLevel)
			}
		})
	}
}

// TestUnauthorizedAnswer checks the 401 of the function route: its
// body and its WWW-Authenticate header.
func TestUnauthorizedAnswer(t *testing.T) {
	fns := &fakeFunctions{}
	g := New(Config{Invoker: fns, Queue: noQueue{}, Heads: fns, Token: NewToken(secret)})
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/fn/closed", nil)
	r.SetPathValue("name", "closed")
	g.ServeFunctionURL(w, r)
	want := `{"code":"UnauthorizedException","message":"missing or wrong bearer token: send Authorization: Bearer TOKEN (the token is in the server's data dir, file token)"}`
	if w.Code != 401 || w.Body.String() != want || w.Header().Get("WWW-Authenticate") != `Bearer realm="stratus"` {
		t.Errorf("%d %v %s", w.Code, w.Header(), w.Body)
	}
}
