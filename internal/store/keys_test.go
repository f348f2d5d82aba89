package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
)

func TestAccessKeys(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	a := AccessKey{ID: "STRAAAAAAAAAAAAAAAAA", Sealed: []byte{1, 2, 3}, Description: "ci", CreatedAt: t0}
	b := AccessKey{ID: "STRABBBBBBBBBBBBBBBB", Sealed: []byte{4}, CreatedAt: t0.Add(time.Second)}
	for _, k := range []AccessKey{b, a} {
		if err := s.CreateAccessKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateAccessKey(ctx, a); !errors.Is(err, stratus.ErrConflict) {
		t.Fatalf("a second key of one ID: got %v, want ErrConflict", err)
	}
	got, err := s.GetAccessKey(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&a, got); diff != "" {
		t.Errorf("GetAccessKey (-want +got):\n%s", diff)
	}

	used := t0.Add(time.Hour)
	if err := s.TouchAccessKey(ctx, a.ID, used); err != nil {
		t.Fatal(err)
	}
	if err := s.TouchAccessKey(ctx, a.ID, used.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.TouchAccessKey(ctx, "STRANOSUCHKEY0000000", used); err != nil {
		t.Fatalf("touching a key that is gone: %v", err)
	}
	list, err := s.ListAccessKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a.Sealed, b.Sealed, a.LastUsedAt = nil, nil, used
	if diff := cmp.Diff([]AccessKey{a, b}, list); diff != "" {
		t.Errorf("ListAccessKeys (-want +got):\n%s", diff)
	}

	if err := s.DeleteAccessKey(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAccessKey(ctx, a.ID); !errors.Is(err, stratus.ErrNotFound) {
		t.Fatalf("deleting twice: got %v, want ErrNotFound", err)
	}
	if _, err := s.GetAccessKey(ctx, a.ID); !errors.Is(err, stratus.ErrNotFound) {
		t.Fatalf("get after delete: got %v, want ErrNotFound", err)
	}
}
