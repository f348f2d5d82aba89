package store

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stratus-run/stratus"
)

// A function's URL configuration: created once, replaced keeping its
// creation time, removed, and gone with its function.
func TestFunctionURL(t *testing.T) {
	ctx := t.Context()
	s := openTest(t)
	if _, err := s.PutFunctionURL(ctx, FunctionURL{Function: "none", InvokeMode: "BUFFERED"}, true); !errors.Is(err, stratus.ErrNotFound) {
		t.Fatalf("URL of a missing function: %v, want ErrNotFound", err)
	}
	if _, err := s.PutVersion(ctx, "fn", testConfig(128), "sha", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetFunctionURL(ctx, "fn"); !errors.Is(err, stratus.ErrNotFound) {
		t.Fatalf("no URL yet: %v, want ErrNotFound", err)
	}
	if _, err := s.PutFunctionURL(ctx, FunctionURL{Function: "fn", InvokeMode: "BUFFERED"}, false); !errors.Is(err, stratus.ErrNotFound) {
		t.Fatalf("update a missing URL: %v, want ErrNotFound", err)
	}
	made, err := s.PutFunctionURL(ctx, FunctionURL{Function: "fn", Cors: `{"AllowOrigins":["*"]}`, InvokeMode: "BUFFERED"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if made.CreatedAt.IsZero() || !made.CreatedAt.Equal(made.UpdatedAt) {
		t.Errorf("created %v, updated %v", made.CreatedAt, made.UpdatedAt)
	}
	if _, err := s.PutFunctionURL(ctx, FunctionURL{Function: "fn", InvokeMode: "BUFFERED"}, true); !errors.Is(err, stratus.ErrConflict) {
		t.Fatalf("second create: %v, want ErrConflict", err)
	}
	got, err := s.GetFunctionURL(ctx, "fn")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(made, got); diff != "" {
		t.Errorf("read back (-made +got):\n%s", diff)
	}
	upd, err := s.PutFunctionURL(ctx, FunctionURL{Function: "fn", InvokeMode: "BUFFERED"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if !upd.CreatedAt.Equal(made.CreatedAt) || !upd.UpdatedAt.After(made.UpdatedAt) || upd.Cors != "" {
		t.Errorf("updated %+v after %+v", upd, made)
	}
	if err := s.DeleteFunctionURL(ctx, "fn"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteFunctionURL(ctx, "fn"); !errors.Is(err, stratus.ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
	if _, err := s.PutFunctionURL(ctx, FunctionURL{Function: "fn", InvokeMode: "BUFFERED"}, true); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteFunction(ctx, "fn"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM function_urls`).Scan(&n); err != nil || n != 0 {
		t.Errorf("after the function's removal %d URL rows (%v), want 0", n, err)
	}
	// A function made again under the name has no URL.
	if _, err := s.PutVersion(ctx, "fn", testConfig(128), "sha", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetFunctionURL(ctx, "fn"); !errors.Is(err, stratus.ErrNotFound) {
		t.Fatalf("URL of a new function of the name: %v, want ErrNotFound", err)
	}
}
