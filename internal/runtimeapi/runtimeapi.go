// Package runtimeapi serves the AWS Lambda Runtime API (2018-06-01) to one
// instance. Each instance gets its own Server on a port of the host's
// address that its sandbox reaches (the loopback, or the host's side of the
// sandboxes' network; the value of AWS_LAMBDA_RUNTIME_API), so an instance
// is always reached through an address; in a cluster the same server runs
// in the per-pod agent. Other instances reach that port too (and, sharing
// the host's loopback, may read its number in /proc), so a Server answers
// only connections that the owner check SetOwner gives accepts: each new
// connection is checked once, at its first request, and a refused one
// gets 403 and is closed. A runtime that keeps its connection (ours and
// aws-lambda-go's do) pays for the check once, at its start.
//
// The server is a small state machine: initialising until the runtime's
// first invocation/next, then idle (a next call waits for an invocation) or
// busy (one invocation handed out, waiting for its response or error). Only
// the allowed transitions pass; anything else gets Lambda's error answer.
//
// Goroutines: the Server owns its http.Server's goroutines and ends them in
// Close. Invoke hands one invocation to the runtime's waiting next call; the
// result arrives on the returned channel.
package runtimeapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stratus-run/stratus"
)

// MaxResponseBytes bounds a synchronous response, as on Lambda.
const MaxResponseBytes = 6 << 20

// Invocation is one event handed to the runtime.
type Invocation struct {
	RequestID       string
	Event           []byte
	Deadline        time.Time
	FunctionARN     string
	TraceID         string
	ClientContext   string
	CognitoIdentity string
}

// Result is what the runtime answered. ErrorType is empty for a success;
// for a function error it names the error and Body is Lambda's error object
// ({"errorMessage", "errorType", "stackTrace"}).
type Result struct {
	Body      []byte
	ErrorType string
}

// Error types the platform itself reports.
const (
	ErrTypeResponseTooLarge = "Function.ResponseSizeTooLarge"
	ErrTypeUnhandled        = "Unhandled"
)

type call struct {
	inv  *Invocation
	done chan Result // buffered 1; receives exactly one result
	once sync.Once
}

func (c *call) finish(r Result) { c.once.Do(func() { c.done <- r }) }

// Server is the Runtime API of one instance.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	next chan *call

	// ownerSet is closed when owns, which says whether a connection
	// comes from the instance, is known.
	ownerSet  chan struct{}
	owns      func(ctx context.Context, local, remote netip.AddrPort) bool
	ownerOnce sync.Once

	readyOnce sync.Once
	ready     chan struct{} // closed at the first invocation/next
	initErr   chan Result   // buffered 1: an init/error report
	closed    chan struct{}
	closeOnce sync.Once

	mu  sync.Mutex
	cur *call // the invocation handed out, nil when idle
}

// New listens on a free port of ip (the host's address on the network of
// the instance's sandbox; with ip invalid, 127.0.0.1: the instance shares
// the host's network) and serves the Runtime API until Close. It answers
// only the connections the check SetOwner gives accepts; requests wait
// for it.
func New(ip netip.Addr) (*Server, error) {
	if !ip.IsValid() {
		ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		return nil, fmt.Errorf("listen runtime api: %w", err)
	}
	s := &Server{
		ln:       ln,
		ownerSet: make(chan struct{}),
		next:     make(chan *call),
		ready:    make(chan struct{}),
		initErr:  make(chan Result, 1),
		closed:   make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", s.handleNext)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", s.handleResponse)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", s.handleError)
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", s.handleInitError)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, http.StatusNotFound, "InvalidRequest", "unknown runtime api path "+r.Method+" "+r.URL.Path)
	})
	s.srv = &http.Server{
		Handler:           s.fromOwner(mux),
		ConnContext:       withConn,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       0, // the runtime keeps one connection for its life
	}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// SetOwner gives the check of where a connection comes from: owns
// reports whether the connection whose ends are local (this server's) and
// remote comes from the instance's sandbox (see sandbox.Driver.Owns). It
// is asked once per connection, at its first request, while the
// connection is open; requests wait until SetOwner is called. A nil owns
// lets no one in. Only the first call counts.
func (s *Server) SetOwner(owns func(ctx context.Context, local, remote netip.AddrPort) bool) {
	s.ownerOnce.Do(func() {
		s.owns = owns
		close(s.ownerSet)
	})
}

// conn is what the server knows of one connection: its ends, and whether
// it comes from the instance once that is checked. Requests on one
// connection are served one after the other, by one goroutine.
type conn struct {
	local, remote netip.AddrPort
	checked, ok   bool
}

type connKey struct{}

// withConn is the http.Server's ConnContext: it gives every request the
// conn it came on.
func withConn(ctx context.Context, c net.Conn) context.Context {
	cc := &conn{}
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		cc.local = a.AddrPort()
	}
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		cc.remote = a.AddrPort()
	}
	return context.WithValue(ctx, connKey{}, cc)
}

// fromOwner passes on only requests of connections from the instance:
// the first request of a connection waits for SetOwner and checks it;
// a refused connection gets 403 and is closed.
func (s *Server) fromOwner(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := r.Context().Value(connKey{}).(*conn)
		if c == nil {
			c = &conn{checked: true} // not a connection withConn saw: refuse
		}
		if !c.checked {
			select {
			case <-s.ownerSet:
			case <-s.closed:
				writeErr(w, http.StatusServiceUnavailable, "ServiceException", "the runtime api is closed")
				return
			case <-r.Context().Done():
				return
			}
			c.ok = s.owns != nil && s.owns(r.Context(), c.local, c.remote)
			c.checked = true
		}
		if !c.ok {
			w.Header().Set("Connection", "close")
			writeErr(w, http.StatusForbidden, "AccessDeniedException", "this runtime api answers only its own instance")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Addr is the host:port the runtime reaches (AWS_LAMBDA_RUNTIME_API).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Ready is closed when the runtime first asks for an invocation, i.e. when
// its initialisation is done.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// InitError delivers the runtime's init/error report, if it sends one.
func (s *Server) InitError() <-chan Result { return s.initErr }

// Invoke hands inv to the runtime's waiting invocation/next call. It blocks
// until the runtime takes it or ctx ends or the server closes; the result
// comes on the returned channel (exactly one value, unless the runtime dies
// first, which the caller sees through the sandbox).
func (s *Server) Invoke(ctx context.Context, inv *Invocation) (<-chan Result, error) {
	c := &call{inv: inv, done: make(chan Result, 1)}
	select {
	case s.next <- c:
		return c.done, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.closed:
		return nil, fmt.Errorf("runtime api closed: %w", stratus.ErrUnavailable)
	}
}

// Close stops serving and ends every connection.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return s.srv.Close()
}

func (s *Server) handleNext(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if prev := s.cur; prev != nil {
		// The runtime asks for more work without answering the last one.
		s.cur = nil
		prev.finish(errorResult("Runtime.NoResponse", "the runtime asked for the next invocation without answering this one"))
	}
	s.mu.Unlock()
	s.readyOnce.Do(func() { close(s.ready) })

	var c *call
	select {
	case c = <-s.next:
	case <-r.Context().Done():
		return
	case <-s.closed:
		writeErr(w, http.StatusGone, "ServiceUnavailable", "instance is stopping")
		return
	}
	s.mu.Lock()
	s.cur = c
	s.mu.Unlock()

	inv := c.inv
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Lambda-Runtime-Aws-Request-Id"] = []string{inv.RequestID}
	h["Lambda-Runtime-Deadline-Ms"] = []string{strconv.FormatInt(inv.Deadline.UnixMilli(), 10)}
	h["Lambda-Runtime-Invoked-Function-Arn"] = []string{inv.FunctionARN}
	h["Lambda-Runtime-Trace-Id"] = []string{inv.TraceID}
	if inv.ClientContext != "" {
		h["Lambda-Runtime-Client-Context"] = []string{inv.ClientContext}
	}
	if inv.CognitoIdentity != "" {
		h["Lambda-Runtime-Cognito-Identity"] = []string{inv.CognitoIdentity}
	}
	h["Content-Length"] = []string{strconv.Itoa(len(inv.Event))}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(inv.Event)
}

// take returns the call in flight if id names it, and marks the instance
// idle.
func (s *Server) take(w http.ResponseWriter, id string) *call {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil || s.cur.inv.RequestID != id {
		writeErr(w, http.StatusBadRequest, "InvalidRequestID", "Invalid request ID")
		return nil
	}
	c := s.cur
	s.cur = nil
	return c
}

func (s *Server) handleResponse(w http.ResponseWriter, r *http.Request) {
	body, tooLarge, err := readLimited(r.Body, MaxResponseBytes)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "InvalidRequest", "read response body: "+err.Error())
		return
	}
	c := s.take(w, r.PathValue("id"))
	if c == nil {
		return
	}
	if tooLarge {
		msg := fmt.Sprintf("Response payload size exceeded maximum allowed payload size (%d bytes).", MaxResponseBytes)
		c.finish(errorResult(ErrTypeResponseTooLarge, msg))
		writeErr(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", msg)
		return
	}
	// A runtime that streams its response reports a failure midway in
	// trailers (aws-lambda-go does when the handler's io.Reader fails).
	if t := r.Trailer.Get("Lambda-Runtime-Function-Error-Type"); t != "" {
		eb, _ := base64.StdEncoding.DecodeString(r.Trailer.Get("Lambda-Runtime-Function-Error-Body"))
		c.finish(functionError(t, eb))
		writeAccepted(w)
		return
	}
	c.finish(Result{Body: body})
	writeAccepted(w)
}

func (s *Server) handleError(w http.ResponseWriter, r *http.Request) {
	body, _, err := readLimited(r.Body, MaxResponseBytes)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "InvalidRequest", "read error body: "+err.Error())
		return
	}
	c := s.take(w, r.PathValue("id"))
	if c == nil {
		return
	}
	c.finish(functionError(r.Header.Get("Lambda-Runtime-Function-Error-Type"), body))
	writeAccepted(w)
}

func (s *Server) handleInitError(w http.ResponseWriter, r *http.Request) {
	body, _, err := readLimited(r.Body, MaxResponseBytes)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "InvalidRequest", "read error body: "+err.Error())
		return
	}
	select {
	case <-s.ready:
		writeErr(w, http.StatusForbidden, "InvalidStateTransition", "init/error is only allowed before the first invocation/next")
		return
	default:
	}
	res := functionError(r.Header.Get("Lambda-Runtime-Function-Error-Type"), body)
	select {
	case s.initErr <- res:
	default:
	}
	writeAccepted(w)
}

// functionError builds Lambda's error object from what the runtime posted:
// its JSON when it is an object, else a wrapper around the raw text.
func functionError(headerType string, body []byte) Result {
	var obj struct {
		ErrorType    *string `json:"errorType"`
		ErrorMessage *string `json:"errorMessage"`
	}
	if json.Unmarshal(body, &obj) == nil && (obj.ErrorType != nil || obj.ErrorMessage != nil) {
		t := headerType
		if obj.ErrorType != nil && *obj.ErrorType != "" {
			t = *obj.ErrorType
		}
		if t == "" {
			t = ErrTypeUnhandled
		}
		return Result{Body: body, ErrorType: t}
	}
	t := headerType
	if t == "" {
		t = ErrTypeUnhandled
	}
	return errorResult(t, strings.TrimSpace(string(body)))
}

// errorResult is a platform-made Lambda error object.
func errorResult(errType, msg string) Result {
	b, _ := json.Marshal(ErrorObject{ErrorMessage: msg, ErrorType: errType})
	return Result{Body: b, ErrorType: errType}
}

// ErrorResult returns a Result carrying a platform-made Lambda error
// object, e.g. for a timeout or a crashed runtime.
func ErrorResult(errType, msg string) Result { return errorResult(errType, msg) }

// ErrorObject is Lambda's error object.
type ErrorObject struct {
	ErrorMessage string   `json:"errorMessage"`
	ErrorType    string   `json:"errorType"`
	StackTrace   []string `json:"stackTrace,omitempty"`
}

func readLimited(r io.Reader, max int64) ([]byte, bool, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, false, err
	}
	if int64(len(b)) > max {
		_, _ = io.Copy(io.Discard, r)
		return nil, true, nil
	}
	return b, false, nil
}

var acceptedBody = []byte(`{"status":"OK"}`)

func writeAccepted(w http.ResponseWriter) {
	w.Header()["Content-Type"] = []string{"application/json"}
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(acceptedBody)
}

func writeErr(w http.ResponseWriter, status int, errType, msg string) {
	b, _ := json.Marshal(ErrorObject{ErrorMessage: msg, ErrorType: errType})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
