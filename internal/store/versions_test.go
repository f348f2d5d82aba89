package store

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
)

// Old versions go with DeleteVersions; the head stays whatever is asked,
// and the code of the versions left is what CodeInUse reports.
func TestListAndDeleteVersions(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	if _, err := s.ListVersions(ctx, "none"); !errors.Is(err, stratus.ErrNotFound) {
		t.Fatalf("ListVersions of a missing function: %v, want ErrNotFound", err)
	}
	for _, sha := range []string{"a", "b", "a", "c", "d"} {
		if _, err := s.PutVersion(ctx, "fn", testConfig(128), sha, 1); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.PutVersion(ctx, "other", testConfig(128), "b", 1); err != nil {
		t.Fatal(err)
	}
	numbers := func() []int {
		vs, err := s.ListVersions(ctx, "fn")
		if err != nil {
			t.Fatal(err)
		}
		var out []int
		for _, v := range vs {
			out = append(out, v.Version)
		}
		return out
	}
	if diff := cmp.Diff([]int{5, 4, 3, 2, 1}, numbers()); diff != "" {
		t.Fatalf("versions (-want +got):\n%s", diff)
	}
	n, err := s.DeleteVersions(ctx, "fn", []int{1, 2, 5, 42})
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("DeleteVersions removed %d, want 2 (the head 5 and the missing 42 are not removed)", n)
	}
	if diff := cmp.Diff([]int{5, 4, 3}, numbers()); diff != "" {
		t.Errorf("versions after delete (-want +got):\n%s", diff)
	}
	f, err := s.GetFunction(ctx, "fn")
	if err != nil || f.Version != 5 || f.CodeSHA != "d" {
		t.Errorf("head after delete: %+v, %v", f, err)
	}
	code, err := s.CodeInUse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// "a" is still named by version 3, "b" by the other function.
	if diff := cmp.Diff(map[string]bool{"a": true, "b": true, "c": true, "d": true}, code); diff != "" {
		t.Errorf("CodeInUse (-want +got):\n%s", diff)
	}
	if _, err := s.DeleteVersions(ctx, "fn", []int{3}); err != nil {
		t.Fatal(err)
	}
	code, _ = s.CodeInUse(ctx)
	if code["a"] {
		t.Errorf("code a is still in use after its last version went: %v", code)
	}
}
