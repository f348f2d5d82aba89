package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
)

// Old versions go with DeleteVersions; the head stays whatever is asked,
// and the code of the versions left is what CodeInUse reports.
func TestListAndDeleteVersions(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
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

// Function-level settings (concurrency, throttle, URL auth, event-invoke
// configuration) are not a version's: a head that changed only them
// publishes nothing new; one whose version settings changed does.
func TestPublishIgnoresFunctionLevelSettings(t *testing.T) {
	ctx := t.Context()
	s := openTest(t)
	put := func(mod func(c *stratus.FunctionConfig)) {
		t.Helper()
		c := testConfig(128)
		mod(&c)
		if _, err := s.PutVersion(ctx, "fn", c, "a", 1); err != nil {
			t.Fatal(err)
		}
	}
	publish := func(what string, want int) {
		t.Helper()
		v, err := s.PublishVersion(ctx, "fn", "")
		if err != nil {
			t.Fatal(err)
		}
		if v.Number != want {
			t.Errorf("publish after %s: version %d, want %d", what, v.Number, want)
		}
	}
	put(func(c *stratus.FunctionConfig) {})
	publish("the first deploy", 1)
	retries := 0
	put(func(c *stratus.FunctionConfig) {
		c.MaxConcurrency = 7
		c.Throttled = true
		c.Auth = stratus.AuthSigned
		c.MaxRetries = &retries
		c.MaxEventAge = stratus.Duration(time.Minute)
		c.OnSuccess = "topic:done"
		c.OnFailure = "function:dlq"
	})
	publish("function-level changes", 1)
	put(func(c *stratus.FunctionConfig) { c.Env = map[string]string{"K": "v"} })
	publish("a new environment", 2)
}
