// Package sigv4 verifies AWS Signature Version 4 on incoming requests (the
// Lambda API, and the function routes deployed with auth "signed") against
// the server's access keys, and keeps those keys (Keys: each secret sealed
// with AES-256-GCM under a key file in the data dir, so that the database
// alone reveals none).
//
// A Verifier re-signs each request as the signers of the AWS SDKs do and
// compares the signatures in constant time. The canonical request is built
// from the request as it came over the wire:
//
//   - the method;
//   - the path as sent (percent-encoded), encoded once more: every byte
//     but the unreserved ones and '/' becomes %XX. This is the rule of every
//     AWS service but S3, so a Lambda path such as
//     /2015-03-31/functions/arn%3Aaws%3Alambda%3A.../invocations is signed as
//     /2015-03-31/functions/arn%253Aaws%253Alambda%253A.../invocations;
//   - the query's names and values decoded, each encoded again (RFC 3986,
//     space as %20), the pairs sorted by encoded name then value. A query
//     that url.ParseQuery refuses (an invalid %-escape, a ';') is refused
//     with InvalidSignatureException: the handlers, which read the query
//     as url.ParseQuery does, would see other pairs than were signed;
//   - the headers named in SignedHeaders (which must hold host), lower case,
//     values trimmed with inner runs of spaces made one, a header's values
//     joined by ',';
//   - the hex SHA-256 of the body received. A client may send
//     X-Amz-Content-Sha256: when it holds the body's hash the signature
//     covers it as any header; UNSIGNED-PAYLOAD and a hash of another body
//     are refused, so a signature always covers the body.
//
// The request's time is X-Amz-Date (or Date): more than 15 minutes from
// the server's clock, or of another day than the credential scope, it is
// refused. The scope's service must be the Verifier's (lambda); its region
// may be any, since the signature covers it. Session tokens
// (X-Amz-Security-Token) are refused: Stratus has long-term keys only.
//
// The signing key derived from a secret and a scope is cached (a bounded
// map keyed by key ID, date, region and service, checked against the
// current secret), so a request costs two HMACs and a SHA-256 of its body
// once its key is cached.
//
// Precheck makes every check that needs no body (the header's form, the
// time, the scope, the query, that the key exists), so that a caller may
// refuse a request before reading its body; Verify makes them again.
//
// Every refusal is an *Error carrying AWS's error type and message, which
// callers answer with 403.
package sigv4

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// KeyStore finds access keys' secrets.
type KeyStore interface {
	// Secret returns the secret access key of the access key id, ok false
	// when there is no such key. err is for a store that could not be read.
	// It may block on I/O and is safe for concurrent use.
	Secret(ctx context.Context, id string) (secret string, ok bool, err error)
}

// user is the optional interface of a KeyStore that records when a key
// was last used; the Verifier calls Used after each admitted request and
// the KeyStore decides how often to write it down.
type user interface {
	Used(ctx context.Context, id string, at time.Time)
}

// MaxSkew is how far a request's time may be from the server's clock.
const MaxSkew = 15 * time.Minute

// DefaultService is the credential scope's service a Verifier admits when
// Config.Service is empty.
const DefaultService = "lambda"

// Config configures a Verifier. Keys is required; the zero values of the
// other fields mean the defaults.
type Config struct {
	// Keys finds the secrets. Required.
	Keys KeyStore
	// Service is the service the credential scope must name
	// (DefaultService if empty).
	Service string
	// Now is the clock (time.Now if nil).
	Now func() time.Time
	// CacheSize bounds the cached signing keys (DefaultCacheSize if 0).
	CacheSize int
	// Log gets key store failures; nil discards them.
	Log *slog.Logger
}

// Verifier checks SigV4 signatures. It is safe for concurrent use.
type Verifier struct {
	keys    KeyStore
	service string
	now     func() time.Time
	cache   *keyCache
	log     *slog.Logger
}

// New returns a Verifier. It panics when cfg.Keys is nil (a wiring bug).
func New(cfg Config) *Verifier {
	if cfg.Keys == nil {
		panic("sigv4.New: Config.Keys is nil")
	}
	if cfg.Service == "" {
		cfg.Service = DefaultService
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	v := &Verifier{keys: cfg.Keys, service: cfg.Service, now: cfg.Now, cache: newKeyCache(cfg.CacheSize), log: cfg.Log}
	if k, ok := cfg.Keys.(*Keys); ok {
		// A key removed from Keys leaves no signing key behind.
		k.onDelete(v.Forget)
	}
	return v
}

// Forget drops the cached signing keys of the access key id. A Verifier
// on Keys is told by Keys.Delete; other KeyStores' owners call it when
// they remove a key.
func (v *Verifier) Forget(id string) { v.cache.forget(id) }

// Verify checks r's SigV4 signature over r and body (the whole body r
// came with; r.Body is not read). It returns nil when a known key signed
// r, an *Error (answer 403 with its Code and Message) when it did not, and
// another error when the key store failed (answer 500). It blocks only on
// the key store.
func (v *Verifier) Verify(r *http.Request, body []byte) error {
	_, err := v.verify(r, body)
	if e, ok := AsError(err); ok && v.log.Enabled(r.Context(), slog.LevelDebug) {
		v.log.Debug("signature refused", "code", e.Code, "msg", e.Message)
	}
	return err
}

// Precheck makes every check of Verify that needs no body: the
// Authorization header's form, the request's time, the credential scope,
// the query's encoding and that the access key exists. A caller runs it
// before reading the body, so that a request that cannot pass costs no
// body read; Verify makes these checks again. It returns what Verify
// would for a request that fails them.
func (v *Verifier) Precheck(r *http.Request) error {
	_, err := v.precheck(r)
	if e, ok := AsError(err); ok && v.log.Enabled(r.Context(), slog.LevelDebug) {
		v.log.Debug("signature refused before the body", "code", e.Code, "msg", e.Message)
	}
	return err
}

// checked is what precheck found in a request.
type checked struct {
	auth   authorization
	stamp  string    // the request's time as the string to sign has it
	now    time.Time // the server's clock at the check
	secret string
}

// precheck is Precheck, returning what it found for verify.
func (v *Verifier) precheck(r *http.Request) (checked, error) {
	h := r.Header
	authz := h.Values("Authorization")
	if len(authz) == 0 {
		return checked{}, &Error{Code: CodeMissingToken, Message: "Missing Authentication Token"}
	}
	if len(authz) > 1 {
		return checked{}, incomplete("Request has more than one Authorization header.")
	}
	a, err := parseAuthorization(authz[0])
	if err != nil {
		return checked{}, err
	}
	if _, ok := h["X-Amz-Security-Token"]; ok {
		return checked{}, &Error{Code: CodeUnrecognizedClient, Message: "The security token included in the request is invalid: session tokens (X-Amz-Security-Token) are not supported by Stratus; sign with a long-term access key (stratus keys create)."}
	}

	// The request's time.
	stamp, at, err := requestTime(h)
	if err != nil {
		return checked{}, err
	}
	if stamp[:8] != a.date {
		return checked{}, invalid(fmt.Sprintf("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '%s' != '%s', from '%s'.", a.date, stamp[:8], stamp))
	}
	if a.terminator != "aws4_request" {
		return checked{}, invalid(fmt.Sprintf("Credential should be scoped with a valid terminator: 'aws4_request', not '%s'.", a.terminator))
	}
	if a.service != v.service {
		return checked{}, invalid(fmt.Sprintf("Credential should be scoped to correct service: '%s'.", v.service))
	}
	if !a.signs("host") {
		return checked{}, incomplete("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
	}
	now := v.now().UTC()
	if at.Before(now.Add(-MaxSkew)) {
		return checked{}, invalid(fmt.Sprintf("Signature expired: %s is now earlier than %s (%s - 15 min.)",
			stamp, now.Add(-MaxSkew).Format(amzDate), now.Format(amzDate)))
	}
	if at.After(now.Add(MaxSkew)) {
		return checked{}, invalid(fmt.Sprintf("Signature not yet current: %s is still later than %s (%s + 15 min.)",
			stamp, now.Add(MaxSkew).Format(amzDate), now.Format(amzDate)))
	}
	// A query the handlers would read otherwise than it is signed (see
	// the package comment) is refused.
	if _, query := wirePathQuery(r); query != "" {
		if _, err := url.ParseQuery(query); err != nil {
			return checked{}, invalid("The request's query string is not valid URL encoding (" + err.Error() + "): encode each name and value, and separate pairs with '&' only.")
		}
	}

	secret, ok, err := v.keys.Secret(r.Context(), a.keyID)
	if err != nil {
		return checked{}, fmt.Errorf("verify signature: read access key %s: %w", a.keyID, err)
	}
	if !ok {
		return checked{}, &Error{Code: CodeUnrecognizedClient, Message: "The security token included in the request is invalid."}
	}
	return checked{auth: a, stamp: stamp, now: now, secret: secret}, nil
}

// bufs are the buffers verify builds the canonical request and the
// string to sign in.
var bufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxPooledBuf bounds the buffers put back in bufs.
const maxPooledBuf = 16 << 10

// verify is Verify that also returns the access key ID that signed r.
func (v *Verifier) verify(r *http.Request, body []byte) (string, error) {
	c, err := v.precheck(r)
	if err != nil {
		return "", err
	}
	a := &c.auth

	// The payload's hash.
	sum := sha256.Sum256(body)
	var payload [2 * sha256.Size]byte
	hex.Encode(payload[:], sum[:])
	if vs, ok := r.Header["X-Amz-Content-Sha256"]; ok {
		if len(vs) != 1 || strings.TrimSpace(vs[0]) != string(payload[:]) {
			if len(vs) == 1 && strings.TrimSpace(vs[0]) == "UNSIGNED-PAYLOAD" {
				return "", invalid("UNSIGNED-PAYLOAD is not supported by Stratus: the signature must cover the request body.")
			}
			return "", invalid("The provided 'x-amz-content-sha256' header does not match the SHA-256 of the request body.")
		}
	}

	bp := bufs.Get().(*[]byte)
	b := appendCanonicalRequest((*bp)[:0], r, a.signed, payload[:])
	creq := sha256.Sum256(b)
	// The string to sign.
	b = append(b[:0], algorithm+"\n"...)
	b = append(b, c.stamp...)
	b = append(b, '\n')
	b = append(b, a.date...)
	b = append(b, '/')
	b = append(b, a.region...)
	b = append(b, '/')
	b = append(b, a.service...)
	b = append(b, '/')
	b = append(b, a.terminator...)
	b = append(b, '\n')
	b = hex.AppendEncode(b, creq[:])
	n := len(b)
	b = v.cache.get(a, c.secret).sum(b, b)
	var got [sha256.Size]byte
	decodeHex(got[:], a.signature) // parseAuthorization checked it
	ok := hmac.Equal(b[n:], got[:])
	if cap(b) <= maxPooledBuf {
		*bp = b
		bufs.Put(bp)
	}
	if !ok {
		return "", invalid(MessageSignatureMismatch)
	}
	if u, ok := v.keys.(user); ok {
		u.Used(r.Context(), a.keyID, c.now)
	}
	return a.keyID, nil
}

// decodeHex decodes the lower-case hex digits of s into dst, which has
// room for them.
func decodeHex(dst []byte, s string) {
	val := func(c byte) byte {
		if c <= '9' {
			return c - '0'
		}
		return c - 'a' + 10
	}
	for i := 0; i+1 < len(s) && i/2 < len(dst); i += 2 {
		dst[i/2] = val(s[i])<<4 | val(s[i+1])
	}
}

// amzDate is the layout of X-Amz-Date: ISO 8601 basic format, UTC.
const amzDate = "20060102T150405Z"

// requestTime returns the request's X-Amz-Date (or, without it, its Date
// header) as the string to sign writes it, and as a time.
func requestTime(h http.Header) (string, time.Time, error) {
	if v := h.Get("X-Amz-Date"); v != "" {
		t, ok := parseAmzDate(v)
		if !ok {
			var err error
			if t, err = time.Parse(amzDate, v); err != nil {
				return "", time.Time{}, incomplete("X-Amz-Date must be in the ISO 8601 basic format YYYYMMDD'T'HHMMSS'Z', got " + quoteShort(v) + ".")
			}
		}
		return v, t, nil
	}
	if v := h.Get("Date"); v != "" {
		t, err := http.ParseTime(v)
		if err != nil {
			return "", time.Time{}, incomplete("Date must be an HTTP date, got " + quoteShort(v) + ".")
		}
		t = t.UTC()
		return t.Format(amzDate), t, nil
	}
	return "", time.Time{}, incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
}

// parseAmzDate parses the 16 characters of amzDate's layout, such as
// 20261206T120000Z, and reports whether s had them. Whatever it accepts,
// time.Parse(amzDate, s) accepts as the same time; what it does not,
// requestTime leaves to time.Parse.
func parseAmzDate(s string) (time.Time, bool) {
	if len(s) != len(amzDate) || s[8] != 'T' || s[15] != 'Z' {
		return time.Time{}, false
	}
	num := func(i, n int) int {
		v := 0
		for _, c := range []byte(s[i : i+n]) {
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	year, month, day := num(0, 4), num(4, 2), num(6, 2)
	hour, minute, sec := num(9, 2), num(11, 2), num(13, 2)
	if year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 ||
		minute < 0 || minute > 59 || sec < 0 || sec > 59 {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, 0, time.UTC)
	if t.Day() != day { // past the month's last day
		return time.Time{}, false
	}
	return t, true
}

// canonicalRequest is r's canonical request (see the package comment).
func canonicalRequest(r *http.Request, signed []string, payload string) string {
	return string(appendCanonicalRequest(nil, r, strings.Join(signed, ";"), []byte(payload)))
}

// appendCanonicalRequest appends r's canonical request to b: signed are
// the signed headers' names joined by ';', payload the hex SHA-256 of the
// body.
func appendCanonicalRequest(b []byte, r *http.Request, signed string, payload []byte) []byte {
	b = append(b, r.Method...)
	b = append(b, '\n')
	path, query := wirePathQuery(r)
	if path == "" {
		path = "/"
	}
	b = appendEscapedPath(b, path)
	b = append(b, '\n')
	if query != "" {
		b = append(b, canonicalQuery(query)...)
	}
	b = append(b, '\n')
	for name := range strings.SplitSeq(signed, ";") {
		b = append(b, name...)
		b = append(b, ':')
		switch name {
		case "host":
			b = append(b, trimValue(r.Host)...)
		case "content-length":
			if vs := headerValues(r.Header, name); len(vs) > 0 {
				b = appendValues(b, vs)
			} else {
				b = strconv.AppendInt(b, r.ContentLength, 10)
			}
		default:
			b = appendValues(b, headerValues(r.Header, name))
		}
		b = append(b, '\n')
	}
	b = append(b, '\n')
	b = append(b, signed...)
	b = append(b, '\n')
	return append(b, payload...)
}

// headerValues is h.Values(name) for a lower-case header name, without
// allocating its canonical form.
func headerValues(h http.Header, name string) []string {
	var buf [64]byte
	if len(name) > len(buf) || !isToken(name) {
		return h.Values(name)
	}
	k := buf[:len(name)]
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		} else if !upper && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		k[i] = c
		upper = c == '-'
	}
	return h[string(k)]
}

// wirePathQuery returns r's path and query as they came over the wire: from
// the request line when r has one, else from r.URL.
func wirePathQuery(r *http.Request) (path, query string) {
	if uri := r.RequestURI; strings.HasPrefix(uri, "/") {
		path, query, _ = strings.Cut(uri, "?")
		return path, query
	}
	return r.URL.EscapedPath(), r.URL.RawQuery
}

// appendEscapedPath appends p with every byte but the unreserved ones and
// '/' percent-encoded (upper-case hex).
func appendEscapedPath(b []byte, p string) []byte {
	const hexDigits = "0123456789ABCDEF"
	for i := 0; i < len(p); i++ {
		c := p[i]
		if unreserved(c) || c == '/' {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
	}
	return b
}

func unreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// canonicalQuery is the canonical form of the raw query q: names and
// values decoded, encoded again, sorted by encoded name then value.
func canonicalQuery(q string) string {
	if q == "" {
		return ""
	}
	type pair struct{ k, v string }
	var pairs []pair
	for part := range strings.SplitSeq(q, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		dk, err1 := url.QueryUnescape(k)
		dv, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			// Not valid percent-encoding: precheck refuses such a
			// query before it is canonicalised; kept as sent here.
			dk, dv = k, v
		}
		pairs = append(pairs, pair{queryEscape(dk), queryEscape(dv)})
	}
	sortPairs := func(a, b pair) int {
		if c := strings.Compare(a.k, b.k); c != 0 {
			return c
		}
		return strings.Compare(a.v, b.v)
	}
	slices.SortFunc(pairs, sortPairs)
	var b strings.Builder
	for i, p := range pairs {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.k)
		b.WriteByte('=')
		b.WriteString(p.v)
	}
	return b.String()
}

// queryEscape percent-encodes every byte of s but the unreserved ones.
func queryEscape(s string) string {
	var b strings.Builder
	escapeAll(&b, s)
	return b.String()
}

func escapeAll(b *strings.Builder, s string) {
	const hexDigits = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
}

// appendValues appends a header's values, each trimmed with its inner
// runs of spaces made one, joined by ','.
func appendValues(b []byte, vs []string) []byte {
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, trimValue(v)...)
	}
	return b
}

// trimValue trims v's leading and trailing spaces and makes each inner run
// of spaces one space.
func trimValue(v string) string {
	v = strings.Trim(v, " \t")
	if !strings.Contains(v, "  ") {
		return v
	}
	var b strings.Builder
	space := false
	for i := 0; i < len(v); i++ {
		if v[i] == ' ' {
			if !space {
				b.WriteByte(' ')
			}
			space = true
			continue
		}
		space = false
		b.WriteByte(v[i])
	}
	return b.String()
}

func hmacSHA256(key, data []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(data)
	return m.Sum(nil)
}
