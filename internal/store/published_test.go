package store

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
)

func numbers(vs []stratus.Version) []int {
	var out []int
	for _, v := range vs {
		out = append(out, v.Number)
	}
	return out
}

// Publishing numbers versions 1, 2, ... per function; publishing an
// unchanged head returns the newest version; a deleted number is never
// given again; published snapshots survive pruning.
func TestPublishNumbering(t *testing.T) {
	ctx := t.Context()
	s := openTest(t)
	if _, err := s.PublishVersion(ctx, "none", ""); !errors.Is(err, stratus.ErrNotFound) {
		t.Fatalf("publish a missing function: %v, want ErrNotFound", err)
	}
	put := func(sha string, mem int) {
		t.Helper()
		if _, err := s.PutVersion(ctx, "fn", testConfig(mem), sha, 1); err != nil {
			t.Fatal(err)
		}
	}
	publish := func(desc string, want int) *stratus.Version {
		t.Helper()
		v, err := s.PublishVersion(ctx, "fn", desc)
		if err != nil {
			t.Fatal(err)
		}
		if v.Number != want || v.Qualifier != strconv.Itoa(want) {
			t.Fatalf("published %d (qualifier %q), want %d", v.Number, v.Qualifier, want)
		}
		return v
	}
	put("a", 128)
	v1 := publish("first", 1)
	if v1.Description != "first" || v1.CodeSHA != "a" || v1.Version != 1 {
		t.Errorf("version 1: %+v", v1)
	}
	publish("again", 1) // the head is version 1
	put("a", 128)       // a new snapshot, same code and configuration
	publish("same", 1)
	put("a", 256) // configuration changed
	publish("", 2)
	put("b", 256)
	publish("", 3)
	if f, err := s.GetFunction(ctx, "fn"); err != nil || f.Published != 3 || f.Version != 4 {
		t.Errorf("function: %+v, %v; want head snapshot 4, published 3", f, err)
	}
	// Pruning leaves published versions alone.
	if n, err := s.DeleteVersions(ctx, "fn", []int{1, 2, 3, 4}); err != nil || n != 1 {
		t.Errorf("DeleteVersions removed %d (%v), want 1 (snapshot 2, never published)", n, err)
	}
	vs, err := s.ListPublished(ctx, "fn")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{1, 2, 3}, numbers(vs)); diff != "" {
		t.Errorf("published (-want +got):\n%s", diff)
	}
	// Deleting the newest version (the head's snapshot) keeps $LATEST and
	// never gives its number again.
	if _, err := s.DeleteVersion(ctx, "fn", 3); err != nil {
		t.Fatal(err)
	}
	if f, err := s.GetFunction(ctx, "fn"); err != nil || f.Version != 4 || f.CodeSHA != "b" || f.Published != 2 {
		t.Errorf("function after deleting version 3: %+v, %v", f, err)
	}
	publish("", 4)
	if _, err := s.DeleteVersion(ctx, "fn", 3); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("delete a deleted version: %v, want ErrNotFound", err)
	}
	if _, err := s.GetPublished(ctx, "fn", 3); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("get a deleted version: %v, want ErrNotFound", err)
	}
	if v, err := s.GetPublished(ctx, "fn", 4); err != nil || v.CodeSHA != "b" {
		t.Errorf("version 4: %+v, %v", v, err)
	}
	// Another function counts from 1; every version of every function.
	if _, err := s.PutVersion(ctx, "other", testConfig(128), "c", 1); err != nil {
		t.Fatal(err)
	}
	if v, err := s.PublishVersion(ctx, "other", ""); err != nil || v.Number != 1 {
		t.Errorf("other's first version: %+v, %v", v, err)
	}
	all, err := s.AllPublished(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{1, 2, 4, 1}, numbers(all)); diff != "" {
		t.Errorf("all published (-want +got):\n%s", diff)
	}
	if err := s.DeleteFunction(ctx, "fn"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ListPublished(ctx, "fn"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("versions of a deleted function: %v, want ErrNotFound", err)
	}
}

func TestAliases(t *testing.T) {
	ctx := t.Context()
	s := openTest(t)
	for _, sha := range []string{"a", "b"} {
		if _, err := s.PutVersion(ctx, "fn", testConfig(128), sha, 1); err != nil {
			t.Fatal(err)
		}
		if _, err := s.PublishVersion(ctx, "fn", ""); err != nil {
			t.Fatal(err)
		}
	}
	live := stratus.Alias{Function: "fn", Name: "live", Version: "1", Weights: map[string]float64{"2": 0.25}, RevisionID: "r1"}
	for _, c := range []struct {
		what   string
		a      stratus.Alias
		create bool
		rev    string
		want   error
		in     string
	}{
		{"missing function", stratus.Alias{Function: "nope", Name: "x", Version: "1", RevisionID: "r"}, true, "", stratus.ErrNotFound, "nope"},
		{"missing version", stratus.Alias{Function: "fn", Name: "x", Version: "7", RevisionID: "r"}, true, "", stratus.ErrNotFound, "version 7"},
		{"missing weighed version", stratus.Alias{Function: "fn", Name: "x", Version: "1", Weights: map[string]float64{"9": 0.5}, RevisionID: "r"}, true, "", stratus.ErrNotFound, "version 9"},
		{"update a missing alias", stratus.Alias{Function: "fn", Name: "x", Version: "1", RevisionID: "r"}, false, "", stratus.ErrNotFound, "x"},
		{"create", live, true, "", nil, ""},
		{"create again", live, true, "", stratus.ErrConflict, "exists"},
		{"update, stale revision", stratus.Alias{Function: "fn", Name: "live", Version: "2", RevisionID: "r2"}, false, "old", stratus.ErrConflict, "precondition"},
		{"update", stratus.Alias{Function: "fn", Name: "live", Version: "2", Description: "d", RevisionID: "r2"}, false, "r1", nil, ""},
		{"latest", stratus.Alias{Function: "fn", Name: "dev", Version: stratus.LatestVersion, RevisionID: "r3"}, true, "", nil, ""},
	} {
		err := s.PutAlias(ctx, c.a, c.create, c.rev)
		if !errors.Is(err, c.want) || (c.want != nil && !strings.Contains(err.Error(), c.in)) {
			t.Errorf("%s: %v, want %v naming %q", c.what, err, c.want, c.in)
		}
	}
	got, err := s.ListAliases(ctx, "fn")
	if err != nil {
		t.Fatal(err)
	}
	want := []stratus.Alias{
		{Function: "fn", Name: "dev", Version: stratus.LatestVersion, RevisionID: "r3"},
		{Function: "fn", Name: "live", Version: "2", Description: "d", RevisionID: "r2"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("aliases (-want +got):\n%s", diff)
	}
	// A version an alias names cannot go; one it no longer names can.
	if err := s.PutAlias(ctx, stratus.Alias{Function: "fn", Name: "canary", Version: "2", Weights: map[string]float64{"1": 0.1}, RevisionID: "r4"}, true, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteVersion(ctx, "fn", 1); !errors.Is(err, stratus.ErrConflict) || !strings.Contains(err.Error(), `"canary"`) {
		t.Errorf("delete a weighed version: %v, want a conflict naming canary", err)
	}
	if _, err := s.DeleteVersion(ctx, "fn", 2); !errors.Is(err, stratus.ErrConflict) {
		t.Errorf("delete an aliased version: %v, want a conflict", err)
	}
	if err := s.DeleteAlias(ctx, "fn", "canary"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAlias(ctx, "fn", "canary"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("delete a deleted alias: %v, want ErrNotFound", err)
	}
	if _, err := s.DeleteVersion(ctx, "fn", 1); err != nil {
		t.Errorf("delete a version no alias names: %v", err)
	}
	if a, err := s.GetAlias(ctx, "fn", "live"); err != nil || a.Version != "2" {
		t.Errorf("GetAlias: %+v, %v", a, err)
	}
	if all, err := s.AllAliases(ctx); err != nil || len(all) != 2 {
		t.Errorf("AllAliases: %v, %v", all, err)
	}
	if err := s.DeleteFunction(ctx, "fn"); err != nil {
		t.Fatal(err)
	}
	if all, err := s.AllAliases(ctx); err != nil || len(all) != 0 {
		t.Errorf("aliases after the function went: %v, %v", all, err)
	}
	if _, err := s.ListAliases(ctx, "fn"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("aliases of a deleted function: %v", err)
	}
}

// A data dir at schema 7 opens: its functions have no published version,
// their records no qualifier, and both work afterwards.
func TestMigrationFrom7(t *testing.T) {
	ctx := t.Context()
	db, path := createAtVersion(t, 7)
	for _, q := range []string{
		`INSERT INTO functions (name, head, created_at, updated_at) VALUES ('f', 2, 1, 2)`,
		`INSERT INTO versions (function, version, config, code_sha, code_size, created_at) VALUES ('f', 1, '{"runtime":"provided"}', 'a', 1, 1)`,
		`INSERT INTO versions (function, version, config, code_sha, code_size, created_at) VALUES ('f', 2, '{"runtime":"provided"}', 'b', 1, 2)`,
		`INSERT INTO names (name, kind) VALUES ('f', 'function')`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO invocations (function, request_id, version, start,
		duration_ms, billed_ms, memory_mb, max_memory_mb, init_duration_ms, cold, outcome, error_type, instance)
		VALUES ('f', 'old', 2, ?, 3, 3, 128, 40, 0, 0, 'success', '', 'i-0')`, t0.UnixNano()); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s := openAt(t, path)
	f, err := s.GetFunction(ctx, "f")
	if err != nil || f.Version != 2 || f.Published != 0 || f.CodeSHA != "b" {
		t.Fatalf("function: %+v, %v", f, err)
	}
	if vs, err := s.ListPublished(ctx, "f"); err != nil || len(vs) != 0 {
		t.Errorf("published: %v, %v", vs, err)
	}
	v, err := s.PublishVersion(ctx, "f", "")
	if err != nil || v.Number != 1 || v.Version != 2 {
		t.Errorf("publish: %+v, %v", v, err)
	}
	rec := invocation("f", "new", t0.Add(1e9))
	rec.Qualifier = "1"
	if err := s.InsertInvocations(ctx, []stratus.Invocation{rec}); err != nil {
		t.Fatal(err)
	}
	recs, err := s.ListInvocations(ctx, "f", InvocationQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Qualifier != "1" || recs[1].Qualifier != "" || recs[1].RequestID != "old" {
		t.Errorf("records: %+v", recs)
	}
}
