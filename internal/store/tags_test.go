package store

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stratus-run/stratus"
)

// Tags merge, stay within the bound as a whole or not at all, are
// removed by key and go with their function.
func TestFunctionTags(t *testing.T) {
	ctx := t.Context()
	s := openTest(t)
	if err := s.TagFunction(ctx, "none", map[string]string{"a": "1"}, 50); !errors.Is(err, stratus.ErrNotFound) {
		t.Fatalf("tag a missing function: %v, want ErrNotFound", err)
	}
	if _, err := s.FunctionTags(ctx, "none"); !errors.Is(err, stratus.ErrNotFound) {
		t.Fatalf("tags of a missing function: %v, want ErrNotFound", err)
	}
	if err := s.UntagFunction(ctx, "none", []string{"a"}); !errors.Is(err, stratus.ErrNotFound) {
		t.Fatalf("untag a missing function: %v, want ErrNotFound", err)
	}
	if _, err := s.PutVersion(ctx, "fn", testConfig(128), "sha", 1); err != nil {
		t.Fatal(err)
	}
	want := func(w map[string]string) {
		t.Helper()
		got, err := s.FunctionTags(ctx, "fn")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(w, got); diff != "" {
			t.Errorf("tags (-want +got):\n%s", diff)
		}
	}
	want(map[string]string{})
	if err := s.TagFunction(ctx, "fn", map[string]string{"team": "a", "env": ""}, 3); err != nil {
		t.Fatal(err)
	}
	if err := s.TagFunction(ctx, "fn", map[string]string{"team": "b"}, 3); err != nil {
		t.Fatal(err)
	}
	want(map[string]string{"team": "b", "env": ""})
	// Over the bound: nothing of it is kept.
	err := s.TagFunction(ctx, "fn", map[string]string{"x": "1", "y": "2", "team": "c"}, 3)
	if !errors.Is(err, stratus.ErrInvalid) {
		t.Fatalf("over the bound: %v, want ErrInvalid", err)
	}
	want(map[string]string{"team": "b", "env": ""})
	if err := s.UntagFunction(ctx, "fn", []string{"env", "never"}); err != nil {
		t.Fatal(err)
	}
	want(map[string]string{"team": "b"})
	many := map[string]string{}
	for i := range 49 {
		many[fmt.Sprint("k", i)] = "v"
	}
	if err := s.TagFunction(ctx, "fn", many, 50); err != nil {
		t.Fatalf("50 tags: %v", err)
	}
	if err := s.DeleteFunction(ctx, "fn"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM function_tags`).Scan(&n); err != nil || n != 0 {
		t.Errorf("after the function's removal %d tag rows (%v), want 0", n, err)
	}
}
