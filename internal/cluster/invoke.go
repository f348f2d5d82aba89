package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/functions"
	"github.com/stratus-run/stratus/internal/trace"
)

// Headers of a forwarded request.
const (
	// HeaderForwardedBy names the node that forwarded a request; a
	// request that has it is never forwarded again.
	HeaderForwardedBy = "X-Stratus-Forwarded-By"
	// HeaderLeaseEpoch is the epoch of the workload's lease the sender
	// saw: the receiver serves the request only if it holds the lease at
	// that epoch.
	HeaderLeaseEpoch = "X-Stratus-Lease-Epoch"
	// headerMoved marks the 503 answer of a receiver that does not hold
	// the lease at the epoch (ownership moved), from a 503 of the
	// workload itself.
	headerMoved = "X-Stratus-Ownership-Moved"
)

// invokePath is the path of the internal invoke endpoint, before the
// function's name.
const invokePath = "/v1/internal/invoke/"

const (
	// maxInvokeBody bounds a forwarded invocation's JSON (Lambda takes
	// events up to 6 MB; base64 makes them a third larger).
	maxInvokeBody = 16 << 20
	// maxInvokeAnswer bounds the JSON of a forwarded invocation's answer.
	maxInvokeAnswer = 32 << 20
	// maxForwards bounds the tries of one forwarded invocation.
	maxForwards = 4
)

// errMoved is a receiver's refusal of a forwarded request for a stale
// epoch.
var errMoved = errors.New("ownership moved")

// invokeRequest is the body of POST /v1/internal/invoke/{name}: a
// stratus.Request, the caller's deadline and its trace context.
type invokeRequest struct {
	RequestID       string     `json:"requestId"`
	Event           []byte     `json:"event"`
	ClientContext   string     `json:"clientContext,omitempty"`
	CognitoIdentity string     `json:"cognitoIdentity,omitempty"`
	Trigger         string     `json:"trigger,omitempty"`
	Deadline        *time.Time `json:"deadline,omitempty"`
	Traceparent     string     `json:"traceparent,omitempty"`
	Tracestate      string     `json:"tracestate,omitempty"`
}

// invokeResponse is the answer of POST /v1/internal/invoke/{name}: a
// stratus.Response.
type invokeResponse struct {
	Body      []byte             `json:"body"`
	ErrorType string             `json:"errorType,omitempty"`
	Record    stratus.Invocation `json:"record"`
}

// Route says where function fn (a name, with or without a qualifier)
// runs: nil when here, because this node holds the function's lease or
// has just taken it (it was free or expired); else a Remote that
// forwards to the holder. A holder that is dead or unreachable is waited
// for until its lease expires, then the lease is taken. The hot path (a
// lease held here, or an owner read less than a lease's life ago) does
// no I/O. Single: always nil.
//
// Call it for functions that exist: it may create the function's lease.
func (c *Cluster) Route(ctx context.Context, fn string) (functions.Remote, error) {
	if c.single {
		return nil, nil
	}
	name, _, _ := strings.Cut(fn, ":")
	t, _, err := c.resolve(ctx, leaseName(kindFunction, name), false)
	if err != nil || t.self {
		return nil, err
	}
	return func(ctx context.Context, name string, req stratus.Request) (*stratus.Response, error) {
		return c.forward(ctx, t, name, req)
	}, nil
}

// forward runs invocation req of name at t, and where the function moved
// after that: to its new owner once after a receiver's "ownership
// moved", and after a refused connection once the unreachable owner's
// lease expired.
func (c *Cluster) forward(ctx context.Context, t target, name string, req stratus.Request) (*stratus.Response, error) {
	fn, _, _ := strings.Cut(name, ":")
	lease := leaseName(kindFunction, fn)
	moved := false
	for range maxForwards {
		if t.self {
			if c.cfg.Local == nil {
				return nil, fmt.Errorf("invoke %q: no local invoker: %w", name, stratus.ErrUnavailable)
			}
			return c.cfg.Local(ctx, name, req)
		}
		resp, err := c.post(ctx, t, name, req)
		switch {
		case err == nil:
			return resp, nil
		case errors.Is(err, errMoved) && !moved:
			moved = true
			c.forget(lease)
		case refused(err) && ctx.Err() == nil:
			c.log.Warn("node unreachable; waiting for its lease", "node", t.node, "lease", lease, "err", err)
			c.markSuspect(t.node)
			c.forget(lease)
		default:
			return nil, err
		}
		if t, _, err = c.resolve(ctx, lease, false); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("invoke %q: its owner cannot be reached: %w", name, stratus.ErrUnavailable)
}

// queued reports whether an invocation made by trigger is a queued
// event's (async, topic, schedule): one its sender settles after it ran.
func queued(trigger string) bool {
	switch trigger {
	case stratus.TriggerAsync, stratus.TriggerTopic, stratus.TriggerSchedule:
		return true
	}
	return false
}

// refused reports whether err is a connection that could not be made:
// the request did not leave, so it may go elsewhere.
func refused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// post sends invocation req of name to node t.
func (c *Cluster) post(ctx context.Context, t target, name string, req stratus.Request) (*stratus.Response, error) {
	body := invokeRequest{
		RequestID: req.RequestID, Event: req.Event, ClientContext: req.ClientContext,
		CognitoIdentity: req.CognitoIdentity, Trigger: req.Trigger,
	}
	if d, ok := ctx.Deadline(); ok {
		body.Deadline = &d
	}
	h := http.Header{}
	trace.Inject(ctx, h)
	body.Traceparent, body.Tracestate = h.Get("traceparent"), h.Get("tracestate")
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("forward invoke %q: %w", name, err)
	}
	u := t.addr.JoinPath(invokePath, name)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("forward invoke %q: %w", name, err)
	}
	c.setForwardHeaders(hr.Header, t.epoch)
	hr.Header.Set("Content-Type", "application/json")
	if c.cfg.Token != "" {
		hr.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	}
	resp, err := c.client.Do(hr)
	if err != nil {
		if refused(err) || ctx.Err() != nil {
			return nil, fmt.Errorf("forward invoke %q to node %s: %w", name, t.node, err)
		}
		// The owner went away with the call (it died or was cut off):
		// whether it ran is unknown, as for a call in flight on a server
		// that dies; the caller may try again.
		return nil, fmt.Errorf("forward invoke %q to node %s: %w: %w", name, t.node, err, stratus.ErrUnavailable)
	}
	defer resp.Body.Close()
	ab, err := io.ReadAll(io.LimitReader(resp.Body, maxInvokeAnswer+1))
	if err == nil && len(ab) > maxInvokeAnswer {
		err = fmt.Errorf("answer over %d bytes: %w", maxInvokeAnswer, stratus.ErrTooLarge)
	}
	if err != nil {
		return nil, fmt.Errorf("forward invoke %q to node %s: read answer: %w", name, t.node, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, remoteError(t.node, resp, ab)
	}
	var out invokeResponse
	if err := json.Unmarshal(ab, &out); err != nil {
		return nil, fmt.Errorf("forward invoke %q to node %s: decode answer: %w", name, t.node, err)
	}
	return &stratus.Response{Body: out.Body, ErrorType: out.ErrorType, Record: out.Record}, nil
}

// setForwardHeaders marks a request forwarded by this node under epoch.
func (c *Cluster) setForwardHeaders(h http.Header, epoch int64) {
	h.Set(HeaderForwardedBy, c.cfg.Node)
	h.Set(HeaderLeaseEpoch, strconv.FormatInt(epoch, 10))
}

// kinds maps the native API's error codes back to the error kinds they
// were made from (v1.ErrorFrom's other direction).
var kinds = map[string]error{
	v1.CodeInvalid:        stratus.ErrInvalid,
	v1.CodeNotFound:       stratus.ErrNotFound,
	v1.CodeConflict:       stratus.ErrConflict,
	v1.CodeTooMany:        stratus.ErrCapacity,
	v1.CodeTooLarge:       stratus.ErrTooLarge,
	v1.CodeTimeout:        stratus.ErrTimeout,
	v1.CodeUnavailable:    stratus.ErrUnavailable,
	v1.CodeNoSpace:        stratus.ErrNoSpace,
	v1.CodeRequestTimeout: stratus.ErrRequestTimeout,
	v1.CodeForbidden:      stratus.ErrForbidden,
	v1.CodePrecondition:   stratus.ErrPrecondition,
}

// kindError is an error answered by another node: its message as the
// node wrote it, its kind as the code says.
type kindError struct {
	msg  string
	kind error
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

// remoteError is the error of node's error answer resp with body b.
func remoteError(node string, resp *http.Response, b []byte) error {
	var e v1.Error
	if json.Unmarshal(b, &e) != nil || e.Code == "" {
		return fmt.Errorf("node %s answered %s: %w", node, resp.Status, stratus.ErrUnavailable)
	}
	switch {
	case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get(headerMoved) != "":
		return fmt.Errorf("node %s: %s: %w", node, e.Message, errMoved)
	case resp.StatusCode == http.StatusBadGateway:
		return &v1.UpstreamError{Code: e.Code, Message: e.Message}
	case e.Code == v1.CodeUnauthorized:
		return fmt.Errorf("node %s refused this server's token (every server needs the same --token): %w", node, stratus.ErrUnavailable)
	}
	if kind, ok := kinds[e.Code]; ok {
		return &kindError{msg: e.Message, kind: kind}
	}
	return fmt.Errorf("node %s: %s (%s)", node, e.Message, e.Code)
}

// InternalHandler serves POST /v1/internal/invoke/{name}, the invocations
// other nodes forward here. It refuses (503, stratus.ErrUnavailable, the
// ownership moved) one whose X-Stratus-Lease-Epoch is not the epoch of
// the function's lease this node holds now, and runs the others with
// Config.Local, under the sender's deadline and trace context. It
// requires Config.Token as a bearer token (the API server mounts it
// behind the token too).
func (c *Cluster) InternalHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+invokePath+"{name}", c.serveInvoke)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !c.tokenOK(r.Header) {
			c.answer.Error(w, r, v1.ErrUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (c *Cluster) serveInvoke(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	fn, _, _ := strings.Cut(name, ":")
	epoch, err := strconv.ParseInt(r.Header.Get(HeaderLeaseEpoch), 10, 64)
	if err != nil {
		c.answer.Error(w, r, fmt.Errorf("forwarded invoke of %q: header %s: %w", name, HeaderLeaseEpoch, stratus.ErrInvalid))
		return
	}
	if held, ok := c.holds(leaseName(kindFunction, fn)); c.single || !ok || held != epoch {
		w.Header().Set(headerMoved, "1")
		c.answer.Error(w, r, fmt.Errorf("function %q is not node %s's at epoch %d: ownership moved: %w",
			fn, c.cfg.Node, epoch, stratus.ErrUnavailable))
		return
	}
	var in invokeRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxInvokeBody))
	if err := dec.Decode(&in); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			err = fmt.Errorf("forwarded invoke of %q: over %d bytes: %w", name, maxInvokeBody, stratus.ErrTooLarge)
		} else {
			err = fmt.Errorf("forwarded invoke of %q: %v: %w", name, err, stratus.ErrInvalid)
		}
		c.answer.Error(w, r, err)
		return
	}
	if c.cfg.Local == nil {
		c.answer.Error(w, r, fmt.Errorf("invoke %q: no local invoker: %w", name, stratus.ErrUnavailable))
		return
	}
	ctx := r.Context()
	if in.Deadline != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, *in.Deadline)
		defer cancel()
	}
	if in.Traceparent != "" {
		ctx = trace.Extract(ctx, http.Header{"Traceparent": {in.Traceparent}, "Tracestate": {in.Tracestate}})
	}
	resp, err := c.cfg.Local(ctx, name, stratus.Request{
		RequestID: in.RequestID, Event: in.Event, ClientContext: in.ClientContext,
		CognitoIdentity: in.CognitoIdentity, Trigger: in.Trigger,
	})
	if err != nil {
		c.answer.Error(w, r, err)
		return
	}
	// The sender of a queued event settles it (stores its status and
	// acknowledges it) once this answer arrives: the record of the
	// attempt must not be lost with this server after that.
	if queued(in.Trigger) && c.cfg.Sync != nil {
		if err := c.cfg.Sync(ctx); err != nil {
			c.answer.Error(w, r, fmt.Errorf("invoke %q: keep its record: %w", name, err))
			return
		}
	}
	c.answer.JSON(w, r, http.StatusOK, invokeResponse{Body: resp.Body, ErrorType: resp.ErrorType, Record: resp.Record})
}
