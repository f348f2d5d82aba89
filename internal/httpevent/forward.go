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

// HeaderPeer is the header with which a server of the cluster tells
// another the client it relayed (sealed; see internal/cluster). No
// workload is told it, whoever sent it.
const HeaderPeer = "X-Stratus-Peer"

// proxyHeaders are what proxies say of a client and its scheme besides
// X-Forwarded-* and Forwarded (nginx's, Apache's, IIS's): no workload is
// told them unless the peer that sent them is trusted.
var proxyHeaders = [...]string{"X-Real-Ip", "X-Forwarded-Ssl", "X-Forwarded-Scheme", "X-Forwarded-Server", "Front-End-Https"}

// Strip removes from h (a request's canonical header) what its workload
// must not be told: HeaderPeer always, and proxyHeaders unless f is
// Trusted.
func (f Forward) Strip(h http.Header) {
	delete(h, HeaderPeer)
	if !f.Trusted {
		for _, k := range proxyHeaders {
			delete(h, k)
		}
	}
}

// stripped reports whether a header of lower-case name goes to no
// workload of f (see Strip).
func (f Forward) stripped(name string) bool {
	switch name {
	case "x-stratus-peer":
		return true
	case "x-real-ip", "x-forwarded-ssl", "x-forwarded-scheme", "x-forwarded-server", "front-end-https":
		return !f.Trusted
	}
	return false
}

// Peer is the node a request came from, as the gateway sees it: the TCP
// peer, or the client another server of the cluster relayed.
type Peer struct {
	// Addr is the peer's address; invalid when not known.
	Addr netip.Addr
	// TLS: the peer reached the server over TLS.
	TLS bool
	// Untrusted: the peer's forwarding headers are not to be believed,
	// whatever its address (a relay whose seal did not hold).
	Untrusted bool
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
// From any peer that is not trusted (or marked Untrusted) every one of
// them describes this hop only: the peer, the scheme it used, the Host
// it asked for and its port.
//
// A trusted peer's headers are kept and extended; its X-Forwarded-Prefix
// comes before prefix, and its Forwarded gets this hop's element
// appended. Which of its headers name the client, its scheme and host:
//   - X-Forwarded-For without Forwarded: the X-Forwarded-* headers;
//   - Forwarded without X-Forwarded-For: Forwarded's elements, the
//     client from their for= chain, scheme and host from the last
//     element's proto= and host= (the nearest proxy's); the outgoing
//     X-Forwarded-For is that chain;
//   - both: proxies usually set one and pass a client's copy of the
//     other through untouched, so they are believed only if their last
//     entries (what the nearest proxy wrote) name the same node, and then
//     X-Forwarded-* are the source; if they disagree, one of them is the
//     client's own, and the request is taken as an untrusted peer's.
//
// Without a port of its own (X-Forwarded-Port, or one in the host it
// names) the port is the proto's (443 for https, 80 for http) when the
// trusted peer named a proto, else this hop's. Client is the rightmost
// address of the chain that is not a trusted proxy.
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
	if trusted == nil || peer.Untrusted || !peer.Addr.IsValid() || !trusted(peer.Addr) {
		return f
	}
	untrusted := f
	f.Trusted = true
	h := r.Header
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
	xff := joinValues(h["X-Forwarded-For"], ", ")
	var elems []map[string]string
	if fwd != "" {
		elems = forwardedElements(fwd)
	}
	// The chain, nearest hop last, and where the scheme, host and port
	// come from.
	var chain []string
	var sentProto, sentHost, sentPort string
	switch {
	case xff != "":
		for e := range strings.SplitSeq(xff, ",") {
			chain = append(chain, strings.TrimSpace(e))
		}
		if len(elems) > 0 && !sameNode(chain[len(chain)-1], elems[len(elems)-1]["for"]) {
			// One of them is the client's: believe neither.
			return untrusted
		}
		sentProto = joinValues(h["X-Forwarded-Proto"], ",")
		sentHost = joinValues(h["X-Forwarded-Host"], ",")
		sentPort = joinValues(h["X-Forwarded-Port"], ",")
		f.For = xff + ", " + peerStr
	case len(elems) > 0:
		for _, e := range elems {
			chain = append(chain, e["for"])
		}
		last := elems[len(elems)-1]
		sentProto, sentHost = last["proto"], last["host"]
		f.For = xffOf(chain) + ", " + peerStr
	}
	if sentProto != "" {
		f.Proto = sentProto
	}
	if sentHost != "" {
		f.Host = sentHost
	}
	switch {
	case sentPort != "":
		f.Port = sentPort
	case sentHost != "":
		if _, p := splitHost(firstValue(sentHost)); p != "" {
			f.Port = p
			break
		}
		fallthrough
	case sentProto != "":
		switch strings.ToLower(firstValue(f.Proto)) {
		case "https", "wss":
			f.Port = "443"
		case "http", "ws":
			f.Port = "80"
		}
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

// firstValue is the first of a comma-separated list of values (what the
// first proxy said, of X-Forwarded-Proto or -Host), trimmed.
func firstValue(v string) string {
	first, _, _ := strings.Cut(v, ",")
	return strings.TrimSpace(first)
}

// sameNode reports whether an X-Forwarded-For entry and a Forwarded for=
// node name the same node: the same address (ports aside), else the same
// text (unknown, _hidden).
func sameNode(xff, fwd string) bool {
	a, aok := nodeAddr(xff)
	b, bok := nodeAddr(fwd)
	if aok || bok {
		return aok && bok && a == b
	}
	return xff == fwd
}

// xffOf is a Forwarded for= chain as an X-Forwarded-For value: addresses
// without brackets or ports, other nodes as they are, a missing one
// "unknown".
func xffOf(chain []string) string {
	parts := make([]string, len(chain))
	for i, n := range chain {
		switch a, ok := nodeAddr(n); {
		case ok:
			parts[i] = a.String()
		case n == "":
			parts[i] = "unknown"
		default:
			parts[i] = n
		}
	}
	return strings.Join(parts, ", ")
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
	elems := forwardedElements(v)
	out := make([]string, 0, len(elems))
	for _, e := range elems {
		out = append(out, e["for"])
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// forwardedElements returns the elements of a Forwarded header value, each
// its parameters by lower-case name, values unquoted; a value that does
// not parse stops the list where it fails.
func forwardedElements(v string) []map[string]string {
	var out []map[string]string
	p := forwardedParser{s: v}
	for {
		params, ok := p.element()
		if !ok {
			return out
		}
		out = append(out, params)
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
