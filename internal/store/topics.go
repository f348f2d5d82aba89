package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/stratus-run/stratus"
)

// CreateTopic stores a new topic, or returns an error wrapping
// stratus.ErrConflict if one of that name exists. A zero CreatedAt is set
// to now.
func (s *Store) CreateTopic(ctx context.Context, tp stratus.Topic) error {
	if tp.CreatedAt.IsZero() {
		tp.CreatedAt = s.now()
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		var n int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM topics WHERE name = ?`, tp.Name).Scan(&n)
		switch {
		case err == nil:
			return fmt.Errorf("topic %q already exists: %w", tp.Name, stratus.ErrConflict)
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO topics (name, created_at) VALUES (?, ?)`, tp.Name, nanos(tp.CreatedAt))
		return err
	})
	if err != nil {
		if errors.Is(err, stratus.ErrConflict) {
			return err
		}
		return fmt.Errorf("create topic %q: %w", tp.Name, err)
	}
	return nil
}

// GetTopic returns topic name, or an error wrapping stratus.ErrNotFound.
func (s *Store) GetTopic(ctx context.Context, name string) (*stratus.Topic, error) {
	var created int64
	err := s.r.QueryRowContext(ctx, `SELECT created_at FROM topics WHERE name = ?`, name).Scan(&created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("topic %q: %w", name, stratus.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get topic %q: %w", name, err)
	}
	return &stratus.Topic{Name: name, CreatedAt: fromNanos(created)}, nil
}

// ListTopics returns every topic, ordered by name.
func (s *Store) ListTopics(ctx context.Context) ([]stratus.Topic, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT name, created_at FROM topics ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	defer rows.Close()
	var out []stratus.Topic
	for rows.Next() {
		var tp stratus.Topic
		var created int64
		if err := rows.Scan(&tp.Name, &created); err != nil {
			return nil, fmt.Errorf("list topics: %w", err)
		}
		tp.CreatedAt = fromNanos(created)
		out = append(out, tp)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	return out, nil
}

// DeleteTopic deletes topic name and its subscriptions, which it returns,
// or returns an error wrapping stratus.ErrNotFound.
func (s *Store) DeleteTopic(ctx context.Context, name string) ([]stratus.Subscription, error) {
	var subs []stratus.Subscription
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if subs, err = querySubscriptions(ctx, tx, selectSubscription+` WHERE topic = ? ORDER BY created_at, id`, name); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM topics WHERE name = ?`, name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("topic %q: %w", name, stratus.ErrNotFound)
		}
		// The foreign key cascades; say it here too, in case a database
		// was opened without foreign keys.
		_, err = tx.ExecContext(ctx, `DELETE FROM subscriptions WHERE topic = ?`, name)
		return err
	})
	if err != nil {
		if errors.Is(err, stratus.ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("delete topic %q: %w", name, err)
	}
	return subs, nil
}

// AddSubscription stores sub as given (a zero CreatedAt is set to now). It
// returns an error wrapping stratus.ErrNotFound if its topic does not
// exist, or stratus.ErrConflict if its ID is taken.
func (s *Store) AddSubscription(ctx context.Context, sub stratus.Subscription) error {
	if sub.CreatedAt.IsZero() {
		sub.CreatedAt = s.now()
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		var n int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM topics WHERE name = ?`, sub.Topic).Scan(&n)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("topic %q: %w", sub.Topic, stratus.ErrNotFound)
		case err != nil:
			return err
		}
		err = tx.QueryRowContext(ctx, `SELECT 1 FROM subscriptions WHERE id = ?`, sub.ID).Scan(&n)
		switch {
		case err == nil:
			return fmt.Errorf("subscription %q already exists: %w", sub.ID, stratus.ErrConflict)
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO subscriptions (id, topic, function, url, filter, batch, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, sub.ID, sub.Topic, sub.Function, sub.URL, sub.Filter, sub.Batch, nanos(sub.CreatedAt))
		return err
	})
	if err != nil {
		if errors.Is(err, stratus.ErrNotFound) || errors.Is(err, stratus.ErrConflict) {
			return err
		}
		return fmt.Errorf("add subscription to %q: %w", sub.Topic, err)
	}
	return nil
}

const selectSubscription = `SELECT id, topic, function, url, filter, batch, created_at FROM subscriptions`

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func querySubscriptions(ctx context.Context, q querier, query string, args ...any) ([]stratus.Subscription, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []stratus.Subscription
	for rows.Next() {
		var sub stratus.Subscription
		var created int64
		if err := rows.Scan(&sub.ID, &sub.Topic, &sub.Function, &sub.URL, &sub.Filter, &sub.Batch, &created); err != nil {
			return nil, err
		}
		sub.CreatedAt = fromNanos(created)
		out = append(out, sub)
	}
	return out, rows.Err()
}

// ListSubscriptions returns the subscriptions of topic, or of every topic
// when topic is "", oldest first. A named topic that does not exist is an
// error wrapping stratus.ErrNotFound.
func (s *Store) ListSubscriptions(ctx context.Context, topic string) ([]stratus.Subscription, error) {
	if topic == "" {
		subs, err := querySubscriptions(ctx, s.r, selectSubscription+` ORDER BY created_at, id`)
		if err != nil {
			return nil, fmt.Errorf("list subscriptions: %w", err)
		}
		return subs, nil
	}
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("list subscriptions of %q: %w", topic, err)
	}
	defer tx.Rollback()
	var n int
	err = tx.QueryRowContext(ctx, `SELECT 1 FROM topics WHERE name = ?`, topic).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("topic %q: %w", topic, stratus.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("list subscriptions of %q: %w", topic, err)
	}
	subs, err := querySubscriptions(ctx, tx, selectSubscription+` WHERE topic = ? ORDER BY created_at, id`, topic)
	if err != nil {
		return nil, fmt.Errorf("list subscriptions of %q: %w", topic, err)
	}
	return subs, nil
}

// DeleteSubscription deletes subscription id and returns it, or returns an
// error wrapping stratus.ErrNotFound.
func (s *Store) DeleteSubscription(ctx context.Context, id string) (*stratus.Subscription, error) {
	var sub *stratus.Subscription
	err := s.write(ctx, func(tx *sql.Tx) error {
		subs, err := querySubscriptions(ctx, tx, selectSubscription+` WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if len(subs) == 0 {
			return fmt.Errorf("subscription %q: %w", id, stratus.ErrNotFound)
		}
		sub = &subs[0]
		_, err = tx.ExecContext(ctx, `DELETE FROM subscriptions WHERE id = ?`, id)
		return err
	})
	if err != nil {
		if errors.Is(err, stratus.ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("delete subscription %q: %w", id, err)
	}
	return sub, nil
}
