package cluster

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/gateway"
	"github.com/stratus-run/stratus/internal/httpevent"
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
// answered 503 (stratus.ErrUnavailable). Only names Config.Services
// knows are looked up (and a new one's deploy); every other request goes
// to next. The forwarding headers are removed from what next answers a
// forwarded request, so that a service's own 503 is never taken for the
// receiver's refusal. A client gets a 503 without the internal detail
// (logged) when the owner cannot be reached. Single: next itself.
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
	// Only a server may say who the client is, and only to another: a
	// request that says it was forwarded is judged by the client its seal
	// names, or, without a seal that holds, as from an untrusted peer
	// (its forwarding headers, which the sender passed on as they came,
	// are not believed whatever the sender's address).
	peer := r.Header.Get(headerPeer)
	delete(r.Header, headerPeer)
	forwarded := r.Header.Get(HeaderForwardedBy) != ""
	if forwarded {
		p, ok := f.c.openPeer(peer, time.Now())
		if !ok {
			p = httpevent.PeerOf(r)
			p.Untrusted = true
		}
		r = r.WithContext(gateway.WithPeer(r.Context(), p))
	}
	cands := f.candidates(r)
	if len(cands) == 0 {
		f.next.ServeHTTP(w, r)
		return
	}
	if forwarded {
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
			f.c.log.Warn("find the owner of a service", "lease", t.lease, "err", err)
			f.unreachable(w, r, t.lease)
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
			f.c.log.Warn("forward a service's request", "node", t.node, "lease", t.lease, "err", st.err)
			f.unreachable(w, r, t.lease)
			return
		}
	}
}

// unreachable answers 503 for the service of lease: the server that runs
// it cannot be reached. The detail (addresses, dial errors) is logged,
// not told to the client.
func (f *forwarder) unreachable(w http.ResponseWriter, r *http.Request, lease string) {
	_, name, _ := strings.Cut(lease, "/")
	f.c.answer.Error(w, r, fmt.Errorf("the server that runs %s cannot be reached; try again: %w", name, stratus.ErrUnavailable))
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
				r.Header.Del(headerMoved)
				f.next.ServeHTTP(&stripWriter{ResponseWriter: w}, r)
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
		t.lease = cand.lease
		if err != nil || found {
			return t, found, err
		}
	}
	return target{}, false, nil
}

// candidates returns the service leases r may belong to, in the order
// the API server routes it: its Host's (the whole label, then the NAME of
// each TAG-NAME split), then its path's; only services Config.Services
// knows, but for a deploy (PUT /v1/services/NAME with the token), which
// may create one.
func (f *forwarder) candidates(r *http.Request) []candidate {
	cands := f.allCandidates(r)
	known := f.c.cfg.Services
	if known == nil {
		return cands
	}
	return slices.DeleteFunc(cands, func(cand candidate) bool {
		_, name, _ := strings.Cut(cand.lease, "/")
		return !cand.create && !known(name)
	})
}

// allCandidates is candidates without the check that the services exist.
func (f *forwarder) allCandidates(r *http.Request) []candidate {
	var cands []candidate
	if f.domain != "" {
		label, ok := gateway.HostLabel(r.Host, f.domain)
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

// tokenOK reports whether r carries the server's token, as the API
// checks it.
func (f *forwarder) tokenOK(r *http.Request) bool { return f.c.tokenOK(r.Header) }

// tokenOK reports whether h carries the server's token (any with none).
func (c *Cluster) tokenOK(h http.Header) bool {
	if c.cfg.Token == "" {
		return true
	}
	tok := c.token
	if tok == nil { // a Cluster not made by New (tests)
		tok = gateway.NewToken(c.cfg.Token)
	}
	return tok.Authorized(h)
}

// stripWriter is the ResponseWriter next gets for a forwarded request:
// it removes the forwarding headers from the answer before it goes out,
// so that only the receiver itself marks a refusal (headerMoved). It
// flushes and hijacks as the writer beneath does (Unwrap, for
// http.ResponseController).
type stripWriter struct {
	http.ResponseWriter
}

func (s *stripWriter) strip() {
	h := s.ResponseWriter.Header()
	h.Del(headerMoved)
	h.Del(HeaderForwardedBy)
	h.Del(HeaderLeaseEpoch)
}

func (s *stripWriter) WriteHeader(code int) {
	s.strip()
	s.ResponseWriter.WriteHeader(code)
}

func (s *stripWriter) Write(b []byte) (int, error) {
	s.strip()
	return s.ResponseWriter.Write(b)
}

// Flush flushes the writer beneath, if it can.
func (s *stripWriter) Flush() {
	s.strip()
	_ = http.NewResponseController(s.ResponseWriter).Flush()
}

// Hijack hijacks the connection of the writer beneath (WebSockets).
func (s *stripWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	s.strip()
	return http.NewResponseController(s.ResponseWriter).Hijack()
}

// Unwrap is the writer beneath, for http.ResponseController.
func (s *stripWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

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
			// The owner's gateway judges the forwarding headers as if the
			// client had come to it (headerPeer): they go as they came.
			for _, k := range [...]string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded"} {
				if v := pr.In.Header[k]; len(v) > 0 {
					pr.Out.Header[k] = slices.Clone(v)
				}
			}
			if v := c.sealPeer(httpevent.PeerOf(pr.In), time.Now()); v != "" {
				pr.Out.Header[headerPeer] = []string{v}
			}
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

// headerPeer carries, from the server that forwards a service's request
// to the one that serves it, the client as the sender saw it (its TCP
// peer and whether it used TLS), sealed with the cluster's token and
// dated: "ADDR PROTO UNIX MAC", UNIX the sender's clock in seconds, MAC
// the hex HMAC-SHA256 of "ADDR PROTO UNIX". The receiver's gateway then
// applies its forwarding rule to that client. A seal is good for
// peerWindow either side of the receiver's clock, so a copied header
// cannot be replayed for long; the gateway removes the header from every
// request before it reaches a workload (httpevent.Forward.Strip), on a
// single server too.
const headerPeer = httpevent.HeaderPeer

// peerWindow is how far a seal's time may be from the receiver's clock:
// the relay itself takes milliseconds, and the servers' clocks agree
// within a second or so (the leases assume it).
const peerWindow = 60 * time.Second

// sealPeer returns p as a headerPeer value sealed at now; "" without a
// token or an address.
func (c *Cluster) sealPeer(p httpevent.Peer, now time.Time) string {
	if c.cfg.Token == "" || !p.Addr.IsValid() {
		return ""
	}
	proto := "http"
	if p.TLS {
		proto = "https"
	}
	msg := p.Addr.String() + " " + proto + " " + strconv.FormatInt(now.Unix(), 10)
	return msg + " " + hex.EncodeToString(c.peerMAC(msg))
}

// openPeer returns the peer a headerPeer value v names; ok is false
// unless its MAC is the cluster's and it was sealed within peerWindow of
// now.
func (c *Cluster) openPeer(v string, now time.Time) (httpevent.Peer, bool) {
	i := strings.LastIndexByte(v, ' ')
	if c.cfg.Token == "" || i < 0 {
		return httpevent.Peer{}, false
	}
	mac, err := hex.DecodeString(v[i+1:])
	if err != nil || !hmac.Equal(mac, c.peerMAC(v[:i])) {
		return httpevent.Peer{}, false
	}
	fields := strings.Split(v[:i], " ")
	if len(fields) != 3 {
		return httpevent.Peer{}, false
	}
	sec, err := strconv.ParseInt(fields[2], 10, 64)
	if err != nil {
		return httpevent.Peer{}, false
	}
	if d := now.Sub(time.Unix(sec, 0)); d > peerWindow || d < -peerWindow {
		return httpevent.Peer{}, false
	}
	a, err := netip.ParseAddr(fields[0])
	if err != nil {
		return httpevent.Peer{}, false
	}
	return httpevent.Peer{Addr: a, TLS: fields[1] == "https"}, true
}

func (c *Cluster) peerMAC(msg string) []byte {
	m := hmac.New(sha256.New, []byte(c.cfg.Token))
	m.Write([]byte("stratus peer\x00" + msg))
	return m.Sum(nil)
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
