package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/stratus-run/stratus"
)

// Session is a console session as stored: a hash of its cookie's value
// (made by the caller, see console.Sessions), never the value itself.
type Session struct {
	Hash      [32]byte
	CreatedAt time.Time
	ExpiresAt time.Time
}

// CreateSession stores session se, or returns an error wrapping
// stratus.ErrConflict if one of that hash exists. It also deletes the
// sessions that expired by se.CreatedAt, so that the table holds little
// more than the live sessions without a loop of its own.
func (s *Store) CreateSession(ctx context.Context, se Session) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at <= ?`, nanos(se.CreatedAt)); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO sessions (id_hash, created_at, expires_at) VALUES (?, ?, ?) ON CONFLICT (id_hash) DO NOTHING`,
			se.Hash[:], nanos(se.CreatedAt), nanos(se.ExpiresAt))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("session: %w", stratus.ErrConflict)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, stratus.ErrConflict) {
			return err
		}
		return fmt.Errorf("create session: %w", err)
	}
	return nil
}

// GetSession returns the session of hash if it has not expired at now,
// or an error wrapping stratus.ErrNotFound (none, or expired).
func (s *Store) GetSession(ctx context.Context, hash [32]byte, now time.Time) (*Session, error) {
	se := Session{Hash: hash}
	var created, expires int64
	err := s.r.QueryRowContext(ctx, `SELECT created_at, expires_at FROM sessions WHERE id_hash = ? AND expires_at > ?`, hash[:], nanos(now)).
		Scan(&created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("session: %w", stratus.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get session: %w", err)
	}
	se.CreatedAt, se.ExpiresAt = fromNanos(created), fromNanos(expires)
	return &se, nil
}

// DeleteSession deletes the session of hash; one that is gone is no
// error.
func (s *Store) DeleteSession(ctx context.Context, hash [32]byte) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE id_hash = ?`, hash[:])
		return err
	})
	if err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// DeleteExpiredSessions deletes the sessions expired at now and returns
// how many.
func (s *Store) DeleteExpiredSessions(ctx context.Context, now time.Time) (int64, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at <= ?`, nanos(now))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("delete expired sessions: %w", err)
	}
	return n, nil
}
