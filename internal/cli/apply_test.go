package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/knative"
)

const webManifest = `apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: web
  annotations:
    stratus.dev/auth: none
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/min-scale: "1"
    spec:
      containerConcurrency: 4
      containers:
      - image: gosvc:v1
        env:
        - {name: REV, value: one}
        resources: {limits: {memory: 256Mi}}
        readinessProbe: {httpGet: {path: /healthz}}
`

// writeManifest writes text to a file and returns its path.
func writeManifest(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "svc.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// webService is service web at revision rev as the API shows it, its
// latest revision taking all requests.
func webService(t *testing.T, rev int) v1.Service {
	t.Helper()
	m, err := knative.Decode([]byte(webManifest))
	if err != nil {
		t.Fatal(err)
	}
	name := knative.RevisionName("web", rev)
	return v1.Service{Name: "web", Revision: rev, RevisionName: name, Config: m.Config, Status: "Ready",
		Traffic: []v1.TrafficTarget{{Revision: rev, RevisionName: name, Latest: true, Percent: 100}}}
}

func TestApply(t *testing.T) {
	file := writeManifest(t, webManifest)
	want, err := knative.Decode([]byte(webManifest))
	if err != nil {
		t.Fatal(err)
	}

	// A new service.
	f := newFakeAPI(t)
	f.on("GET /v1/services/web", apiError(404, v1.CodeNotFound, `service "web": not found`))
	f.on("PUT /v1/services/web", jsonReply(200, webService(t, 1)))
	r := f.run("apply", "-f", file)
	if r.code != ExitOK || r.stdout != "service/web created\n" {
		t.Fatalf("apply: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	cs := f.requests()
	if len(cs) != 2 {
		t.Fatalf("requests %+v", cs)
	}
	var sent stratus.ServiceConfig
	sentJSON(t, cs[1], &sent)
	if diff := cmp.Diff(want.Config, sent, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("deploy sent (-want +got):\n%s", diff)
	}
	if sent.Auth != stratus.AuthNone || sent.MinScale != 1 || sent.Concurrency != 4 || sent.MemoryMB != 256 || sent.HealthPath != "/healthz" {
		t.Errorf("deploy sent %+v", sent)
	}

	// The same manifest again: no new revision, no traffic request.
	f = newFakeAPI(t)
	f.on("GET /v1/services/web", jsonReply(200, webService(t, 1)))
	f.on("PUT /v1/services/web", jsonReply(200, webService(t, 1)))
	if r = f.run("apply", "-f", file); r.code != ExitOK || r.stdout != "service/web unchanged\n" {
		t.Errorf("apply again: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if n := len(f.requests()); n != 2 {
		t.Errorf("apply again sent %d requests, want 2 (get, deploy)", n)
	}

	// A changed manifest: a new revision.
	f = newFakeAPI(t)
	f.on("GET /v1/services/web", jsonReply(200, webService(t, 1)))
	f.on("PUT /v1/services/web", jsonReply(200, webService(t, 2)))
	if r = f.run("apply", "-f", writeManifest(t, strings.Replace(webManifest, "value: one", "value: two", 1))); r.code != ExitOK || r.stdout != "service/web configured\n" {
		t.Errorf("apply of a change: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

func TestApplyTraffic(t *testing.T) {
	split := webManifest + `  traffic:
  - {revisionName: web-00001, percent: 50, tag: blue}
  - {latestRevision: true, percent: 50}
`
	splitShown := webService(t, 2)
	splitShown.Traffic = []v1.TrafficTarget{
		{Revision: 1, RevisionName: "web-00001", Percent: 50, Tag: "blue"},
		{Revision: 2, RevisionName: "web-00002", Latest: true, Percent: 50},
	}
	f := newFakeAPI(t)
	f.on("GET /v1/services/web", jsonReply(200, webService(t, 2)))
	f.on("PUT /v1/services/web", jsonReply(200, webService(t, 2)))
	f.on("PUT /v1/services/web/traffic", jsonReply(200, splitShown))
	r := f.run("apply", "-f", writeManifest(t, split))
	if r.code != ExitOK || r.stdout != "service/web configured\n" {
		t.Fatalf("apply of a split: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	cs := f.requests()
	var tr v1.TrafficRequest
	sentJSON(t, cs[len(cs)-1], &tr)
	wantSplit := []stratus.TrafficTarget{{Revision: 1, Percent: 50, Tag: "blue"}, {Latest: true, Percent: 50}}
	if diff := cmp.Diff(wantSplit, tr.Traffic); diff != "" {
		t.Errorf("traffic sent (-want +got):\n%s", diff)
	}

	// The split again: unchanged, nothing but get and deploy sent.
	f = newFakeAPI(t)
	f.on("GET /v1/services/web", jsonReply(200, splitShown))
	f.on("PUT /v1/services/web", jsonReply(200, splitShown))
	if r = f.run("apply", "-f", writeManifest(t, split)); r.code != ExitOK || r.stdout != "service/web unchanged\n" || len(f.requests()) != 2 {
		t.Errorf("split again: exit %d, stdout %q, stderr %q, %d requests", r.code, r.stdout, r.stderr, len(f.requests()))
	}

	// Without spec.traffic the latest revision takes all again, as in
	// Knative.
	f = newFakeAPI(t)
	f.on("GET /v1/services/web", jsonReply(200, splitShown))
	f.on("PUT /v1/services/web", jsonReply(200, splitShown))
	f.on("PUT /v1/services/web/traffic", jsonReply(200, webService(t, 2)))
	if r = f.run("apply", "-f", writeManifest(t, webManifest)); r.code != ExitOK || r.stdout != "service/web configured\n" {
		t.Errorf("reset: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	cs = f.requests()
	if last := cs[len(cs)-1]; last.Path != "/v1/services/web/traffic" || string(last.Body) != `{"traffic":[]}` {
		t.Errorf("reset sent %s %s %s", last.Method, last.Path, last.Body)
	}

	// A revision past the one this apply may make: nothing changed.
	f = newFakeAPI(t)
	f.on("GET /v1/services/web", jsonReply(200, webService(t, 2)))
	far := strings.Replace(split, "web-00001", "web-00009", 1)
	if r = f.run("apply", "-f", writeManifest(t, far)); r.code != ExitError || !strings.Contains(r.stderr, "revision web-00009: not found (the latest is web-00002)") {
		t.Errorf("unknown revision: exit %d, stderr %q", r.code, r.stderr)
	}
	if cs := f.requests(); len(cs) != 1 || cs[0].Method != "GET" {
		t.Errorf("unknown revision sent %+v", cs)
	}

	// The server refuses the split: the error says the configuration was
	// applied.
	f = newFakeAPI(t)
	f.on("GET /v1/services/web", jsonReply(200, webService(t, 2)))
	f.on("PUT /v1/services/web", jsonReply(200, webService(t, 2)))
	f.on("PUT /v1/services/web/traffic", apiError(400, v1.CodeInvalid, "revision web-00001 is not ready"))
	if r = f.run("apply", "-f", writeManifest(t, split)); r.code != ExitError || !strings.Contains(r.stderr, "its configuration is applied") {
		t.Errorf("refused split: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestApplyBadManifest checks that a bad manifest or command line exits
// ExitUsage, names the field and sends nothing.
func TestApplyBadManifest(t *testing.T) {
	f := newFakeAPI(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"apply"}, "-f FILE is required"},
		{[]string{"apply", "-f", filepath.Join(t.TempDir(), "nope.yaml")}, "no such file"},
		{[]string{"apply", "-f", writeManifest(t, webManifest+"        volumeMounts: []\n")}, "line 20: spec.template.spec.containers[0].volumeMounts: not supported by Stratus"},
		{[]string{"apply", "-f", writeManifest(t, webManifest+"      - image: two\n")}, "2 containers"},
		{[]string{"apply", "-f", writeManifest(t, strings.Replace(webManifest, "{name: REV, value: one}", "{name: REV, valueFrom: {}}", 1))}, "env[0].valueFrom: not supported by Stratus"},
		{[]string{"apply", "-f", writeManifest(t, strings.Replace(webManifest, "256Mi", "256Q", 1))}, `limits.memory: "256Q": unknown suffix`},
		{[]string{"apply", "-f", writeManifest(t, "apiVersion: [")}, "malformed YAML or JSON"},
		{[]string{"apply", "-f", writeManifest(t, webManifest), "extra"}, "unknown command"},
		{[]string{"apply", "-f", writeManifest(t, webManifest), "-o", "xml"}, "use table or json"},
	} {
		r := f.run(tt.args...)
		if r.code != ExitUsage || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", tt.args, r.code, r.stderr, tt.want)
		}
	}
	if cs := f.requests(); len(cs) != 0 {
		t.Errorf("bad manifests sent %+v", cs)
	}
}

func TestApplyStdin(t *testing.T) {
	f := newFakeAPI(t)
	f.on("GET /v1/services/web", apiError(404, v1.CodeNotFound, `service "web": not found`))
	f.on("PUT /v1/services/web", jsonReply(200, webService(t, 1)))
	var stdout, stderr bytes.Buffer
	e := &env{stdout: &stdout, stderr: &stderr,
		vars: map[string]string{"STRATUS_SERVER": f.url, "STRATUS_TOKEN": "tok", "STRATUS_DATA": t.TempDir()}}
	root := e.rootCmd()
	root.SetArgs([]string{"apply", "-f", "-", "-o", "yaml"})
	root.SetIn(strings.NewReader(webManifest))
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("apply -f -: %v (%s)", err, stderr.String())
	}
	m, err := knative.Decode(stdout.Bytes())
	if err != nil {
		t.Fatalf("apply -o yaml printed what Decode refuses: %v\n%s", err, stdout.String())
	}
	if diff := cmp.Diff(webService(t, 1).Config, m.Config, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("apply -o yaml (-want +got):\n%s", diff)
	}
	if !strings.Contains(stdout.String(), "latestReadyRevisionName: web-00001") {
		t.Errorf("apply -o yaml has no status:\n%s", stdout.String())
	}
}

func TestServiceGetYAML(t *testing.T) {
	svc := webService(t, 3)
	svc.HostURL = "http://web.localhost:8080"
	f := newFakeAPI(t)
	f.on("GET /v1/services/web", jsonReply(200, svc))
	r := f.run("service", "get", "web", "-o", "yaml")
	if r.code != ExitOK {
		t.Fatalf("get -o yaml: exit %d, stderr %q", r.code, r.stderr)
	}
	want, err := knative.Encode(&svc)
	if err != nil {
		t.Fatal(err)
	}
	if r.stdout != string(want) {
		t.Errorf("get -o yaml printed\n%s\nwant\n%s", r.stdout, want)
	}
	for _, s := range []string{"kind: Service", "status:", "url: http://web.localhost:8080", "type: Ready"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("get -o yaml lacks %q", s)
		}
	}
	f.on("GET /v1/services/nope", apiError(404, v1.CodeNotFound, `service "nope": not found`))
	if r = f.run("service", "get", "nope", "-o", "yaml"); r.code != ExitError || r.stdout != "" {
		t.Errorf("get -o yaml of an unknown service: exit %d, stdout %q", r.code, r.stdout)
	}
	if r = f.run("service", "ls", "-o", "yaml"); r.code != ExitUsage {
		t.Errorf("ls -o yaml: exit %d", r.code)
	}
}
