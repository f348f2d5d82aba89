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
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
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
	RequestID   string
	Event       []byte
	Deadline    time.Time
	FunctionARN string
	// TraceID is the Lambda-Runtime-Trace-Id header: an X-Ray trace
	// header (Root=1-…;Parent=…;Sampled=…) whose Parent is the span the
	// function's own spans are children of.
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
	// ownerWaits counts the requests that waited for SetOwner (tests
	// watch it).
	ownerWaits atomic.Int64

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

// Config configures a Server; its zero value serves on 127.0.0.1.
type Config struct {
	// HostIP is the host's address on the network of the instance's
	// sandbox, where the Server listens on a free port; the zero Addr
	// means 127.0.0.1 (the instance shares the host's network).
	HostIP netip.Addr
}

func (c Config) withDefaults() Config {
	if !c.HostIP.IsValid() {
		c.HostIP = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	return c
}

// New listens on a free port of cfg.HostIP and serves the Runtime API
// until Close. It answers only the connections the check SetOwner gives
// accepts; requests wait for it.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(cfg.HostIP, 0).String())
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
// lets no one in. Only the first call counts. It is a method rather than
// a Config field because the check can answer only once the sandbox has
// started, which is after the sandbox was given this Server's address.
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
