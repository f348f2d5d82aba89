package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/services"
)

// replicas gives requests a replica of a service.
type replicas interface {
	Acquire(ctx context.Context, name string) (*services.Target, func(), error)
	Auth(name string) (string, bool)
}

// ServiceProxy routes requests to services: ANY /svc/NAME[/PATH] (the
// container sees /PATH) and any request whose Host is NAME.<domain> (the
// container sees the path as sent). Requests go to the replica the
// manager picks (fewest in flight, within its concurrency) through one
// httputil.ReverseProxy; WebSocket upgrades and streamed responses pass
// through. The proxy starts no goroutines of its own beyond the
// transport's connections.
type ServiceProxy struct {
	svcs   replicas
	token  *Token
	domain string // lower case, without a leading dot
	proxy  *httputil.ReverseProxy
	log    *slog.Logger
}

type targetKey struct{}

// NewServiceProxy returns a ServiceProxy. token authenticates requests
// to services deployed with the token auth and is removed from every
// request before it reaches a container.
func NewServiceProxy(svcs replicas, token *Token, domain string, log *slog.Logger) *ServiceProxy {
	p := &ServiceProxy{
		svcs: svcs, token: token, log: log,
		domain: strings.ToLower(strings.Trim(domain, ".")),
	}
	p.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			t := pr.In.Context().Value(targetKey{}).(*services.Target)
			pr.SetURL(t.URL)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		// Each replica has its own transport, closed when it stops.
		Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
			return r.Context().Value(targetKey{}).(*services.Target).Transport.RoundTrip(r)
		}),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			p.log.Debug("proxy to replica", "err", err)
			// The replica did not answer: a 502, as proxies say it.
			WriteJSON(w, http.StatusBadGateway, v1.Error{Code: v1.CodeInternal, Message: "the replica did not answer: " + err.Error()})
		},
		ErrorLog:   slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		BufferPool: bufferPool{},
	}
	return p
}

// bufferPool lends the proxy its copy buffers, which it would otherwise
// allocate (32 KB) per request.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { return make([]byte, 32<<10) }}

func (bufferPool) Get() []byte  { return copyBuffers.Get().([]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(b) }

// ServeSvcPath serves /svc/{name}/{path...}.
func (p *ServiceProxy) ServeSvcPath(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	prefix := "/svc/" + name
	r.URL.Path = "/" + r.PathValue("path")
	if raw := r.URL.RawPath; raw != "" && strings.HasPrefix(raw, prefix) {
		r.URL.RawPath = "/" + strings.TrimPrefix(strings.TrimPrefix(raw, prefix), "/")
	}
	p.serve(w, r, name)
}

// HostService returns the service a request's Host names, if it is
// NAME.<domain> and NAME is a service.
func (p *ServiceProxy) HostService(r *http.Request) (string, bool) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(host)
	name, ok := strings.CutSuffix(host, "."+p.domain)
	if !ok || name == "" || strings.Contains(name, ".") {
		return "", false
	}
	// Host names are case-insensitive; service names match as deployed
	// in lower case, or exactly.
	if _, ok := p.svcs.Auth(name); ok {
		return name, true
	}
	return "", false
}

// ServeHost serves a request routed by its Host header to service name.
func (p *ServiceProxy) ServeHost(w http.ResponseWriter, r *http.Request, name string) {
	p.serve(w, r, name)
}

func (p *ServiceProxy) serve(w http.ResponseWriter, r *http.Request, name string) {
	auth, ok := p.svcs.Auth(name)
	// The server's token is not the container's to see, whatever its auth.
	if !p.token.admit(r, ok && auth == stratus.AuthNone) {
		WriteUnauthorized(w)
		return
	}
	if !ok {
		WriteError(w, fmt.Errorf("service %q: %w", name, stratus.ErrNotFound))
		return
	}
	t, release, err := p.svcs.Acquire(r.Context(), name)
	if err != nil {
		if r.Context().Err() == nil {
			WriteError(w, err)
		}
		return
	}
	defer release()
	p.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), targetKey{}, t)))
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
