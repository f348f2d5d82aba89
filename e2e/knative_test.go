package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	ggcr "github.com/google/go-containerregistry/pkg/v1"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

// knativeWeb is a Knative Service manifest of gosvc as kweb: scaled to
// one replica at least, four requests at a time, probed on /healthz,
// 256 MiB, and open without the token.
const knativeWeb = `apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: kweb
  annotations:
    stratus.dev/auth: none
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/min-scale: "1"
        autoscaling.knative.dev/max-scale: "3"
    spec:
      containerConcurrency: 4
      timeoutSeconds: 30
      containers:
        - image: gosvc:v1
          env:
            - name: REV
              value: one
          ports:
            - containerPort: 8080
              name: http1
          resources:
            limits:
              memory: 256Mi
              cpu: 500m
          readinessProbe:
            httpGet:
              path: /healthz
          livenessProbe:
            httpGet:
              path: /healthz
              port: 8080
`

// applyFile writes manifest to a file and runs stratus apply -f on it.
func (s *server) applyFile(manifest string) result {
	s.t.Helper()
	p := filepath.Join(s.t.TempDir(), "svc.yaml")
	if err := os.WriteFile(p, []byte(manifest), 0o644); err != nil {
		s.t.Fatal(err)
	}
	return s.cli("apply", "-f", p)
}

// applyStdin runs stratus apply -f - with manifest on stdin.
func (s *server) applyStdin(manifest string) result {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "apply", "-f", "-")
	cmd.Env = append(os.Environ(), "STRATUS_SERVER="+s.URL, "STRATUS_TOKEN="+s.Token)
	cmd.Stdin = strings.NewReader(manifest)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatalf("run stratus apply -f -: %v", err)
	}
	return result{stdout.String(), stderr.String(), code}
}

// mustApply applies manifest and checks what it printed.
func (s *server) mustApply(manifest, want string) {
	s.t.Helper()
	r := s.applyFile(manifest)
	if r.Code != 0 || r.Stdout != want+"\n" {
		s.t.Fatalf("apply: exit %d, stdout %q (want %q), stderr %q\nserver log:\n%s", r.Code, r.Stdout, want, r.Stderr, s.Stderr())
	}
}

// openGet sends GET path without the token.
func (s *server) openGet(path string) (int, string) {
	s.t.Helper()
	resp, b := s.do("GET", path, nil, false)
	return resp.StatusCode, string(b)
}

// spec is what apply must leave alone: a service's revision, its
// configuration and its traffic.
type spec struct {
	Revision int
	Config   stratus.ServiceConfig
	Traffic  []v1.TrafficTarget
}

func specOf(svc v1.Service) spec {
	for i := range svc.Traffic {
		svc.Traffic[i].Ready = 0
	}
	return spec{svc.Revision, svc.Config, svc.Traffic}
}

func TestKnativeApply(t *testing.T) {
	s := startServicesServer(t)
	s.mustCLI("image", "import", serviceImageTar(t, "gosvc:v2", ggcr.Config{}))

	s.mustApply(knativeWeb, "service/kweb created")
	svc := s.service("kweb")
	c := svc.Config
	if svc.Revision != 1 || svc.Status != "Ready" || svc.Replicas.Ready < 1 || c.MinScale != 1 || c.MaxScale != 3 ||
		c.Concurrency != 4 || c.TimeoutSec != 30 || c.MemoryMB != 256 || c.CPU != 0.5 || c.HealthPath != "/healthz" ||
		c.LivenessPath != "/healthz" || c.Auth != stratus.AuthNone || c.Env["REV"] != "one" {
		t.Errorf("service after apply: %+v", svc)
	}
	// Open without the token, as the annotation asks.
	if code, body := s.openGet("/svc/kweb/"); code != 200 || !strings.Contains(body, "rev=one") {
		t.Errorf("GET /svc/kweb/: %d %q", code, body)
	}
	if code, body := s.openGet("/svc/kweb/env"); code != 200 || !strings.Contains(body, `"REV":"one"`) || !strings.Contains(body, `"K_REVISION":"kweb-00001"`) {
		t.Errorf("GET /svc/kweb/env: %d %s", code, body)
	}

	// get -o yaml writes a Knative Service with its status; applying it
	// back changes nothing.
	y := s.mustCLI("service", "get", "kweb", "-o", "yaml")
	for _, want := range []string{"apiVersion: serving.knative.dev/v1", "kind: Service", "name: kweb", "stratus.dev/auth: none",
		"autoscaling.knative.dev/min-scale: \"1\"", "containerConcurrency: 4", "memory: 256Mi", "path: /healthz",
		"status:", "type: Ready", "status: \"True\"", "latestReadyRevisionName: kweb-00001", "url: "} {
		if !strings.Contains(y, want) {
			t.Errorf("get -o yaml lacks %q:\n%s", want, y)
		}
	}
	s.mustApply(y, "service/kweb unchanged")
	if r := s.applyStdin(y); r.Code != 0 || r.Stdout != "service/kweb unchanged\n" {
		t.Errorf("apply -f - of get -o yaml: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	s.mustApply(knativeWeb, "service/kweb unchanged")
	if got := s.service("kweb"); got.Revision != 1 {
		t.Errorf("re-applying made revision %d", got.Revision)
	}

	// A new image and env: revision 2 serves.
	v2 := strings.Replace(strings.Replace(knativeWeb, "gosvc:v1", "gosvc:v2", 1), "value: one", "value: two", 1)
	s.mustApply(v2, "service/kweb configured")
	if got := s.service("kweb"); got.Revision != 2 || got.Config.Image != "gosvc:v2" {
		t.Errorf("after the change: revision %d, image %s", got.Revision, got.Config.Image)
	}
	if code, body := s.openGet("/svc/kweb/"); code != 200 || !strings.Contains(body, "rev=two") {
		t.Errorf("GET /svc/kweb/ after the change: %d %q", code, body)
	}

	// Half the requests to each revision; the old one tagged.
	split := v2 + `  traffic:
    - revisionName: kweb-00001
      percent: 50
      tag: old
    - latestRevision: true
      percent: 50
`
	s.mustApply(split, "service/kweb configured")
	if got := s.service("kweb"); got.Revision != 2 || len(got.Traffic) != 2 {
		t.Errorf("after the split: %+v", got)
	}
	if code, body := s.openGet("/svc/kweb@old/"); code != 200 || !strings.Contains(body, "rev=one") {
		t.Errorf("GET /svc/kweb@old/: %d %q", code, body)
	}
	seen := map[string]int{}
	for range 60 {
		code, body := s.openGet("/svc/kweb/")
		switch {
		case code != 200:
			t.Fatalf("GET /svc/kweb/ under the split: %d %q", code, body)
		case strings.Contains(body, "rev=one"):
			seen["one"]++
		case strings.Contains(body, "rev=two"):
			seen["two"]++
		}
	}
	if seen["one"] < 10 || seen["two"] < 10 {
		t.Errorf("60 requests split 50/50 went %v", seen)
	}
	y = s.mustCLI("service", "get", "kweb", "-o", "yaml")
	for _, want := range []string{"  traffic:\n    - tag: old\n      revisionName: kweb-00001\n      latestRevision: false\n      percent: 50\n", "latestCreatedRevisionName: kweb-00002"} {
		if !strings.Contains(y, want) {
			t.Errorf("get -o yaml under the split lacks %q:\n%s", want, y)
		}
	}
	s.mustApply(y, "service/kweb unchanged")
	s.mustApply(split, "service/kweb unchanged")

	// Bad manifests: refused by name, nothing sent, nothing changed.
	before := specOf(s.service("kweb"))
	for _, tt := range []struct {
		name, manifest, want string
	}{
		{"unknown field", strings.Replace(split, "          env:\n", "          volumeMounts:\n            - {name: data, mountPath: /data}\n          env:\n", 1),
			"spec.template.spec.containers[0].volumeMounts: not supported by Stratus"},
		{"two containers", strings.Replace(split, "  traffic:\n", "        - image: gosvc:v1\n  traffic:\n", 1),
			"spec.template.spec.containers: 2 containers"},
		{"valueFrom", strings.Replace(split, "              value: two\n", "              valueFrom:\n                secretKeyRef: {name: s, key: k}\n", 1),
			"spec.template.spec.containers[0].env[0].valueFrom: not supported by Stratus"},
		{"bad quantity", strings.Replace(split, "memory: 256Mi", "memory: 256MB", 1),
			`spec.template.spec.containers[0].resources.limits.memory: "256MB": unknown suffix "MB"`},
		{"malformed YAML", strings.Replace(split, "  template:\n", "  template: [\n", 1), "malformed YAML or JSON"},
		{"bad split", strings.Replace(split, "percent: 50\n      tag: old", "percent: 70\n      tag: old", 1), "spec.traffic: percents sum to 120, not 100"},
	} {
		r := s.applyFile(tt.manifest)
		if r.Code != 2 || !strings.Contains(r.Stderr, tt.want) {
			t.Errorf("%s: exit %d, stderr %q, want exit 2 and %q", tt.name, r.Code, r.Stderr, tt.want)
		}
	}
	// A revision that does not exist: refused before anything is sent.
	if r := s.applyFile(strings.Replace(split, "kweb-00001", "kweb-00009", 1)); r.Code != 1 || !strings.Contains(r.Stderr, "revision kweb-00009: not found") {
		t.Errorf("unknown revision: exit %d, stderr %q", r.Code, r.Stderr)
	}
	if diff := cmp.Diff(before, specOf(s.service("kweb")), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("bad manifests changed the service (-before +after):\n%s", diff)
	}

	// Without spec.traffic the latest revision takes all again.
	s.mustApply(v2, "service/kweb configured")
	for range 10 {
		if code, body := s.openGet("/svc/kweb/"); code != 200 || !strings.Contains(body, "rev=two") {
			t.Fatalf("GET /svc/kweb/ after the split is gone: %d %q", code, body)
		}
	}
}
