package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Change is one change notification of the store: a row of Table that
// belongs to the function, service, topic or schedule Name was written
// (for a subscription, Name is its topic). A Change with Resync set names
// nothing: notifications may have been missed (the listener reconnected),
// so the receiver re-reads everything.
type Change struct {
	Table  string
	Name   string
	Resync bool
}

// changesChannel is the channel the triggers of migration 0015 notify on.
const changesChannel = "stratus_changes"

// Backoff between two connections of Listen: doubling from the first to
// the last.
const (
	listenBackoffFirst = 100 * time.Millisecond
	listenBackoffMax   = 5 * time.Second
)

// Listen delivers the store's change notifications to fn until ctx ends,
// then returns nil; fn runs on Listen's goroutine, one call at a time.
//
// On PostgreSQL it holds a connection of its own that LISTENs on
// stratus_changes; when it breaks (the server restarted, the network
// failed) Listen connects again, waiting from 100 ms up to 5 s between
// attempts. After every connection, the first one included, it calls
// fn(Change{Resync: true}): what changed while it was not listening is
// lost. On SQLite it returns nil at once: one server writes the file,
// and nothing changes behind its back.
func (s *Store) Listen(ctx context.Context, fn func(Change)) error {
	if s.dialect != dialectPostgres {
		return nil
	}
	backoff := listenBackoffFirst
	for {
		listened, _ := s.listenOnce(ctx, fn)
		if listened {
			backoff = listenBackoffFirst
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, listenBackoffMax)
	}
}

// listenOnce connects, LISTENs, calls fn(Change{Resync: true}) and then
// delivers notifications until the connection fails or ctx ends.
// listened reports whether it got as far as the resync.
func (s *Store) listenOnce(ctx context.Context, fn func(Change)) (listened bool, err error) {
	conn, err := pgx.Connect(ctx, s.pgDSN)
	if err != nil {
		return false, fmt.Errorf("connect to listen: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+changesChannel); err != nil {
		return false, fmt.Errorf("listen on %s: %w", changesChannel, err)
	}
	fn(Change{Resync: true})
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return true, fmt.Errorf("wait for a notification: %w", err)
		}
		fn(parseChange(n.Payload))
	}
}

// parseChange reads a notification's payload, "TABLE:NAME". A payload
// of another shape is a Resync: something changed, and it is not known
// what.
func parseChange(payload string) Change {
	table, name, ok := strings.Cut(payload, ":")
	if !ok || table == "" {
		return Change{Resync: true}
	}
	return Change{Table: table, Name: name}
}
