package console

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/store"
)

// testClock is a clock the test moves.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func openStore(t *testing.T, path string) *store.Store {
	t.Helper()
	st, err := store.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// withCookies is a request carrying the cookie header values.
func withCookies(values ...string) *http.Request {
	r := httptest.NewRequest("GET", "/v1/functions", nil)
	for _, v := range values {
		r.Header.Add("Cookie", v)
	}
	return r
}

func TestSessions(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "stratus.db")
	st := openStore(t, path)
	clock := &testClock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	s := NewSessions(SessionsConfig{Store: st, Token: "the-token", Now: clock.Now})

	for _, tok := range []string{"", "wrong", "the-token ", "THE-TOKEN", "the-toke"} {
		if v, _, err := s.SignIn(ctx, tok); !errors.Is(err, stratus.ErrInvalid) || v != "" {
			t.Errorf("SignIn(%q): %q, %v; want ErrInvalid", tok, v, err)
		}
	}
	if n, err := st.DeleteExpiredSessions(ctx, clock.Now().Add(100*TTL)); err != nil || n != 0 {
		t.Errorf("wrong tokens stored %d sessions (%v)", n, err)
	}

	v, expires, err := s.SignIn(ctx, "the-token")
	if err != nil {
		t.Fatal(err)
	}
	if !validValue(v) || !expires.Equal(clock.Now().Add(TTL)) {
		t.Fatalf("SignIn: value %q, expires %v", v, expires)
	}
	v2, _, err := s.SignIn(ctx, "the-token")
	if err != nil || v2 == v {
		t.Fatalf("a second sign-in: %q, %v (the first was %q)", v2, err, v)
	}

	got, err := s.Lookup(ctx, withCookies(CookieName+"="+v))
	if err != nil || !got.Equal(expires) {
		t.Errorf("Lookup: %v, %v; want %v", got, err, expires)
	}
	// The right session after other cookies and values of the name that
	// are not a session's.
	if _, err := s.Lookup(ctx, withCookies("a=b; "+CookieName+"=junk; "+CookieName+"="+v[:valueLen-1], CookieName+"="+v)); err != nil {
		t.Errorf("Lookup among other cookies: %v", err)
	}
	// The first value of a session's form decides: one lookup per
	// request, whatever follows it.
	unknown := CookieName + "=" + strings.Repeat("A", valueLen)
	if _, err := s.Lookup(ctx, withCookies(unknown, CookieName+"="+v)); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("Lookup of an unknown session, then a live one: %v, want ErrNotFound", err)
	}
	if _, err := s.Lookup(ctx, withCookies(CookieName+"="+v, unknown)); err != nil {
		t.Errorf("Lookup of a live session, then an unknown one: %v", err)
	}
	for _, c := range []string{"", "a=b", CookieName + "=", CookieName + "=" + v[:valueLen-1], CookieName + "=" + v + "x",
		CookieName + "=" + strings.Repeat("A", valueLen), "Stratus_Session=" + v, CookieName + "=" + v[:valueLen-1] + "+"} {
		if _, err := s.Lookup(ctx, withCookies(c)); !errors.Is(err, stratus.ErrNotFound) {
			t.Errorf("Lookup with %q: %v, want ErrNotFound", c, err)
		}
	}

	// A session survives a restart of the server (of its store and
	// Sessions).
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = openStore(t, path)
	s = NewSessions(SessionsConfig{Store: st, Token: "the-token", Now: clock.Now})
	if _, err := s.Lookup(ctx, withCookies(CookieName+"="+v)); err != nil {
		t.Fatalf("after a restart: %v", err)
	}

	// Expiry.
	clock.Add(TTL - time.Second)
	if _, err := s.Lookup(ctx, withCookies(CookieName+"="+v)); err != nil {
		t.Errorf("a second before its expiry: %v", err)
	}
	clock.Add(time.Second)
	if _, err := s.Lookup(ctx, withCookies(CookieName+"="+v)); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("at its expiry: %v, want ErrNotFound", err)
	}

	// Sign-out deletes the session; again is no error.
	v3, _, err := s.SignIn(ctx, "the-token")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := s.SignOut(ctx, withCookies(CookieName+"="+v3)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Lookup(ctx, withCookies(CookieName+"="+v3)); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("after sign-out: %v, want ErrNotFound", err)
	}
	if err := s.SignOut(ctx, withCookies()); err != nil {
		t.Errorf("sign-out without a cookie: %v", err)
	}

	// A new token ends the sessions of the old one.
	v4, _, err := s.SignIn(ctx, "the-token")
	if err != nil {
		t.Fatal(err)
	}
	renewed := NewSessions(SessionsConfig{Store: st, Token: "a-new-token", Now: clock.Now})
	if _, err := renewed.Lookup(ctx, withCookies(CookieName+"="+v4)); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("a session of the old token: %v, want ErrNotFound", err)
	}
	if _, err := s.Lookup(ctx, withCookies(CookieName+"="+v4)); err != nil {
		t.Errorf("the same session under its own token: %v", err)
	}

	// A server without a token signs nobody in.
	none := NewSessions(SessionsConfig{Store: st})
	if _, _, err := none.SignIn(ctx, ""); !errors.Is(err, stratus.ErrInvalid) {
		t.Errorf("SignIn without a server token: %v", err)
	}
}

// countingStore counts the sessions looked up.
type countingStore struct {
	sessionStore
	mu   sync.Mutex
	gets int
}

func (c *countingStore) GetSession(ctx context.Context, hash [32]byte, now time.Time) (*store.Session, error) {
	c.mu.Lock()
	c.gets++
	c.mu.Unlock()
	return c.sessionStore.GetSession(ctx, hash, now)
}

// TestLookupReadsOnce: a request with many session cookies costs one
// read of the store, none without a value of a session's form.
func TestLookupReadsOnce(t *testing.T) {
	ctx := context.Background()
	st := &countingStore{sessionStore: openStore(t, filepath.Join(t.TempDir(), "s.db"))}
	s := NewSessions(SessionsConfig{Store: st, Token: "the-token"})
	many := strings.Repeat(CookieName+"="+strings.Repeat("A", valueLen)+"; ", 20)
	if _, err := s.Lookup(ctx, withCookies(many)); !errors.Is(err, stratus.ErrNotFound) || st.gets != 1 {
		t.Errorf("20 unknown sessions: %v, %d reads of the store; want ErrNotFound, 1", err, st.gets)
	}
	st.gets = 0
	if _, err := s.Lookup(ctx, withCookies(strings.Repeat(CookieName+"=junk; ", 20))); !errors.Is(err, stratus.ErrNotFound) || st.gets != 0 {
		t.Errorf("20 malformed values: %v, %d reads of the store; want ErrNotFound, 0", err, st.gets)
	}
}

func TestCookieAttributes(t *testing.T) {
	for _, secure := range []bool{false, true} {
		got := Cookie("VALUE", secure).String()
		want := "stratus_session=VALUE; Path=/v1/; Max-Age=43200; HttpOnly; SameSite=Strict"
		if secure {
			want = "stratus_session=VALUE; Path=/v1/; Max-Age=43200; HttpOnly; Secure; SameSite=Strict"
		}
		if got != want {
			t.Errorf("Cookie(secure %v) = %q, want %q", secure, got, want)
		}
		got = ClearCookie(secure).String()
		want = "stratus_session=; Path=/v1/; Max-Age=0; HttpOnly; SameSite=Strict"
		if secure {
			want = "stratus_session=; Path=/v1/; Max-Age=0; HttpOnly; Secure; SameSite=Strict"
		}
		if got != want {
			t.Errorf("ClearCookie(secure %v) = %q, want %q", secure, got, want)
		}
	}
}

func TestCheckSameOrigin(t *testing.T) {
	for _, tc := range []struct {
		name   string
		method string
		tls    bool
		hdr    []string
		refuse string // "" passes
	}{
		{"GET needs nothing", "GET", false, []string{"Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site"}, ""},
		{"HEAD needs nothing", "HEAD", false, nil, ""},
		{"same-origin POST", "POST", false, []string{CSRFHeader, "1", "Origin", "http://console.test:8080", "Sec-Fetch-Site", "same-origin"}, ""},
		{"same-origin POST over TLS", "POST", true, []string{CSRFHeader, "1", "Origin", "https://console.test:8080"}, ""},
		{"a client that sends no Origin", "DELETE", false, []string{CSRFHeader, "1"}, ""},

		{"no header", "POST", false, []string{"Origin", "http://console.test:8080", "Sec-Fetch-Site", "same-origin"}, "needs the header"},
		{"header not 1", "PUT", false, []string{CSRFHeader, "true"}, "needs the header"},
		{"header twice", "PATCH", false, []string{CSRFHeader, "1", CSRFHeader, "1"}, "needs the header"},
		{"foreign origin", "POST", false, []string{CSRFHeader, "1", "Origin", "http://evil.example"}, "origin"},
		{"other port", "POST", false, []string{CSRFHeader, "1", "Origin", "http://console.test:8081"}, "origin"},
		{"behind a proxy that ends TLS", "POST", false, []string{CSRFHeader, "1", "Origin", "https://console.test:8080", "Sec-Fetch-Site", "same-origin"}, ""},
		{"http origin over TLS", "POST", true, []string{CSRFHeader, "1", "Origin", "http://console.test:8080"}, "origin"},
		{"null origin", "POST", false, []string{CSRFHeader, "1", "Origin", "null"}, "origin"},
		{"two origins", "POST", false, []string{CSRFHeader, "1", "Origin", "http://console.test:8080", "Origin", "http://evil.example"}, "origin"},
		{"cross-site fetch", "POST", false, []string{CSRFHeader, "1", "Sec-Fetch-Site", "cross-site"}, "Sec-Fetch-Site"},
		{"same-site fetch", "DELETE", false, []string{CSRFHeader, "1", "Origin", "http://console.test:8080", "Sec-Fetch-Site", "same-site"}, "Sec-Fetch-Site"},
		{"typed-in fetch", "POST", false, []string{CSRFHeader, "1", "Sec-Fetch-Site", "none"}, "Sec-Fetch-Site"},
	} {
		r := httptest.NewRequest(tc.method, "http://console.test:8080/v1/topics", nil)
		if tc.tls {
			r.TLS = &tls.ConnectionState{}
		}
		for i := 0; i+1 < len(tc.hdr); i += 2 {
			r.Header.Add(tc.hdr[i], tc.hdr[i+1])
		}
		err := CheckSameOrigin(r)
		switch {
		case tc.refuse == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.refuse != "" && (!errors.Is(err, ErrCrossSite) || !strings.Contains(err.Error(), tc.refuse)):
			t.Errorf("%s: %v, want a cross-site refusal about %q", tc.name, err, tc.refuse)
		}
	}
}

// FuzzCookieValues: whatever the Cookie header, cookieValues returns
// only values of a session's form, which decode to 32 bytes that encode
// back to the value, and at most maxCookies of them; firstValue returns
// the first of them.
func FuzzCookieValues(f *testing.F) {
	v := base64.RawURLEncoding.EncodeToString(make([]byte, valueBytes))
	for _, seed := range []string{
		"", CookieName + "=" + v, CookieName + "=" + v + "; " + CookieName + "=" + v, "a=b; c=d",
		CookieName + "=\"" + v + "\"", CookieName + "=" + v[:42] + "B", CookieName + "=" + strings.Repeat("_", 43),
		CookieName + "=" + strings.Repeat("-", 42) + "A", CookieName + "=%00", ";;;=;", CookieName + "=" + v + "=",
		strings.Repeat(CookieName+"="+v+";", 10),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, header string) {
		r := httptest.NewRequest("GET", "/v1/functions", nil)
		r.Header.Set("Cookie", header)
		vals := cookieValues(r)
		if len(vals) > maxCookies {
			t.Fatalf("%d values", len(vals))
		}
		for _, v := range vals {
			b, err := base64.RawURLEncoding.DecodeString(v)
			if err != nil || len(b) != valueBytes || base64.RawURLEncoding.EncodeToString(b) != v {
				t.Fatalf("value %q: %d bytes, %v", v, len(b), err)
			}
		}
		if len(vals) > 0 && !HasCookie(r) {
			t.Fatal("values but HasCookie false")
		}
		if v, ok := firstValue(r); ok != (len(vals) > 0) || ok && v != vals[0] {
			t.Fatalf("firstValue %q, %v; cookieValues %q", v, ok, vals)
		}
	})
}

// FuzzValidValue: validValue holds exactly for the encodings of 32 bytes.
func FuzzValidValue(f *testing.F) {
	f.Add(base64.RawURLEncoding.EncodeToString(make([]byte, valueBytes)))
	f.Add(strings.Repeat("A", 42) + "B")
	f.Add(strings.Repeat("/", 43))
	f.Add("")
	f.Fuzz(func(t *testing.T, v string) {
		b, err := base64.RawURLEncoding.Strict().DecodeString(v)
		want := err == nil && len(b) == valueBytes && base64.RawURLEncoding.EncodeToString(b) == v
		if got := validValue(v); got != want {
			t.Fatalf("validValue(%q) = %v, want %v", v, got, want)
		}
	})
}
