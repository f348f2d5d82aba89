package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus/bench/internal/benchkit"
	"github.com/stratus-run/stratus/internal/sigv4"
)

// oneKey is a sigv4.KeyStore holding one key.
type oneKey struct{ id, secret string }

func (k oneKey) Secret(_ context.Context, id string) (string, bool, error) {
	return k.secret, id == k.id, nil
}

// replay sends the request benchkit's load generator sends for a target
// with header h: POST body as application/json, the header copied.
func replay(url string, h http.Header, body []byte) *http.Request {
	r := httptest.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	for k, v := range h {
		r.Header[k] = v
	}
	return r
}

// TestSignedHeaderReplays checks that the header signed once verifies for
// every replay of the request within SigV4's skew and is refused with a
// changed signature, another body or past the skew, by Stratus's own
// verifier.
func TestSignedHeaderReplays(t *testing.T) {
	const (
		id     = "STRABENCH00000000001"
		secret = "bench-secret-0123456789-0123456789-abcd"
		url    = "http://127.0.0.1:8080/2015-03-31/functions/lognoop/invocations"
	)
	signedAt := time.Date(2026, 12, 6, 21, 0, 0, 0, time.UTC)
	now := signedAt
	v := sigv4.New(sigv4.Config{Keys: oneKey{id, secret}, Now: func() time.Time { return now }})
	h, err := signedHeader(context.Background(), id, secret, "local", url, event, signedAt)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := h["Content-Type"]; ok {
		t.Errorf("the signed header holds Content-Type, which the load generator sets: %v", h)
	}
	for _, d := range []time.Duration{0, time.Second, 10 * time.Minute} {
		now = signedAt.Add(d)
		for i := range 3 {
			if err := v.Verify(replay(url, h, event), event); err != nil {
				t.Fatalf("replay %d, %v after signing: %v", i, d, err)
			}
		}
	}
	now = signedAt
	refused := []struct {
		name string
		h    http.Header
		body []byte
		at   time.Time
	}{
		{"changed signature", tampered(h), event, signedAt},
		{"another body", h, []byte(`{"a":1}`), signedAt},
		{"past the skew", h, event, signedAt.Add(sigv4.MaxSkew + time.Second)},
	}
	for _, c := range refused {
		now = c.at
		err := v.Verify(replay(url, c.h, c.body), c.body)
		var e *sigv4.Error
		if !errors.As(err, &e) || e.Code != sigv4.CodeInvalidSignature {
			t.Errorf("%s: Verify = %v, want %s", c.name, err, sigv4.CodeInvalidSignature)
		}
	}
}

func TestTurned(t *testing.T) {
	for round, want := range [][]int{{0, 1, 2, 3}, {1, 2, 3, 0}, {2, 3, 0, 1}, {3, 0, 1, 2}, {0, 1, 2, 3}} {
		if got := turned(round, 4); !slices.Equal(got, want) {
			t.Errorf("turned(%d, 4) = %v, want %v", round, got, want)
		}
	}
}

func pt(conc int, rps float64, cpu time.Duration) point {
	return point{Run: benchkit.Run{Conc: conc, RPS: rps, OK: 1}, ServerCPU: cpu}
}

func TestCompareAndGoals(t *testing.T) {
	us := time.Microsecond
	native := targetResult{Kind: kindNative, Rounds: [][]point{
		{pt(1, 1000, 400*us), pt(1, 800, 400*us), pt(1, 1000, 400*us)},
		{pt(32, 2000, 300*us), pt(32, 2000, 300*us), pt(32, 1000, 300*us)},
	}}
	signed := targetResult{Kind: kindLambdaSigV4, Rounds: [][]point{
		{pt(1, 980, 410*us), pt(1, 790, 410*us), pt(1, 900, 410*us)},
		{pt(32, 1900, 330*us), pt(32, 2100, 330*us), pt(32, 1000, 330*us)},
	}}
	for _, tr := range []*targetResult{&native, &signed} {
		for _, rs := range tr.Rounds {
			tr.Runs = append(tr.Runs, medianRun(rs))
		}
	}
	got := compare(&signed, &native)
	// c=1: rounds 0.98, 0.9875, 0.9 → paired 0.98; medians 900/1000.
	// c=32: rounds 0.95, 1.05, 1 → paired 1; medians 1900/2000.
	want := []ratio{
		{Conc: 1, RPS: 0.9, Paired: 0.98, RoundMin: 0.9, RoundMax: 0.9875, CPU: 1.025, CPUAdded: 10 * us},
		{Conc: 32, RPS: 0.95, Paired: 1, RoundMin: 0.95, RoundMax: 1.05, CPU: 1.1, CPUAdded: 30 * us},
	}
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 })); d != "" {
		t.Errorf("compare (-want +got):\n%s", d)
	}
	gs := goals(got)
	if len(gs) != 2 || !gs[0].OK || gs[1].OK {
		t.Errorf("goals = %+v, want throughput met, CPU missed (1.1 at c=32)", gs)
	}
	if gs[0].Got != "c=1 0.980, c=32 1.000" {
		t.Errorf("throughput goal's figure = %q", gs[0].Got)
	}
	if len(goals(nil)) != 2 || goals(nil)[0].OK {
		t.Error("goals of no ratio are met")
	}
}

func TestWithin(t *testing.T) {
	for _, c := range []struct {
		x  float64
		ok bool
	}{{1, true}, {0.95, true}, {1.05, true}, {0.949, false}, {1.051, false}, {0, false}} {
		if got := within(c.x, goalApart); got != c.ok {
			t.Errorf("within(%v) = %v, want %v", c.x, got, c.ok)
		}
	}
}

// BenchmarkVerify is the server's cost of one SigV4 verification of the
// bench's signed request, alone (its signing key cached after the first):
// what the Lambda Invoke with SigV4 adds over the one with the token.
func BenchmarkVerify(b *testing.B) {
	const (
		id     = "STRABENCH00000000001"
		secret = "bench-secret-0123456789-0123456789-abcd"
		url    = "http://127.0.0.1:8080/2015-03-31/functions/lognoop/invocations"
	)
	v := sigv4.New(sigv4.Config{Keys: oneKey{id, secret}})
	h, err := signedHeader(context.Background(), id, secret, "local", url, event, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	r := replay(url, h, event)
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Verify(r, event); err != nil {
			b.Fatal(err)
		}
	}
}

func TestCumOf(t *testing.T) {
	top := `Showing nodes accounting for 2.41s, 77.24% of 3.12s total
      flat  flat%   sum%        cum   cum%
     0.01s  0.32%  0.32%      1.54s 49.36%  net/http.(*conn).serve
         0     0% 41.67%      0.23s  7.37%  github.com/stratus-run/stratus/internal/sigv4.(*Verifier).Verify
     0.01s  0.32% 41.99%       230ms  7.37%  github.com/stratus-run/stratus/internal/sigv4.(*Verifier).verify
         0     0% 50.63%      0.14s  4.43%  github.com/stratus-run/stratus/internal/sigv4.parse (inline)`
	for name, want := range map[string]time.Duration{
		"net/http.(*conn).serve": 1540 * time.Millisecond,
		"github.com/stratus-run/stratus/internal/sigv4.(*Verifier).Verify": 230 * time.Millisecond,
		"github.com/stratus-run/stratus/internal/sigv4.(*Verifier).verify": 230 * time.Millisecond,
		"github.com/stratus-run/stratus/internal/sigv4.parse":              140 * time.Millisecond,
		"runtime.gcBgMarkWorker": 0,
	} {
		if got := cumOf(top, name); got != want {
			t.Errorf("cumOf(%s) = %v, want %v", name, got, want)
		}
	}
}
