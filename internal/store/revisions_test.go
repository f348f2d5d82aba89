package store

import (
	"errors"
	"testing"

	"github.com/stratus-run/stratus"
)

func TestListRevisions(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	for n := 1; n <= 3; n++ {
		if err := putService(ctx, s, "web", n); err != nil {
			t.Fatal(err)
		}
	}
	if err := putService(ctx, s, "other", 1); err != nil {
		t.Fatal(err)
	}
	revs, err := s.ListRevisions(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, r := range revs {
		if r.Service != "web" || r.Config.Image != "app" || r.Digest != "sha256:app" || r.CreatedAt.IsZero() {
			t.Errorf("revision %+v", r)
		}
		got = append(got, r.Number)
	}
	if len(got) != 3 || got[0] != 3 || got[1] != 2 || got[2] != 1 {
		t.Errorf("revisions %v, want 3 2 1 (newest first)", got)
	}
	if _, err := s.ListRevisions(ctx, "nope"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("unknown service: %v, want ErrNotFound", err)
	}
}
