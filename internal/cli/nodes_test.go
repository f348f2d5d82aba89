package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	v1 "github.com/stratus-run/stratus/api/v1"
)

func TestNodes(t *testing.T) {
	nodes := []v1.Node{
		{Name: "a", Address: "http://127.0.0.1:8081", Region: "eu-west", Version: "dev", State: "ready", Alive: true,
			StartedAt: testTime, HeartbeatAt: testTime.Add(time.Hour), HeartbeatAgeSec: 0.6, Instances: 3, Replicas: 1, Self: true},
		{Name: "b", Address: "http://127.0.0.1:8082", Region: "eu-west", Version: "dev", State: "unready: store: connection refused", Alive: true,
			StartedAt: testTime, HeartbeatAt: testTime.Add(time.Hour), HeartbeatAgeSec: 1.2, Instances: 0, Replicas: 2},
		{Name: "c", Address: "http://127.0.0.1:8083", Region: "eu-west", Version: "dev", State: "ready",
			StartedAt: testTime, HeartbeatAt: testTime, HeartbeatAgeSec: 125.4, Instances: 4, Replicas: 1},
		{Name: "d", State: "stopping", Alive: true, HeartbeatAgeSec: 0.2},
	}
	f := newFakeAPI(t)
	f.on("GET /v1/nodes", jsonReply(200, v1.NodeList{Nodes: nodes}))
	r := f.run("nodes")
	want := [][]string{
		{"NAME", "REGION", "STATE", "HEARTBEAT", "INSTANCES", "REPLICAS", "ADDRESS"},
		{"a*", "eu-west", "ready", "1s", "ago", "3", "1", "http://127.0.0.1:8081"},
		{"b", "eu-west", "unready:", "store:", "connection", "refused", "1s", "ago", "0", "2", "http://127.0.0.1:8082"},
		{"c", "eu-west", "dead", "2m5s", "ago", "-", "-", "http://127.0.0.1:8083"},
		{"d", "-", "stopping", "0s", "ago", "0", "0", "-"},
	}
	if r.code != ExitOK {
		t.Fatalf("nodes: exit %d, stderr %q", r.code, r.stderr)
	}
	if diff := cmp.Diff(want, fields(r.stdout)); diff != "" {
		t.Errorf("nodes (-want +got):\n%s", diff)
	}
	if c := f.requests()[0]; c.Header.Get("Authorization") != "Bearer tok" {
		t.Errorf("nodes sent Authorization %q", c.Header.Get("Authorization"))
	}

	r = f.run("nodes", "-o", "json")
	var got v1.NodeList
	decodeJSON(t, r.stdout, &got)
	if diff := cmp.Diff(v1.NodeList{Nodes: nodes}, got); diff != "" {
		t.Errorf("nodes -o json (-want +got):\n%s", diff)
	}

	f.on("GET /v1/nodes", jsonReply(200, v1.NodeList{}))
	if r = f.run("nodes", "-o", "json"); r.code != ExitOK || strings.TrimSpace(r.stdout) != "{\n  \"nodes\": []\n}" {
		t.Errorf("no nodes -o json: exit %d, stdout %q", r.code, r.stdout)
	}
	if r = f.run("nodes"); r.code != ExitOK || r.stdout != "NAME  REGION  STATE  HEARTBEAT  INSTANCES  REPLICAS  ADDRESS\n" {
		t.Errorf("no nodes: exit %d, stdout %q", r.code, r.stdout)
	}

	if r = f.run("nodes", "extra"); r.code != ExitUsage {
		t.Errorf("nodes with an argument: exit %d", r.code)
	}
	f.on("GET /v1/nodes", apiError(503, v1.CodeUnavailable, "list nodes: unavailable"))
	if r = f.run("nodes"); r.code != ExitRetry || !strings.Contains(r.stderr, "list nodes") {
		t.Errorf("store down: exit %d, stderr %q", r.code, r.stderr)
	}

	r = runCLI(t, "http://127.0.0.1:1", "nodes", "--help")
	for _, s := range []string{"10 s", "dead", `"*"`, "--node-name", "heartbeat"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("nodes --help does not say %q:\n%s", s, r.stdout)
		}
	}
	r = runCLI(t, "http://127.0.0.1:1", "--help")
	if !strings.Contains(r.stdout, "nodes ") {
		t.Errorf("--help does not list nodes:\n%s", r.stdout)
	}
}
