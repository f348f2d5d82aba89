package functions

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stratus-run/stratus"
)

func TestValidTags(t *testing.T) {
	for _, tc := range []struct {
		tags map[string]string
		ok   bool
	}{
		{map[string]string{"team": "a", "empty": ""}, true},
		{map[string]string{strings.Repeat("k", 128): strings.Repeat("é", 256)}, true},
		{map[string]string{"": "v"}, false},
		{map[string]string{strings.Repeat("k", 129): "v"}, false},
		{map[string]string{"k": strings.Repeat("v", 257)}, false},
		{map[string]string{"aws:cloudformation": "v"}, false},
		{map[string]string{"AWS:x": "v"}, false},
		{map[string]string{"k": "\xff"}, false},
	} {
		err := ValidTags(tc.tags)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, stratus.ErrInvalid)) {
			t.Errorf("ValidTags(%q) = %v, want ok %v", tc.tags, err, tc.ok)
		}
	}
}

func TestTagFunction(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	s := e.open(t)
	if err := s.TagFunction(ctx, "none", map[string]string{"a": "1"}); !errors.Is(err, stratus.ErrNotFound) {
		t.Fatalf("tag a missing function: %v, want ErrNotFound", err)
	}
	deploy(t, s, "fn", codeZip(t, "hi"))
	if err := s.TagFunction(ctx, "fn", map[string]string{"team": "a", "aws:x": "b"}); !errors.Is(err, stratus.ErrInvalid) {
		t.Fatalf("reserved key: %v, want ErrInvalid", err)
	}
	if err := s.TagFunction(ctx, "fn", map[string]string{"team": "a", "env": "prod"}); err != nil {
		t.Fatal(err)
	}
	if err := s.UntagFunction(ctx, "fn", []string{"env"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.FunctionTags(ctx, "fn")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"team": "a"}, got); diff != "" {
		t.Errorf("tags (-want +got):\n%s", diff)
	}
	if err := s.Remove(ctx, "fn"); err != nil {
		t.Fatal(err)
	}
	deploy(t, s, "fn", codeZip(t, "hi"))
	if got, err := s.FunctionTags(ctx, "fn"); err != nil || len(got) != 0 {
		t.Errorf("a new function of the name has tags %v (%v)", got, err)
	}
}
