package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/store"
)

// CookieName is the name of the session cookie.
const CookieName = "stratus_session"

// CookiePath is the path of the session cookie: the browser sends it to
// the /v1 API only, never to the path routes of functions and services
// (/fn/, /svc/), nor to /metrics.
const CookiePath = "/v1/"

// TTL is how long a session lasts from its sign-in.
const TTL = 12 * time.Hour

// valueBytes is the randomness of a session cookie's value; the value is
// its unpadded base64url encoding, valueLen characters.
const (
	valueBytes = 32
	valueLen   = 43
)

// CSRFHeader is the header that every cookie-borne request other than
// GET and HEAD must carry (with the value "1"). A cross-site form cannot
// set a header, and a cross-site script can set it only after a CORS
// preflight, which the server never grants.
const CSRFHeader = "X-Stratus-CSRF"

// ErrCrossSite is a cookie-borne request that CheckSameOrigin refused.
var ErrCrossSite = fmt.Errorf("cross-site request refused: %w", stratus.ErrForbidden)

// sessionStore keeps sessions (store.Store).
type sessionStore interface {
	CreateSession(ctx context.Context, se store.Session) error
	GetSession(ctx context.Context, hash [32]byte, now time.Time) (*store.Session, error)
	DeleteSession(ctx context.Context, hash [32]byte) error
}

// SessionsConfig configures Sessions. Store is required; the other
// fields' zero values mean the defaults.
type SessionsConfig struct {
	// Store keeps the sessions (by their cookie's hash), so that they
	// survive a restart. Required.
	Store sessionStore
	// Token is the server's bearer token, which signs in; empty, no
	// sign-in succeeds.
	Token string
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}

// Sessions signs in with the token and checks session cookies. It is
// safe for concurrent use.
type Sessions struct {
	st    sessionStore
	token []byte
	now   func() time.Time
}

// NewSessions returns the Sessions of cfg. It panics if cfg.Store is nil:
// a wiring bug.
func NewSessions(cfg SessionsConfig) *Sessions {
	if cfg.Store == nil {
		panic("console.NewSessions: SessionsConfig.Store is nil")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Sessions{st: cfg.Store, token: []byte(cfg.Token), now: cfg.Now}
}

// SignIn makes a new session if token is the server's token (compared in
// constant time), and returns its cookie's value and its expiry. A wrong
// or empty token stores nothing and returns an error wrapping
// stratus.ErrInvalid.
func (s *Sessions) SignIn(ctx context.Context, token string) (value string, expires time.Time, err error) {
	if len(s.token) == 0 || subtle.ConstantTimeCompare([]byte(token), s.token) != 1 {
		return "", time.Time{}, fmt.Errorf("sign in: wrong token: %w", stratus.ErrInvalid)
	}
	var raw [valueBytes]byte
	_, _ = rand.Read(raw[:]) // never fails
	value = base64.RawURLEncoding.EncodeToString(raw[:])
	now := s.now()
	expires = now.Add(TTL)
	if err := s.st.CreateSession(ctx, store.Session{Hash: s.hash(value), CreatedAt: now, ExpiresAt: expires}); err != nil {
		return "", time.Time{}, fmt.Errorf("sign in: %w", err)
	}
	return value, expires, nil
}

// Lookup returns the expiry of the live session that r's first session
// cookie of a session value's form names, or an error wrapping
// stratus.ErrNotFound if it names none (no such cookie, an unknown or
// expired session). Other errors are the store's.
//
// One lookup per request (an HMAC and a read of the store), whatever
// the request carries. The console's cookie is the browser's only one of
// that name and path unless something else set one (another host of a
// parent domain, with Domain=; see docs/console.md); such a cookie
// comes first when its path is longer, and looking further would not
// help against it, since it can come in any number.
func (s *Sessions) Lookup(ctx context.Context, r *http.Request) (time.Time, error) {
	v, ok := firstValue(r)
	if !ok {
		return time.Time{}, fmt.Errorf("session cookie: %w", stratus.ErrNotFound)
	}
	se, err := s.st.GetSession(ctx, s.hash(v), s.now())
	if err != nil {
		return time.Time{}, err
	}
	return se.ExpiresAt, nil
}

// SignOut deletes the sessions that r's session cookies name; none is no
// error.
func (s *Sessions) SignOut(ctx context.Context, r *http.Request) error {
	for _, v := range cookieValues(r) {
		if err := s.st.DeleteSession(ctx, s.hash(v)); err != nil {
			return fmt.Errorf("sign out: %w", err)
		}
	}
	return nil
}

// hash is what the store knows a session by: the HMAC-SHA-256 of its
// cookie's value under the server's token. The store never holds a value
// that signs anyone in, and a new token ends every session made under
// the old one.
func (s *Sessions) hash(value string) [32]byte {
	m := hmac.New(sha256.New, s.token)
	m.Write([]byte(value))
	var h [32]byte
	copy(h[:], m.Sum(nil))
	return h
}

// maxCookies bounds how many session cookies of one sign-out are ended
// (a browser may send one per path and domain that set it).
const maxCookies = 4

// firstValue returns the value of r's first session cookie that has a
// session value's form (valueLen base64url characters).
func firstValue(r *http.Request) (string, bool) {
	for _, c := range r.CookiesNamed(CookieName) {
		if validValue(c.Value) {
			return c.Value, true
		}
	}
	return "", false
}

// cookieValues returns the values of r's session cookies that have a
// session value's form (valueLen base64url characters), at most
// maxCookies of them: sign-out ends each.
func cookieValues(r *http.Request) []string {
	var out []string
	for _, c := range r.CookiesNamed(CookieName) {
		if validValue(c.Value) {
			out = append(out, c.Value)
			if len(out) == maxCookies {
				break
			}
		}
	}
	return out
}

// validValue reports whether v has the form of a session cookie's value:
// valueLen characters of the unpadded base64url alphabet, which decode
// to valueBytes bytes.
func validValue(v string) bool {
	if len(v) != valueLen {
		return false
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	// The last character carries 4 bits of padding, which must be 0.
	_, err := base64.RawURLEncoding.Strict().DecodeString(v)
	return err == nil
}

// Cookie is the session cookie of value, for TTL; secure marks it
// Secure (for a request that came over TLS).
func Cookie(value string, secure bool) *http.Cookie {
	return &http.Cookie{
		Name: CookieName, Value: value, Path: CookiePath, MaxAge: int(TTL / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secure,
	}
}

// ClearCookie is the cookie that makes a browser forget its session
// cookie (Max-Age=0).
func ClearCookie(secure bool) *http.Cookie {
	return &http.Cookie{
		Name: CookieName, Value: "", Path: CookiePath, MaxAge: -1, // written as Max-Age=0
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secure,
	}
}

// HasCookie reports whether r carries a session cookie (of any value).
func HasCookie(r *http.Request) bool {
	return len(r.CookiesNamed(CookieName)) > 0
}

// CheckSameOrigin applies the rule that a cookie-borne request must pass
// to change anything: a method other than GET and HEAD needs the header
// X-Stratus-CSRF: 1, and, when the browser sent them, an Origin equal to
// the request's own scheme://host and a Sec-Fetch-Site of "same-origin".
// A request that did not come over TLS may also name https://host: that
// of a proxy that ends TLS in front of the server. A refusal wraps
// ErrCrossSite and says why.
func CheckSameOrigin(r *http.Request) error {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return nil
	}
	if vs := r.Header.Values(CSRFHeader); len(vs) != 1 || vs[0] != "1" {
		return fmt.Errorf("%w: a request that changes something needs the header %s: 1", ErrCrossSite, CSRFHeader)
	}
	if vs := r.Header.Values("Origin"); len(vs) > 0 {
		ok := len(vs) == 1 && (vs[0] == "https://"+r.Host || r.TLS == nil && vs[0] == "http://"+r.Host)
		if !ok {
			return fmt.Errorf("%w: origin %q is not this server's", ErrCrossSite, vs[0])
		}
	}
	if vs := r.Header.Values("Sec-Fetch-Site"); len(vs) > 0 && (len(vs) != 1 || vs[0] != "same-origin") {
		return fmt.Errorf("%w: Sec-Fetch-Site is %q, not same-origin", ErrCrossSite, vs[0])
	}
	return nil
}
