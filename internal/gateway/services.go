package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/httpevent"
	"github.com/stratus-run/stratus/internal/services"
	"github.com/stratus-run/stratus/internal/trace"
)

// replicas gives requests a replica of a service. A route is a service's
// name, whose traffic split picks the revision, or NAME@TAG, the revision
// of its tag.
type replicas interface {
	// Acquire gives a request to route a replica (see
	// services.Manager.Acquire); ctx is marked services.WithoutToken for
	// a request that came without the server's token.
	Acquire(ctx context.Context, route string) (*services.Target, func(), error)
	// Auth returns the auth mode of route; ok is false for an unknown
	// service or tag.
	Auth(route string) (auth string, ok bool)
}

// h2cRoutes is what a replicas may also tell (services.Manager does):
// whether every revision route reaches speaks h2c to its replicas.
type h2cRoutes interface {
	H2C(route string) bool
}

// ServiceProxy routes requests to services: ANY /svc/NAME[/PATH] (the
// container sees /PATH) and any request whose Host is NAME.<domain> (the
// container sees the path as sent); /svc/NAME@TAG[/PATH] and
// TAG-NAME.<domain> reach the revision of the service's tag TAG. Requests
// go to the replica the manager picks (fewest in flight, within its
// concurrency) through one httputil.ReverseProxy; WebSocket upgrades and
// streamed responses pass through. A request that has no answer within
// its revision's timeout (services.Target.Timeout) gets 504, and one
// whose answer is under way then is cut off. The proxy starts no
// goroutines of its own beyond the transport's connections.
//
// A request takes a replica's slot only once its body is complete, or
// once its first 64 KiB (prefetch) have come and the rest is streamed to the
// replica: a client that trickles its body holds no slot while it does
// (BoundBodies ends it); but a gRPC stream to a service deployed --h2c
// takes its slot at once (see streamsBody). A body over maxBody is
// refused with 413.
type ServiceProxy struct {
	svcs    replicas
	token   *Token
	domain  string // lower case, without a leading dot
	maxBody int64
	proxy   *httputil.ReverseProxy
	answer  v1.Responder // writes every error
	observe func(service string, status int, d time.Duration)
	policy  []string  // ProxyConfig.PathPolicy's header value; nil: none
	trusted proxies   // whose forwarding headers are believed
	h2c     h2cRoutes // nil: no service speaks h2c
}

// prefetch is how much of a request's body the proxy reads before it
// takes a replica's slot.
const prefetch = 64 << 10

// proxied is a request on its way to a replica, kept in its context.
type proxied struct {
	name string // the service's
	t    *services.Target
	body *serviceBody // nil without a body
	// in is the client's request, as it came: the proxy's error handler
	// gets the outgoing one, whose URL is the replica's.
	in *http.Request
	// sandboxed: a path route with a PathPolicy.
	sandboxed bool
	// path and rawPath are the URL path the replica sees; prefix is
	// what the route cut off ("": nothing).
	path, rawPath, prefix string
}

type proxiedKey struct{}

func proxiedOf(r *http.Request) *proxied { return r.Context().Value(proxiedKey{}).(*proxied) }

// ProxyConfig configures a ServiceProxy. Services is required; the other
// fields' zero values mean the defaults.
type ProxyConfig struct {
	// Services gives requests a replica of a service. Required.
	Services replicas
	// Token authenticates requests to services deployed with the token
	// auth and is removed from every request before it reaches a
	// container. Nil: no request has the token.
	Token *Token
	// Domain is the domain of host routes: NAME.<Domain>.
	Domain string
	// MaxBody bounds a request's body (0: no bound).
	MaxBody int64
	// Log gets the failures answered 5xx and the proxy's own errors; nil
	// discards them.
	Log *slog.Logger
	// Observe, if set, is called once for each request to a service that
	// was answered (by its replica, or by the proxy: 401, 408, 413, 429,
	// 502, 503, 504...), with the answer's status and the time from the
	// request's arrival at the proxy to the end of its answer; a client
	// that went away before an answer is status 499. Requests to unknown
	// services are not observed, so that service is always a deployed
	// service's name. It runs on the request's goroutine and must be
	// cheap; the server points it at its metrics and at
	// services.Manager.Observe.
	Observe func(service string, status int, d time.Duration)
	// PathPolicy, if set, is a Content-Security-Policy that every answer
	// of the path route /svc/NAME carries besides the replica's own (see
	// Config.PathPolicy), and the replica's Set-Cookie and Clear-Site-Data
	// headers are dropped from those answers (1xx and 101 included); host
	// routes are their own origins and get neither. Empty: none, and the
	// replica's headers pass.
	PathPolicy string
	// TrustedProxies are the peers whose forwarding headers are believed
	// and appended to (see setForwarded); nil: nobody's.
	TrustedProxies []netip.Prefix
}

// withDefaults fills in the defaults of c's zero values.
func (c ProxyConfig) withDefaults() ProxyConfig {
	if c.Token == nil {
		c.Token = NewToken("")
	}
	if c.MaxBody <= 0 {
		c.MaxBody = 1 << 62 // no bound
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// NewServiceProxy returns a ServiceProxy. It panics if cfg.Services is
// nil: a wiring bug, which would otherwise surface at the first request.
func NewServiceProxy(cfg ProxyConfig) *ServiceProxy {
	if cfg.Services == nil {
		panic("gateway.NewServiceProxy: ProxyConfig.Services is nil")
	}
	cfg = cfg.withDefaults()
	log := cfg.Log
	p := &ServiceProxy{
		svcs: cfg.Services, token: cfg.Token, maxBody: cfg.MaxBody,
		domain: strings.ToLower(strings.Trim(cfg.Domain, ".")),
		answer: v1.Responder{Log: log}, observe: cfg.Observe, policy: policyValue(cfg.PathPolicy),
		trusted: proxies(cfg.TrustedProxies),
	}
	p.h2c, _ = cfg.Services.(h2cRoutes)
	p.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pp := proxiedOf(pr.In)
			pr.Out.URL.Path, pr.Out.URL.RawPath = pp.path, pp.rawPath
			pr.SetURL(pp.t.URL)
			pr.Out.Host = pr.In.Host
			setForwarded(pr.Out.Header, httpevent.Resolve(pr.In, PeerOf(pr.In), pp.prefix, p.trusted.trusts))
			// The replica continues Stratus's span (the client's trace,
			// if it sent one), not the client's.
			trace.Inject(pr.In.Context(), pr.Out.Header)
		},
		// Each replica has its own transport, closed when it stops.
		Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
			return proxiedOf(r).t.Transport.RoundTrip(r)
		}),
		// out is the outgoing request; the answer and its log line are
		// about the client's.
		ErrorHandler: func(w http.ResponseWriter, out *http.Request, err error) {
			pp := proxiedOf(out)
			// The client's body failed the request (late, too large):
			// that, not the replica, is what the client hears of.
			if pp.body != nil {
				if berr := pp.body.failed(); berr != nil {
					p.answer.Error(w, pp.in, berr)
					return
				}
			}
			if errors.Is(err, context.Canceled) {
				return
			}
			if errors.Is(err, context.DeadlineExceeded) && pp.in.Context().Err() == nil {
				p.answer.Error(w, pp.in, fmt.Errorf("service %q: no answer within %s: %w", pp.name, pp.t.Timeout, stratus.ErrTimeout))
				return
			}
			// The replica did not answer: a 502, as proxies say it.
			p.answer.Error(w, pp.in, &v1.UpstreamError{Code: v1.CodeInternal, Message: "the replica did not answer: " + err.Error()})
		},
		ErrorLog:   slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		BufferPool: bufferPool{},
	}
	if p.policy != nil {
		// The other answers drop them as their status is written
		// (statusWriter); a protocol switch's is written on the hijacked
		// connection.
		p.proxy.ModifyResponse = func(res *http.Response) error {
			if res.StatusCode == http.StatusSwitchingProtocols && proxiedOf(res.Request).sandboxed {
				dropOriginState(res.Header)
			}
			return nil
		}
	}
	return p
}

// bufferPool lends the proxy its copy buffers, which it would otherwise
// allocate (32 KB) per request. The pool holds them as array pointers,
// which go in and out of an interface without allocating (a slice would
// allocate its header at each Put).
type bufferPool struct{}

const copyBufferSize = 32 << 10

var copyBuffers = sync.Pool{New: func() any { return new([copyBufferSize]byte) }}

func (bufferPool) Get() []byte { return copyBuffers.Get().(*[copyBufferSize]byte)[:] }

func (bufferPool) Put(b []byte) {
	if cap(b) >= copyBufferSize {
		copyBuffers.Put((*[copyBufferSize]byte)(b[:copyBufferSize]))
	}
}

// ServeSvcPath serves /svc/{name}/{path...}: the replica sees /PATH. The
// name may be NAME@TAG.
func (p *ServiceProxy) ServeSvcPath(w http.ResponseWriter, r *http.Request) {
	if p.policy != nil {
		w.Header()[policyKey] = p.policy
	}
	name := r.PathValue("name")
	prefix := "/svc/" + name
	path, rawPath := "/"+r.PathValue("path"), ""
	if raw := r.URL.RawPath; raw != "" && strings.HasPrefix(raw, prefix) {
		rawPath = "/" + strings.TrimPrefix(strings.TrimPrefix(raw, prefix), "/")
	}
	// X-Forwarded-Prefix: the name's segment as the client escaped it.
	fwdPrefix, _, _ := cutRoute(r, "/svc/", name)
	p.serve(w, r, name, path, rawPath, fwdPrefix, p.policy)
}

// HostService returns the route a request's Host names (its label as
// HostLabel reads it, in lower case): NAME when it is NAME.<domain> and
// NAME is a service, NAME@TAG when it is TAG-NAME.<domain> and NAME a
// service (the service's own name wins, then a tag the service has, then
// the first split whose NAME is a service: an unknown tag is answered
// 404, naming it; Exists tells it apart).
func (p *ServiceProxy) HostService(r *http.Request) (string, bool) {
	label, ok := HostLabel(r.Host, p.domain)
	if !ok {
		return "", false
	}
	if p.Exists(label) {
		return label, true
	}
	var unknownTag string
	for i := range len(label) {
		if label[i] != '-' || i == 0 || i == len(label)-1 {
			continue
		}
		route := label[i+1:] + "@" + label[:i]
		if p.Exists(route) {
			return route, true
		}
		if p.Exists(label[i+1:]) && unknownTag == "" {
			unknownTag = route
		}
	}
	return unknownTag, unknownTag != ""
}

// Exists reports whether route (NAME or NAME@TAG) is a service's, or its
// tag's.
func (p *ServiceProxy) Exists(route string) bool {
	_, ok := p.svcs.Auth(route)
	return ok
}

// ServeHost serves a request routed by its Host header to route (see
// HostService): the replica sees the path as sent.
func (p *ServiceProxy) ServeHost(w http.ResponseWriter, r *http.Request, route string) {
	name, _, _ := strings.Cut(route, "@")
	hostRouteSpan(r, name)
	p.serve(w, r, route, r.URL.Path, r.URL.RawPath, "", nil)
}

// serve proxies r to a replica of route (a service's name, or
// NAME@TAG), which sees the URL path path (rawPath: its escaped form, if
// not the default one), and observes the answer as the service's. policy
// is the PathPolicy's header value on a path route (see statusWriter),
// nil on a host route.
func (p *ServiceProxy) serve(w http.ResponseWriter, r *http.Request, route, path, rawPath, prefix string, policy []string) {
	if p.observe == nil && policy == nil {
		p.proxyTo(w, r, route, path, rawPath, prefix, false)
		return
	}
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w, policy: policy}
	if !p.proxyTo(sw, r, route, path, rawPath, prefix, policy != nil) || p.observe == nil {
		return
	}
	status := sw.status
	if status == 0 {
		status = http.StatusOK // what net/http sends for a handler that wrote nothing
		if r.Context().Err() != nil {
			status = statusClientClosed
		}
	}
	name, _, _ := strings.Cut(route, "@")
	p.observe(name, status, time.Since(start))
}

// statusClientClosed is the status of a request whose client went away
// before its answer (nginx's 499).
const statusClientClosed = 499

// proxyTo proxies r to a replica of route, which sees the URL path path
// (rawPath: its escaped form, if not the default one); sandboxed: r came
// by a path route with a PathPolicy. It reports whether route's service
// exists.
func (p *ServiceProxy) proxyTo(w http.ResponseWriter, r *http.Request, route, path, rawPath, prefix string, sandboxed bool) (known bool) {
	name, tag, tagged := strings.Cut(route, "@")
	auth, known := p.svcs.Auth(route)
	var missing error
	if !known {
		missing = fmt.Errorf("service %q: %w", name, stratus.ErrNotFound)
		// A service without that tag: its own auth says who hears so.
		if tagged {
			if auth, known = p.svcs.Auth(name); known {
				missing = fmt.Errorf("service %q has no tag %q: %w", name, tag, stratus.ErrNotFound)
			}
		}
	}
	// The server's token is not the container's to see, whatever its auth.
	withToken := p.token.Authorized(r.Header)
	if !p.token.admit(r, known && auth == stratus.AuthNone) {
		p.answer.Error(w, r, v1.ErrUnauthorized)
		return known
	}
	if missing != nil {
		p.answer.Error(w, r, missing)
		return known
	}
	// A gRPC stream to a service deployed --h2c goes at once (see
	// streamsBody); to any other, it waits for its body as every request
	// does.
	streams := p.h2c != nil && streamsBody(r) && p.h2c.H2C(route)
	body, err := p.admit(r, streams)
	if err != nil {
		p.answer.Error(w, r, fmt.Errorf("service %q: %w", name, err))
		return true
	}
	// Admitted without the token, it may reach only a revision deployed
	// with auth none, whatever the split or tags are by the time it gets
	// a replica.
	actx := r.Context()
	if !withToken {
		actx = services.WithoutToken(actx)
	}
	t, release, err := p.svcs.Acquire(actx, route)
	if err != nil {
		switch {
		case errors.Is(err, services.ErrTokenRequired):
			p.answer.Error(w, r, v1.ErrUnauthorized)
		case r.Context().Err() == nil:
			p.answer.Error(w, r, err)
		}
		return true
	}
	defer release()
	if streams {
		// Its body is a stream of messages as long as the call: the read
		// timeout would cut it, the service's timeout bounds it instead.
		var deadline time.Time
		if t.Timeout > 0 {
			deadline = time.Now().Add(t.Timeout)
		}
		_ = http.NewResponseController(w).SetReadDeadline(deadline)
	}
	pp := &proxied{name: name, t: t, body: body, in: r, path: path, rawPath: rawPath, prefix: prefix, sandboxed: sandboxed}
	ctx := context.WithValue(r.Context(), proxiedKey{}, pp)
	if t.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.Timeout)
		defer cancel()
	}
	p.proxy.ServeHTTP(w, r.WithContext(ctx))
	return true
}

// admit reads r's body up to prefetch bytes, or to its end, before the
// request may take a slot, and sets r.Body to what was read followed by
// the rest; streams: it reads nothing ahead (a gRPC stream to an h2c
// service). It returns ErrTooLarge for a body over maxBody and
// ErrBodyTimeout for one that does not come in time.
func (p *ServiceProxy) admit(r *http.Request, streams bool) (*serviceBody, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > p.maxBody {
		return nil, fmt.Errorf("request body is %d bytes, more than the %d byte limit: %w", r.ContentLength, p.maxBody, stratus.ErrTooLarge)
	}
	b := &serviceBody{src: r.Body, max: p.maxBody}
	if streams {
		r.Body = readCloser{b, r.Body}
		return b, nil
	}
	var head bytes.Buffer
	if _, err := head.ReadFrom(io.LimitReader(b, prefetch)); err != nil {
		if berr := b.failed(); berr != nil {
			return nil, berr
		}
		return nil, fmt.Errorf("read request body: %v: %w", err, stratus.ErrInvalid)
	}
	if b.eof {
		// Complete: the replica gets it with its length.
		r.Body = readCloser{bytes.NewReader(head.Bytes()), r.Body}
		r.ContentLength = int64(head.Len())
		r.TransferEncoding = nil
		return b, nil
	}
	r.Body = readCloser{io.MultiReader(bytes.NewReader(head.Bytes()), b), r.Body}
	return b, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// serviceBody reads a request's body for a service: at most max bytes,
// beyond which it fails with ErrTooLarge. It keeps the error that ended
// it, if it was the client's (too large, too slow), for the proxy's error
// handler, which runs on another goroutine than the transport's that
// reads the body. Reads come from one goroutine at a time.
type serviceBody struct {
	src       io.Reader
	max, read int64
	eof       bool

	mu  sync.Mutex
	err error
}

func (b *serviceBody) Read(p []byte) (int, error) {
	if err := b.failed(); err != nil {
		return 0, err
	}
	if rest := b.max - b.read + 1; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := b.src.Read(p)
	b.read += int64(n)
	if b.read > b.max {
		n -= int(b.read - b.max)
		b.read = b.max
		err = fmt.Errorf("request body is more than the %d byte limit: %w", b.max, stratus.ErrTooLarge)
	}
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		b.eof = true
	case errors.Is(err, ErrBodyTimeout), errors.Is(err, stratus.ErrTooLarge):
		b.mu.Lock()
		b.err = err
		b.mu.Unlock()
	}
	return n, err
}

// failed returns the client's error that ended the body, if any.
func (b *serviceBody) failed() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// setForwarded sets the forwarding headers of a request to a replica to
// what f says (httpevent.Resolve): X-Forwarded-For, -Proto, -Host,
// -Port, Forwarded (always: the Knative runtime contract requires it) and
// X-Forwarded-Prefix (removed when f has none); the headers f.Strip
// removes go.
func setForwarded(h http.Header, f httpevent.Forward) {
	if f.For != "" {
		h["X-Forwarded-For"] = []string{f.For}
	} else {
		delete(h, "X-Forwarded-For")
	}
	h["X-Forwarded-Proto"] = []string{f.Proto}
	h["X-Forwarded-Host"] = []string{f.Host}
	h["X-Forwarded-Port"] = []string{f.Port}
	h["Forwarded"] = []string{f.Forwarded}
	if f.Prefix != "" {
		h["X-Forwarded-Prefix"] = []string{f.Prefix}
	} else {
		delete(h, "X-Forwarded-Prefix")
	}
	f.Strip(h)
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
