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
//     space as %20), the pairs sorted by encoded name then value;
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
	"strings"
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
	if e, ok := AsError(err); ok {
		v.log.Debug("signature refused", "code", e.Code, "msg", e.Message)
	}
	return err
}

// verify is Verify that also returns the access key ID that signed r.
func (v *Verifier) verify(r *http.Request, body []byte) (string, error) {
	h := r.Header
	authz := h.Values("Authorization")
	if len(authz) == 0 {
		return "", &Error{Code: CodeMissingToken, Message: "Missing Authentication Token"}
	}
	if len(authz) > 1 {
		return "", incomplete("Request has more than one Authorization header.")
	}
	a, err := parseAuthorization(authz[0])
	if err != nil {
		return "", err
	}
	if _, ok := h["X-Amz-Security-Token"]; ok {
		return "", &Error{Code: CodeUnrecognizedClient, Message: "The security token included in the request is invalid: session tokens (X-Amz-Security-Token) are not supported by Stratus; sign with a long-term access key (stratus keys create)."}
	}

	// The request's time.
	stamp, at, err := requestTime(h)
	if err != nil {
		return "", err
	}
	if stamp[:8] != a.date {
		return "", invalid(fmt.Sprintf("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '%s' != '%s', from '%s'.", a.date, stamp[:8], stamp))
	}
	if a.terminator != "aws4_request" {
		return "", invalid(fmt.Sprintf("Credential should be scoped with a valid terminator: 'aws4_request', not '%s'.", a.terminator))
	}
	if a.service != v.service {
		return "", invalid(fmt.Sprintf("Credential should be scoped to correct service: '%s'.", v.service))
	}
	if !contains(a.signedHeaders, "host") {
		return "", incomplete("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
	}
	now := v.now().UTC()
	if at.Before(now.Add(-MaxSkew)) {
		return "", invalid(fmt.Sprintf("Signature expired: %s is now earlier than %s (%s - 15 min.)",
			stamp, now.Add(-MaxSkew).Format(amzDate), now.Format(amzDate)))
	}
	if at.After(now.Add(MaxSkew)) {
		return "", invalid(fmt.Sprintf("Signature not yet current: %s is still later than %s (%s + 15 min.)",
			stamp, now.Add(MaxSkew).Format(amzDate), now.Format(amzDate)))
	}

	// The payload's hash.
	sum := sha256.Sum256(body)
	payload := hex.EncodeToString(sum[:])
	if vs, ok := h["X-Amz-Content-Sha256"]; ok {
		if len(vs) != 1 || strings.TrimSpace(vs[0]) != payload {
			if len(vs) == 1 && strings.TrimSpace(vs[0]) == "UNSIGNED-PAYLOAD" {
				return "", invalid("UNSIGNED-PAYLOAD is not supported by Stratus: the signature must cover the request body.")
			}
			return "", invalid("The provided 'x-amz-content-sha256' header does not match the SHA-256 of the request body.")
		}
	}

	ctx := r.Context()
	secret, ok, err := v.keys.Secret(ctx, a.keyID)
	if err != nil {
		return "", fmt.Errorf("verify signature: read access key %s: %w", a.keyID, err)
	}
	if !ok {
		return "", &Error{Code: CodeUnrecognizedClient, Message: "The security token included in the request is invalid."}
	}

	canonical := canonicalRequest(r, a.signedHeaders, payload)
	creq := sha256.Sum256([]byte(canonical))
	toSign := algorithm + "\n" + stamp + "\n" + a.scope() + "\n" + hex.EncodeToString(creq[:])
	key := v.cache.get(a, secret)
	want := hmacSHA256(key, []byte(toSign))
	got, _ := hex.DecodeString(a.signature) // parseAuthorization checked it
	if !hmac.Equal(want, got) {
		return "", invalid(MessageSignatureMismatch)
	}
	if u, ok := v.keys.(user); ok {
		u.Used(ctx, a.keyID, now)
	}
	return a.keyID, nil
}

// amzDate is the layout of X-Amz-Date: ISO 8601 basic format, UTC.
const amzDate = "20060102T150405Z"

// requestTime returns the request's X-Amz-Date (or, without it, its Date
// header) as the string to sign writes it, and as a time.
func requestTime(h http.Header) (string, time.Time, error) {
	if v := h.Get("X-Amz-Date"); v != "" {
		t, err := time.Parse(amzDate, v)
		if err != nil {
			return "", time.Time{}, incomplete("X-Amz-Date must be in the ISO 8601 basic format YYYYMMDD'T'HHMMSS'Z', got " + quoteShort(v) + ".")
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

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// canonicalRequest is r's canonical request (see the package comment).
func canonicalRequest(r *http.Request, signed []string, payload string) string {
	var b strings.Builder
	b.Grow(512)
	b.WriteString(r.Method)
	b.WriteByte('\n')
	path, query := wirePathQuery(r)
	if path == "" {
		path = "/"
	}
	escapePath(&b, path)
	b.WriteByte('\n')
	b.WriteString(canonicalQuery(query))
	b.WriteByte('\n')
	for _, name := range signed {
		b.WriteString(name)
		b.WriteByte(':')
		switch name {
		case "host":
			b.WriteString(trimValue(r.Host))
		case "content-length":
			if vs := r.Header.Values("Content-Length"); len(vs) > 0 {
				writeValues(&b, vs)
			} else {
				fmt.Fprint(&b, r.ContentLength)
			}
		default:
			writeValues(&b, r.Header.Values(name))
		}
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.WriteString(strings.Join(signed, ";"))
	b.WriteByte('\n')
	b.WriteString(payload)
	return b.String()
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

// escapePath writes p with every byte but the unreserved ones and '/'
// percent-encoded (upper-case hex).
func escapePath(b *strings.Builder, p string) {
	const hexDigits = "0123456789ABCDEF"
	for i := 0; i < len(p); i++ {
		c := p[i]
		if unreserved(c) || c == '/' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
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
			// Not valid percent-encoding: taken as sent, escaped once.
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

// writeValues writes a header's values, each trimmed with its inner runs
// of spaces made one, joined by ','.
func writeValues(b *strings.Builder, vs []string) {
	for i, v := range vs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(trimValue(v))
	}
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
