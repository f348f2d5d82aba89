package client_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/client"
	"github.com/stratus-run/stratus/internal/apiserver"
)

type nodeList []v1.Node

func (l nodeList) Nodes(context.Context) ([]v1.Node, error) { return l, nil }

func TestNodes(t *testing.T) {
	at := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	nodes := nodeList{
		{Name: "a", Address: "http://127.0.0.1:8081", Region: "local", Version: "dev", State: "ready", Alive: true,
			StartedAt: at.Add(-time.Hour), HeartbeatAt: at, HeartbeatAgeSec: 0.4, Instances: 2, Replicas: 1, Self: true},
		{Name: "b", Address: "http://127.0.0.1:8082", Region: "local", Version: "dev", State: "ready",
			StartedAt: at.Add(-time.Hour), HeartbeatAt: at.Add(-time.Minute), HeartbeatAgeSec: 60.4},
	}
	srv := httptest.NewServer(apiserver.New(apiserver.Config{Token: "tok", Nodes: nodes}))
	t.Cleanup(srv.Close)
	ctx := context.Background()

	got, err := client.New(srv.URL, "tok").Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]v1.Node(nodes), got); diff != "" {
		t.Errorf("Nodes (-want +got):\n%s", diff)
	}
	_, err = client.New(srv.URL, "nope").Nodes(ctx)
	if ae := (*client.APIError)(nil); !errors.As(err, &ae) || ae.Code != v1.CodeUnauthorized {
		t.Errorf("Nodes with a wrong token: %v", err)
	}
	// A server without a cluster's Nodes (older, or wired without it).
	old := httptest.NewServer(apiserver.New(apiserver.Config{Token: "tok"}))
	t.Cleanup(old.Close)
	_, err = client.New(old.URL, "tok").Nodes(ctx)
	if ae := (*client.APIError)(nil); !errors.As(err, &ae) || ae.Code != v1.CodeNotFound {
		t.Errorf("Nodes of a server without them: %v", err)
	}
}
