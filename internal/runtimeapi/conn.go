package runtimeapi

import (
	"bufio"
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
	"sync/atomic"
	"time"
)

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
		default:
			c.s.ownerWaits.Add(1)
			select {
			case <-c.s.ownerSet:
			case <-c.s.closed:
				c.writeErr(http.StatusServiceUnavailable, "ServiceException", "the runtime api is closed", true)
				return false
			}
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
