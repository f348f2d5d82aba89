package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

func TestNodesRouteKube(t *testing.T) {
	servers := []v1.Node{{Name: "a", State: "ready", Alive: true, Self: true}}
	get := func(kube func(context.Context) (*v1.KubeNodes, error)) (v1.NodeList, string) {
		t.Helper()
		s := New(Config{Token: "tok", Nodes: fakeNodes{nodes: servers}, KubeNodes: kube})
		w := sendTo(s, "GET", "127.0.0.1", "/v1/nodes", "Authorization", "Bearer tok")
		if w.Code != 200 {
			t.Fatalf("GET /v1/nodes: %d %s", w.Code, w.Body)
		}
		var got v1.NodeList
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		return got, w.Body.String()
	}

	// Off kube: no kubeNodes at all.
	if got, body := get(nil); got.Kube != nil || strings.Contains(body, "kubeNodes") {
		t.Errorf("GET /v1/nodes without kube: %s", body)
	}

	kn := &v1.KubeNodes{Namespace: "ns", Nodes: []v1.KubeNode{{Name: "n1", Region: "eu", Ready: true, Instances: 2, Replicas: 1}}, Pending: 1}
	var hadDeadline bool
	got, _ := get(func(ctx context.Context) (*v1.KubeNodes, error) {
		_, hadDeadline = ctx.Deadline()
		return kn, nil
	})
	if diff := cmp.Diff(v1.NodeList{Nodes: servers, Kube: kn}, got); diff != "" {
		t.Errorf("GET /v1/nodes on kube (-want +got):\n%s", diff)
	}
	if !hadDeadline {
		t.Error("the kube nodes were read without a deadline")
	}

	// The cluster cannot be read: the servers still, and a note.
	got, body := get(func(context.Context) (*v1.KubeNodes, error) {
		return nil, errors.New("list the nodes of the cluster: connection refused")
	})
	if got.Kube == nil || len(got.Nodes) != 1 || !strings.Contains(got.Kube.Note, "connection refused") || got.Kube.Nodes == nil {
		t.Errorf("GET /v1/nodes with the cluster down: %s", body)
	}
}

// fakeLister has instances of one function.
type fakeLister struct{ infos []v1.Instance }

func (fakeLister) Stats(string) stratus.InstanceStats { return stratus.InstanceStats{} }
func (f fakeLister) Instances(name string) []v1.Instance {
	if name != "fn" {
		return nil
	}
	return f.infos
}

// statsOnly counts instances but cannot list them.
type statsOnly struct{}

func (statsOnly) Stats(string) stratus.InstanceStats { return stratus.InstanceStats{} }

func TestInstanceItems(t *testing.T) {
	at := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	s := &Server{pools: fakeLister{infos: []v1.Instance{
		{ID: "i1", Version: "$LATEST", State: "busy", Since: at, Pod: "p1", Node: "n1"},
		{ID: "i2", Version: "2", State: "prepared", Since: at},
	}}}
	want := []v1.Instance{
		{ID: "i1", Version: "$LATEST", State: "busy", Since: at, Pod: "p1", Node: "n1"},
		{ID: "i2", Version: "2", State: "prepared", Since: at},
	}
	if diff := cmp.Diff(want, s.instanceItems("fn")); diff != "" {
		t.Errorf("instanceItems (-want +got):\n%s", diff)
	}
	if got := s.instanceItems("other"); got != nil {
		t.Errorf("instanceItems of a function without instances: %+v, want nil (left out of the JSON)", got)
	}
	b, err := json.Marshal(v1.Instances{Items: s.instanceItems("fn")})
	if err != nil {
		t.Fatal(err)
	}
	if j := string(b); strings.Count(j, `"pod"`) != 1 || strings.Count(j, `"node"`) != 1 {
		t.Errorf("items JSON %s: want pod and node of the placed one only", j)
	}
	if b, _ := json.Marshal(v1.Instances{}); strings.Contains(string(b), "items") {
		t.Errorf("instances without items: %s", b)
	}
	if got := (&Server{pools: statsOnly{}}).instanceItems("fn"); got != nil {
		t.Errorf("pools that cannot list: %+v", got)
	}
}
