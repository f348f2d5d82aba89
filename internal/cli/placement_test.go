package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	v1 "github.com/stratus-run/stratus/api/v1"
)

// Where instances and pods run: the instances of `stratus get` and the
// Kubernetes nodes of `stratus nodes`.

// instanceRows are the rows of get's output from its instances' header
// on, nil without one.
func instanceRows(out string) [][]string {
	rows := fields(out)
	for i, r := range rows {
		if len(r) > 0 && r[0] == "INSTANCE" {
			return rows[i:]
		}
	}
	return nil
}

func TestGetInstances(t *testing.T) {
	since := testTime.Local().Format(time.DateTime)
	local := strings.Fields(since)

	fn := testFunction()
	f := newFakeAPI(t)
	f.on("GET /v1/functions/fn", jsonReply(200, fn))
	if r := f.run("get", "fn"); r.code != ExitOK || instanceRows(r.stdout) != nil || strings.HasSuffix(r.stdout, "\n\n") {
		t.Errorf("get of a function without items: exit %d, want no instance table:\n%s", r.code, r.stdout)
	}

	// Off kube: no POD and NODE columns.
	fn.Instances.Items = []v1.Instance{
		{ID: "a1", Version: "$LATEST", State: "busy", Since: testTime},
		{ID: "b2", Version: "3", State: "prepared", Since: testTime},
	}
	f.on("GET /v1/functions/fn", jsonReply(200, fn))
	r := f.run("get", "fn")
	want := [][]string{
		{"INSTANCE", "VERSION", "STATE", "SINCE"},
		append([]string{"a1", "$LATEST", "busy"}, local...),
		append([]string{"b2", "3", "prepared"}, local...),
	}
	if diff := cmp.Diff(want, instanceRows(r.stdout)); r.code != ExitOK || diff != "" {
		t.Errorf("get: exit %d, instances (-want +got):\n%s\n%s", r.code, diff, r.stdout)
	}
	if !containsRow(fields(r.stdout), []string{"Name:", "fn"}) {
		t.Errorf("get: the function's rows are gone:\n%s", r.stdout)
	}

	// On kube: POD and NODE, "-" for a pod not yet on a node.
	fn.Instances.Items[0].Pod, fn.Instances.Items[0].Node = "stratus-n-a1", "node-1"
	fn.Instances.Items[1].Pod = "stratus-n-b2"
	f.on("GET /v1/functions/fn", jsonReply(200, fn))
	r = f.run("get", "fn")
	want = [][]string{
		{"INSTANCE", "VERSION", "STATE", "SINCE", "POD", "NODE"},
		append(append([]string{"a1", "$LATEST", "busy"}, local...), "stratus-n-a1", "node-1"),
		append(append([]string{"b2", "3", "prepared"}, local...), "stratus-n-b2", "-"),
	}
	if diff := cmp.Diff(want, instanceRows(r.stdout)); r.code != ExitOK || diff != "" {
		t.Errorf("get on kube: exit %d, instances (-want +got):\n%s\n%s", r.code, diff, r.stdout)
	}
	r = f.run("get", "fn", "-o", "json")
	var got v1.Function
	decodeJSON(t, r.stdout, &got)
	if diff := cmp.Diff(fn, got); diff != "" {
		t.Errorf("get -o json (-want +got):\n%s", diff)
	}
	if !strings.Contains(r.stdout, `"pod": "stratus-n-b2"`) || strings.Count(r.stdout, `"node"`) != 1 {
		t.Errorf("get -o json: want pod of each and the one node (empty left out):\n%s", r.stdout)
	}
}

func TestNodesKube(t *testing.T) {
	servers := []v1.Node{{Name: "a", Address: "http://10.0.0.7:8080", Region: "eu-west", State: "ready", Alive: true, HeartbeatAgeSec: 0.6, Instances: 3, Self: true}}
	serverRows := [][]string{
		{"NAME", "REGION", "STATE", "HEARTBEAT", "INSTANCES", "REPLICAS", "ADDRESS"},
		{"a*", "eu-west", "ready", "1s", "ago", "3", "0", "http://10.0.0.7:8080"},
	}
	list := v1.NodeList{Nodes: servers, Kube: &v1.KubeNodes{
		Namespace: "stratus",
		Nodes: []v1.KubeNode{
			{Name: "node-1", Region: "eu-west", Ready: true, Instances: 2, Replicas: 1},
			{Name: "node-2", Ready: false},
		},
		Pending: 1,
	}}
	f := newFakeAPI(t)
	f.on("GET /v1/nodes", jsonReply(200, list))
	r := f.run("nodes")
	want := append(append([][]string{}, serverRows...),
		[]string{},
		[]string{"Kubernetes", "nodes", "(Stratus", "pods", "of", "namespace", "stratus):"},
		[]string{"NAME", "REGION", "READY", "INSTANCES", "REPLICAS"},
		[]string{"node-1", "eu-west", "yes", "2", "1"},
		[]string{"node-2", "-", "no", "0", "0"},
		[]string{"1", "pods", "not", "yet", "on", "a", "node"},
	)
	if diff := cmp.Diff(want, fields(r.stdout)); r.code != ExitOK || diff != "" {
		t.Errorf("nodes on kube: exit %d (-want +got):\n%s", r.code, diff)
	}
	r = f.run("nodes", "-o", "json")
	var got v1.NodeList
	decodeJSON(t, r.stdout, &got)
	if diff := cmp.Diff(list, got); diff != "" {
		t.Errorf("nodes -o json (-want +got):\n%s", diff)
	}
	if !strings.Contains(r.stdout, `"kubeNodes": {`) {
		t.Errorf("nodes -o json: no kubeNodes:\n%s", r.stdout)
	}

	// Nodes the server may not list: the note, no table, and still the
	// servers.
	note := "this server may not list the cluster's nodes (forbidden): grant its service account get, list and watch on nodes"
	f.on("GET /v1/nodes", jsonReply(200, v1.NodeList{Nodes: servers, Kube: &v1.KubeNodes{Namespace: "stratus", Nodes: []v1.KubeNode{}, Note: note}}))
	r = f.run("nodes")
	want = append(append([][]string{}, serverRows...),
		[]string{},
		[]string{"Kubernetes", "nodes", "(Stratus", "pods", "of", "namespace", "stratus):"},
		append([]string{"note:"}, strings.Fields(note)...),
	)
	if diff := cmp.Diff(want, fields(r.stdout)); r.code != ExitOK || diff != "" {
		t.Errorf("nodes, listing forbidden: exit %d (-want +got):\n%s", r.code, diff)
	}

	// An empty cluster says so.
	f.on("GET /v1/nodes", jsonReply(200, v1.NodeList{Nodes: servers, Kube: &v1.KubeNodes{Namespace: "stratus", Nodes: []v1.KubeNode{}}}))
	if r = f.run("nodes"); r.code != ExitOK || !strings.HasSuffix(r.stdout, "namespace stratus):\nno nodes\n") {
		t.Errorf("nodes of an empty cluster: exit %d, stdout %q", r.code, r.stdout)
	}
}
