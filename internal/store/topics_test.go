package store

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stratus-run/stratus"
)

func TestTopicsCreateListDelete(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	for _, name := range []string{"orders", "audit"} {
		if err := s.CreateTopic(ctx, stratus.Topic{Name: name}); err != nil {
			t.Fatalf("CreateTopic(%s): %v", name, err)
		}
	}
	if err := s.CreateTopic(ctx, stratus.Topic{Name: "orders"}); !errors.Is(err, stratus.ErrConflict) {
		t.Errorf("CreateTopic of an existing name: %v, want ErrConflict", err)
	}
	list, err := s.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "audit" || list[1].Name != "orders" || list[0].CreatedAt.IsZero() {
		t.Fatalf("ListTopics = %+v, want audit and orders with creation times", list)
	}
	got, err := s.GetTopic(ctx, "orders")
	if err != nil || !cmp.Equal(*got, list[1]) {
		t.Errorf("GetTopic(orders) = %+v, %v; want %+v", got, err, list[1])
	}
	if _, err := s.GetTopic(ctx, "nope"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("GetTopic(nope): %v, want ErrNotFound", err)
	}
	if _, err := s.DeleteTopic(ctx, "nope"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("DeleteTopic(nope): %v, want ErrNotFound", err)
	}
	if _, err := s.DeleteTopic(ctx, "audit"); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.ListTopics(ctx); len(list) != 1 || list[0].Name != "orders" {
		t.Errorf("after delete ListTopics = %+v, want orders only", list)
	}
}

func TestSubscriptions(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	for _, name := range []string{"a", "b"} {
		if err := s.CreateTopic(ctx, stratus.Topic{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	subs := []stratus.Subscription{
		{ID: "s1", Topic: "a", Function: "fn", Filter: "type=x", Batch: 1},
		{ID: "s2", Topic: "a", URL: "http://127.0.0.1:1/hook", Batch: 1},
		{ID: "s3", Topic: "b", Function: "fn", Filter: "source-prefix=/x", Batch: 10},
	}
	for _, sub := range subs {
		if err := s.AddSubscription(ctx, sub); err != nil {
			t.Fatalf("AddSubscription(%s): %v", sub.ID, err)
		}
	}
	if err := s.AddSubscription(ctx, stratus.Subscription{ID: "s9", Topic: "nope", Function: "fn", Batch: 1}); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("AddSubscription to an unknown topic: %v, want ErrNotFound", err)
	}
	if err := s.AddSubscription(ctx, subs[0]); !errors.Is(err, stratus.ErrConflict) {
		t.Errorf("AddSubscription of a taken ID: %v, want ErrConflict", err)
	}
	ids := func(l []stratus.Subscription) []string {
		var out []string
		for _, s := range l {
			if s.CreatedAt.IsZero() {
				t.Errorf("subscription %s has no creation time", s.ID)
			}
			out = append(out, s.ID)
		}
		return out
	}
	all, err := s.ListSubscriptions(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"s1", "s2", "s3"}, ids(all)); diff != "" {
		t.Errorf("all subscriptions (-want +got):\n%s", diff)
	}
	want := subs[2]
	want.CreatedAt = all[2].CreatedAt
	if diff := cmp.Diff(want, all[2]); diff != "" {
		t.Errorf("stored subscription (-want +got):\n%s", diff)
	}
	ofA, err := s.ListSubscriptions(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"s1", "s2"}, ids(ofA)); diff != "" {
		t.Errorf("subscriptions of a (-want +got):\n%s", diff)
	}
	if _, err := s.ListSubscriptions(ctx, "nope"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("ListSubscriptions(nope): %v, want ErrNotFound", err)
	}

	del, err := s.DeleteSubscription(ctx, "s2")
	if err != nil || del.ID != "s2" || del.URL != subs[1].URL {
		t.Errorf("DeleteSubscription(s2) = %+v, %v", del, err)
	}
	if _, err := s.DeleteSubscription(ctx, "s2"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("second DeleteSubscription(s2): %v, want ErrNotFound", err)
	}

	// Deleting a topic takes its subscriptions with it and returns them.
	gone, err := s.DeleteTopic(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"s1"}, ids(gone)); diff != "" {
		t.Errorf("DeleteTopic returned (-want +got):\n%s", diff)
	}
	all, _ = s.ListSubscriptions(ctx, "")
	if diff := cmp.Diff([]string{"s3"}, ids(all)); diff != "" {
		t.Errorf("after deleting topic a (-want +got):\n%s", diff)
	}
}
