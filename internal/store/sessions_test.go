package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
)

func TestSessions(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	a := Session{Hash: sha256.Sum256([]byte("cookie-a")), CreatedAt: t0, ExpiresAt: t0.Add(12 * time.Hour)}
	b := Session{Hash: sha256.Sum256([]byte("cookie-b")), CreatedAt: t0.Add(time.Hour), ExpiresAt: t0.Add(13 * time.Hour)}
	for _, se := range []Session{a, b} {
		if err := s.CreateSession(ctx, se); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateSession(ctx, a); !errors.Is(err, stratus.ErrConflict) {
		t.Fatalf("a second session of one hash: got %v, want ErrConflict", err)
	}
	got, err := s.GetSession(ctx, a.Hash, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&a, got); diff != "" {
		t.Errorf("GetSession (-want +got):\n%s", diff)
	}

	// The database holds the hashes, never a cookie's value.
	rows, err := s.r.QueryContext(ctx, `SELECT id_hash FROM sessions`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var h []byte
		if err := rows.Scan(&h); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(h, []byte("cookie-a")) {
			t.Errorf("a row holds the cookie's value: %x", h)
		}
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}

	// Expiry: refused from ExpiresAt on.
	if _, err := s.GetSession(ctx, a.Hash, a.ExpiresAt.Add(-time.Nanosecond)); err != nil {
		t.Errorf("just before its expiry: %v", err)
	}
	if _, err := s.GetSession(ctx, a.Hash, a.ExpiresAt); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("at its expiry: got %v, want ErrNotFound", err)
	}
	if _, err := s.GetSession(ctx, sha256.Sum256([]byte("unknown")), t0); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("an unknown session: got %v, want ErrNotFound", err)
	}

	// A session survives a restart of the store.
	s = reopen(t, s)
	if _, err := s.GetSession(ctx, b.Hash, t0.Add(2*time.Hour)); err != nil {
		t.Fatalf("after a reopen: %v", err)
	}

	// Expired sessions go: by DeleteExpiredSessions, and at each new
	// session.
	if n, err := s.DeleteExpiredSessions(ctx, a.ExpiresAt); err != nil || n != 1 {
		t.Errorf("DeleteExpiredSessions at a's expiry: %d, %v; want 1", n, err)
	}
	c := Session{Hash: sha256.Sum256([]byte("cookie-c")), CreatedAt: b.ExpiresAt, ExpiresAt: b.ExpiresAt.Add(12 * time.Hour)}
	if err := s.CreateSession(ctx, c); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM sessions`).Scan(&n); err != nil || n != 1 {
		t.Errorf("after c's creation at b's expiry: %d rows, %v; want c's only", n, err)
	}

	// DeleteSession: gone at once; again is no error.
	for range 2 {
		if err := s.DeleteSession(ctx, c.Hash); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.GetSession(ctx, c.Hash, c.CreatedAt); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("a deleted session: got %v, want ErrNotFound", err)
	}
}
