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
// HTTP: the server speaks HTTP/1.1 itself (requests are parsed by
// net/http's ReadRequest: chunked bodies, trailers, Expect: 100-continue),
// because it is on the path of every invocation: one goroutine per
// connection reads its requests one after the other, with no background
// reads nor deadlines per request, and a waiting invocation/next is
// answered by the goroutine that calls Invoke, straight onto the
// connection, so that handing an event to the runtime costs no goroutine
// switch. Answers carry Content-Length (never chunked) and the connection
// stays open unless the runtime asks to close it. The first request of a
// connection must arrive whole within 10 s (ReadHeaderTimeout); a header
// is at most 1 MiB.
//
// Goroutines: the Server owns its accept loop and one goroutine per
// connection, and Close ends them and waits for them. Invoke hands one
// invocation to the runtime's waiting next call (or waits for one); the
// result arrives on the returned channel.
package runtimeapi

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratus-run/stratus"
)

// MaxResponseBytes bounds a synchronous response, as on Lambda.
const MaxResponseBytes = 6 << 20

const (
	// readHeaderTimeout bounds the arrival of a connection's first
	// request, before the owner check.
	readHeaderTimeout = 10 * time.Second
	// maxHeaderBytes bounds a request's header, as net/http's default.
	maxHeaderBytes = 1 << 20
	// maxDrain is how much of a body the server reads and throws away
	// to keep a connection (a body of a request that has none to give);
	// beyond it the connection closes.
	maxDrain = 256 << 10
	// bigEvent is the event size from which handing it out sets a write
	// deadline (the invocation's): smaller ones fit in the socket's
	// buffer of a runtime that waits in next.
	bigEvent = 64 << 10
)

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
	inv   *Invocation
	done  chan Result   // buffered 1; receives exactly one result
	taken chan struct{} // closed when a next call takes an offered call
	once  sync.Once
}

func (c *call) finish(r Result) { c.once.Do(func() { c.done <- r }) }

// Server is the Runtime API of one instance.
type Server struct {
	ln net.Listener

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
	ctx       context.Context // ends at Close; for the owner check
	cancel    context.CancelFunc
	wg        sync.WaitGroup // the accept loop and the connections

	mu      sync.Mutex
	cur     *call          // the invocation handed out, nil when idle
	waiting []*conn        // connections in invocation/next, most recent last
	offers  []*call        // invocations no next call took yet, oldest first
	conns   map[*conn]bool // open connections
	isShut  bool           // Close has begun: conns only shrinks
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
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		ln:       ln,
		ownerSet: make(chan struct{}),
		ready:    make(chan struct{}),
		initErr:  make(chan Result, 1),
		closed:   make(chan struct{}),
		ctx:      ctx,
		cancel:   cancel,
		conns:    make(map[*conn]bool),
	}
	s.wg.Add(1)
	go s.accept()
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
// first, which the caller sees through the sandbox). When a next call
// waits already, Invoke writes the event to it itself.
func (s *Server) Invoke(ctx context.Context, inv *Invocation) (<-chan Result, error) {
	c := &call{inv: inv, done: make(chan Result, 1)}
	s.mu.Lock()
	if s.isShut {
		s.mu.Unlock()
		return nil, errClosed
	}
	if n := len(s.waiting); n > 0 {
		cn := s.waiting[n-1]
		s.waiting[n-1] = nil
		s.waiting = s.waiting[:n-1]
		s.cur = c
		s.mu.Unlock()
		cn.answerNext(c)
		return c.done, nil
	}
	c.taken = make(chan struct{})
	s.offers = append(s.offers, c)
	s.mu.Unlock()
	select {
	case <-c.taken:
		return c.done, nil
	case <-ctx.Done():
		if s.withdraw(c) {
			return nil, ctx.Err()
		}
	case <-s.closed:
		if s.withdraw(c) {
			return nil, errClosed
		}
	}
	return c.done, nil // a next call took it meanwhile
}

var errClosed = fmt.Errorf("runtime api closed: %w", stratus.ErrUnavailable)

// withdraw removes an offered call no next call took; false if one did.
func (s *Server) withdraw(c *call) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range s.offers {
		if x == c {
			s.offers = append(s.offers[:i], s.offers[i+1:]...)
			return true
		}
	}
	return false
}

// closeWriteTimeout bounds Close's write of the 410 to a runtime waiting
// in next.
const closeWriteTimeout = time.Second

// Close stops serving, ends every connection and waits for the server's
// goroutines.
func (s *Server) Close() error {
	first := false
	s.closeOnce.Do(func() {
		first = true
		close(s.closed)
		s.cancel()
	})
	if !first {
		s.wg.Wait()
		return nil
	}
	err := s.ln.Close()
	s.mu.Lock()
	s.isShut = true
	waiting := s.waiting
	s.waiting = nil
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	// A runtime waiting in next learns that no invocation comes; one that
	// does not read its answers cannot hold Close up for long.
	for _, c := range waiting {
		_ = c.nc.SetWriteDeadline(time.Now().Add(closeWriteTimeout))
		c.writeErr(http.StatusGone, "ServiceUnavailable", "instance is stopping", true)
		c.endWait()
	}
	for _, c := range conns {
		_ = c.nc.Close()
	}
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (s *Server) accept() {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.closed:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait and go on, as
			// net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(backoff):
			case <-s.closed:
				return
			}
			continue
		}
		backoff = 0
		c := newConn(s, nc)
		s.mu.Lock()
		if s.isShut {
			s.mu.Unlock()
			_ = nc.Close()
			continue
		}
		s.conns[c] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go c.serve()
	}
}

// conn is one connection of a runtime (or of someone else, until the
// owner check). Its goroutine reads its requests one after the other and
// answers them; while it waits in invocation/next, the answer is Invoke's
// (or Close's) to write, and the goroutine writes nothing until then.
type conn struct {
	s             *Server
	nc            net.Conn
	lr            limitReader
	br            *bufio.Reader
	bw            *bufio.Writer
	local, remote netip.AddrPort
	checked, ok   bool

	// answered is closed once a waiting next call is answered; set
	// before the conn goes into s.waiting.
	answered chan struct{}
	// closeAfter: the request in flight asked to close the connection
	// after its answer.
	closeAfter bool
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{s: s, nc: nc}
	if a, ok := nc.LocalAddr().(*net.TCPAddr); ok {
		c.local = a.AddrPort()
	}
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		c.remote = a.AddrPort()
	}
	c.lr = limitReader{r: nc, n: maxHeaderBytes + 4096}
	c.br = bufio.NewReaderSize(&c.lr, 4<<10)
	c.bw = bufio.NewWriterSize(nc, 4<<10)
	return c
}

// limitReader is the connection as its requests' reader sees it: reading
// a header may take at most n bytes.
type limitReader struct {
	r io.Reader
	n int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errHeaderTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

var errHeaderTooLarge = errors.New("request header too large")

func (c *conn) serve() {
	defer c.s.wg.Done()
	defer func() {
		c.s.mu.Lock()
		delete(c.s.conns, c)
		for i, x := range c.s.waiting {
			if x == c {
				c.s.waiting = append(c.s.waiting[:i], c.s.waiting[i+1:]...)
				break
			}
		}
		c.s.mu.Unlock()
		_ = c.nc.Close()
	}()
	for {
		if !c.checked {
			_ = c.nc.SetReadDeadline(time.Now().Add(readHeaderTimeout))
		}
		c.lr.n = maxHeaderBytes + 4096
		req, err := c.readRequest()
		if err != nil {
			// A connection that ends while it waits in next leaves
			// s.waiting (the deferred cleanup); one whose next call is
			// being answered is Invoke's to write to until then.
			if c.answered == nil && !errors.Is(err, io.EOF) && !isNetErr(err) {
				msg := "malformed request"
				status := http.StatusBadRequest
				if errors.Is(err, errHeaderTooLarge) {
					msg, status = "request header too large", http.StatusRequestHeaderFieldsTooLarge
				}
				c.writeErr(status, "InvalidRequest", msg, true)
			}
			return
		}
		c.lr.n = 1<<63 - 1
		if !c.checked {
			_ = c.nc.SetReadDeadline(time.Time{})
		}
		// A next call still waiting is answered before this request is;
		// one that asked to close the connection was its last.
		if !c.waitAnswered() || c.closeAfter {
			return
		}
		c.closeAfter = req.close
		if !c.serveRequest(req) || c.closeAfter {
			c.closeWrite()
			return
		}
	}
}

// waitAnswered waits until the connection's waiting next call, if any, is
// answered; false if the server closed first.
func (c *conn) waitAnswered() bool {
	if c.answered == nil {
		return true
	}
	select {
	case <-c.answered:
		c.answered = nil
		return true
	case <-c.s.closed:
		return false
	}
}

func isNetErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF)
}

// closeWrite ends a connection the server closes after an answer: it
// half-closes it and reads what the client still sends for a moment, so
// that the client reads the answer rather than a reset.
func (c *conn) closeWrite() {
	tc, ok := c.nc.(*net.TCPConn)
	if !ok {
		return
	}
	_ = tc.CloseWrite()
	_ = tc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, _ = io.Copy(io.Discard, io.LimitReader(tc, maxDrain))
}

const (
	pathPrefix = "/2018-06-01/runtime/"
	pathNext   = pathPrefix + "invocation/next"
	pathInit   = pathPrefix + "init/error"
	invPrefix  = pathPrefix + "invocation/"
)

// serveRequest answers one request; false when the connection must close.
func (c *conn) serveRequest(req *request) bool {
	if !c.checked {
		select {
		case <-c.s.ownerSet:
		case <-c.s.closed:
			c.writeErr(http.StatusServiceUnavailable, "ServiceException", "the runtime api is closed", true)
			return false
		}
		c.ok = c.s.owns != nil && c.s.owns(c.s.ctx, c.local, c.remote)
		c.checked = true
	}
	if !c.ok {
		c.writeErr(http.StatusForbidden, "AccessDeniedException", "this runtime api answers only its own instance", true)
		return false
	}
	path := req.path
	switch {
	case req.method == http.MethodGet && path == pathNext:
		if !c.drain(req) {
			c.closeAfter = true
		}
		return c.serveNext()
	case req.method == http.MethodPost && path == pathInit:
		return c.serveInitError(req)
	case req.method == http.MethodPost && strings.HasPrefix(path, invPrefix):
		if id, kind, ok := invocationPath(req.escaped); ok {
			return c.serveAnswer(req, id, kind)
		}
	}
	if !c.drain(req) {
		c.closeAfter = true
	}
	return c.writeErrHead(http.StatusNotFound, "InvalidRequest", "unknown runtime api path "+req.method+" "+path, c.closeAfter, req.method == http.MethodHead)
}

// invocationPath splits an escaped path /2018-06-01/runtime/invocation/ID/response
// (or /error) into the ID and its kind.
func invocationPath(escaped string) (id, kind string, ok bool) {
	rest, ok := strings.CutPrefix(escaped, invPrefix)
	if !ok {
		return "", "", false
	}
	raw, kind, ok := strings.Cut(rest, "/")
	if !ok || raw == "" || (kind != "response" && kind != "error") {
		return "", "", false
	}
	id, err := url.PathUnescape(raw)
	if err != nil {
		return "", "", false
	}
	return id, kind, true
}

// drain reads and throws away the body of a request the server does not
// read (up to maxDrain); false when the connection cannot be kept.
func (c *conn) drain(req *request) bool {
	if req.body == http.NoBody {
		return true
	}
	if req.expect {
		// The client waits for a go-ahead that does not come: the body
		// never follows, and the connection cannot be used again.
		return false
	}
	n, err := io.CopyN(io.Discard, req.body, maxDrain+1)
	return err == io.EOF && n <= maxDrain
}

// body reads a request's body, at most max bytes (tooLarge: it had more,
// read and dropped).
func (c *conn) body(req *request) (b []byte, tooLarge bool, err error) {
	if req.expect {
		if _, err := c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
			return nil, false, err
		}
		if err := c.bw.Flush(); err != nil {
			return nil, false, err
		}
	}
	return readLimited(req.body, MaxResponseBytes)
}

func (c *conn) serveNext() bool {
	s := c.s
	s.mu.Lock()
	if prev := s.cur; prev != nil {
		// The runtime asks for more work without answering the last one.
		s.cur = nil
		prev.finish(errorResult("Runtime.NoResponse", "the runtime asked for the next invocation without answering this one"))
	}
	s.readyOnce.Do(func() { close(s.ready) })
	if s.isShut {
		s.mu.Unlock()
		return c.writeErr(http.StatusGone, "ServiceUnavailable", "instance is stopping", c.closeAfter)
	}
	if len(s.offers) > 0 {
		cl := s.offers[0]
		s.offers[0] = nil
		s.offers = s.offers[1:]
		s.cur = cl
		close(cl.taken)
		s.mu.Unlock()
		return c.writeNext(cl.inv)
	}
	// Wait: Invoke (or Close) answers, while this goroutine reads on.
	c.answered = make(chan struct{})
	s.waiting = append(s.waiting, c)
	s.mu.Unlock()
	return true
}

// answerNext writes the invocation to the connection waiting in next.
func (c *conn) answerNext(cl *call) {
	if len(cl.inv.Event) >= bigEvent {
		// A runtime that stops reading holds Invoke no longer than the
		// invocation's deadline.
		_ = c.nc.SetWriteDeadline(cl.inv.Deadline)
		defer func() { _ = c.nc.SetWriteDeadline(time.Time{}) }()
	}
	c.writeNext(cl.inv)
	c.endWait()
}

// endWait ends the connection's wait in next: its goroutine goes on.
func (c *conn) endWait() { close(c.answered) }

// writeNext writes the answer of invocation/next; false when the
// connection must close.
func (c *conn) writeNext(inv *Invocation) bool {
	w := c.bw
	w.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: ")
	writeValue(w, inv.RequestID)
	w.WriteString("\r\nLambda-Runtime-Deadline-Ms: ")
	var num [20]byte
	w.Write(strconv.AppendInt(num[:0], inv.Deadline.UnixMilli(), 10))
	w.WriteString("\r\nLambda-Runtime-Invoked-Function-Arn: ")
	writeValue(w, inv.FunctionARN)
	w.WriteString("\r\nLambda-Runtime-Trace-Id: ")
	writeValue(w, inv.TraceID)
	if inv.ClientContext != "" {
		w.WriteString("\r\nLambda-Runtime-Client-Context: ")
		writeValue(w, inv.ClientContext)
	}
	if inv.CognitoIdentity != "" {
		w.WriteString("\r\nLambda-Runtime-Cognito-Identity: ")
		writeValue(w, inv.CognitoIdentity)
	}
	return c.finishAnswer(inv.Event, c.closeAfter, false)
}

// writeValue writes a header value, newlines turned into spaces as
// net/http does.
func writeValue(w *bufio.Writer, v string) {
	if !strings.ContainsAny(v, "\r\n") {
		w.WriteString(v)
		return
	}
	w.WriteString(strings.NewReplacer("\r", " ", "\n", " ").Replace(v))
}

// finishAnswer ends an answer whose status line and headers but the last
// few are written: Date, Content-Length, Connection: close when closing,
// and body (none for HEAD). False when the connection must close.
func (c *conn) finishAnswer(body []byte, closing, head bool) bool {
	w := c.bw
	w.WriteString("\r\nDate: ")
	w.WriteString(httpDate())
	w.WriteString("\r\nContent-Length: ")
	var num [20]byte
	w.Write(strconv.AppendInt(num[:0], int64(len(body)), 10))
	if closing {
		w.WriteString("\r\nConnection: close")
	}
	w.WriteString("\r\n\r\n")
	if !head {
		w.Write(body)
	}
	if err := w.Flush(); err != nil {
		_ = c.nc.Close()
		return false
	}
	return !closing
}

// dateCache is the Date header of the current second.
var dateCache atomic.Pointer[dateValue]

type dateValue struct {
	sec int64
	s   string
}

func httpDate() string {
	now := time.Now()
	if d := dateCache.Load(); d != nil && d.sec == now.Unix() {
		return d.s
	}
	d := &dateValue{sec: now.Unix(), s: now.UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.s
}

// take returns the call in flight if id names it, and marks the instance
// idle.
func (s *Server) take(id string) *call {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil || s.cur.inv.RequestID != id {
		return nil
	}
	c := s.cur
	s.cur = nil
	return c
}

func (c *conn) serveAnswer(req *request, id, kind string) bool {
	body, tooLarge, err := c.body(req)
	if err != nil {
		return c.writeErr(http.StatusBadRequest, "InvalidRequest", "read "+kind+" body: "+err.Error(), true)
	}
	cl := c.s.take(id)
	if cl == nil {
		return c.writeErr(http.StatusBadRequest, "InvalidRequestID", "Invalid request ID", c.closeAfter)
	}
	if kind == "error" {
		cl.finish(functionError(req.errType, body))
		return c.writeAccepted()
	}
	if tooLarge {
		msg := fmt.Sprintf("Response payload size exceeded maximum allowed payload size (%d bytes).", MaxResponseBytes)
		cl.finish(errorResult(ErrTypeResponseTooLarge, msg))
		return c.writeErr(http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", msg, c.closeAfter)
	}
	// A runtime that streams its response reports a failure midway in
	// trailers (aws-lambda-go does when the handler's io.Reader fails).
	if t := req.trailer(headerErrorType); t != "" {
		eb, _ := base64.StdEncoding.DecodeString(req.trailer("Lambda-Runtime-Function-Error-Body"))
		cl.finish(functionError(t, eb))
		return c.writeAccepted()
	}
	cl.finish(Result{Body: body})
	return c.writeAccepted()
}

func (c *conn) serveInitError(req *request) bool {
	body, _, err := c.body(req)
	if err != nil {
		return c.writeErr(http.StatusBadRequest, "InvalidRequest", "read error body: "+err.Error(), true)
	}
	select {
	case <-c.s.ready:
		return c.writeErr(http.StatusForbidden, "InvalidStateTransition", "init/error is only allowed before the first invocation/next", c.closeAfter)
	default:
	}
	res := functionError(req.errType, body)
	select {
	case c.s.initErr <- res:
	default:
	}
	return c.writeAccepted()
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

func (c *conn) writeAccepted() bool {
	c.bw.WriteString("HTTP/1.1 202 Accepted\r\nContent-Type: application/json")
	return c.finishAnswer(acceptedBody, c.closeAfter, false)
}

// writeErr answers with Lambda's error object; false when the connection
// must close (closing says it will).
func (c *conn) writeErr(status int, errType, msg string, closing bool) bool {
	return c.writeErrHead(status, errType, msg, closing, false)
}

func (c *conn) writeErrHead(status int, errType, msg string, closing, head bool) bool {
	b, _ := json.Marshal(ErrorObject{ErrorMessage: msg, ErrorType: errType})
	w := c.bw
	w.WriteString("HTTP/1.1 ")
	var num [20]byte
	w.Write(strconv.AppendInt(num[:0], int64(status), 10))
	w.WriteString(" ")
	w.WriteString(http.StatusText(status))
	w.WriteString("\r\nContent-Type: application/json")
	return c.finishAnswer(b, closing, head)
}
