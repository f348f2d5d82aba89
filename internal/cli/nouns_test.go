package cli

import (
	"bytes"
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

// sentJSON decodes the JSON body of c into v.
func sentJSON(t *testing.T, c call, v any) {
	t.Helper()
	if err := json.Unmarshal(c.Body, v); err != nil {
		t.Fatalf("%s %s sent %q: %v", c.Method, c.Path, c.Body, err)
	}
}

func TestTopics(t *testing.T) {
	pending := int64(7)
	tp := v1.Topic{Name: "orders", CreatedAt: testTime, Subscriptions: 2, Pending: &pending}
	f := newFakeAPI(t)
	f.on("POST /v1/topics", jsonReply(201, v1.Topic{Name: "orders", CreatedAt: testTime}))
	r := f.run("topic", "create", "orders")
	if r.code != ExitOK || r.stdout != "created topic orders\n" {
		t.Errorf("create: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	var spec v1.TopicSpec
	sentJSON(t, f.only(), &spec)
	if spec.Name != "orders" {
		t.Errorf("create sent %+v", spec)
	}
	if r = f.run("topic", "create", "bad name"); r.code != ExitUsage {
		t.Errorf("create of a bad name: exit %d", r.code)
	}

	unknown := v1.Topic{Name: "unread", CreatedAt: testTime}
	f.on("GET /v1/topics", jsonReply(200, v1.TopicList{Topics: []v1.Topic{tp, unknown}}))
	r = f.run("topic", "ls")
	want := [][]string{{"NAME", "SUBSCRIPTIONS", "PENDING", "CREATED"}, {"orders", "2", "7", "2026-01-02", "03:04:05"},
		{"unread", "0", "-", "2026-01-02", "03:04:05"}}
	if diff := cmp.Diff(want, fields(r.stdout)); diff != "" {
		t.Errorf("ls (-want +got):\n%s", diff)
	}
	r = f.run("topic", "ls", "-o", "json")
	var tps []v1.Topic
	decodeJSON(t, r.stdout, &tps)
	if diff := cmp.Diff([]v1.Topic{tp, unknown}, tps); diff != "" {
		t.Errorf("ls -o json (-want +got):\n%s", diff)
	}

	f.on("POST /v1/topics/orders/events", jsonReply(202, v1.Published{IDs: []string{"ev-1"}}))
	r = f.run("topic", "publish", "orders", "--data", `{"n":1}`, "--type", "order.created", "--id", "ev-1")
	if r.code != ExitOK || r.stdout != "ev-1\n" {
		t.Errorf("publish: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	cs := f.requests()
	pub := cs[len(cs)-1]
	var ev map[string]any
	sentJSON(t, pub, &ev)
	if pub.Header.Get("Content-Type") != v1.ContentTypeCloudEvent || ev["type"] != "order.created" || ev["id"] != "ev-1" ||
		ev["source"] != "stratus/cli" || ev["specversion"] != "1.0" || !cmp.Equal(ev["data"], map[string]any{"n": float64(1)}) {
		t.Errorf("publish sent %s %q", pub.Header.Get("Content-Type"), pub.Body)
	}
	r = f.run("topic", "publish", "orders", "--data", `{"n":1}`, "-o", "json")
	var p v1.Published
	decodeJSON(t, r.stdout, &p)
	if !cmp.Equal(p.IDs, []string{"ev-1"}) {
		t.Errorf("publish -o json: %q", r.stdout)
	}

	f.on("DELETE /v1/topics/orders", reply{status: 204})
	if r = f.run("topic", "rm", "orders"); r.code != ExitOK || r.stdout != "removed topic orders\n" {
		t.Errorf("rm: exit %d, stdout %q", r.code, r.stdout)
	}
}

func TestSubscriptions(t *testing.T) {
	sub := stratus.Subscription{ID: "sub-1", Topic: "orders", Function: "sink", Filter: "type=order.created", Batch: 10, CreatedAt: testTime}
	f := newFakeAPI(t)
	f.on("POST /v1/topics/orders/subscriptions", jsonReply(201, sub))
	r := f.run("subscribe", "orders", "--function", "sink", "--filter", "type=order.created", "--batch", "10")
	if r.code != ExitOK || r.stdout != "sub-1\n" {
		t.Errorf("subscribe: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	var spec v1.SubscriptionSpec
	sentJSON(t, f.only(), &spec)
	if diff := cmp.Diff(v1.SubscriptionSpec{Function: "sink", Filter: "type=order.created", Batch: 10}, spec); diff != "" {
		t.Errorf("subscribe sent (-want +got):\n%s", diff)
	}
	if r = f.run("subscribe", "orders", "--function", "sink", "--url", "http://x"); r.code != ExitUsage {
		t.Errorf("both --function and --url: exit %d", r.code)
	}

	pending, oldest, none, zero := int64(3), 61.4, int64(0), 0.0
	withFigures := v1.Subscription{Subscription: sub, Pending: &pending, OldestAgeSec: &oldest}
	url := stratus.Subscription{ID: "sub-2", Topic: "orders", URL: "http://x/hook", Batch: 1, CreatedAt: testTime}
	f.on("GET /v1/subscriptions", jsonReply(200, v1.SubscriptionList{Subscriptions: []v1.Subscription{
		withFigures, {Subscription: url, Pending: &none, OldestAgeSec: &zero}, {Subscription: url}}}))
	r = f.run("subscriptions")
	want := [][]string{
		{"ID", "TOPIC", "DELIVERS", "TO", "FILTER", "BATCH", "PENDING", "OLDEST", "CREATED"},
		{"sub-1", "orders", "function", "sink", "type=order.created", "10", "3", "1m1s", "2026-01-02", "03:04:05"},
		{"sub-2", "orders", "http://x/hook", "-", "1", "0", "-", "2026-01-02", "03:04:05"},
		{"sub-2", "orders", "http://x/hook", "-", "1", "-", "-", "2026-01-02", "03:04:05"},
	}
	if diff := cmp.Diff(want, fields(r.stdout)); diff != "" {
		t.Errorf("subscriptions (-want +got):\n%s", diff)
	}
	f.on("GET /v1/topics/orders/subscriptions", jsonReply(200, v1.SubscriptionList{Subscriptions: []v1.Subscription{withFigures}}))
	r = f.run("subscriptions", "orders", "-o", "json")
	var subs []v1.Subscription
	decodeJSON(t, r.stdout, &subs)
	if diff := cmp.Diff([]v1.Subscription{withFigures}, subs); diff != "" {
		t.Errorf("subscriptions -o json (-want +got):\n%s", diff)
	}

	f.on("DELETE /v1/subscriptions/sub-1", apiError(404, v1.CodeNotFound, `subscription "sub-1": not found`))
	if r = f.run("unsubscribe", "sub-1"); r.code != ExitError || r.stderr != "error: subscription \"sub-1\": not found (ResourceNotFoundException)\n" {
		t.Errorf("unsubscribe of an unknown id: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestSchedules(t *testing.T) {
	next := testTime.Add(5 * time.Minute)
	sc := v1.Schedule{Name: "tick", Function: "fn", Expression: "rate(5 minutes)", Timezone: "Europe/Berlin",
		Data: json.RawMessage(`{"k":"v"}`), CreatedAt: testTime, NextFiringAt: &next}
	f := newFakeAPI(t)
	f.on("POST /v1/schedules", jsonReply(201, sc))
	r := f.run("schedule", "create", "tick", "--function", "fn", "--rate", "5 minutes", "--timezone", "Europe/Berlin", "--data", `{"k":"v"}`)
	want := "created schedule tick: rate(5 minutes) (Europe/Berlin) invokes fn\nnext firing: 2026-01-02T03:09:05Z\n"
	if r.code != ExitOK || r.stdout != want {
		t.Errorf("create: exit %d, stdout %q (want %q), stderr %q", r.code, r.stdout, want, r.stderr)
	}
	var spec v1.ScheduleSpec
	sentJSON(t, f.only(), &spec)
	wantSpec := v1.ScheduleSpec{Name: "tick", Function: "fn", Rate: "5 minutes", Timezone: "Europe/Berlin", Data: json.RawMessage(`{"k":"v"}`)}
	if diff := cmp.Diff(wantSpec, spec); diff != "" {
		t.Errorf("create sent (-want +got):\n%s", diff)
	}
	if r = f.run("schedule", "create", "tick", "--function", "fn", "--rate", "5 minutes", "--cron", "0 12 * * ? *"); r.code != ExitUsage {
		t.Errorf("--rate and --cron: exit %d", r.code)
	}

	f.on("GET /v1/schedules", jsonReply(200, v1.ScheduleList{Schedules: []v1.Schedule{sc}}))
	r = f.run("schedule", "ls")
	wantRows := [][]string{
		{"NAME", "FUNCTION", "EXPRESSION", "TIMEZONE", "NEXT", "LAST"},
		{"tick", "fn", "rate(5", "minutes)", "Europe/Berlin", "2026-01-02", "03:09:05", "-"},
	}
	if diff := cmp.Diff(wantRows, fields(r.stdout)); diff != "" {
		t.Errorf("ls (-want +got):\n%s", diff)
	}
	r = f.run("schedule", "ls", "-o", "json")
	var list []v1.Schedule
	decodeJSON(t, r.stdout, &list)
	for i := range list { // printed indented
		var b bytes.Buffer
		if err := json.Compact(&b, list[i].Data); err != nil {
			t.Fatal(err)
		}
		list[i].Data = b.Bytes()
	}
	if diff := cmp.Diff([]v1.Schedule{sc}, list); diff != "" {
		t.Errorf("ls -o json (-want +got):\n%s", diff)
	}

	f.on("GET /v1/schedules/tick", jsonReply(200, sc))
	r = f.run("schedule", "get", "tick")
	if rows := fields(r.stdout); !containsRow(rows, []string{"Detail:", `{"k":"v"}`}) || !containsRow(rows, []string{"Last", "firing:", "-"}) {
		t.Errorf("get:\n%s", r.stdout)
	}

	f.on("DELETE /v1/schedules/tick", reply{status: 204})
	if r = f.run("schedule", "rm", "tick", "-o", "json"); r.code != ExitOK || r.stdout != "{\n  \"removed\": \"tick\"\n}\n" {
		t.Errorf("rm -o json: exit %d, stdout %q", r.code, r.stdout)
	}
}

func testService() v1.Service {
	return v1.Service{
		Name: "web", Revision: 3, RevisionName: "web-00003", ImageDigest: "sha256:aaa", CreatedAt: testTime, UpdatedAt: testTime,
		Config: stratus.ServiceConfig{Image: "web:v1", Port: 9000, MinScale: 1, MaxScale: 4, Concurrency: 0,
			MemoryMB: 256, CPU: 0.5, Auth: stratus.AuthToken},
		Status:   "Ready",
		Replicas: v1.ServiceReplicas{Ready: 1, Desired: 2},
		URL:      "http://127.0.0.1:8080/svc/web", HostURL: "http://web.localhost:8080",
		Detail: []v1.Replica{{ID: "r-1", Revision: 3, Address: "10.0.0.2:9000", State: "ready", Inflight: 1}},
	}
}

func TestServices(t *testing.T) {
	svc := testService()
	f := newFakeAPI(t)
	f.on("PUT /v1/services/web", jsonReply(201, svc))
	r := f.run("service", "deploy", "web", "--image", "web:v1", "--port", "9000", "--min", "1", "--max", "4",
		"--concurrency", "0", "--env", "A=1", "--", "/bin/web", "-v")
	want := "deployed web revision web-00003 (web:v1), 1/2 replicas ready\nurl: http://127.0.0.1:8080/svc/web\nhost: http://web.localhost:8080\n"
	if r.code != ExitOK || r.stdout != want {
		t.Errorf("deploy: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	var cfg stratus.ServiceConfig
	sentJSON(t, f.only(), &cfg)
	if cfg.Image != "web:v1" || cfg.Port != 9000 || cfg.MinScale != 1 || cfg.MaxScale != 4 || cfg.Concurrency != 0 ||
		!cmp.Equal(cfg.Env, map[string]string{"A": "1"}) || !cmp.Equal(cfg.Command, []string{"/bin/web", "-v"}) {
		t.Errorf("deploy sent %+v", cfg)
	}
	if r = f.run("service", "deploy", "web"); r.code != ExitUsage {
		t.Errorf("deploy without --image: exit %d", r.code)
	}

	f.on("GET /v1/services", jsonReply(200, v1.ServiceList{Services: []v1.Service{svc}}))
	r = f.run("service", "ls")
	wantRows := [][]string{
		{"NAME", "REVISION", "STATUS", "READY", "IMAGE", "URL"},
		{"web", "web-00003", "Ready", "1/2", "web:v1", "http://127.0.0.1:8080/svc/web"},
	}
	if diff := cmp.Diff(wantRows, fields(r.stdout)); diff != "" {
		t.Errorf("ls (-want +got):\n%s", diff)
	}
	r = f.run("service", "ls", "-o", "json")
	var list []v1.Service
	decodeJSON(t, r.stdout, &list)
	if diff := cmp.Diff([]v1.Service{svc}, list); diff != "" {
		t.Errorf("ls -o json (-want +got):\n%s", diff)
	}

	f.on("GET /v1/services/web", jsonReply(200, svc))
	r = f.run("service", "get", "web")
	rows := fields(r.stdout)
	for _, row := range [][]string{{"concurrency:", "no", "limit"}, {"image:", "web:v1", "(sha256:aaa)"},
		{"r-1", "3", "10.0.0.2:9000", "ready", "1", "0"}} {
		if !containsRow(rows, row) {
			t.Errorf("get: no row %v in\n%s", row, r.stdout)
		}
	}

	// Replicas that are pods show their node.
	pods := svc
	pods.Detail = []v1.Replica{{ID: "stratus-web-r3-7d9f-x2", Revision: 3, Node: "node-a", Address: "10.1.0.7:9000", State: "ready"}}
	f.on("GET /v1/services/web", jsonReply(200, pods))
	r = f.run("service", "get", "web")
	rows = fields(r.stdout)
	for _, row := range [][]string{{"REPLICA", "REVISION", "NODE", "ADDRESS", "STATE", "IN", "FLIGHT", "RESTARTS", "LAST", "ERROR"}, {"stratus-web-r3-7d9f-x2", "3", "node-a", "10.1.0.7:9000", "ready", "0", "0"}} {
		if !containsRow(rows, row) {
			t.Errorf("get of pod replicas: no row %v in\n%s", row, r.stdout)
		}
	}

	f.on("DELETE /v1/services/web", reply{status: 204})
	if r = f.run("service", "rm", "web"); r.code != ExitOK || r.stdout != "removed service web\n" {
		t.Errorf("rm: exit %d, stdout %q", r.code, r.stdout)
	}
}

func TestImages(t *testing.T) {
	img := v1.Image{Ref: "docker.io/library/alpine:3", Digest: "sha256:bbb", Layers: []string{"sha256:l1", "sha256:l2"},
		Size: 7_500_000, CreatedAt: testTime, Config: v1.ImageConfig{Cmd: []string{"/bin/sh"}}}
	f := newFakeAPI(t)
	f.on("GET /v1/images", jsonReply(200, v1.ImageList{Images: []v1.Image{img}}))
	r := f.run("image", "ls")
	want := [][]string{
		{"REF", "DIGEST", "SIZE", "LAYERS", "CREATED"},
		{"docker.io/library/alpine:3", "sha256:bbb", "7.5", "MB", "2", "2026-01-02", "03:04:05"},
	}
	if diff := cmp.Diff(want, fields(r.stdout)); r.code != ExitOK || diff != "" {
		t.Errorf("ls: exit %d (-want +got):\n%s", r.code, diff)
	}
	r = f.run("image", "ls", "-o", "json")
	var list []v1.Image
	decodeJSON(t, r.stdout, &list)
	if diff := cmp.Diff([]v1.Image{img}, list); diff != "" {
		t.Errorf("ls -o json (-want +got):\n%s", diff)
	}

	f.on("POST /v1/images/pull", jsonReply(201, img))
	r = f.run("image", "pull", "alpine:3", "--insecure")
	if r.code != ExitOK || r.stdout != "pulled docker.io/library/alpine:3 sha256:bbb (7.5 MB)\n" {
		t.Errorf("pull: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	cs := f.requests()
	var pull v1.ImagePull
	sentJSON(t, cs[len(cs)-1], &pull)
	if pull.Ref != "alpine:3" || !pull.Insecure || pull.Username != "" {
		t.Errorf("pull sent %+v", pull)
	}
	if r = f.run("image", "pull", "alpine:3", "--username", "me"); r.code != ExitUsage {
		t.Errorf("--username without --password-stdin: exit %d", r.code)
	}

	f.on("DELETE /v1/images", apiError(409, v1.CodeConflict, "image docker.io/library/alpine:3 is in use"))
	r = f.run("image", "rm", "alpine:3")
	if r.code != ExitError || r.stderr != "error: image docker.io/library/alpine:3 is in use (ResourceConflictException)\n" {
		t.Errorf("rm of an image in use: exit %d, stderr %q", r.code, r.stderr)
	}
	cs = f.requests()
	if q, _ := url.ParseQuery(cs[len(cs)-1].Query); q.Get("ref") != "alpine:3" {
		t.Errorf("rm sent query %q", cs[len(cs)-1].Query)
	}
	f.on("DELETE /v1/images", reply{status: 204})
	if r = f.run("image", "rm", "alpine:3"); r.code != ExitOK || r.stdout != "removed image alpine:3\n" {
		t.Errorf("rm: exit %d, stdout %q", r.code, r.stdout)
	}
}

func TestInfo(t *testing.T) {
	info := v1.Info{Version: "1.2.3", Region: "eu-1", Sandbox: v1.Sandbox{Driver: "process", Why: "runc is not installed"}}
	f := newFakeAPI(t)
	f.on("GET /v1/info", jsonReply(200, info))
	r := f.run("info")
	rows := fields(r.stdout)
	for _, row := range [][]string{{"Version:", "1.2.3"}, {"Region:", "eu-1"}, {"Why:", "runc", "is", "not", "installed"}} {
		if !containsRow(rows, row) {
			t.Errorf("info: no row %v in\n%s", row, r.stdout)
		}
	}
	if len(rows) < 3 || rows[2][0] != "Sandbox:" || rows[2][2] != "(NOT" {
		t.Errorf("info does not say the sandbox does not isolate:\n%s", r.stdout)
	}
	r = f.run("info", "-o", "json")
	var got v1.Info
	decodeJSON(t, r.stdout, &got)
	if diff := cmp.Diff(info, got); diff != "" {
		t.Errorf("info -o json (-want +got):\n%s", diff)
	}
}
