package v1

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/stratus-run/stratus"
)

// ErrUnauthorized is a request without the server's bearer token. Its
// text is the message of the 401 answer.
var ErrUnauthorized = errors.New("missing or wrong bearer token: send Authorization: Bearer TOKEN (the token is in the server's data dir, file token)")

// UpstreamError is a failure of the workload behind a route, not of
// Stratus: a function's error on its HTTP route, a function's answer that
// is not a valid response, a service's replica that did not answer.
// ErrorFrom answers it 502 with Code and Message as they are: on
// /fn/NAME they are the function's errorType and errorMessage (the
// gateway answers a caller without the token a generic body instead, as
// function URLs do).
type UpstreamError struct {
	Code    string
	Message string
}

func (e *UpstreamError) Error() string { return e.Code + ": " + e.Message }

// HeaderClientRequestID is the request header in which a client may
// name its request: 1 to 128 ASCII letters, digits and . _ : - (any other
// value is ignored). Responder answers and logs a 5xx under it, unless the
// answer already has its invocation's ID.
const HeaderClientRequestID = "X-Request-Id"

// Responder writes the answers of a server: JSON values (JSON, RawJSON)
// and errors (Error). It is the one writer of error bodies: every error
// answer goes through Error, which maps the error's kind to its status
// and wire error with ErrorFrom; every 5xx answer carries a request ID
// in X-Amzn-Requestid, and is logged under it. The zero Responder logs
// nothing and answers as any other.
type Responder struct {
	// Log gets a line for each 5xx answer (key req_id): at level Error
	// for an internal error (500), Info for an UpstreamError (the
	// workload's failure, not Stratus's: a function's error is also in
	// its invocation's record, but a function's malformed response is
	// not, as the invocation itself succeeded), Warn for the others.
	// Nil: no lines; the answers are the same.
	Log *slog.Logger
}

// JSON answers v as JSON with status. A v that does not encode is
// answered as an internal error instead.
func (a Responder) JSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		a.Error(w, r, fmt.Errorf("encode answer: %w", err))
		return
	}
	writeBody(w, status, b)
}

// RawJSON answers b, a JSON value already encoded, with status.
func (Responder) RawJSON(w http.ResponseWriter, status int, b []byte) {
	writeBody(w, status, b)
}

// Error answers err as the native API's JSON error ({"code", "message"})
// with the status ErrorFrom maps its kind to. A 401 asks for the bearer
// token (WWW-Authenticate); after a 408 the connection closes, so that
// what is left of the late body is not read as the next request.
func (a Responder) Error(w http.ResponseWriter, r *http.Request, err error) {
	status, e := a.Status(w, r, err)
	switch status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="stratus"`)
	case http.StatusRequestTimeout:
		w.Header().Set("Connection", "close")
	}
	b, _ := json.Marshal(e) // two strings: never fails
	writeBody(w, status, b)
}

// Status maps err to its status and wire error, as Error answers it; for
// a 5xx it sets the answer's X-Amzn-Requestid (see requestID) and logs
// it. It writes nothing itself, so it also serves answers whose status
// has already gone (a stream that ends on an error).
func (a Responder) Status(w http.ResponseWriter, r *http.Request, err error) (int, Error) {
	status, e := ErrorFrom(err)
	if status < 500 {
		return status, e
	}
	id := requestID(w, r)
	if a.Log == nil {
		return status, e
	}
	level := slog.LevelWarn
	var ue *UpstreamError
	switch {
	case status == http.StatusInternalServerError:
		level = slog.LevelError
	case errors.As(err, &ue):
		level = slog.LevelInfo
	}
	a.Log.Log(r.Context(), level, "request failed", "method", r.Method, "path", r.URL.Path,
		"status", status, "code", e.Code, "req_id", id, "err", err)
	return status, e
}

// requestID is the ID a failed request is answered and logged under: the
// invocation's (the answer's X-Amzn-Requestid, set by the invoke routes),
// else the client's X-Request-Id if it is a valid one
// (validClientRequestID), else a new one. The answer carries it in X-Amzn-Requestid, so that the
// client can quote it.
func requestID(w http.ResponseWriter, r *http.Request) string {
	h := w.Header()
	if id := h.Get(HeaderRequestID); id != "" {
		return id
	}
	id := r.Header.Get(HeaderClientRequestID)
	if !validClientRequestID(id) {
		id = stratus.NewRequestID()
	}
	h.Set(HeaderRequestID, id)
	return id
}

// validClientRequestID reports whether id may name a request (in
// HeaderClientRequestID): 1 to 128 ASCII letters, digits and the
// characters . _ : -, so that it goes into headers and log lines as it
// is.
func validClientRequestID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// Header values the answers share; net/http only reads them.
var jsonType = []string{"application/json"}

func writeBody(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h["Content-Type"] = jsonType
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
