package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"time"
)

// The migrations: migrations/NNNN_what.sql serves both dialects;
// migrations/sqlite/NNNN_what.sql and migrations/postgres/NNNN_what.sql
// serve one each. A version has either one shared file or one file in
// each dialect's folder.
//
//go:embed migrations
var migrationFiles embed.FS

// A migration is one file of migrations/, named NNNN_what.sql; NNNN is its
// schema version.
type migration struct {
	version int
	name    string // the file's path under migrations/
	sql     string
}

// migrations returns the embedded migrations of dialect in version
// order. Versions are 1, 2, 3… without gaps, the same in every dialect.
func migrations(dialect string) ([]migration, error) {
	shared, err := migrationsIn(".")
	if err != nil {
		return nil, err
	}
	byDialect := map[string]map[int]migration{}
	for _, d := range []string{dialectSQLite, dialectPostgres} {
		if byDialect[d], err = migrationsIn(d); err != nil {
			return nil, err
		}
	}
	if _, ok := byDialect[dialect]; !ok {
		return nil, fmt.Errorf("no migrations for dialect %q", dialect)
	}
	n := len(shared) + len(byDialect[dialect])
	ms := make([]migration, 0, n)
	for v := 1; v <= n; v++ {
		m, isShared := shared[v]
		for d, dms := range byDialect {
			dm, ok := dms[v]
			switch {
			case isShared && ok:
				return nil, fmt.Errorf("migration %s: version %d has a shared file, %s", dm.name, v, m.name)
			case !isShared && !ok:
				return nil, fmt.Errorf("migration version %d: no shared file and none for %s", v, d)
			case d == dialect && ok:
				m = dm
			}
		}
		ms = append(ms, m)
	}
	for _, dms := range byDialect {
		if len(dms)+len(shared) != n {
			return nil, fmt.Errorf("migrations: the dialects' versions differ")
		}
	}
	return ms, nil
}

// migrationsIn reads the migrations of folder dir of migrations/ by
// version.
func migrationsIn(dir string) (map[int]migration, error) {
	names, err := fs.Glob(migrationFiles, path.Join("migrations", dir, "*.sql"))
	if err != nil {
		return nil, err
	}
	ms := map[int]migration{}
	for _, name := range names {
		rel := strings.TrimPrefix(name, "migrations/")
		prefix, _, _ := strings.Cut(path.Base(name), "_")
		v, err := strconv.Atoi(prefix)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must start with a positive version number", rel)
		}
		if other, ok := ms[v]; ok {
			return nil, fmt.Errorf("migration %s: version %d is also %s", rel, v, other.name)
		}
		b, err := migrationFiles.ReadFile(name)
		if err != nil {
			return nil, err
		}
		ms[v] = migration{version: v, name: rel, sql: string(b)}
	}
	return ms, nil
}

// schemaVersionTable is the table of applied migrations in each dialect.
var schemaVersionTable = map[string]string{
	dialectSQLite: `CREATE TABLE IF NOT EXISTS schema_version (
		version    INTEGER NOT NULL PRIMARY KEY,
		applied_at INTEGER NOT NULL
	)`,
	dialectPostgres: `CREATE TABLE IF NOT EXISTS schema_version (
		version    BIGINT NOT NULL PRIMARY KEY,
		applied_at BIGINT NOT NULL
	)`,
}

// migrate applies the migrations of dialect db has not seen, in order, in
// one transaction. It refuses a database written by a newer schema. On
// PostgreSQL the transaction first takes an advisory lock, so that
// servers starting at once apply the migrations once: the others wait,
// then find them applied.
func migrate(ctx context.Context, db *sql.DB, dialect string) error {
	ms, err := migrations(dialect)
	if err != nil {
		return err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin migration: %w", err)
	}
	defer tx.Rollback()

	if dialect == dialectPostgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, migrateLockKey); err != nil {
			return fmt.Errorf("lock migrations: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, schemaVersionTable[dialect]); err != nil {
		return fmt.Errorf("create schema_version: %w", err)
	}
	var current int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&current); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if current > len(ms) {
		return fmt.Errorf("schema version %d is newer than this program's %d", current, len(ms))
	}
	if current == len(ms) {
		return nil
	}
	for _, m := range ms[current:] {
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("apply migration %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version, applied_at) VALUES (?, ?)`,
			m.version, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("record migration %s: %w", m.name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit migrations: %w", err)
	}
	return nil
}
