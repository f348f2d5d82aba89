package httpevent

import (
	"net/http"
	"net/netip"
	"strings"
)

// Forward is what a request's forwarding headers say once the gateway has
// handled them: what a function's event (Meta.Forward) and a service's
// request carry. Resolve makes one.
type Forward struct {
	// Client is the client's address as the trusted chain says: the
	// event's requestContext.http.sourceIp.
	Client string
	// For is the X-Forwarded-For value; empty when the peer's address is
	// not known (a Unix socket), then the header is left out.
	For string
	// Proto, Host and Port are X-Forwarded-Proto, -Host and -Port.
	Proto, Host, Port string
	// Prefix is X-Forwarded-Prefix, the path prefix the route cut off;
	// empty: none, the header is left out.
	Prefix string
	// Forwarded is the RFC 7239 Forwarded value.
	Forwarded string
	// Trusted: the peer is a trusted proxy, whose headers these extend.
	Trusted bool
}

// Peer is the node a request came from, as the gateway sees it: the TCP
// peer, or the client another server of the cluster relayed.
type Peer struct {
	// Addr is the peer's address; invalid when not known.
	Addr netip.Addr
	// TLS: the peer reached the server over TLS.
	TLS bool
}

// PeerOf returns r's TCP peer.
func PeerOf(r *http.Request) Peer {
	p := Peer{TLS: r.TLS != nil}
	host, _ := splitHost(r.RemoteAddr)
	if a, err := netip.ParseAddr(host); err == nil {
		p.Addr = a.Unmap().WithZone("")
	}
	return p
}

// Resolve returns the forwarding headers of r, which came from peer, for
// a route that cut prefix off its path ("" for none). trusted reports
// whether the forwarding headers of a peer are to be believed (nil:
// nobody's are).
//
// From a trusted peer, X-Forwarded-For gets the peer appended, the
// X-Forwarded-Proto, -Host and -Port it sent are kept (each filled in
// from the request when absent), its X-Forwarded-Prefix comes before
// prefix, and its Forwarded gets this hop's element appended; Client is
// the rightmost address of the X-Forwarded-For chain (or, without one,
// of the Forwarded for= chain) that is not a trusted proxy. From any
// other peer every one of them describes this hop only: the peer, the
// scheme it used, the Host it asked for and its port.
func Resolve(r *http.Request, peer Peer, prefix string, trusted func(netip.Addr) bool) Forward {
	proto, port := "http", "80"
	if peer.TLS {
		proto, port = "https", "443"
	}
	if _, p := splitHost(r.Host); p != "" {
		port = p
	}
	peerStr := "unknown"
	if peer.Addr.IsValid() {
		peerStr = peer.Addr.String()
	}
	own := "for=" + forwardedNode(peer.Addr) + ";host=" + forwardedValue(r.Host) + ";proto=" + proto
	f := Forward{Client: peerStr, Proto: proto, Host: r.Host, Port: port, Prefix: prefix, Forwarded: own}
	if peer.Addr.IsValid() {
		f.For = peerStr
	} else {
		f.Client = ""
	}
	if trusted == nil || !peer.Addr.IsValid() || !trusted(peer.Addr) {
		return f
	}
	f.Trusted = true
	h := r.Header
	xff := joinValues(h["X-Forwarded-For"], ", ")
	if xff != "" {
		f.For = xff + ", " + peerStr
	}
	if v := joinValues(h["X-Forwarded-Proto"], ","); v != "" {
		f.Proto = v
	}
	if v := joinValues(h["X-Forwarded-Host"], ","); v != "" {
		f.Host = v
	}
	if v := joinValues(h["X-Forwarded-Port"], ","); v != "" {
		f.Port = v
	}
	if v := joinValues(h["X-Forwarded-Prefix"], ","); v != "" {
		f.Prefix = strings.TrimRight(v, "/") + prefix
		if f.Prefix == "" {
			f.Prefix = "/"
		}
	}
	fwd := joinValues(h["Forwarded"], ", ")
	if fwd != "" {
		f.Forwarded = fwd + ", " + own
	}
	// The chain, nearest hop last: X-Forwarded-For's, else Forwarded's.
	var chain []string
	if xff != "" {
		for _, e := range strings.Split(xff, ",") {
			chain = append(chain, strings.TrimSpace(e))
		}
	} else if fwd != "" {
		chain = ForwardedFor(fwd)
	}
	f.Client = peerStr
	for i := len(chain) - 1; i >= 0; i-- {
		a, ok := nodeAddr(chain[i])
		if !ok {
			if chain[i] != "" {
				f.Client = chain[i]
			}
			break
		}
		f.Client = a.String()
		if !trusted(a) {
			break
		}
	}
	return f
}

// joinValues joins a header's values with sep, trimming spaces.
func joinValues(vs []string, sep string) string {
	switch len(vs) {
	case 0:
		return ""
	case 1:
		return strings.TrimSpace(vs[0])
	}
	parts := make([]string, 0, len(vs))
	for _, v := range vs {
		if v = strings.TrimSpace(v); v != "" {
			parts = append(parts, v)
		}
	}
	return strings.Join(parts, sep)
}

// nodeAddr returns the IP address of an X-Forwarded-For entry or a
// Forwarded node (1.2.3.4, 1.2.3.4:80, [2001:db8::1], [2001:db8::1]:80,
// 2001:db8::1); ok is false for anything else (unknown, _hidden, a
// name).
func nodeAddr(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.Unmap().WithZone(""), true
		}
	}
	return netip.Addr{}, false
}

// forwardedNode is a's node in a Forwarded for= parameter: an IPv4
// address as is, an IPv6 address bracketed and quoted (RFC 7239 section
// 6), "unknown" when a is not valid.
func forwardedNode(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "unknown"
	case a.Is6():
		return `"[` + a.String() + `]"`
	}
	return a.String()
}

// forwardedValue is v as a Forwarded parameter value: a token as is,
// anything else a quoted string.
func forwardedValue(v string) string {
	if v != "" && isToken(v) {
		return v
	}
	var b strings.Builder
	b.Grow(len(v) + 2)
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(v[i])
	}
	b.WriteByte('"')
	return b.String()
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

// isTokenChar reports whether c is a tchar of RFC 9110.
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// ForwardedFor returns the for= nodes of a Forwarded header value (RFC
// 7239), one per element in order, unquoted ("[2001:db8::1]:80" stays
// bracketed); an element without for= gives "". A value that does not
// parse stops the list where it fails.
func ForwardedFor(v string) []string {
	var out []string
	p := forwardedParser{s: v}
	for {
		params, ok := p.element()
		if !ok {
			return out
		}
		out = append(out, params["for"])
		if !p.comma() {
			return out
		}
	}
}

// forwardedParser reads a Forwarded value: elements separated by ",",
// each pairs separated by ";", each token "=" (token / quoted-string),
// with optional whitespace around the separators.
type forwardedParser struct {
	s string
	i int
}

func (p *forwardedParser) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// comma consumes a "," (with the spaces around it, and empty elements);
// false at the end or at anything else.
func (p *forwardedParser) comma() bool {
	p.space()
	if p.i >= len(p.s) || p.s[p.i] != ',' {
		return false
	}
	for p.i < len(p.s) && (p.s[p.i] == ',' || p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
	return p.i < len(p.s)
}

// element reads one element's pairs, names lower-cased (the last of a
// repeated name wins).
func (p *forwardedParser) element() (map[string]string, bool) {
	params := map[string]string{}
	for {
		p.space()
		name := p.token()
		if name == "" || p.i >= len(p.s) || p.s[p.i] != '=' {
			return nil, false
		}
		p.i++
		var val string
		if p.i < len(p.s) && p.s[p.i] == '"' {
			v, ok := p.quoted()
			if !ok {
				return nil, false
			}
			val = v
		} else if val = p.token(); val == "" {
			return nil, false
		}
		params[strings.ToLower(name)] = val
		p.space()
		if p.i < len(p.s) && p.s[p.i] == ';' {
			p.i++
			continue
		}
		return params, true
	}
}

func (p *forwardedParser) token() string {
	start := p.i
	for p.i < len(p.s) && isTokenChar(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i]
}

// quoted reads a quoted-string at p.i (its opening quote) and returns
// its content unescaped.
func (p *forwardedParser) quoted() (string, bool) {
	var b strings.Builder
	for p.i++; p.i < len(p.s); p.i++ {
		switch c := p.s[p.i]; c {
		case '"':
			p.i++
			return b.String(), true
		case '\\':
			p.i++
			if p.i >= len(p.s) {
				return "", false
			}
			b.WriteByte(p.s[p.i])
		default:
			b.WriteByte(c)
		}
	}
	return "", false
}
