package store

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
)

// A service's split is stored with it, survives new revisions and a
// reopen, and a split that is not valid or pins an unknown revision
// changes nothing.
func TestTraffic(t *testing.T) {
	ctx := t.Context()
	s := openTest(t)
	for n := 1; n <= 2; n++ {
		if err := putService(ctx, s, "web", n); err != nil {
			t.Fatal(err)
		}
	}
	svc, err := s.GetService(ctx, "web")
	if err != nil || svc.Traffic != nil || svc.Revision != 2 {
		t.Fatalf("a service without a split: %+v, %v", svc, err)
	}

	split := []stratus.TrafficTarget{{Revision: 1, Percent: 90}, {Latest: true, Percent: 10, Tag: "canary"}}
	svc, err = s.SetTraffic(ctx, "web", split)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(split, svc.Traffic); diff != "" || svc.Revision != 2 {
		t.Errorf("SetTraffic returned revision %d, traffic (-want +got):\n%s", svc.Revision, diff)
	}

	// Refused, and nothing changes.
	for _, tc := range []struct {
		name  string
		svc   string
		split []stratus.TrafficTarget
		kind  error
	}{
		{"unknown revision", "web", []stratus.TrafficTarget{{Revision: 9, Percent: 100}}, stratus.ErrNotFound},
		{"sum 90", "web", []stratus.TrafficTarget{{Revision: 1, Percent: 90}}, stratus.ErrInvalid},
		{"bad tag", "web", []stratus.TrafficTarget{{Revision: 1, Percent: 100, Tag: "Bad_Tag"}}, stratus.ErrInvalid},
		{"unknown service", "api", []stratus.TrafficTarget{{Latest: true, Percent: 100}}, stratus.ErrNotFound},
	} {
		if _, err := s.SetTraffic(ctx, tc.svc, tc.split); !errors.Is(err, tc.kind) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.kind)
		}
	}

	// A new revision keeps the split; the revisions stay readable.
	if err := putService(ctx, s, "web", 3); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s)
	list, err := s.ListServices(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("ListServices after a reopen: %v, %v", list, err)
	}
	if diff := cmp.Diff(split, list[0].Traffic); diff != "" || list[0].Revision != 3 {
		t.Errorf("after a new revision and a reopen: revision %d, traffic (-want +got):\n%s", list[0].Revision, diff)
	}
	rev, err := s.GetRevision(ctx, "web", 1)
	if err != nil || rev.Number != 1 || rev.Digest != "sha256:app" || rev.Config.Image != "app" || rev.CreatedAt.IsZero() {
		t.Errorf("GetRevision 1: %+v, %v", rev, err)
	}
	if _, err := s.GetRevision(ctx, "web", 4); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("GetRevision 4: %v, want not found", err)
	}

	// An empty split: none again.
	if svc, err = s.SetTraffic(ctx, "web", nil); err != nil || svc.Traffic != nil {
		t.Errorf("clear the split: %+v, %v", svc, err)
	}
}
