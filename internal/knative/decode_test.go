package knative

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/stratus-run/stratus"
)

// head is a manifest up to its one container's first field.
const head = `apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: web
spec:
  template:
    spec:
      containers:
      - image: gosvc:v1
`

// withContainer is head with lines added to the container (indented
// under it) and then after it, under spec (traffic: ...).
func withContainer(container string, spec ...string) string {
	s := head + indent(container, 8)
	for _, l := range spec {
		s += indent(l, 2)
	}
	return s
}

// withTemplate is a manifest whose template's metadata and spec (beside
// its containers) hold lines meta and spec.
func withTemplate(meta, spec string) string {
	return `apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: web
spec:
  template:
    metadata:
` + indent(meta, 6) + `    spec:
` + indent(spec, 6) + `      containers:
      - image: gosvc:v1
`
}

func indent(s string, n int) string {
	if s == "" {
		return ""
	}
	pad := strings.Repeat(" ", n)
	var b strings.Builder
	for l := range strings.SplitSeq(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(pad + l + "\n")
	}
	return b.String()
}

// defaults is the configuration of head: Stratus's defaults, with
// Knative's containerConcurrency 0 (no limit).
func defaults(edit func(c *stratus.ServiceConfig)) stratus.ServiceConfig {
	c := stratus.ServiceConfig{Image: "gosvc:v1"}
	if edit != nil {
		edit(&c)
	}
	c.Defaults()
	return c
}

func intp(n int) *int { return &n }

func TestDecodeSupported(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		cfg     stratus.ServiceConfig
		traffic []stratus.TrafficTarget
	}{
		{"minimal", head, defaults(nil), nil},
		{"json", `{"apiVersion":"serving.knative.dev/v1","kind":"Service","metadata":{"name":"web"},
		  "spec":{"template":{"spec":{"containers":[{"image":"gosvc:v1","env":[{"name":"A","value":"1"}]}]}}}}`,
			defaults(func(c *stratus.ServiceConfig) { c.Env = map[string]string{"A": "1"} }), nil},
		{"json escapes and tabs", "{\n\t\"apiVersion\": \"serving.knative.dev\\/v1\", \"kind\": \"Service\", \"metadata\": {\"name\": \"web\"},\n\t\"spec\": {\"template\": {\"spec\": {\"containerConcurrency\": 3, \"containers\": [{\"image\": \"gosvc:v1\", \"env\": [{\"name\": \"A\", \"value\": \"\\u00e9\"}, {\"name\": \"B\", \"value\": null}],\n\t\"readinessProbe\": {\"tcpSocket\": {\"port\": 0}}}]}}}}",
			defaults(func(c *stratus.ServiceConfig) { c.Concurrency = 3; c.Env = map[string]string{"A": "é", "B": ""} }), nil},
		{"namespace default", strings.Replace(head, "  name: web\n", "  name: web\n  namespace: default\n", 1), defaults(nil), nil},
		{"auth none", strings.Replace(head, "  name: web\n", "  name: web\n  annotations:\n    stratus.dev/auth: none\n", 1),
			defaults(func(c *stratus.ServiceConfig) { c.Auth = stratus.AuthNone }), nil},
		{"auth token", strings.Replace(head, "  name: web\n", "  name: web\n  annotations:\n    stratus.dev/auth: token\n", 1), defaults(nil), nil},
		{"regions", strings.Replace(head, "  name: web\n", "  name: web\n  annotations:\n    stratus.dev/regions: eu-west-1, eu-central-1\n", 1),
			defaults(func(c *stratus.ServiceConfig) { c.Regions = []string{"eu-west-1", "eu-central-1"} }), nil},
		{"command and args", withContainer("command: [/app/gosvc]\nargs: [-rev, two]"),
			defaults(func(c *stratus.ServiceConfig) { c.Command = []string{"/app/gosvc"}; c.Args = []string{"-rev", "two"} }), nil},
		{"env", withContainer("env:\n- name: A\n  value: one\n- name: B\n  value: \"2\"\n- name: EMPTY"),
			defaults(func(c *stratus.ServiceConfig) { c.Env = map[string]string{"A": "one", "B": "2", "EMPTY": ""} }), nil},
		{"port", withContainer("ports:\n- containerPort: 9000\n  name: http1\n  protocol: TCP"),
			defaults(func(c *stratus.ServiceConfig) { c.Port = 9000 }), nil},
		{"limits", withContainer("resources:\n  limits:\n    memory: 1Gi\n    cpu: 250m"),
			defaults(func(c *stratus.ServiceConfig) { c.MemoryMB = 1024; c.CPU = 0.25 }), nil},
		{"requests without limits", withContainer("resources:\n  requests:\n    memory: 128Mi\n    cpu: 2"),
			defaults(func(c *stratus.ServiceConfig) { c.MemoryMB = 128; c.CPU = 2 }), nil},
		{"limits over requests", withContainer("resources:\n  requests: {memory: 128Mi, cpu: 0.5}\n  limits: {memory: 256Mi, cpu: 1}"),
			defaults(func(c *stratus.ServiceConfig) { c.MemoryMB = 256; c.CPU = 1; c.CPURequest = 0.5 }), nil},
		{"cpu request and limit", withContainer("resources:\n  limits: {cpu: 1000m, memory: 128Mi}\n  requests: {cpu: 125m}"),
			defaults(func(c *stratus.ServiceConfig) { c.MemoryMB = 128; c.CPU = 1; c.CPURequest = 0.125 }), nil},
		{"cpu request equal to its limit", withContainer("resources:\n  limits: {cpu: 2}\n  requests: {cpu: \"2\"}"),
			defaults(func(c *stratus.ServiceConfig) { c.CPU = 2; c.CPURequest = 2 }), nil},
		{"memory request beside a cpu limit", withContainer("resources:\n  limits: {cpu: 500m}\n  requests: {memory: 64Mi}"),
			defaults(func(c *stratus.ServiceConfig) { c.MemoryMB = 64; c.CPU = 0.5 }), nil},
		{"decimal memory rounds up", withContainer("resources:\n  limits:\n    memory: 1G"),
			defaults(func(c *stratus.ServiceConfig) { c.MemoryMB = 954 }), nil},
		{"readiness", withContainer("readinessProbe:\n  httpGet:\n    path: /healthz\n    port: 8080\n    scheme: HTTP"),
			defaults(func(c *stratus.ServiceConfig) { c.HealthPath = "/healthz" }), nil},
		{"readiness and liveness", withContainer("ports: [{containerPort: 9000}]\nreadinessProbe: {httpGet: {path: /ready, port: 9000}}\nlivenessProbe: {httpGet: {path: /live, port: 0}}"),
			defaults(func(c *stratus.ServiceConfig) { c.Port = 9000; c.HealthPath = "/ready"; c.LivenessPath = "/live" }), nil},
		{"probe on the named port", withContainer("readinessProbe: {httpGet: {path: /r, port: http1}}"),
			defaults(func(c *stratus.ServiceConfig) { c.HealthPath = "/r" }), nil},
		{"h2c", withContainer("ports: [{containerPort: 50051, name: h2c}]\nreadinessProbe: {httpGet: {path: /r, port: h2c}}"),
			defaults(func(c *stratus.ServiceConfig) { c.Port = 50051; c.H2C = true; c.HealthPath = "/r" }), nil},
		{"h2c on the default port", withContainer("ports: [{name: h2c}]"),
			defaults(func(c *stratus.ServiceConfig) { c.H2C = true }), nil},
		{"tcp probe is the default", withContainer("readinessProbe: {tcpSocket: {port: 8080}}\nlivenessProbe: {tcpSocket: {}}"), defaults(nil), nil},
		{"concurrency and timeout", withTemplate("", "containerConcurrency: 5\ntimeoutSeconds: 30\n"),
			defaults(func(c *stratus.ServiceConfig) { c.Concurrency = 5; c.TimeoutSec = 30 }), nil},
		{"annotations", withTemplate(`annotations:
  autoscaling.knative.dev/min-scale: "2"
  autoscaling.knative.dev/max-scale: "5"
  autoscaling.knative.dev/target: "7.5"
  autoscaling.knative.dev/initial-scale: "3"
  autoscaling.knative.dev/window: 90s
  autoscaling.knative.dev/class: kpa.autoscaling.knative.dev
  autoscaling.knative.dev/metric: concurrency`, ""),
			defaults(func(c *stratus.ServiceConfig) {
				c.MinScale, c.MaxScale, c.Target, c.InitialScale, c.Window = 2, 5, 7.5, intp(3), stratus.Duration(90*time.Second)
			}), nil},
		{"older spellings", withTemplate(`annotations:
  autoscaling.knative.dev/minScale: "1"
  autoscaling.knative.dev/maxScale: "3"
  autoscaling.knative.dev/initialScale: "2"`, ""),
			defaults(func(c *stratus.ServiceConfig) { c.MinScale, c.MaxScale, c.InitialScale = 1, 3, intp(2) }), nil},
		{"max-scale 0 is no bound", withTemplate("annotations:\n  autoscaling.knative.dev/max-scale: \"0\"", ""),
			defaults(func(c *stratus.ServiceConfig) { c.MaxScale = stratus.MaxServiceScale }), nil},
		{"traffic", withContainer("", `traffic:
- revisionName: web-00001
  percent: 50
  tag: blue
- latestRevision: true
  percent: 50
  tag: green`), defaults(nil),
			[]stratus.TrafficTarget{{Revision: 1, Percent: 50, Tag: "blue"}, {Latest: true, Percent: 50, Tag: "green"}}},
		{"traffic with a 0% tag", withContainer("", `traffic:
- {revisionName: web-00012, latestRevision: false, tag: old}
- {percent: 100}`), defaults(nil),
			[]stratus.TrafficTarget{{Revision: 12, Tag: "old"}, {Latest: true, Percent: 100}}},
		{"default traffic is none", withContainer("", "traffic:\n- {latestRevision: true, percent: 100}"), defaults(nil), nil},
		{"empty traffic is none", withContainer("", "traffic: []"), defaults(nil), nil},
		{"status is ignored", head + "status:\n  url: http://x\n  conditions: [{type: Ready, status: \"True\"}]\n", defaults(nil), nil},
		{"nulls are absent", withContainer("env:\nargs: ~"), defaults(nil), nil},
		{"one document with markers", "---\n" + head + "---\n", defaults(nil), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Decode([]byte(tt.in))
			if err != nil {
				t.Fatalf("Decode: %v\n%s", err, tt.in)
			}
			if m.Name != "web" {
				t.Errorf("name %q", m.Name)
			}
			if diff := cmp.Diff(tt.cfg, m.Config, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.traffic, m.Traffic, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("traffic (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDecodeRefused checks that each field Stratus does not support, and
// each bad value, is refused with the field's path (and line).
func TestDecodeRefused(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // in the error
	}{
		{"empty", "", "the manifest is empty"},
		{"null", "~\n", "the manifest is empty"},
		{"malformed yaml", "apiVersion: [\n", "malformed YAML or JSON"},
		{"malformed json", `{"apiVersion": "serving.knative.dev/v1",`, "malformed JSON: unexpected EOF"},
		{"json after json", `{"apiVersion": "serving.knative.dev/v1"} {}`, "malformed JSON: more after the object"},
		{"json duplicate key", "{\"apiVersion\": \"serving.knative.dev/v1\",\n \"apiVersion\": \"x\"}", "line 2: apiVersion: given twice"},
		{"json unknown field", "{\"apiVersion\": \"serving.knative.dev/v1\", \"kind\": \"Service\",\n\n  \"extra\": [1]}", "line 3: extra: not supported by Stratus"},
		{"json number as string", `{"apiVersion": 1}`, "apiVersion: want a string, got the number 1"},
		{"json big integer", `{"spec": {"template": {"spec": {"containerConcurrency": 1e3}}}}`, "containerConcurrency: want an integer, got the number 1e3"},
		{"not a mapping", "- a\n- b\n", "want a mapping, got a list"},
		{"two documents", head + "---\n" + head, "line 10: the file holds more than one document"},
		{"duplicate key", head + "kind: Service\n", "line 10: kind: given twice"},
		{"api version", strings.Replace(head, "serving.knative.dev/v1", "serving.knative.dev/v1alpha1", 1), `apiVersion: "serving.knative.dev/v1alpha1": Stratus takes serving.knative.dev/v1`},
		{"kind", strings.Replace(head, "kind: Service", "kind: Deployment", 1), `kind: "Deployment"`},
		{"no api version", strings.Replace(head, "apiVersion: serving.knative.dev/v1\n", "", 1), "apiVersion: required"},
		{"no name", strings.Replace(head, "  name: web\n", "  labels: {}\n", 1), "metadata.labels: not supported by Stratus"},
		{"missing name", strings.Replace(head, "  name: web\n", "  namespace: default\n", 1), "metadata.name: required"},
		{"bad name", strings.Replace(head, "name: web", "name: \"a b\"", 1), `metadata.name: "a b"`},
		{"other namespace", strings.Replace(head, "  name: web\n", "  name: web\n  namespace: prod\n", 1), `metadata.namespace: "prod": Stratus has no namespaces`},
		{"unknown top-level", head + "extra: 1\n", "line 10: extra: not supported by Stratus"},
		{"service annotation", strings.Replace(head, "  name: web\n", "  name: web\n  annotations:\n    autoscaling.knative.dev/min-scale: \"1\"\n", 1),
			"metadata.annotations[autoscaling.knative.dev/min-scale]: not supported by Stratus here (autoscaling.knative.dev annotations go under spec.template.metadata.annotations)"},
		{"bad auth", strings.Replace(head, "  name: web\n", "  name: web\n  annotations:\n    stratus.dev/auth: open\n", 1), `metadata.annotations[stratus.dev/auth]: "open"`},
		{"bad regions", strings.Replace(head, "  name: web\n", "  name: web\n  annotations:\n    stratus.dev/regions: eu,EU\n", 1), `metadata.annotations[stratus.dev/regions]: "eu,EU"`},
		{"revision name", withTemplate("name: web-v2", ""), "spec.template.metadata.name: not supported by Stratus (Stratus names revisions"},
		{"unknown annotation", withTemplate("annotations:\n  autoscaling.knative.dev/target-utilization-percentage: \"70\"", ""),
			"spec.template.metadata.annotations[autoscaling.knative.dev/target-utilization-percentage]: not supported by Stratus"},
		{"unquoted annotation", withTemplate("annotations:\n  autoscaling.knative.dev/min-scale: 1", ""),
			`spec.template.metadata.annotations[autoscaling.knative.dev/min-scale]: want a string, got the number 1 (quote it: "1")`},
		{"both spellings", withTemplate("annotations:\n  autoscaling.knative.dev/minScale: \"1\"\n  autoscaling.knative.dev/min-scale: \"2\"", ""),
			"[autoscaling.knative.dev/min-scale]: min-scale is given under both its spellings"},
		{"bad min-scale", withTemplate("annotations:\n  autoscaling.knative.dev/min-scale: \"-1\"", ""), `[autoscaling.knative.dev/min-scale]: "-1": want a whole number`},
		{"min over max", withTemplate("annotations:\n  autoscaling.knative.dev/min-scale: \"5\"\n  autoscaling.knative.dev/max-scale: \"2\"", ""), "spec.template: max 2"},
		{"bad target", withTemplate("annotations:\n  autoscaling.knative.dev/target: \"lots\"", ""), `[autoscaling.knative.dev/target]: "lots"`},
		{"bad window", withTemplate("annotations:\n  autoscaling.knative.dev/window: 1s", ""), `[autoscaling.knative.dev/window]: "1s": want a duration between 6s and 1h0m0s`},
		{"other autoscaler", withTemplate("annotations:\n  autoscaling.knative.dev/class: hpa.autoscaling.knative.dev", ""), "Stratus has one autoscaler"},
		{"rps metric", withTemplate("annotations:\n  autoscaling.knative.dev/metric: rps", ""), "Stratus scales on concurrency"},
		{"concurrency range", withTemplate("", "containerConcurrency: 5000\n"), "spec.template.spec.containerConcurrency: 5000: must be between 0 and 1000"},
		{"concurrency type", withTemplate("", "containerConcurrency: \"5\"\n"), `containerConcurrency: want an integer, got the string "5"`},
		{"timeout", withTemplate("", "timeoutSeconds: 0\n"), "spec.template.spec.timeoutSeconds: 0: must be between 1 and 3600"},
		{"volumes", withTemplate("", "volumes: []\n"), "spec.template.spec.volumes: not supported by Stratus"},
		{"service account", withTemplate("", "serviceAccountName: x\n"), "spec.template.spec.serviceAccountName: not supported"},
		{"two containers", head + "      - image: other:v1\n", "spec.template.spec.containers: 2 containers: a Stratus service runs exactly one"},
		{"no containers", strings.Replace(head, "      containers:\n      - image: gosvc:v1\n", "      containers: []\n", 1), "0 containers"},
		{"no spec", "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: web}\n", "spec.template.spec.containers: required"},
		{"no image", strings.Replace(head, "- image: gosvc:v1", "- args: [x]", 1), "spec.template.spec.containers[0].image: required"},
		{"container name", withContainer("name: user-container"), "spec.template.spec.containers[0].name: not supported by Stratus"},
		{"volume mounts", withContainer("volumeMounts: []"), "line 10: spec.template.spec.containers[0].volumeMounts: not supported by Stratus"},
		{"image pull policy", withContainer("imagePullPolicy: Always"), "containers[0].imagePullPolicy: not supported by Stratus (images come from the server's store"},
		{"security context", withContainer("securityContext: {}"), "containers[0].securityContext: not supported"},
		{"env from", withContainer("envFrom: []"), "containers[0].envFrom: not supported"},
		{"value from", withContainer("env:\n- name: A\n  valueFrom:\n    secretKeyRef: {name: s, key: k}"),
			"line 12: spec.template.spec.containers[0].env[0].valueFrom: not supported by Stratus"},
		{"env without name", withContainer("env:\n- value: x"), "containers[0].env[0].name: required"},
		{"env twice", withContainer("env:\n- {name: A, value: x}\n- {name: A, value: y}"), `env[1].name: "A" is given twice`},
		{"env number", withContainer("env:\n- {name: A, value: 1}"), `env[0].value: want a string, got the number 1 (quote it: "1")`},
		{"reserved env", withContainer("env:\n- {name: PORT, value: \"1\"}"), `environment variable "PORT" is reserved`},
		{"two ports", withContainer("ports: [{containerPort: 1}, {containerPort: 2}]"), "containers[0].ports: 2 ports: a Stratus service listens on one"},
		{"unknown port name", withContainer("ports: [{containerPort: 8080, name: http2}]"), `ports[0].name: "http2": must be http1 (HTTP/1.1, the default) or h2c`},
		{"probe names http1 of an h2c port", withContainer("ports: [{name: h2c}]\nreadinessProbe: {httpGet: {path: /r, port: http1}}"),
			`readinessProbe.httpGet.port: "http1": the container's port is named h2c`},
		{"probe names h2c of an http1 port", withContainer("readinessProbe: {tcpSocket: {port: h2c}}"),
			`readinessProbe.tcpSocket.port: "h2c": the container's port is named http1`},
		{"bad port", withContainer("ports: [{containerPort: 70000}]"), "ports[0].containerPort: 70000: must be between 1 and 65535"},
		{"udp", withContainer("ports: [{containerPort: 53, protocol: UDP}]"), `ports[0].protocol: "UDP"`},
		{"host port", withContainer("ports: [{containerPort: 8080, hostPort: 80}]"), "ports[0].hostPort: not supported"},
		{"bad quantity", withContainer("resources:\n  limits:\n    memory: lots"), `line 12: spec.template.spec.containers[0].resources.limits.memory: "lots" is not a quantity`},
		{"bad suffix", withContainer("resources:\n  limits:\n    memory: 5Xi"), `limits.memory: "5Xi": unknown suffix "Xi"`},
		{"negative cpu", withContainer("resources:\n  limits:\n    cpu: -1"), `limits.cpu: "-1": cpu must be more than 0`},
		{"memory too small", withContainer("resources:\n  limits:\n    memory: 1Mi"), "resources.limits.memory: 1Mi: must be between 64Mi and 32Gi"},
		{"cpu too small", withContainer("resources:\n  requests:\n    cpu: 1m"), "resources.requests.cpu: 1m: must be between 10m and 64"},
		{"cpu request too small", withContainer("resources:\n  limits: {cpu: 1}\n  requests: {cpu: 5m}"), "resources.requests.cpu: 5m: must be at least 10m"},
		{"cpu request over its limit", withContainer("resources:\n  limits: {cpu: 250m}\n  requests: {cpu: 500m}"), "resources.requests.cpu: 500m is more than limits.cpu, 250m"},
		{"request over limit", withContainer("resources: {limits: {memory: 128Mi}, requests: {memory: 1Gi}}"), "resources.requests.memory: 1Gi is more than limits.memory, 128Mi"},
		{"gpu", withContainer("resources: {limits: {nvidia.com/gpu: 1}}"), "resources.limits.nvidia.com/gpu: not supported"},
		{"exec probe", withContainer("livenessProbe: {exec: {command: [true]}}"), "containers[0].livenessProbe.exec: not supported by Stratus"},
		{"probe timing", withContainer("readinessProbe: {httpGet: {path: /}, periodSeconds: 1}"), "readinessProbe.periodSeconds: not supported by Stratus (probe timing is the server's"},
		{"probe headers", withContainer("readinessProbe: {httpGet: {path: /, httpHeaders: []}}"), "readinessProbe.httpGet.httpHeaders: not supported"},
		{"probe port", withContainer("readinessProbe: {httpGet: {path: /, port: 9090}}"), "readinessProbe.httpGet.port: 9090: Stratus probes the container's port, 8080"},
		{"probe path", withContainer("readinessProbe: {httpGet: {path: healthz}}"), `readinessProbe.httpGet.path: "healthz": must start with /`},
		{"https probe", withContainer("readinessProbe: {httpGet: {path: /, scheme: HTTPS}}"), `httpGet.scheme: "HTTPS"`},
		{"two probe kinds", withContainer("readinessProbe: {httpGet: {path: /}, tcpSocket: {}}"), "readinessProbe: give one of httpGet and tcpSocket"},
		{"startup probe", withContainer("startupProbe: {}"), "containers[0].startupProbe: not supported"},
		{"traffic sum", withContainer("", "traffic:\n- {revisionName: web-00001, percent: 60}\n- {latestRevision: true, percent: 60}"), "spec.traffic: percents sum to 120, not 100"},
		{"traffic percent", withContainer("", "traffic:\n- {latestRevision: true, percent: 101}"), "spec.traffic[0].percent: 101: must be between 0 and 100"},
		{"traffic revision of another service", withContainer("", "traffic:\n- {revisionName: api-00001, percent: 100}"), `spec.traffic[0].revisionName: "api-00001": Stratus names the revisions of web web-00001, web-00002`},
		{"traffic revision name form", withContainer("", "traffic:\n- {revisionName: web-1, percent: 100}"), `spec.traffic[0].revisionName: "web-1"`},
		{"traffic latest and name", withContainer("", "traffic:\n- {revisionName: web-00001, latestRevision: true, percent: 100}"), "spec.traffic[0].latestRevision: true names the latest revision"},
		{"traffic not latest without name", withContainer("", "traffic:\n- {latestRevision: false, percent: 100}"), "spec.traffic[0].revisionName: required with latestRevision false"},
		{"traffic tag", withContainer("", "traffic:\n- {latestRevision: true, percent: 100, tag: Blue}"), `spec.traffic: tag "Blue"`},
		{"traffic tag twice", withContainer("", "traffic:\n- {revisionName: web-00001, percent: 50, tag: a}\n- {percent: 50, tag: a}"), `tag "a" is given twice`},
		{"traffic configuration", withContainer("", "traffic:\n- {configurationName: web, percent: 100}"), "spec.traffic[0].configurationName: not supported"},
		{"traffic url", withContainer("", "traffic:\n- {percent: 100, url: http://x}"), "spec.traffic[0].url: not supported by Stratus (the server writes it"},
		{"alias", "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: &m {name: web}\nextra: *m\n", "extra: not supported"},
		{"alias value", strings.Replace(head, "  name: web\n", "  name: &n web\n  namespace: *n\n", 1), "metadata.namespace: YAML aliases are not supported"},
		{"merge key", head + "<<: {}\n", "<<: not supported"},
		{"binary", strings.Replace(head, "image: gosvc:v1", "image: !!binary aGVsbG8=", 1), "containers[0].image: want a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Decode([]byte(tt.in))
			if err == nil {
				t.Fatalf("Decode accepted %+v from\n%s", m, tt.in)
			}
			if !errors.Is(err, stratus.ErrInvalid) {
				t.Errorf("error %v is not ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error:\n%v\nwant it to hold %q", err, tt.want)
			}
		})
	}
}

// TestDecodeListsEveryProblem checks that one Decode reports every
// refused field, in order.
func TestDecodeListsEveryProblem(t *testing.T) {
	_, err := Decode([]byte(withContainer("name: c\nvolumeMounts: []\nenv:\n- {name: A, valueFrom: {}}")))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is no *Error", err)
	}
	var paths []string
	for _, f := range e.Fields {
		paths = append(paths, f.Path)
	}
	want := []string{
		"spec.template.spec.containers[0].name",
		"spec.template.spec.containers[0].volumeMounts",
		"spec.template.spec.containers[0].env[0].valueFrom",
	}
	if diff := cmp.Diff(want, paths); diff != "" {
		t.Errorf("paths (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(err.Error(), "3 problems:\n  line 10: ") {
		t.Errorf("error reads %q", err)
	}
}

func TestDecodeTooLarge(t *testing.T) {
	big := head + "# " + strings.Repeat("x", MaxManifestBytes) + "\n"
	if _, err := Decode([]byte(big)); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("Decode of %d bytes: %v", len(big), err)
	}
}
