package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
)

// Lease gives the workload Name ("function/NAME", "service/NAME") to the
// node Holder until Expires (UTC), by the clock that judges leases (see
// leaseNow): the database's on PostgreSQL, the server's on SQLite. Epoch
// is the fencing token: it grows by one at each new holding and never
// goes back, so a request that names an epoch is known stale once the
// lease moved on. A released lease has Holder "" (and keeps its epoch).
type Lease struct {
	Name    string
	Holder  string
	Epoch   int64
	Expires time.Time
}

// Held reports whether l is held at now: it has a holder and has not
// expired (a lease is free from Expires on).
func (l Lease) Held(now time.Time) bool {
	return l.Holder != "" && now.Before(l.Expires)
}

// AcquireLease takes lease name for holder for ttl when it is free
// (never held, released, or expired: Expires <= now), or extends it when
// holder holds it already. A new holding gets the epoch after the last
// one (1 for a lease never held), an extension keeps it; taking back an
// expired lease of one's own is a new holding too. It returns the lease
// as it stands afterwards: Holder == holder when acquired, else the
// current holder's lease, unchanged. It is atomic: of two nodes that try
// at once, one gets the lease. An empty name or holder, or a ttl <= 0, is
// refused (stratus.ErrInvalid).
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (Lease, error) {
	if name == "" || holder == "" || ttl <= 0 {
		return Lease{}, fmt.Errorf("acquire lease %q for %q for %v: %w", name, holder, ttl, stratus.ErrInvalid)
	}
	var l Lease
	err := s.write(ctx, func(tx *sql.Tx) error {
		now, err := s.leaseNow(ctx, tx)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO leases (name, holder, epoch, expires_at) VALUES (?, ?, 1, ?)
			ON CONFLICT (name) DO UPDATE SET
				epoch = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > ?
					THEN leases.epoch ELSE leases.epoch + 1 END,
				holder = excluded.holder,
				expires_at = excluded.expires_at
			WHERE leases.holder = excluded.holder OR leases.expires_at <= ?`,
			name, holder, now+int64(ttl), now, now); err != nil {
			return err
		}
		l, err = scanLease(tx.QueryRowContext(ctx, selectLease+` WHERE name = ?`, name))
		return err
	})
	if err != nil {
		return Lease{}, fmt.Errorf("acquire lease %q: %w", name, err)
	}
	return l, nil
}

// RenewLeases extends by ttl every lease holder holds and has not let
// expire, and returns them by name. A lease absent from the answer is
// lost: it expired (another node may have it now) or was released. An
// expired lease is never revived here, only taken anew (AcquireLease,
// with a new epoch).
func (s *Store) RenewLeases(ctx context.Context, holder string, ttl time.Duration) ([]Lease, error) {
	if holder == "" || ttl <= 0 {
		return nil, fmt.Errorf("renew leases of %q for %v: %w", holder, ttl, stratus.ErrInvalid)
	}
	var out []Lease
	err := s.write(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		now, err := s.leaseNow(ctx, tx)
		if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `UPDATE leases SET expires_at = ?
			WHERE holder = ? AND expires_at > ? RETURNING name, holder, epoch, expires_at`,
			now+int64(ttl), holder, now)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			l, err := scanLease(rows)
			if err != nil {
				return err
			}
			out = append(out, l)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("renew leases of %q: %w", holder, err)
	}
	slices.SortFunc(out, func(a, b Lease) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// ReleaseLease frees lease name if holder holds it (expired or not), at
// once: another node may take it without waiting for it to expire. It
// keeps the lease's epoch. A lease holder does not hold is left alone,
// and is no error.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE leases SET holder = '', expires_at = 0 WHERE name = ? AND holder = ?`, name, holder)
		return err
	})
	if err != nil {
		return fmt.Errorf("release lease %q: %w", name, err)
	}
	return nil
}

// ReleaseLeases frees every lease holder holds (see ReleaseLease).
func (s *Store) ReleaseLeases(ctx context.Context, holder string) error {
	if holder == "" {
		return fmt.Errorf("release leases: holder is empty: %w", stratus.ErrInvalid)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE leases SET holder = '', expires_at = 0 WHERE holder = ?`, holder)
		return err
	})
	if err != nil {
		return fmt.Errorf("release leases of %q: %w", holder, err)
	}
	return nil
}

// DeleteLease removes lease name, whose workload is gone, if holder
// holds it (expired or not) or nobody does (it was released, or it
// expired): never one that another holder holds until its expiry, which
// is left alone, as is a lease with no row; neither is an error. Its
// epoch goes with it: a later holding of name starts again at epoch 1
// (harmless: a node serves a forwarded request only while it holds the
// lease itself). An empty name or holder is refused (stratus.ErrInvalid).
func (s *Store) DeleteLease(ctx context.Context, name, holder string) error {
	if name == "" || holder == "" {
		return fmt.Errorf("delete lease %q of %q: %w", name, holder, stratus.ErrInvalid)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		now, err := s.leaseNow(ctx, tx)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM leases WHERE name = ? AND (holder = ? OR holder = '' OR expires_at <= ?)`, name, holder, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete lease %q: %w", name, err)
	}
	return nil
}

// Lease returns lease name as stored, and whether it has a row at all (it
// has been acquired at least once). The lease may be expired or released:
// see Lease.Held.
func (s *Store) Lease(ctx context.Context, name string) (Lease, bool, error) {
	l, err := scanLease(s.r.QueryRowContext(ctx, selectLease+` WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return Lease{Name: name}, false, nil
	}
	if err != nil {
		return Lease{}, false, fmt.Errorf("get lease %q: %w", name, err)
	}
	return l, true, nil
}

// ServiceLeases returns the lease of every stored service, by name: its
// lease "service/NAME" as it stands, or one with no holder and epoch 0
// for a service whose lease was never taken. Leases of services that are
// gone are not in it.
func (s *Store) ServiceLeases(ctx context.Context) ([]Lease, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT 'service/' || s.name, COALESCE(l.holder, ''),
		COALESCE(l.epoch, 0), COALESCE(l.expires_at, 0)
		FROM services s LEFT JOIN leases l ON l.name = 'service/' || s.name ORDER BY s.name`)
	if err != nil {
		return nil, fmt.Errorf("list service leases: %w", err)
	}
	defer rows.Close()
	out := []Lease{}
	for rows.Next() {
		l, err := scanLease(rows)
		if err != nil {
			return nil, fmt.Errorf("list service leases: %w", err)
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list service leases: %w", err)
	}
	return out, nil
}

// leaseNow returns the time, in nanoseconds since the epoch, by which tx
// judges whether a lease has expired and sets its new expiry. On
// PostgreSQL it is the database's clock, read in tx: several servers
// write leases there, each with a clock of its own that may be off, and
// one clock for all means a lease one server took is not judged expired
// early by another whose clock runs ahead. On SQLite it is the store's
// clock (one server; tests step it).
func (s *Store) leaseNow(ctx context.Context, tx *sql.Tx) (int64, error) {
	if s.dialect != dialectPostgres {
		return nanos(s.now()), nil
	}
	var now int64
	if err := tx.QueryRowContext(ctx, `SELECT (extract(epoch FROM clock_timestamp()) * 1000000000)::bigint`).Scan(&now); err != nil {
		return 0, fmt.Errorf("read the database clock: %w", err)
	}
	return now, nil
}

const selectLease = `SELECT name, holder, epoch, expires_at FROM leases`

func scanLease(row scanner) (Lease, error) {
	var (
		l       Lease
		expires int64
	)
	if err := row.Scan(&l.Name, &l.Holder, &l.Epoch, &expires); err != nil {
		return Lease{}, err
	}
	l.Expires = fromNanos(expires)
	return l, nil
}
