// Package gateway turns HTTP requests into invocations: the direct invoke
// endpoint (POST /v1/functions/NAME/invoke, the body is the event) and the
// function route (ANY /fn/NAME[/PATH], the request becomes an API Gateway
// HTTP API v2.0 event and the result maps back as Lambda function URLs do),
// and proxies the service routes (ServiceProxy). On the function and
// service routes, whatever the workload's auth mode, the server's token is
// removed from every request before it reaches the workload (Token).
//
// Bodies are bounded in time (BoundBodies: 408 past the server's read
// timeout) and in size (413). A request holds no instance nor replica slot
// while its client sends its body: a function's event is read whole before
// the invocation takes an instance, and a service's request takes a slot
// only once its body is complete or its first 64 KiB have come.
//
// The gateway starts no goroutines; each request runs on its server
// goroutine, waiting in the pool while the function is at its cap
// (bounded in time and in number, then 429).
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/httpevent"
)

type invoker interface {
	Invoke(ctx context.Context, name string, req stratus.Request) (*stratus.Response, error)
}

type enqueuer interface {
	Enqueue(ctx context.Context, fn string, event []byte) (string, error)
}

type heads interface {
	Head(name string) (*stratus.Version, bool)
}

// Gateway serves invocations over HTTP.
type Gateway struct {
	inv      invoker
	queue    enqueuer
	heads    heads
	token    *Token
	maxEvent int64
	log      *slog.Logger
}

// New returns a Gateway. token authenticates requests on the function
// route and is removed from them before they become events; maxEvent
// bounds an event's size.
func New(inv invoker, q enqueuer, h heads, token *Token, maxEvent int64, log *slog.Logger) *Gateway {
	return &Gateway{inv: inv, queue: q, heads: h, token: token, maxEvent: maxEvent, log: log}
}

// WriteError answers err as the native API's JSON error, with the status
// v1.ErrorFrom maps its kind to. After a 408 the connection closes: what
// is left of the late body must not be read as the next request.
func WriteError(w http.ResponseWriter, err error) {
	status, e := v1.ErrorFrom(err)
	if status == http.StatusRequestTimeout {
		w.Header().Set("Connection", "close")
	}
	WriteJSON(w, status, e)
}

// WriteJSON answers v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"code":"ServiceException","message":"encode answer"}`)
	}
	h := w.Header()
	h["Content-Type"] = jsonType
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// Header values the answers share; net/http only reads them.
var (
	jsonType  = []string{"application/json"}
	coldTrue  = []string{"true"}
	coldFalse = []string{"false"}
	unhandled = []string{"Unhandled"}
)

// readBody reads at most g.maxEvent bytes of the request body.
func (g *Gateway) readBody(r *http.Request) ([]byte, error) {
	if r.ContentLength > g.maxEvent {
		return nil, fmt.Errorf("event is %d bytes, more than the %d byte limit: %w", r.ContentLength, g.maxEvent, stratus.ErrTooLarge)
	}
	var b []byte
	var err error
	if n := r.ContentLength; n > 0 {
		// Sized: one allocation, not io.ReadAll's growing ones (the
		// async accept path reads an event per request).
		b = make([]byte, n)
		var m int
		m, err = io.ReadFull(r.Body, b)
		b = b[:m]
	} else {
		b, err = io.ReadAll(io.LimitReader(r.Body, g.maxEvent+1))
	}
	if errors.Is(err, ErrBodyTimeout) {
		return nil, fmt.Errorf("read event: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("read event: %v: %w", err, stratus.ErrInvalid)
	}
	if int64(len(b)) > g.maxEvent {
		return nil, fmt.Errorf("event is more than the %d byte limit: %w", g.maxEvent, stratus.ErrTooLarge)
	}
	return b, nil
}

var emptyEvent = []byte("{}")

// ServeInvoke handles POST /v1/functions/{name}/invoke. The caller has
// checked the token. Of the request's headers only X-Amz-Client-Context
// and X-Stratus-Cognito-Identity reach the function, so the token does not.
func (g *Gateway) ServeInvoke(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, ok := g.heads.Head(name); !ok {
		WriteError(w, fmt.Errorf("function %q: %w", name, stratus.ErrNotFound))
		return
	}
	body, err := g.readBody(r)
	if err != nil {
		WriteError(w, err)
		return
	}
	if len(body) == 0 {
		body = emptyEvent
	} else if !json.Valid(body) {
		WriteError(w, fmt.Errorf("event is not valid JSON: %w", stratus.ErrInvalid))
		return
	}
	switch typ := invocationType(r.Header); typ {
	case v1.InvocationRequest:
	case v1.InvocationEvent:
		id, err := g.queue.Enqueue(r.Context(), name, body)
		if err != nil {
			WriteError(w, err)
			return
		}
		w.Header()[v1.HeaderRequestID] = []string{id}
		WriteJSON(w, http.StatusAccepted, v1.Accepted{RequestID: id})
		return
	default:
		WriteError(w, fmt.Errorf("invocation type %q: want %s or %s: %w", typ, v1.InvocationRequest, v1.InvocationEvent, stratus.ErrInvalid))
		return
	}
	req := stratus.Request{
		RequestID:       stratus.NewRequestID(),
		Event:           body,
		ClientContext:   r.Header.Get("X-Amz-Client-Context"),
		CognitoIdentity: r.Header.Get("X-Stratus-Cognito-Identity"),
	}
	resp, err := g.inv.Invoke(r.Context(), name, req)
	if err != nil {
		w.Header()[v1.HeaderRequestID] = []string{req.RequestID}
		WriteError(w, err)
		return
	}
	h := w.Header()
	setInvokeHeaders(h, resp)
	if resp.ErrorType != "" {
		h[v1.HeaderFunctionError] = unhandled
	}
	h["Content-Type"] = jsonType
	h["Content-Length"] = []string{strconv.Itoa(len(resp.Body))}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(resp.Body)
}

// invocationType is the request's invocation type, RequestResponse when
// it names none.
func invocationType(h http.Header) string {
	t := h.Get(v1.HeaderInvocationType)
	if t == "" {
		t = h.Get(v1.HeaderAmzInvocationType)
	}
	if t == "" {
		return v1.InvocationRequest
	}
	return t
}

func setInvokeHeaders(h http.Header, resp *stratus.Response) {
	rec := &resp.Record
	h[v1.HeaderRequestID] = []string{rec.RequestID}
	h[v1.HeaderVersion] = []string{strconv.Itoa(rec.Version)}
	h[v1.HeaderDuration] = []string{strconv.FormatFloat(rec.DurationMs, 'f', 3, 64)}
	if rec.Cold {
		h[v1.HeaderColdStart] = coldTrue
		h[v1.HeaderInitDuration] = []string{strconv.FormatFloat(rec.InitDurationMs, 'f', 3, 64)}
	} else {
		h[v1.HeaderColdStart] = coldFalse
	}
}

// ServeFunctionURL handles ANY /fn/{name}[/{path...}].
func (g *Gateway) ServeFunctionURL(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	head, ok := g.heads.Head(name)
	// The server's token is not the function's to see, whatever its auth.
	if !g.token.admit(r, ok && head.Config.Auth == stratus.AuthNone) {
		WriteUnauthorized(w)
		return
	}
	if !ok {
		WriteError(w, fmt.Errorf("function %q: %w", name, stratus.ErrNotFound))
		return
	}
	body, err := g.readBody(r)
	if err != nil {
		WriteError(w, err)
		return
	}
	raw := "/" + r.PathValue("path")
	if p := r.URL.EscapedPath(); strings.HasPrefix(p, "/fn/"+name+"/") {
		raw = p[len("/fn/"+name):]
	}
	reqID := stratus.NewRequestID()
	event, err := httpevent.Event(r, body, httpevent.Meta{RawPath: raw, RequestID: reqID, APIID: name})
	if err != nil {
		WriteError(w, err)
		return
	}
	resp, err := g.inv.Invoke(r.Context(), name, stratus.Request{RequestID: reqID, Event: event})
	if err != nil {
		w.Header()[v1.HeaderRequestID] = []string{reqID}
		WriteError(w, err)
		return
	}
	setInvokeHeaders(w.Header(), resp)
	if resp.ErrorType != "" {
		// As function URLs do: a function error is a 502 to the caller.
		w.Header()[v1.HeaderFunctionError] = unhandled
		var obj struct {
			ErrorMessage string `json:"errorMessage"`
		}
		_ = json.Unmarshal(resp.Body, &obj)
		WriteJSON(w, http.StatusBadGateway, v1.Error{Code: resp.ErrorType, Message: obj.ErrorMessage})
		return
	}
	if err := httpevent.WriteResponse(w, resp.Body); err != nil {
		g.log.Info("function returned a malformed response", "fn", name, "req_id", reqID, "err", err)
		WriteJSON(w, http.StatusBadGateway, v1.Error{Code: "Function.MalformedResponse", Message: err.Error()})
	}
}

// WriteUnauthorized answers a request without the right token.
func WriteUnauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="stratus"`)
	WriteJSON(w, http.StatusUnauthorized, v1.Error{Code: v1.CodeUnauthorized, Message: "missing or wrong bearer token: send Authorization: Bearer TOKEN (the token is in the server's data dir, file token)"})
}
