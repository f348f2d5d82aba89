package gateway

import (
	"crypto/subtle"
	"net/http"
	"slices"
	"strings"
)

// Token is the server's bearer token as the routes see it: it
// authenticates requests (Authorized) and is removed from every request
// before the request reaches a function or a service (Strip), whatever
// the route's auth mode. The function route and the service routes both
// pass requests through admit, which does both. A Token is immutable and
// safe for concurrent use.
type Token struct {
	secret []byte
	// word: the secret holds only token68 characters (without '='), so
	// it is found as a whole word between other characters.
	word bool
}

// NewToken returns the Token of secret (the token itself, without a
// scheme).
func NewToken(secret string) *Token {
	word := secret != ""
	for i := 0; i < len(secret); i++ {
		if !isWordByte(secret[i]) {
			word = false
			break
		}
	}
	return &Token{secret: []byte(secret), word: word}
}

// Authorized reports whether one of h's Authorization values, or one
// element of a comma-separated value, is the token as a bearer
// credential: "Bearer TOKEN", the scheme in any letter case, with any
// spaces around. The token is compared in constant time.
func (t *Token) Authorized(h http.Header) bool {
	if len(t.secret) == 0 {
		return false
	}
	for k, vs := range h {
		if !strings.EqualFold(k, "Authorization") {
			continue
		}
		for _, v := range vs {
			if t.bearer(v) {
				return true
			}
			if strings.Contains(v, ",") {
				for elem := range strings.SplitSeq(v, ",") {
					if t.bearer(elem) {
						return true
					}
				}
			}
		}
	}
	return false
}

// bearer reports whether s is "Bearer TOKEN", the scheme in any letter
// case, with any spaces or tabs around and between.
func (t *Token) bearer(s string) bool {
	s = strings.Trim(s, " \t")
	i := strings.IndexAny(s, " \t")
	if i < 0 || !strings.EqualFold(s[:i], "Bearer") {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.Trim(s[i:], " \t")), t.secret) == 1
}

// Strip removes the token from h: every Authorization and
// Proxy-Authorization value that holds it as a whole word ("Bearer TOKEN"
// with the scheme in any letter case, another scheme or none,
// `token="TOKEN"`) goes; of a comma-separated value only the elements that
// hold it go, the others stay joined by ", ". The caller's other values,
// its own "Bearer <jwt>" say, stay as they were.
func (t *Token) Strip(h http.Header) {
	if len(t.secret) == 0 {
		return
	}
	for k, vs := range h {
		if !strings.EqualFold(k, "Authorization") && !strings.EqualFold(k, "Proxy-Authorization") {
			continue
		}
		if !slices.ContainsFunc(vs, t.in) {
			continue
		}
		kept := make([]string, 0, len(vs))
		for _, v := range vs {
			if !t.in(v) {
				kept = append(kept, v)
				continue
			}
			var rest []string
			for elem := range strings.SplitSeq(v, ",") {
				if e := strings.TrimSpace(elem); e != "" && !t.in(e) {
					rest = append(rest, e)
				}
			}
			// A token that spans elements (it holds a comma) takes the
			// whole value with it.
			if v := strings.Join(rest, ", "); v != "" && !t.in(v) {
				kept = append(kept, v)
			}
		}
		if len(kept) == 0 {
			delete(h, k)
		} else {
			h[k] = kept
		}
	}
}

// admit removes the token from r and reports whether r may pass: always
// when the route is public, else when r carries the token.
func (t *Token) admit(r *http.Request, public bool) bool {
	ok := public || t.Authorized(r.Header)
	t.Strip(r.Header)
	return ok
}

// in reports whether s holds the token: as a whole word (a run of token68
// characters, so "Bearer TOKEN", `token="TOKEN"` or a bare TOKEN, but not
// a longer word that merely contains it), or anywhere when the token has
// other characters.
func (t *Token) in(s string) bool {
	if !t.word {
		return strings.Contains(s, string(t.secret))
	}
	found := 0
	for i := 0; i < len(s); {
		if !isWordByte(s[i]) {
			i++
			continue
		}
		j := i
		for j < len(s) && isWordByte(s[j]) {
			j++
		}
		if j-i == len(t.secret) {
			found |= subtle.ConstantTimeCompare([]byte(s[i:j]), t.secret)
		}
		i = j
	}
	return found == 1
}

// isWordByte reports whether c is a token68 character (RFC 9110) other
// than the '=' padding: a letter, a digit or one of "-._~+/".
func isWordByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~+/", c) >= 0
}
