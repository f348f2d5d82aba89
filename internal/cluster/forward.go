package cluster

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/stratus-run/stratus"
)

// maxProxyTries bounds the tries of one forwarded service request.
const maxProxyTries = 3

// ServiceForwarder returns next behind a forwarder of the requests that
// belong to one service: its routes (/svc/NAME[@TAG][/PATH], a Host of
// NAME.<domain> or TAG-NAME.<domain>) and its API calls
// (/v1/services/NAME[/...]; not the list, GET /v1/services). Such a
// request goes to next when this node owns the service (taking its lease
// if it is free; a deploy, PUT /v1/services/NAME with the token, takes
// the lease of a new service, so a new service runs where it was
// deployed), or when no service of that name has a lease; else it is
// reverse-proxied to the owner, streaming, WebSocket upgrades included,
// with X-Stratus-Forwarded-By and X-Stratus-Lease-Epoch. A proxied
// request that the owner refuses for a stale epoch, or whose owner
// refused the connection, is tried again (after the owner's lease
// expired, for the latter) if its body was not read yet. A request that
// was forwarded already is never forwarded again: it goes to next if this
// node holds the service's lease at the epoch it names, else it is
// answered 503 (stratus.ErrUnavailable). Every other request goes to
// next. Single: next itself.
func (c *Cluster) ServiceForwarder(domain string, next http.Handler) http.Handler {
	if c.single {
		return next
	}
	return &forwarder{c: c, domain: strings.ToLower(strings.Trim(domain, ".")), next: next}
}

type forwarder struct {
	c      *Cluster
	domain string // lower case, without dots at its ends; "": no host routes
	next   http.Handler
}

// A candidate is a service lease a request may belong to; create says
// that the request may create the lease (a deploy).
type candidate struct {
	lease  string
	create bool
}

func (f *forwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cands := f.candidates(r)
	if len(cands) == 0 {
		f.next.ServeHTTP(w, r)
		return
	}
	if r.Header.Get(HeaderForwardedBy) != "" {
		f.receive(w, r, cands)
		return
	}
	var body *replayBody
	if r.Body != nil && r.Body != http.NoBody {
		body = &replayBody{ReadCloser: r.Body}
		r.Body = body
	}
	for try := 1; ; try++ {
		t, found, err := f.resolve(r.Context(), cands)
		if err != nil {
			f.c.answer.Error(w, r, err)
			return
		}
		if !found || t.self {
			f.next.ServeHTTP(w, r)
			return
		}
		st := &proxyState{t: t}
		f.c.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), proxyKey{}, st)))
		if st.err == nil {
			return
		}
		retry := false
		switch {
		case errors.Is(st.err, errMoved):
			f.c.forget(t.lease)
			retry = try == 1
		case refused(st.err) && r.Context().Err() == nil:
			f.c.log.Warn("node unreachable; waiting for its lease", "node", t.node, "lease", t.lease, "err", st.err)
			f.c.markSuspect(t.node)
			f.c.forget(t.lease)
			retry = try < maxProxyTries
		}
		if !retry || body.started() {
			f.c.answer.Error(w, r, fmt.Errorf("forward to node %s: %w: %w", t.node, st.err, stratus.ErrUnavailable))
			return
		}
	}
}

// receive serves a request another node forwarded: next if this node
// holds one of its candidates' leases at the epoch it names, else 503.
func (f *forwarder) receive(w http.ResponseWriter, r *http.Request, cands []candidate) {
	epoch, err := strconv.ParseInt(r.Header.Get(HeaderLeaseEpoch), 10, 64)
	if err == nil {
		for _, cand := range cands {
			if held, ok := f.c.holds(cand.lease); ok && held == epoch {
				r.Header.Del(HeaderForwardedBy)
				r.Header.Del(HeaderLeaseEpoch)
				f.next.ServeHTTP(w, r)
				return
			}
		}
	}
	w.Header().Set(headerMoved, "1")
	f.c.answer.Error(w, r, fmt.Errorf("%s is not node %s's at epoch %q: ownership moved: %w",
		cands[0].lease, f.c.cfg.Node, r.Header.Get(HeaderLeaseEpoch), stratus.ErrUnavailable))
}

// resolve returns where the first candidate that has a lease is served;
// found is false when none has one.
func (f *forwarder) resolve(ctx context.Context, cands []candidate) (target, bool, error) {
	for _, cand := range cands {
		t, found, err := f.c.resolve(ctx, cand.lease, !cand.create)
		if err != nil || found {
			t.lease = cand.lease
			return t, found, err
		}
	}
	return target{}, false, nil
}

// candidates returns the service leases r may belong to, in the order
// the API server routes it: its Host's (the whole label, then the NAME of
// each TAG-NAME split), then its path's.
func (f *forwarder) candidates(r *http.Request) []candidate {
	var cands []candidate
	if f.domain != "" {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		label, ok := strings.CutSuffix(strings.ToLower(host), "."+f.domain)
		if ok && stratus.ValidName(label) == nil {
			cands = append(cands, candidate{lease: leaseName(kindService, label)})
			for i := 1; i < len(label)-1; i++ {
				if label[i] == '-' {
					cands = append(cands, candidate{lease: leaseName(kindService, label[i+1:])})
				}
			}
		}
	}
	p := r.URL.Path
	if rest, ok := strings.CutPrefix(p, "/svc/"); ok {
		route, _, _ := strings.Cut(rest, "/")
		if name, _, _ := strings.Cut(route, "@"); stratus.ValidName(name) == nil {
			cands = append(cands, candidate{lease: leaseName(kindService, name)})
		}
	} else if rest, ok := strings.CutPrefix(p, "/v1/services/"); ok {
		name, _, hasSub := strings.Cut(rest, "/")
		if stratus.ValidName(name) == nil {
			create := r.Method == http.MethodPut && !hasSub && f.tokenOK(r)
			cands = append(cands, candidate{lease: leaseName(kindService, name), create: create})
		}
	}
	return cands
}

// tokenOK reports whether r carries the server's token.
func (f *forwarder) tokenOK(r *http.Request) bool {
	want := f.c.cfg.Token
	return want == "" || subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+want)) == 1
}

// proxyKey is the context key of a proxied request's proxyState.
type proxyKey struct{}

// proxyState is where a proxied request goes, and the proxy's error, if
// it failed before it answered anything.
type proxyState struct {
	t   target
	err error
}

// newProxy returns the reverse proxy of ServiceForwarder: to the target
// in the request's proxyState, with the request's Host, the
// X-Forwarded-* headers and the forwarding headers; answers flushed as
// they come. It answers nothing itself on an error: it leaves the error
// in the proxyState for the forwarder.
func (c *Cluster) newProxy(transport http.RoundTripper) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			st := pr.In.Context().Value(proxyKey{}).(*proxyState)
			pr.SetURL(st.t.addr)
			pr.Out.Host = pr.In.Host
			if xff := pr.In.Header["X-Forwarded-For"]; len(xff) > 0 {
				pr.Out.Header["X-Forwarded-For"] = slices.Clone(xff)
			}
			pr.SetXForwarded()
			c.setForwardHeaders(pr.Out.Header, st.t.epoch)
		},
		Transport:     transport,
		FlushInterval: -1,
		ModifyResponse: func(resp *http.Response) error {
			if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get(headerMoved) != "" {
				return errMoved
			}
			return nil
		},
		ErrorHandler: func(_ http.ResponseWriter, r *http.Request, err error) {
			r.Context().Value(proxyKey{}).(*proxyState).err = err
		},
	}
}

// replayBody is a request body that tells whether any of it was read:
// one that was not may be sent again. Its Close does nothing: the
// server closes the request's body when the handler returns.
type replayBody struct {
	io.ReadCloser
	read atomic.Bool // the transport reads on a goroutine of its own
}

func (b *replayBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.read.Store(true)
	}
	return n, err
}

func (b *replayBody) Close() error { return nil }

// started reports whether any of b was read; a nil b (no body) was not.
func (b *replayBody) started() bool { return b != nil && b.read.Load() }
