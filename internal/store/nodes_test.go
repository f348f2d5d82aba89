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
		StartedAt: started, Instances: 3, Replicas: 1, State: "ready"}
	a := Node{Name: "a", Address: "http://127.0.0.1:8081", Region: "eu", Version: "v1",
		StartedAt: started, HeartbeatAt: clk.Now().Add(-time.Second), State: "unready: store: no space"}
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

	// Deleted: gone; again is no error.
	for range 2 {
		if err := s.DeleteNode(ctx, "a"); err != nil {
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
