// Package httpevent maps an HTTP request arriving at a function's route
// (ANY /fn/NAME[/PATH]) to the event Lambda function URLs send, which is API
// Gateway's HTTP API payload format 2.0, and maps the function's result back
// to an HTTP response the way function URLs do.
//
// Both directions are pure functions of their inputs: the package starts no
// goroutines, holds no state and is safe for concurrent use. They run on
// every request, so they avoid reflection beyond encoding/json and decode
// results with a small scanner over json.Valid input instead of generic maps.
//
// Where function URLs leave room the choices are:
//
//   - Event drops hop-by-hop request headers (Connection and the headers it
//     names, Keep-Alive, Proxy-*, TE, Trailer, Transfer-Encoding, Upgrade),
//     moves Cookie headers into the cookies list and sets host and the
//     forwarding headers to what Meta.Forward says (Resolve: a trusted
//     proxy's are appended to, anyone else's replaced): x-forwarded-for,
//     -proto and -port as function URLs send them, x-forwarded-prefix when
//     the route cut a prefix off, and x-forwarded-host and forwarded only
//     when a trusted proxy sent them.
//   - WriteResponse treats a non-integer or string statusCode, a status
//     outside 200-599 (net/http cannot send a 1xx as a final status), a
//     header value that is an object or array, an invalid header name or
//     value, a non-string body and invalid base64 as malformed. Header values
//     that are numbers or booleans are sent as their JSON text (3, true), and
//     null values are skipped.
package httpevent

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"

	"github.com/stratus-run/stratus"
)

// Defaults for the Meta fields a caller may leave empty.
const (
	DefaultAccountID = stratus.DefaultAccountID
	DefaultStage     = "$default"
	routeKey         = "$default"
	timeLayout       = "02/Jan/2006:15:04:05 -0700"
)

// Meta is what the gateway knows beyond the request itself.
type Meta struct {
	// RawPath is the part of the escaped request path after /fn/NAME
	// (r.URL.EscapedPath() with the prefix cut), "/" when empty. Bytes that
	// are not valid UTF-8, controls and spaces are percent-encoded.
	RawPath    string
	RequestID  string    // the invocation's request ID
	AccountID  string    // DefaultAccountID if empty
	APIID      string    // e.g. the function name
	DomainName string    // the Host header if empty
	Stage      string    // DefaultStage if empty
	Time       time.Time // time.Now() if zero
	// Forward is what the forwarding headers say (Resolve); nil: what
	// Resolve says of r's TCP peer when no peer is trusted.
	Forward *Forward
}

// event is a function URL event: aws-lambda-go's LambdaFunctionURLRequest
// with the route key and stage function URLs send but that type lacks.
// (events.APIGatewayV2HTTPRequest has them, but always marshals an empty
// "authentication" object, which function URLs never send without mTLS.)
//
// The fields below shadow the embedded ones of the same JSON name: the maps
// as stringMap, which encodes without reflection.
type event struct {
	events.LambdaFunctionURLRequest
	RouteKey              string         `json:"routeKey"`
	Headers               stringMap      `json:"headers"`
	QueryStringParameters stringMap      `json:"queryStringParameters,omitempty"`
	RequestContext        requestContext `json:"requestContext"`
}

type requestContext struct {
	events.LambdaFunctionURLRequestContext
	RouteKey string `json:"routeKey"`
	Stage    string `json:"stage"`
}

// Event builds the payload format 2.0 event JSON for r with the given body,
// which the caller has already read and limited in size.
//
// The event has version "2.0", routeKey "$default", rawPath (m.RawPath),
// rawQueryString (as sent), cookies (every Cookie header split on ";"),
// headers (names lower-cased, repeated headers joined by ","),
// queryStringParameters (form-decoded, repeated keys joined by ",", omitted
// when the query is empty), requestContext and body. The body is base64 with
// isBase64Encoded true unless the content type is text-like (text/*,
// application/json, application/xml, application/javascript,
// application/x-www-form-urlencoded, */*+json, */*+xml; parameters allowed)
// and the body is valid UTF-8. An empty body is omitted.
func Event(r *http.Request, body []byte, m Meta) ([]byte, error) {
	ev := event{RouteKey: routeKey}
	ev.Version = "2.0"
	ev.RawPath = escapePath(m.RawPath)
	ev.RawQueryString = r.URL.RawQuery
	ev.QueryStringParameters = parseQuery(r.URL.RawQuery)

	fwd := m.Forward
	if fwd == nil {
		f := Resolve(r, PeerOf(r), "", nil)
		fwd = &f
	}
	ev.Headers, ev.Cookies = headers(r, fwd)

	rc := &ev.RequestContext
	rc.RouteKey = routeKey
	rc.Stage = m.Stage
	if rc.Stage == "" {
		rc.Stage = DefaultStage
	}
	rc.AccountID = m.AccountID
	if rc.AccountID == "" {
		rc.AccountID = DefaultAccountID
	}
	rc.RequestID = m.RequestID
	rc.APIID = m.APIID
	rc.DomainName = m.DomainName
	if rc.DomainName == "" {
		rc.DomainName = r.Host
	}
	rc.DomainPrefix = domainPrefix(rc.DomainName)
	t := m.Time
	if t.IsZero() {
		t = time.Now()
	}
	rc.Time = t.UTC().Format(timeLayout)
	rc.TimeEpoch = t.UnixMilli()
	rc.HTTP.Method = r.Method
	rc.HTTP.Path = ev.RawPath
	rc.HTTP.Protocol = r.Proto
	rc.HTTP.SourceIP = fwd.Client
	rc.HTTP.UserAgent = r.UserAgent()

	var size int
	if len(body) > 0 {
		if isText(r.Header.Get("Content-Type")) && utf8.Valid(body) {
			ev.Body = string(body)
			size = len(body) + len(body)/8
		} else {
			ev.Body = base64.StdEncoding.EncodeToString(body)
			ev.IsBase64Encoded = true
			size = len(ev.Body)
		}
	}

	var buf bytes.Buffer
	buf.Grow(size + 1024)
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&ev); err != nil {
		// Unreachable: the event holds only strings, numbers and maps of strings.
		return nil, fmt.Errorf("encode event: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}

// headers returns the event's headers and cookies for r.
func headers(r *http.Request, fwd *Forward) (map[string]string, []string) {
	h := joiner{m: make(map[string]string, len(r.Header)+4)}
	var cookies []string
	conn := connectionNames(r.Header["Connection"])
	for k, vs := range r.Header {
		if len(vs) == 0 {
			continue
		}
		name := lower(k)
		switch name {
		case "connection", "keep-alive", "proxy-connection", "proxy-authenticate",
			"proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade",
			"host", // from r.Host below
			// from fwd below
			"x-forwarded-for", "x-forwarded-proto", "x-forwarded-port", "x-forwarded-host",
			"x-forwarded-prefix", "forwarded":
			continue
		case "cookie":
			cookies = splitCookies(cookies, vs)
			continue
		}
		if conn[name] || fwd.stripped(name) {
			continue
		}
		v := vs[0]
		if len(vs) > 1 {
			v = strings.Join(vs, ",")
		}
		// Names differing in case only (not from net/http's server) are joined.
		h.add(name, v)
	}
	h.join()
	if r.Host != "" {
		h.m["host"] = r.Host
	}
	if fwd.For != "" {
		h.m["x-forwarded-for"] = fwd.For
	}
	h.m["x-forwarded-proto"] = fwd.Proto
	h.m["x-forwarded-port"] = fwd.Port
	if fwd.Prefix != "" {
		h.m["x-forwarded-prefix"] = fwd.Prefix
	}
	// Function URLs send neither: only a trusted proxy's pass, extended.
	if fwd.Trusted {
		if len(r.Header["X-Forwarded-Host"]) > 0 {
			h.m["x-forwarded-host"] = fwd.Host
		}
		if len(r.Header["Forwarded"]) > 0 {
			h.m["forwarded"] = fwd.Forwarded
		}
	}
	return h.m, cookies
}

// lowerNames holds the lower-case form of common canonical header names, so
// that lower-casing them allocates nothing.
var lowerNames = func() map[string]string {
	names := []string{
		"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language",
		"Authorization", "Cache-Control", "Connection", "Content-Encoding",
		"Content-Length", "Content-Type", "Cookie", "Date", "Dnt", "Etag",
		"Expect", "Forwarded", "From", "Host", "If-Match", "If-Modified-Since",
		"If-None-Match", "If-Range", "If-Unmodified-Since", "Keep-Alive",
		"Origin", "Pragma", "Priority", "Range", "Referer", "Sec-Ch-Ua",
		"Sec-Ch-Ua-Mobile", "Sec-Ch-Ua-Platform", "Sec-Fetch-Dest",
		"Sec-Fetch-Mode", "Sec-Fetch-Site", "Sec-Fetch-User", "Te", "Trailer",
		"Transfer-Encoding", "Upgrade", "Upgrade-Insecure-Requests",
		"User-Agent", "Via", "X-Amzn-Trace-Id", "X-Api-Key", "X-Forwarded-For",
		"X-Forwarded-Host", "X-Forwarded-Port", "X-Forwarded-Proto",
		"X-Real-Ip", "X-Request-Id", "X-Requested-With",
	}
	m := make(map[string]string, len(names))
	for _, n := range names {
		m[n] = strings.ToLower(n)
	}
	return m
}()

func lower(name string) string {
	if l, ok := lowerNames[name]; ok {
		return l
	}
	return strings.ToLower(name)
}

// connectionNames returns the lower-cased header names the Connection
// header values conn list, other than close and keep-alive; nil if none.
func connectionNames(conn []string) map[string]bool {
	var names map[string]bool
	for _, v := range conn {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			tok = strings.TrimSpace(tok)
			if tok == "" || strings.EqualFold(tok, "close") || strings.EqualFold(tok, "keep-alive") {
				continue
			}
			if names == nil {
				names = make(map[string]bool)
			}
			names[strings.ToLower(tok)] = true
		}
	}
	return names
}

// splitCookies appends the cookies of the Cookie header values vs to dst.
func splitCookies(dst []string, vs []string) []string {
	for _, v := range vs {
		for v != "" {
			var c string
			c, v, _ = strings.Cut(v, ";")
			if c = strings.Trim(c, " \t"); c != "" {
				dst = append(dst, c)
			}
		}
	}
	return dst
}

// parseQuery decodes a raw query as function URLs do: pairs split on "&",
// keys and values form-decoded (left as sent when the escape is invalid), a
// pair without "=" has the empty value, repeated keys are joined by ",".
// Pairs with an empty key are dropped.
func parseQuery(raw string) map[string]string {
	var q joiner
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(pair, "=")
		if k = unescape(k); k == "" {
			continue
		}
		if q.m == nil {
			q.m = make(map[string]string, strings.Count(raw, "&")+1)
		}
		q.add(k, unescape(v))
	}
	q.join()
	return q.m
}

// joiner builds a map whose repeated keys have their values joined by ",",
// in time linear in the input however often a key repeats.
type joiner struct {
	m     map[string]string
	multi map[string][]string // the values of keys seen more than once
}

func (j *joiner) add(k, v string) {
	old, ok := j.m[k]
	if !ok {
		j.m[k] = v
		return
	}
	if j.multi == nil {
		j.multi = make(map[string][]string)
	}
	vs, ok := j.multi[k]
	if !ok {
		vs = []string{old}
	}
	j.multi[k] = append(vs, v)
}

// join stores the joined values of repeated keys in j.m.
func (j *joiner) join() {
	for k, vs := range j.multi {
		j.m[k] = strings.Join(vs, ",")
	}
	j.multi = nil
}

func unescape(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	u, err := url.QueryUnescape(s)
	if err != nil {
		return s
	}
	return u
}

// escapePath returns p with a leading "/" and with spaces, controls and
// bytes that are not valid UTF-8 percent-encoded, so that the JSON event
// carries the path without loss.
func escapePath(p string) string {
	if p == "" {
		return "/"
	}
	clean := p[0] == '/'
	for i := 0; clean && i < len(p); {
		c := p[i]
		if c < utf8.RuneSelf {
			clean = c > ' ' && c != 0x7f
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(p[i:])
		clean = r != utf8.RuneError || n > 1
		i += n
	}
	if clean {
		return p
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(p)+16)
	if p[0] != '/' {
		b = append(b, '/')
	}
	for i := 0; i < len(p); {
		c := p[i]
		if c < utf8.RuneSelf {
			if c <= ' ' || c == 0x7f {
				b = append(b, '%', hex[c>>4], hex[c&15])
			} else {
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(p[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, '%', hex[c>>4], hex[c&15])
		} else {
			b = append(b, p[i:i+n]...)
		}
		i += n
	}
	return string(b)
}

// isText reports whether a body of content type ct is sent as text.
func isText(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.TrimSpace(mt)
	if len(mt) > 5 && strings.EqualFold(mt[:5], "text/") {
		return true
	}
	for _, t := range [...]string{
		"application/json", "application/xml", "application/javascript",
		"application/x-www-form-urlencoded",
	} {
		if strings.EqualFold(mt, t) {
			return true
		}
	}
	_, sub, ok := strings.Cut(mt, "/")
	if !ok {
		return false
	}
	return hasSuffixFold(sub, "+json") || hasSuffixFold(sub, "+xml")
}

func hasSuffixFold(s, suffix string) bool {
	return len(s) > len(suffix) && strings.EqualFold(s[len(s)-len(suffix):], suffix)
}

// splitHost splits the optional port off a host[:port] or [host]:port.
// Unlike net.SplitHostPort it allocates nothing, even without a port.
func splitHost(hostport string) (host, port string) {
	if strings.HasPrefix(hostport, "[") {
		end := strings.IndexByte(hostport, ']')
		if end < 0 {
			return hostport, ""
		}
		host, rest := hostport[1:end], hostport[end+1:]
		if strings.HasPrefix(rest, ":") {
			port = rest[1:]
		}
		return host, port
	}
	if i := strings.IndexByte(hostport, ':'); i >= 0 && strings.IndexByte(hostport[i+1:], ':') < 0 {
		return hostport[:i], hostport[i+1:]
	}
	return hostport, ""
}

// domainPrefix returns the first label of a domain name (without port), or
// the whole address when the name is an IP address.
func domainPrefix(domain string) string {
	host, _ := splitHost(domain)
	if n := len(host); n > 0 && (host[n-1] >= '0' && host[n-1] <= '9' || strings.IndexByte(host, ':') >= 0) {
		if _, err := netip.ParseAddr(host); err == nil {
			return host
		}
	}
	prefix, _, _ := strings.Cut(host, ".")
	return prefix
}
