package store

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/clustertest"
	"github.com/stratus-run/stratus/internal/eventually"
)

func TestListenSQLiteReturnsAtOnce(t *testing.T) {
	sqliteOnly(t, "a SQLite store's behaviour")
	s := openTest(t)
	if err := s.Listen(t.Context(), func(c Change) { t.Errorf("a change on SQLite: %+v", c) }); err != nil {
		t.Fatal(err)
	}
}

func TestListenParseChange(t *testing.T) {
	for payload, want := range map[string]Change{
		"functions:fn":        {Table: "functions", Name: "fn"},
		"subscriptions:topic": {Table: "subscriptions", Name: "topic"},
		"functions:":          {Table: "functions"},
		"":                    {Resync: true},
		"garbage":             {Resync: true},
		":name":               {Resync: true},
	} {
		if got := parseChange(payload); got != want {
			t.Errorf("parseChange(%q) = %+v, want %+v", payload, got, want)
		}
	}
}

// changeLog collects what Listen delivers.
type changeLog struct {
	mu      sync.Mutex
	changes []Change
}

func (l *changeLog) add(c Change) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.changes = append(l.changes, c)
}

// count is how many times c was delivered.
func (l *changeLog) count(c Change) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, got := range l.changes {
		if got == c {
			n++
		}
	}
	return n
}

// TestListenPostgres writes to the tables that notify and sees each
// write's change arrive, and sees Listen reconnect by itself, with a
// resync, after PostgreSQL restarts.
func TestListenPostgres(t *testing.T) {
	sqliteOnly(t, "it runs once, in the SQLite run, on a PostgreSQL of its own that it restarts")
	pg := clustertest.StartPostgres(t)
	ctx := t.Context()
	s, err := Open(ctx, pg.CreateDB(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })

	var log changeLog
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Listen(lctx, log.add) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Listen: %v", err)
		}
	})
	resync := Change{Resync: true}
	eventually.True(t, 10*time.Second, "the first resync", func() bool { return log.count(resync) == 1 })

	if err := s.CreateSchedule(ctx, stratus.Schedule{Name: "nightly", Function: "fn", Expression: "rate(1 hour)", Timezone: "UTC"}); err != nil {
		t.Fatal(err)
	}
	if err := putService(ctx, s, "web", 1); err != nil {
		t.Fatal(err)
	}
	for _, c := range []Change{{Table: "schedules", Name: "nightly"}, {Table: "services", Name: "web"}, {Table: "revisions", Name: "web"}} {
		eventually.True(t, 10*time.Second, "change "+c.Table+":"+c.Name, func() bool { return log.count(c) > 0 })
	}
	// Writes to other tables say nothing.
	if _, err := s.AcquireLease(ctx, "service/web", "a", time.Second); err != nil {
		t.Fatal(err)
	}

	pg.Stop(t)
	pg.Start(t)
	eventually.True(t, 30*time.Second, "a resync after PostgreSQL restarted", func() bool { return log.count(resync) == 2 })
	eventually.Nil(t, 30*time.Second, "a write after the restart", func() error {
		return s.DeleteSchedule(ctx, "nightly")
	})
	eventually.True(t, 10*time.Second, "the change after the restart", func() bool {
		return log.count(Change{Table: "schedules", Name: "nightly"}) == 2
	})
	log.mu.Lock()
	defer log.mu.Unlock()
	for _, c := range log.changes {
		if c.Table == "leases" || c.Table == "nodes" {
			t.Errorf("a change of %s: %+v", c.Table, c)
		}
	}
}

// FuzzListenParseChange checks that every payload reads as a change of a named
// table or as a Resync, and that a change says its payload back.
func FuzzListenParseChange(f *testing.F) {
	for _, p := range []string{"functions:fn", "subscriptions:t", "", ":", "a:b:c", "garbage"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		c := parseChange(payload)
		switch {
		case c.Resync && (c.Table != "" || c.Name != ""):
			t.Errorf("%q: a resync that names %+v", payload, c)
		case !c.Resync && (c.Table == "" || c.Table+":"+c.Name != payload):
			t.Errorf("%q: %+v", payload, c)
		}
	})
}
