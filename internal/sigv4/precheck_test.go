package sigv4

import (
	"errors"
	"maps"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestQueryMustParse: a query that url.ParseQuery refuses (which the
// handlers would read without the bad pairs) is refused, though it
// canonicalises as a validly encoded query that was signed.
func TestQueryMustParse(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	v := New(Config{Keys: newKeys(), Now: func() time.Time { return now }})
	const path = "/2015-03-31/functions/hello/invocations"
	for _, tc := range []struct{ signedQuery, sentQuery string }{
		{"Qualifier=%25zz", "Qualifier=%zz"},
		{"a%3Bb=1", "a;b=1"},
		{"Qualifier=1&x=%25", "Qualifier=1&x=%"},
	} {
		// Signed over the valid query; sent with the invalid one that
		// canonicalised alike.
		r := signed(t, "POST", "http://example.com"+path+"?"+tc.signedQuery, "{}", "lambda", "us-east-1", now, testKeyID, testSecret)
		if err := v.Verify(r, []byte("{}")); err != nil {
			t.Fatalf("%s as signed: %v", tc.signedQuery, err)
		}
		r.URL.RawQuery = tc.sentQuery
		r.RequestURI = path + "?" + tc.sentQuery
		err := v.Verify(r, []byte("{}"))
		e, ok := AsError(err)
		if !ok || e.Code != CodeInvalidSignature || !strings.Contains(e.Message, "query string") {
			t.Errorf("sent %q, signed as %q: %v, want InvalidSignatureException about the query", tc.sentQuery, tc.signedQuery, err)
		}
		if err := v.Precheck(r); err == nil {
			t.Errorf("Precheck admits the query %q", tc.sentQuery)
		}
	}
}

// TestPrecheck: Precheck refuses what Verify refuses without the body,
// and admits a request whose only fault is its body.
func TestPrecheck(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	keys := newKeys()
	v := New(Config{Keys: keys, Now: func() time.Time { return now }})
	const url = "http://example.com/2015-03-31/functions"
	sign := func(at time.Time, id, service string) func() error {
		return func() error {
			return v.Precheck(signed(t, "POST", url, "{}", service, "us-east-1", at, id, testSecret))
		}
	}
	for _, tc := range []struct {
		name string
		run  func() error
		code string
	}{
		{"no authorization", func() error { return v.Precheck(httptest.NewRequest("GET", url, nil)) }, CodeMissingToken},
		{"malformed", func() error {
			r := httptest.NewRequest("GET", url, nil)
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 nonsense")
			return v.Precheck(r)
		}, CodeIncompleteSignature},
		{"an hour old", sign(now.Add(-time.Hour), testKeyID, "lambda"), CodeInvalidSignature},
		{"another service", sign(now, testKeyID, "s3"), CodeInvalidSignature},
		{"unknown key", sign(now, "STRAUNKNOWN000000000", "lambda"), CodeUnrecognizedClient},
	} {
		e, ok := AsError(tc.run())
		if !ok || e.Code != tc.code {
			t.Errorf("%s: %v, want %s", tc.name, e, tc.code)
		}
	}
	// The body is not Precheck's to check.
	r := signed(t, "POST", url, "{}", "lambda", "us-east-1", now, testKeyID, testSecret)
	if err := v.Precheck(r); err != nil {
		t.Fatalf("Precheck of a good request: %v", err)
	}
	if e, ok := AsError(v.Verify(r, []byte("{ }"))); !ok || e.Message != MessageSignatureMismatch {
		t.Errorf("Verify over another body: %v", e)
	}
	// A key store failure is not a refusal.
	keys.err = errors.New("store down")
	if err := v.Precheck(r); err == nil {
		t.Error("Precheck with the store down: nil")
	} else if _, ok := AsError(err); ok {
		t.Errorf("Precheck with the store down: a refusal %v", err)
	}
}

// FuzzCanonicalQuery: two queries the Verifier admits (url.ParseQuery
// reads them) that canonicalise alike are read alike by the handlers, so
// a signature for one is a signature for what the other means.
func FuzzCanonicalQuery(f *testing.F) {
	for _, seed := range [][2]string{
		{"Qualifier=%25zz", "Qualifier=%zz"},
		{"a%3Bb=1", "a;b=1"},
		{"a=x%20y", "a=x+y"},
		{"z=1&a=2", "a=2&z=1"},
		{"a", "a="},
		{"a=1&a=2", "a=2&a=1"},
		{"%41=1", "A=1"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		qa, errA := url.ParseQuery(a)
		qb, errB := url.ParseQuery(b)
		if errA != nil || errB != nil || canonicalQuery(a) != canonicalQuery(b) {
			return
		}
		for _, q := range []url.Values{qa, qb} {
			for k := range q {
				slices.Sort(q[k])
			}
		}
		if !maps.EqualFunc(qa, qb, slices.Equal) {
			t.Fatalf("%q and %q canonicalise alike as %q but read as %v and %v", a, b, canonicalQuery(a), qa, qb)
		}
	})
}
