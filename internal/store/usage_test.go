package store

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stratus-run/stratus"
)

// approx compares the sums of floats, which may differ in their last bits
// with the order they were added in.
var approx = cmpopts.EquateApprox(0, 1e-9)

// createAtVersion creates a database of the run's driver with the first v
// migrations applied, as a Stratus of that schema left it, and returns it
// with its target (for openAt).
func createAtVersion(t *testing.T, v int) (*sql.DB, string) {
	t.Helper()
	ctx := t.Context()
	dialect, target := dialectSQLite, filepath.Join(t.TempDir(), "stratus.db")
	if testPG != nil {
		dialect, target = dialectPostgres, testPG.CreateDB(t)
	}
	ms, err := migrations(dialect)
	if err != nil {
		t.Fatal(err)
	}
	var db *sql.DB
	if dialect == dialectPostgres {
		cfg, err := pgx.ParseConfig(target)
		if err != nil {
			t.Fatal(err)
		}
		db = sql.OpenDB(pgConnector{stdlib.GetConnector(*cfg)})
	} else if db, err = sql.Open("sqlite", dsn(target, "foreign_keys(1)")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.ExecContext(ctx, schemaVersionTable[dialect]); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[:v] {
		if _, err := db.ExecContext(ctx, m.sql); err != nil {
			t.Fatalf("apply %s: %v", m.name, err)
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO schema_version (version, applied_at) VALUES (?, 1)`, m.version); err != nil {
			t.Fatal(err)
		}
	}
	return db, target
}

// A database of schema 6 opens at the newest: its records read back with no
// trigger, CPU time, arch or trace ID, and new records keep them.
func TestMigrationFrom6(t *testing.T) {
	ctx := t.Context()
	db, path := createAtVersion(t, 6)
	old := stratus.Invocation{
		RequestID: "old", Function: "f", Version: 1, Start: t0, DurationMs: 3, BilledMs: 3,
		MemoryMB: 128, MaxMemoryMB: 40, Outcome: stratus.OutcomeSuccess, Instance: "i-0",
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO invocations (function, request_id, version, start,
		duration_ms, billed_ms, memory_mb, max_memory_mb, init_duration_ms, cold, outcome, error_type, instance)
		VALUES ('f', 'old', 1, ?, 3, 3, 128, 40, 0, 0, 'success', '', 'i-0')`, t0.UnixNano()); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s := openAt(t, path)
	var v int
	if err := s.r.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_version`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	if ms, _ := migrations(s.Dialect()); v != len(ms) {
		t.Errorf("schema version %d after Open, want %d", v, len(ms))
	}
	rec := invocation("f", "new", t0.Add(time.Second))
	if err := s.InsertInvocations(ctx, []stratus.Invocation{rec}); err != nil {
		t.Fatal(err)
	}
	got, err := s.ListInvocations(ctx, "f", InvocationQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]stratus.Invocation{rec, old}, got); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	// Records stored before the migration are not in the minutes: those
	// start with the first batch stored at schema 7.
	mins, err := s.UsageMinutes(ctx, UsageQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(mins) != 1 || mins[0].Requests != 1 {
		t.Errorf("usage minutes %+v, want one of one request", mins)
	}
}

func TestMinuteOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		rec  stratus.Invocation
		want stratus.UsageMinute
	}{
		{
			name: "warm success",
			rec: stratus.Invocation{Function: "f", Start: t0.Add(59*time.Second + 999*time.Millisecond),
				DurationMs: 100, BilledMs: 100, MemoryMB: 1024, Outcome: stratus.OutcomeSuccess,
				CPUMs: 40, Arch: stratus.ArchX86},
			want: stratus.UsageMinute{Kind: KindFunction, Name: "f", Minute: t0, Requests: 1,
				DurationMs: 100, MaxDuration: 100, BilledMs: 100, CPUMs: 40,
				GBSeconds: 0.1, VCPUSeconds: 1024.0 / 1769 * 0.1,
				MemoryMB: 1024, VCPU: 1024.0 / 1769, Arch: stratus.ArchX86},
		},
		{
			name: "cold error",
			rec: stratus.Invocation{Function: "f", Start: t0.Add(time.Minute),
				DurationMs: 250.5, BilledMs: 251, MemoryMB: 1769, InitDurationMs: 300, Cold: true,
				Outcome: stratus.OutcomeError, Arch: stratus.ArchArm},
			want: stratus.UsageMinute{Kind: KindFunction, Name: "f", Minute: t0.Add(time.Minute), Requests: 1,
				Errors: 1, ColdStarts: 1, DurationMs: 250.5, MaxDuration: 250.5, BilledMs: 251, InitMs: 300,
				GBSeconds: 1769.0 / 1024 * 0.251, VCPUSeconds: 0.5505,
				MemoryMB: 1769, VCPU: 1, Arch: stratus.ArchArm},
		},
		{
			name: "timeout, start in another zone",
			rec: stratus.Invocation{Function: "g", Start: t0.Add(90 * time.Second).In(time.FixedZone("X", 5*3600+1800)),
				DurationMs: 3000, BilledMs: 3000, MemoryMB: 128, Outcome: stratus.OutcomeTimeout},
			want: stratus.UsageMinute{Kind: KindFunction, Name: "g", Minute: t0.Add(time.Minute), Requests: 1,
				Errors: 1, DurationMs: 3000, MaxDuration: 3000, BilledMs: 3000,
				GBSeconds: 0.375, VCPUSeconds: 128.0 / 1769 * 3, MemoryMB: 128, VCPU: 128.0 / 1769},
		},
		{
			name: "crash with no start",
			rec:  stratus.Invocation{Function: "h", Outcome: stratus.OutcomeCrash},
			want: stratus.UsageMinute{Kind: KindFunction, Name: "h", Requests: 1, Errors: 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := stratus.MinuteOf(tc.rec)
			if diff := cmp.Diff(tc.want, got, approx); diff != "" {
				t.Errorf("MinuteOf (-want +got):\n%s", diff)
			}
			if got.Minute.Location() != time.UTC {
				t.Errorf("Minute is in %v, want UTC", got.Minute.Location())
			}
		})
	}
}

// Three records of one minute sum to the same minute however they are
// batched: within a batch in Go, across batches in SQL.
func TestUsageMinutesFromRecords(t *testing.T) {
	a := stratus.Invocation{RequestID: "a", Function: "f", Start: t0.Add(5 * time.Second),
		DurationMs: 100, BilledMs: 100, MemoryMB: 1024, Outcome: stratus.OutcomeSuccess, CPUMs: 50, Arch: stratus.ArchX86}
	b := stratus.Invocation{RequestID: "b", Function: "f", Start: t0.Add(20 * time.Second),
		DurationMs: 250.5, BilledMs: 251, MemoryMB: 1024, InitDurationMs: 300, Cold: true,
		Outcome: stratus.OutcomeError, CPUMs: 120, Arch: stratus.ArchX86}
	c := stratus.Invocation{RequestID: "c", Function: "f", Start: t0.Add(59*time.Second + 999*time.Millisecond),
		DurationMs: 10, BilledMs: 10, MemoryMB: 512, Outcome: stratus.OutcomeTimeout, CPUMs: 5, Arch: stratus.ArchArm}
	// Not in f's first minute: the next minute, and another function.
	next := stratus.Invocation{RequestID: "n", Function: "f", Start: t0.Add(time.Minute),
		DurationMs: 1, BilledMs: 1, MemoryMB: 512, Outcome: stratus.OutcomeSuccess, Arch: stratus.ArchArm}
	other := stratus.Invocation{RequestID: "o", Function: "g", Start: t0.Add(30 * time.Second),
		DurationMs: 7, BilledMs: 7, MemoryMB: 128, Outcome: stratus.OutcomeSuccess}

	want := []stratus.UsageMinute{
		{Kind: KindFunction, Name: "f", Minute: t0, Requests: 3, Errors: 2, ColdStarts: 1,
			DurationMs: 360.5, MaxDuration: 250.5, BilledMs: 361, InitMs: 300, CPUMs: 175,
			GBSeconds:   1*0.1 + 1*0.251 + 0.5*0.01,
			VCPUSeconds: 1024.0/1769*0.1 + 1024.0/1769*0.5505 + 512.0/1769*0.01,
			MemoryMB:    512, VCPU: 512.0 / 1769, Arch: stratus.ArchArm},
		{Kind: KindFunction, Name: "f", Minute: t0.Add(time.Minute), Requests: 1, DurationMs: 1, MaxDuration: 1,
			BilledMs: 1, GBSeconds: 0.5 * 0.001, VCPUSeconds: 512.0 / 1769 * 0.001,
			MemoryMB: 512, VCPU: 512.0 / 1769, Arch: stratus.ArchArm},
		{Kind: KindFunction, Name: "g", Minute: t0, Requests: 1, DurationMs: 7, MaxDuration: 7, BilledMs: 7,
			GBSeconds: 0.125 * 0.007, VCPUSeconds: 128.0 / 1769 * 0.007, MemoryMB: 128, VCPU: 128.0 / 1769},
	}
	for _, tc := range []struct {
		name    string
		batches [][]stratus.Invocation
	}{
		{"one batch", [][]stratus.Invocation{{a, other, b, next, c}}},
		{"two batches", [][]stratus.Invocation{{a, b}, {c, next, other}}},
		{"a batch each", [][]stratus.Invocation{{a}, {other}, {b}, {next}, {c}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			s := openTest(t)
			for _, recs := range tc.batches {
				if err := s.InsertInvocations(ctx, recs); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.UsageMinutes(ctx, UsageQuery{})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got, approx); diff != "" {
				t.Errorf("usage minutes (-want +got):\n%s", diff)
			}
		})
	}
}

// A batch of records counts in the minutes only if it is stored: both
// are written in one transaction.
func TestUsageMinutesAtomicWithRecords(t *testing.T) {
	ctx := t.Context()
	s := openTest(t)
	refuse := `CREATE TRIGGER refuse BEFORE INSERT ON usage_minutes
		BEGIN SELECT RAISE(ABORT, 'refused'); END`
	if s.Dialect() == dialectPostgres {
		refuse = `CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$;
			CREATE TRIGGER refuse BEFORE INSERT ON usage_minutes FOR EACH ROW EXECUTE FUNCTION refuse()`
	}
	if _, err := s.w.ExecContext(ctx, refuse); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertInvocations(ctx, []stratus.Invocation{invocation("f", "r", t0)}); err == nil {
		t.Fatal("InsertInvocations succeeded while its minutes were refused")
	}
	if recs, err := s.ListInvocations(ctx, "f", InvocationQuery{}); err != nil || len(recs) != 0 {
		t.Errorf("records %v (%v) after a failed insert, want none", recs, err)
	}
	drop := `DROP TRIGGER refuse`
	if s.Dialect() == dialectPostgres {
		drop = `DROP TRIGGER refuse ON usage_minutes`
	}
	if _, err := s.w.ExecContext(ctx, drop); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertInvocations(ctx, []stratus.Invocation{invocation("f", "r", t0)}); err != nil {
		t.Fatal(err)
	}
	mins, err := s.UsageMinutes(ctx, UsageQuery{Kind: KindFunction, Name: "f"})
	if err != nil || len(mins) != 1 || mins[0].Requests != 1 {
		t.Errorf("usage minutes %+v (%v), want one of one request", mins, err)
	}
}

func TestAddUsageMinutes(t *testing.T) {
	ctx := t.Context()
	s := openTest(t)
	first := stratus.UsageMinute{Kind: KindService, Name: "s", Minute: t0, Requests: 10, Errors: 1,
		DurationMs: 500, MaxDuration: 90, CPUMs: 300, GBSeconds: 30, VCPUSeconds: 60, MaxInFlight: 4,
		Replicas: 0.5, MemoryMB: 512, VCPU: 1, Arch: stratus.ArchX86}
	second := stratus.UsageMinute{Kind: KindService, Name: "s", Minute: t0, Requests: 5,
		DurationMs: 100, MaxDuration: 120, CPUMs: 50, GBSeconds: 15, VCPUSeconds: 30, MaxInFlight: 2,
		Replicas: 0.5, MemoryMB: 1024, VCPU: 2, Arch: stratus.ArchArm}
	third := stratus.UsageMinute{Kind: KindService, Name: "s", Minute: t0, Requests: 1, MaxInFlight: 1,
		Replicas: 1, MemoryMB: 2048, VCPU: 4, Arch: stratus.ArchX86}
	if err := s.AddUsageMinutes(ctx, []stratus.UsageMinute{first}); err != nil {
		t.Fatal(err)
	}
	// A second report of the minute, and a third in the same call; a
	// function of the same name is another workload.
	if err := s.InsertInvocations(ctx, []stratus.Invocation{invocation("s", "r", t0)}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUsageMinutes(ctx, []stratus.UsageMinute{second, third}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUsageMinutes(ctx, nil); err != nil {
		t.Errorf("AddUsageMinutes(nil): %v", err)
	}
	got, err := s.UsageMinutes(ctx, UsageQuery{Kind: KindService})
	if err != nil {
		t.Fatal(err)
	}
	want := []stratus.UsageMinute{{Kind: KindService, Name: "s", Minute: t0, Requests: 16, Errors: 1,
		DurationMs: 600, MaxDuration: 120, CPUMs: 350, GBSeconds: 45, VCPUSeconds: 90, MaxInFlight: 4,
		Replicas: 2, MemoryMB: 2048, VCPU: 4, Arch: stratus.ArchX86}}
	if diff := cmp.Diff(want, got, approx); diff != "" {
		t.Errorf("service minutes (-want +got):\n%s", diff)
	}
	fn, err := s.UsageMinutes(ctx, UsageQuery{Kind: KindFunction, Name: "s"})
	if err != nil || len(fn) != 1 || fn[0].Requests != 1 {
		t.Errorf("function minutes %+v (%v), want one of one request", fn, err)
	}
}

// key names a usage minute in the query tests: kind/name@minutes after t0.
func key(u stratus.UsageMinute) string {
	return fmt.Sprintf("%s/%s@%d", u.Kind, u.Name, int(u.Minute.Sub(t0)/time.Minute))
}

func TestUsageMinutesQuery(t *testing.T) {
	ctx := t.Context()
	s := openTest(t)
	var us []stratus.UsageMinute
	for _, w := range []struct{ kind, name string }{{KindService, "a"}, {KindFunction, "b"}, {KindFunction, "a"}} {
		for m := 2; m >= 0; m-- {
			us = append(us, stratus.UsageMinute{Kind: w.kind, Name: w.name, Minute: t0.Add(time.Duration(m) * time.Minute), Requests: 1})
		}
	}
	if err := s.AddUsageMinutes(ctx, us); err != nil {
		t.Fatal(err)
	}
	all := []string{"function/a@0", "function/a@1", "function/a@2", "function/b@0", "function/b@1", "function/b@2",
		"service/a@0", "service/a@1", "service/a@2"}
	for _, tc := range []struct {
		name string
		q    UsageQuery
		want []string
	}{
		{"all", UsageQuery{}, all},
		{"kind", UsageQuery{Kind: KindService}, all[6:]},
		{"name of both kinds", UsageQuery{Name: "a"}, []string{"function/a@0", "function/a@1", "function/a@2",
			"service/a@0", "service/a@1", "service/a@2"}},
		{"kind and name", UsageQuery{Kind: KindFunction, Name: "b"}, all[3:6]},
		{"unknown name", UsageQuery{Name: "c"}, []string{}},
		{"since is inclusive", UsageQuery{Kind: KindFunction, Name: "a", Since: t0.Add(time.Minute)}, all[1:3]},
		{"until is exclusive", UsageQuery{Kind: KindFunction, Name: "a", Until: t0.Add(2 * time.Minute)}, all[0:2]},
		{"window", UsageQuery{Since: t0.Add(time.Minute), Until: t0.Add(2 * time.Minute)},
			[]string{"function/a@1", "function/b@1", "service/a@1"}},
		{"since mid-minute", UsageQuery{Name: "b", Since: t0.Add(30 * time.Second)}, all[4:6]},
		{"until before everything", UsageQuery{Until: t0}, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.UsageMinutes(ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			keys := []string{}
			for _, u := range got {
				keys = append(keys, key(u))
				if u.Minute.Location() != time.UTC {
					t.Errorf("%s: Minute in %v, want UTC", key(u), u.Minute.Location())
				}
			}
			if diff := cmp.Diff(tc.want, keys); diff != "" {
				t.Errorf("minutes (-want +got):\n%s", diff)
			}
		})
	}
}

func replica(service, id string, start, end time.Duration) stratus.ReplicaUsage {
	return stratus.ReplicaUsage{Service: service, Revision: 3, Replica: id, Start: t0.Add(start), End: t0.Add(end),
		CPU: 0.5, MemoryMB: 512, CPUMs: 1234.5, Requests: 42, Arch: stratus.ArchArm}
}

func TestReplicaUsages(t *testing.T) {
	ctx := t.Context()
	s := openTest(t)
	m := time.Minute
	lives := []stratus.ReplicaUsage{
		replica("s", "r3", 20*m, 30*m),
		replica("s", "r1", 0, 8*m), // reported while it runs, then again at its end
		replica("s", "r2", 5*m, 6*m),
		replica("u", "r1", 0, time.Hour),
	}
	if err := s.InsertReplicaUsages(ctx, lives); err != nil {
		t.Fatal(err)
	}
	ended := replica("s", "r1", 0, 10*m)
	ended.CPUMs, ended.Requests = 2000, 50
	if err := s.InsertReplicaUsages(ctx, []stratus.ReplicaUsage{ended}); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertReplicaUsages(ctx, nil); err != nil {
		t.Errorf("InsertReplicaUsages(nil): %v", err)
	}

	// Every field reads back, and the second report replaced the first.
	got, err := s.ReplicaUsages(ctx, "s", time.Time{}, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]stratus.ReplicaUsage{ended}, got); diff != "" {
		t.Errorf("replica lives (-want +got):\n%s", diff)
	}

	for _, tc := range []struct {
		name         string
		service      string
		since, until time.Duration // after t0; -1 for none
		want         []string
	}{
		{"all of s", "s", -1, -1, []string{"s/r1", "s/r2", "s/r3"}},
		{"all", "", -1, -1, []string{"s/r1", "s/r2", "s/r3", "u/r1"}},
		// r2 ends as the window begins, r3 begins as it ends.
		{"ends and starts are not overlaps", "s", 6 * m, 20 * m, []string{"s/r1"}},
		{"overlaps by a second", "s", 6*m - time.Second, 20*m + time.Second, []string{"s/r1", "s/r2", "s/r3"}},
		{"inside a life", "s", 25 * m, 26 * m, []string{"s/r3"}},
		{"since only", "", 10 * m, -1, []string{"s/r3", "u/r1"}},
		{"until only", "", -1, 5 * m, []string{"s/r1", "u/r1"}},
		{"after everything", "", 2 * time.Hour, -1, []string{}},
		{"unknown service", "v", -1, -1, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var since, until time.Time
			if tc.since >= 0 {
				since = t0.Add(tc.since)
			}
			if tc.until >= 0 {
				until = t0.Add(tc.until)
			}
			got, err := s.ReplicaUsages(ctx, tc.service, since, until)
			if err != nil {
				t.Fatal(err)
			}
			ids := []string{}
			for _, u := range got {
				ids = append(ids, u.Service+"/"+u.Replica)
			}
			if diff := cmp.Diff(tc.want, ids); diff != "" {
				t.Errorf("replica lives (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPruneUsage(t *testing.T) {
	ctx := t.Context()
	s := openTest(t)
	day := 24 * time.Hour
	s.now = func() time.Time { return t0.Add(40 * day) }
	// More old minutes than one of PruneUsage's transactions deletes.
	var us []stratus.UsageMinute
	for i := range pruneUsageRows + 10 {
		us = append(us, stratus.UsageMinute{Kind: KindFunction, Name: fmt.Sprintf("f%05d", i), Minute: t0, Requests: 1})
	}
	kept := stratus.UsageMinute{Kind: KindService, Name: "s", Minute: t0.Add(5*day + time.Minute), Requests: 1}
	us = append(us, kept, stratus.UsageMinute{Kind: KindService, Name: "s", Minute: t0.Add(5*day - time.Minute), Requests: 1})
	if err := s.AddUsageMinutes(ctx, us); err != nil {
		t.Fatal(err)
	}
	lives := []stratus.ReplicaUsage{
		replica("s", "old", 0, time.Hour),
		replica("s", "ended-before", 0, 5*day-time.Second),
		replica("s", "ended-after", 0, 5*day+time.Second), // began long ago; ended within the window
	}
	if err := s.InsertReplicaUsages(ctx, lives); err != nil {
		t.Fatal(err)
	}

	if n, err := s.PruneUsage(ctx, 0); err != nil || n != 0 {
		t.Errorf("PruneUsage with no bound = %d, %v; want 0, nil", n, err)
	}
	n, err := s.PruneUsage(ctx, 35*day)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(pruneUsageRows + 10 + 1 + 2); n != want {
		t.Errorf("PruneUsage deleted %d rows, want %d", n, want)
	}
	mins, err := s.UsageMinutes(ctx, UsageQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]stratus.UsageMinute{kept}, mins); diff != "" {
		t.Errorf("minutes left (-want +got):\n%s", diff)
	}
	left, err := s.ReplicaUsages(ctx, "", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(lives[2:], left); diff != "" {
		t.Errorf("replica lives left (-want +got):\n%s", diff)
	}
	if n, err := s.PruneUsage(ctx, 35*day); err != nil || n != 0 {
		t.Errorf("second PruneUsage = %d, %v; want 0, nil", n, err)
	}
}

// Removing a function or a service leaves its usage: cost history
// outlives the workload.
func TestDeleteKeepsUsage(t *testing.T) {
	ctx := t.Context()
	s := openTest(t)
	if _, err := s.PutVersion(ctx, "f", testConfig(128), "sha", 1); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertInvocations(ctx, []stratus.Invocation{invocation("f", "r", t0)}); err != nil {
		t.Fatal(err)
	}
	if err := putService(ctx, s, "s", 1); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUsageMinutes(ctx, []stratus.UsageMinute{{Kind: KindService, Name: "s", Minute: t0, Requests: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertReplicaUsages(ctx, []stratus.ReplicaUsage{replica("s", "r1", 0, time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteFunction(ctx, "f"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteService(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if recs, err := s.ListInvocations(ctx, "f", InvocationQuery{}); err != nil || len(recs) != 0 {
		t.Errorf("records %v (%v) after DeleteFunction, want none", recs, err)
	}
	mins, err := s.UsageMinutes(ctx, UsageQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, u := range mins {
		keys = append(keys, key(u))
	}
	if diff := cmp.Diff([]string{"function/f@0", "service/s@0"}, keys); diff != "" {
		t.Errorf("minutes after the deletes (-want +got):\n%s", diff)
	}
	if lives, err := s.ReplicaUsages(ctx, "s", time.Time{}, time.Time{}); err != nil || len(lives) != 1 {
		t.Errorf("replica lives %v (%v) after DeleteService, want 1", lives, err)
	}
}
