package store

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
)

func TestNodeHeartbeats(t *testing.T) {
	ctx := t.Context()
	s := openTest(t)
	clk := withLeaseClock(s)
	started := clk.Now().Add(-time.Minute)

	b := Node{Name: "b", Address: "http://127.0.0.1:8082", Region: "eu", Version: "v1",
		StartedAt: started, Instances: 3, Replicas: 1, State: "ready", Incarnation: "b1"}
	a := Node{Name: "a", Address: "http://127.0.0.1:8081", Region: "eu", Version: "v1",
		StartedAt: started, HeartbeatAt: clk.Now().Add(-time.Second), State: "unready: store: no space", Incarnation: "a1"}
	for _, n := range []Node{b, a} {
		if err := s.Heartbeat(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	b.HeartbeatAt = clk.Now() // a zero HeartbeatAt is the store's now
	got, err := s.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Node{a, b}, got); diff != "" {
		t.Errorf("Nodes (-want +got):\n%s", diff)
	}

	// A later heartbeat replaces the row.
	clk.Step(2 * time.Second)
	b2 := b
	b2.HeartbeatAt, b2.Instances, b2.State = time.Time{}, 5, "stopping"
	if err := s.Heartbeat(ctx, b2); err != nil {
		t.Fatal(err)
	}
	b2.HeartbeatAt = clk.Now()
	if got, err = s.Nodes(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Node{a, b2}, got); diff != "" {
		t.Errorf("Nodes after a second heartbeat (-want +got):\n%s", diff)
	}

	// Another incarnation under b's name is refused, and changes nothing;
	// it may claim the row only as it read it (b1 died at that heartbeat).
	b3 := b2
	b3.Incarnation, b3.HeartbeatAt, b3.State = "b2", time.Time{}, "ready"
	if err := s.Heartbeat(ctx, b3); !errors.Is(err, stratus.ErrConflict) {
		t.Errorf("a heartbeat of another incarnation: %v, want ErrConflict", err)
	}
	stale := b
	if err := s.ClaimNode(ctx, b3, stale); !errors.Is(err, stratus.ErrConflict) {
		t.Errorf("a claim of a row that changed since it was read: %v, want ErrConflict", err)
	}
	if got, err = s.Nodes(ctx); err != nil || got[1] != b2 {
		t.Errorf("b after refused writes: %+v, %v; want %+v", got, err, b2)
	}
	if err := s.ClaimNode(ctx, b3, b2); err != nil {
		t.Fatalf("claim of the row as read: %v", err)
	}
	if err := s.Heartbeat(ctx, b2); !errors.Is(err, stratus.ErrConflict) {
		t.Errorf("the old incarnation's heartbeat after the claim: %v, want ErrConflict", err)
	}
	if err := s.Heartbeat(ctx, b3); err != nil {
		t.Errorf("the new incarnation's heartbeat: %v", err)
	}
	// The old incarnation's delete leaves the new one's row.
	if err := s.DeleteNode(ctx, "b", "b1"); err != nil {
		t.Fatal(err)
	}
	if got, err = s.Nodes(ctx); err != nil || len(got) != 2 || got[1].Incarnation != "b2" {
		t.Errorf("after the old incarnation's delete: %+v, %v", got, err)
	}

	// Deleted: gone; again is no error.
	for range 2 {
		if err := s.DeleteNode(ctx, "a", "a1"); err != nil {
			t.Fatal(err)
		}
	}
	if got, err = s.Nodes(ctx); err != nil || len(got) != 1 || got[0].Name != "b" {
		t.Errorf("Nodes after deleting a: %+v, %v", got, err)
	}

	if err := s.Heartbeat(ctx, Node{}); !errors.Is(err, stratus.ErrInvalid) {
		t.Errorf("a heartbeat without a name: %v, want ErrInvalid", err)
	}
}
