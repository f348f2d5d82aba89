package clustertest

import (
	"context"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/store"
)

// TestPostgresStopStartKeepsData starts a server, writes a row in a new
// database, stops the server (it then refuses connections), starts it
// again and reads the row back.
func TestPostgresStopStartKeepsData(t *testing.T) {
	ctx := context.Background()
	p := StartPostgres(t)
	url := p.CreateDB(t)
	query := func(q string, dest ...any) error {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		if len(dest) == 0 {
			_, err = conn.Exec(ctx, q)
			return err
		}
		return conn.QueryRow(ctx, q).Scan(dest...)
	}
	if err := query(`CREATE TABLE kept (v TEXT); INSERT INTO kept VALUES ('here')`); err != nil {
		t.Fatal(err)
	}

	p.Stop(t)
	if err := query(`SELECT 1`); err == nil {
		t.Fatal("a stopped server accepted a connection")
	}
	p.Start(t)
	var v string
	if err := query(`SELECT v FROM kept`, &v); err != nil || v != "here" {
		t.Fatalf("after a restart: %q, %v; want %q", v, err, "here")
	}

	// A URL names the same server for another process.
	at, err := PostgresAt(url)
	if err != nil {
		t.Fatal(err)
	}
	if got := at.URL("other"); got != p.URL("other") {
		t.Errorf("PostgresAt(%q).URL = %q, want %q", url, got, p.URL("other"))
	}
}

// TestPostgresSocketOnly: the server trusts every connection, so it
// listens on no TCP address, only on its unix socket in a directory of
// mode 0700, and URL names that socket.
func TestPostgresSocketOnly(t *testing.T) {
	ctx := context.Background()
	p := StartPostgres(t)
	raw := p.CreateDB(t)
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	dir := u.Query().Get("host")
	if !strings.HasPrefix(dir, "/") {
		t.Fatalf("URL %s names no unix socket directory", raw)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("socket directory %s: %v, %v; want mode 0700", dir, fi.Mode(), err)
	}
	conn, err := pgx.Connect(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var listen string
	if err := conn.QueryRow(ctx, `SHOW listen_addresses`).Scan(&listen); err != nil || listen != "" {
		t.Errorf("listen_addresses = %q, %v; want none", listen, err)
	}
}

// TestStoreReconnectsAfterRestart: a store keeps working once PostgreSQL
// is back after a restart, without being reopened: the pool drops the
// connections the restart broke.
func TestStoreReconnectsAfterRestart(t *testing.T) {
	ctx := context.Background()
	p := StartPostgres(t)
	s, err := store.Open(ctx, p.CreateDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateTopic(ctx, stratus.Topic{Name: "before"}); err != nil {
		t.Fatal(err)
	}
	p.Stop(t)
	if _, err := s.GetTopic(ctx, "before"); err == nil {
		t.Error("a read succeeded while PostgreSQL was stopped")
	}
	p.Start(t)
	// The first calls may meet a connection the restart broke; calls
	// succeed again within a bound.
	failed := 0
	eventually.Nil(t, 10*time.Second, "a write after the restart", func() error {
		err := s.CreateTopic(ctx, stratus.Topic{Name: "after"})
		if err != nil {
			failed++
			t.Logf("after the restart: %v", err)
		}
		return err
	})
	t.Logf("%d calls failed after the restart", failed)
	for _, name := range []string{"before", "after"} {
		if _, err := s.GetTopic(ctx, name); err != nil {
			t.Errorf("topic %s after the restart: %v", name, err)
		}
	}
}
