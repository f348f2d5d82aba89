package knative

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.yaml.in/yaml/v3"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

// full is a service with every field Stratus writes set.
func full() *v1.Service {
	cfg := stratus.ServiceConfig{
		Image: "gosvc:v1", Port: 9000, Env: map[string]string{"B": "two words", "A": "1", "C": "yes"},
		MinScale: 1, MaxScale: 4, Concurrency: 10, MemoryMB: 1536, CPU: 0.25, CPURequest: 0.125,
		HealthPath: "/healthz", LivenessPath: "/live", Command: []string{"/app/gosvc"}, Args: []string{"-rev", "2"},
		Auth: stratus.AuthNone, Regions: []string{"eu-west-1", "eu-central-1"}, TimeoutSec: 30, Target: 7.5, InitialScale: intp(2), Window: stratus.Duration(90 * time.Second),
	}
	return &v1.Service{
		Name: "web", Revision: 3, RevisionName: "web-00003", Config: cfg, Status: "Ready",
		UpdatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		URL:       "http://127.0.0.1:8080/svc/web", HostURL: "http://web.localhost:8080",
		Traffic: []v1.TrafficTarget{
			{Revision: 1, RevisionName: "web-00001", Percent: 20, Tag: "old", URL: "http://127.0.0.1:8080/svc/web@old", HostURL: "http://old-web.localhost:8080"},
			{Revision: 3, RevisionName: "web-00003", Latest: true, Percent: 80},
		},
	}
}

func TestEncode(t *testing.T) {
	out, err := Encode(full())
	if err != nil {
		t.Fatal(err)
	}
	want := `apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: web
  annotations:
    stratus.dev/auth: none
    stratus.dev/regions: eu-west-1,eu-central-1
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/initial-scale: "2"
        autoscaling.knative.dev/max-scale: "4"
        autoscaling.knative.dev/min-scale: "1"
        autoscaling.knative.dev/target: "7.5"
        autoscaling.knative.dev/window: 90s
    spec:
      containerConcurrency: 10
      timeoutSeconds: 30
      containers:
        - image: gosvc:v1
          command:
            - /app/gosvc
          args:
            - -rev
            - "2"
          env:
            - name: A
              value: "1"
            - name: B
              value: two words
            - name: C
              value: "yes"
          ports:
            - containerPort: 9000
          resources:
            limits:
              cpu: 250m
              memory: 1536Mi
            requests:
              cpu: 125m
          readinessProbe:
            httpGet:
              path: /healthz
          livenessProbe:
            httpGet:
              path: /live
  traffic:
    - tag: old
      revisionName: web-00001
      latestRevision: false
      percent: 20
    - latestRevision: true
      percent: 80
status:
  observedGeneration: 3
  conditions:
    - type: ConfigurationsReady
      status: "True"
      lastTransitionTime: "2026-01-02T03:04:05Z"
    - type: Ready
      status: "True"
      lastTransitionTime: "2026-01-02T03:04:05Z"
    - type: RoutesReady
      status: "True"
      lastTransitionTime: "2026-01-02T03:04:05Z"
  latestCreatedRevisionName: web-00003
  latestReadyRevisionName: web-00003
  url: http://web.localhost:8080
  traffic:
    - tag: old
      revisionName: web-00001
      latestRevision: false
      percent: 20
      url: http://old-web.localhost:8080
    - revisionName: web-00003
      latestRevision: true
      percent: 80
`
	if diff := cmp.Diff(want, string(out)); diff != "" {
		t.Errorf("Encode (-want +got):\n%s", diff)
	}
}

// TestEncodeRoundTrip checks that Decode(Encode(s)) gives back s's
// configuration and traffic.
func TestEncodeRoundTrip(t *testing.T) {
	plain := full()
	plain.Config = stratus.ServiceConfig{Image: "gosvc:v1"}
	plain.Config.Defaults()
	plain.Traffic = []v1.TrafficTarget{{Revision: 3, RevisionName: "web-00003", Latest: true, Percent: 100}}
	odd := full()
	odd.Config.CPU, odd.Config.CPURequest, odd.Config.MemoryMB, odd.Config.Window = 0.0125, 0.0125, 2048, stratus.Duration(6500*time.Millisecond)
	odd.Config.Env = map[string]string{"Q": `"quoted": {yaml} # not a comment`, "NL": "a\nb", "EMPTY": "", "NUM": "0x10"}
	odd.Config.Concurrency = 0
	h2c := full()
	h2c.Config.H2C = true
	for name, svc := range map[string]*v1.Service{"full": full(), "defaults": plain, "odd values": odd, "h2c": h2c} {
		t.Run(name, func(t *testing.T) {
			out, err := Encode(svc)
			if err != nil {
				t.Fatal(err)
			}
			m, err := Decode(out)
			if err != nil {
				t.Fatalf("Decode of Encode's output: %v\n%s", err, out)
			}
			if m.Name != svc.Name {
				t.Errorf("name %q", m.Name)
			}
			if diff := cmp.Diff(svc.Config, m.Config, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(SpecTraffic(svc.Traffic), m.Traffic, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("traffic (-want +got):\n%s", diff)
			}
		})
	}
}

// TestEncodeH2C: a service that speaks h2c to its container has its port
// named h2c, as Knative's manifests say it.
func TestEncodeH2C(t *testing.T) {
	svc := full()
	svc.Config.H2C = true
	out, err := Encode(svc)
	if err != nil {
		t.Fatal(err)
	}
	want := "          ports:\n            - name: h2c\n              containerPort: 9000\n"
	if !strings.Contains(string(out), want) {
		t.Errorf("Encode of an h2c service: no %q in\n%s", want, out)
	}
	svc.Config.H2C = false
	if out, err = Encode(svc); err != nil || strings.Contains(string(out), "name: h2c") {
		t.Errorf("Encode of an HTTP/1.1 service: %v\n%s", err, out)
	}
}

func TestEncodeStatus(t *testing.T) {
	for _, tt := range []struct {
		status, want, reason, message string
	}{
		{"Ready", "True", "", ""},
		{"ScaledToZero", "True", "", ""},
		{"Starting", "Unknown", "Starting", ""},
		{"CrashLoopBackOff", "False", "CrashLoopBackOff", "exit 1"},
	} {
		svc := full()
		svc.Status, svc.LastError = tt.status, "exit 1"
		out, err := Encode(svc)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Status statusOut `yaml:"status"`
		}
		if err := yaml.Unmarshal(out, &got); err != nil {
			t.Fatal(err)
		}
		if len(got.Status.Conditions) != 3 {
			t.Fatalf("%s: conditions %+v", tt.status, got.Status.Conditions)
		}
		for _, c := range got.Status.Conditions {
			if c.Status != tt.want || c.Reason != tt.reason || c.Message != tt.message {
				t.Errorf("%s: condition %+v, want status %s reason %q message %q", tt.status, c, tt.want, tt.reason, tt.message)
			}
		}
	}
}

// TestEncodeDefaultTraffic checks that a service whose latest revision
// takes all is written without spec.traffic (Knative's default), its
// status showing the one target.
func TestEncodeDefaultTraffic(t *testing.T) {
	svc := full()
	svc.Traffic = []v1.TrafficTarget{{Revision: 3, RevisionName: "web-00003", Latest: true, Percent: 100}}
	out, err := Encode(svc)
	if err != nil {
		t.Fatal(err)
	}
	spec, status, _ := strings.Cut(string(out), "\nstatus:\n")
	if strings.Contains(spec, "traffic:") {
		t.Errorf("spec has a traffic block:\n%s", spec)
	}
	if !strings.Contains(status, "  traffic:\n    - revisionName: web-00003\n      latestRevision: true\n      percent: 100\n") {
		t.Errorf("status traffic:\n%s", status)
	}
}
