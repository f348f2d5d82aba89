package knative

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

// The manifest as Encode writes it; field order is Knative's.
type (
	manifestOut struct {
		APIVersion string     `yaml:"apiVersion"`
		Kind       string     `yaml:"kind"`
		Metadata   metaOut    `yaml:"metadata"`
		Spec       specOut    `yaml:"spec"`
		Status     *statusOut `yaml:"status,omitempty"`
	}
	metaOut struct {
		Name        string            `yaml:"name,omitempty"`
		Annotations map[string]string `yaml:"annotations,omitempty"`
	}
	specOut struct {
		Template templateOut `yaml:"template"`
		Traffic  []targetOut `yaml:"traffic,omitempty"`
	}
	templateOut struct {
		Metadata *metaOut    `yaml:"metadata,omitempty"`
		Spec     revisionOut `yaml:"spec"`
	}
	revisionOut struct {
		ContainerConcurrency int            `yaml:"containerConcurrency"`
		TimeoutSeconds       int            `yaml:"timeoutSeconds,omitempty"`
		Containers           []containerOut `yaml:"containers"`
	}
	containerOut struct {
		Image          string        `yaml:"image"`
		Command        []string      `yaml:"command,omitempty"`
		Args           []string      `yaml:"args,omitempty"`
		Env            []envOut      `yaml:"env,omitempty"`
		Ports          []portOut     `yaml:"ports,omitempty"`
		Resources      *resourcesOut `yaml:"resources,omitempty"`
		ReadinessProbe *probeOut     `yaml:"readinessProbe,omitempty"`
		LivenessProbe  *probeOut     `yaml:"livenessProbe,omitempty"`
	}
	envOut struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	}
	portOut struct {
		Name          string `yaml:"name,omitempty"`
		ContainerPort int    `yaml:"containerPort"`
	}
	resourcesOut struct {
		Limits   map[string]string `yaml:"limits"`
		Requests map[string]string `yaml:"requests,omitempty"`
	}
	probeOut struct {
		HTTPGet struct {
			Path string `yaml:"path"`
		} `yaml:"httpGet"`
	}
	targetOut struct {
		Tag            string `yaml:"tag,omitempty"`
		RevisionName   string `yaml:"revisionName,omitempty"`
		LatestRevision bool   `yaml:"latestRevision"`
		Percent        int    `yaml:"percent"`
		URL            string `yaml:"url,omitempty"`
	}
	statusOut struct {
		ObservedGeneration        int            `yaml:"observedGeneration"`
		Conditions                []conditionOut `yaml:"conditions"`
		LatestCreatedRevisionName string         `yaml:"latestCreatedRevisionName,omitempty"`
		LatestReadyRevisionName   string         `yaml:"latestReadyRevisionName,omitempty"`
		URL                       string         `yaml:"url,omitempty"`
		Traffic                   []targetOut    `yaml:"traffic,omitempty"`
	}
	conditionOut struct {
		Type               string `yaml:"type"`
		Status             string `yaml:"status"`
		Reason             string `yaml:"reason,omitempty"`
		Message            string `yaml:"message,omitempty"`
		LastTransitionTime string `yaml:"lastTransitionTime"`
	}
)

// EncodeManifest writes m as a Service manifest without a status: every
// field of m.Config that differs from Knative's default explicitly, so
// that Decode reads back m.
func EncodeManifest(m *Manifest) ([]byte, error) {
	return marshal(manifestOf(m))
}

// Encode writes svc as Knative's Service: the spec as applied (its
// configuration and its traffic split) and a status in Knative's shape:
// the conditions Ready, ConfigurationsReady and RoutesReady, the url, the
// latest revisions and the traffic as routed now. Decode of the output
// reads back svc's configuration and split.
func Encode(svc *v1.Service) ([]byte, error) {
	m := &Manifest{Name: svc.Name, Config: svc.Config, Traffic: SpecTraffic(svc.Traffic)}
	out := manifestOf(m)
	out.Status = statusOf(svc)
	return marshal(out)
}

// SpecTraffic is the split that svc's traffic as shown was set with: nil
// when it is the default (the latest revision takes all).
func SpecTraffic(shown []v1.TrafficTarget) []stratus.TrafficTarget {
	var t []stratus.TrafficTarget
	for _, x := range shown {
		st := stratus.TrafficTarget{Latest: x.Latest, Percent: x.Percent, Tag: x.Tag}
		if !x.Latest {
			st.Revision = x.Revision
		}
		t = append(t, st)
	}
	return NormalTraffic(t)
}

func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return b.Bytes(), nil
}

func manifestOf(m *Manifest) *manifestOut {
	c := m.Config
	out := &manifestOut{APIVersion: APIVersion, Kind: Kind, Metadata: metaOut{Name: m.Name}}
	if c.Auth == stratus.AuthNone {
		out.Metadata.Annotations = map[string]string{AnnotationAuth: stratus.AuthNone}
	}
	if len(c.Regions) > 0 {
		if out.Metadata.Annotations == nil {
			out.Metadata.Annotations = map[string]string{}
		}
		out.Metadata.Annotations[AnnotationRegions] = strings.Join(c.Regions, ",")
	}
	ann := map[string]string{AnnotationMinScale: strconv.Itoa(c.MinScale)}
	if c.MaxScale != 0 {
		ann[AnnotationMaxScale] = strconv.Itoa(c.MaxScale)
	}
	if c.Target != 0 {
		ann[AnnotationTarget] = strconv.FormatFloat(c.Target, 'f', -1, 64)
	}
	if c.InitialScale != nil {
		ann[AnnotationInitialScale] = strconv.Itoa(*c.InitialScale)
	}
	if w := time.Duration(c.Window); w != 0 {
		ann[AnnotationWindow] = formatWindow(w)
	}
	ct := containerOut{Image: c.Image, Command: c.Command, Args: c.Args}
	for _, k := range sortedKeys(c.Env) {
		ct.Env = append(ct.Env, envOut{Name: k, Value: c.Env[k]})
	}
	if c.Port != 0 || c.H2C {
		port := c.Port
		if port == 0 {
			port = stratus.DefaultServicePort
		}
		ct.Ports = []portOut{{ContainerPort: port}}
		if c.H2C {
			ct.Ports[0].Name = portName(true)
		}
	}
	if c.MemoryMB != 0 || c.CPU != 0 {
		ct.Resources = &resourcesOut{Limits: map[string]string{}}
		if c.MemoryMB != 0 {
			ct.Resources.Limits["memory"] = formatMemory(c.MemoryMB)
		}
		if c.CPU != 0 {
			ct.Resources.Limits["cpu"] = formatCPU(c.CPU)
		}
		if c.CPURequest != 0 {
			ct.Resources.Requests = map[string]string{"cpu": formatCPU(c.CPURequest)}
		}
	}
	if c.HealthPath != "" {
		ct.ReadinessProbe = &probeOut{}
		ct.ReadinessProbe.HTTPGet.Path = c.HealthPath
	}
	if c.LivenessPath != "" {
		ct.LivenessProbe = &probeOut{}
		ct.LivenessProbe.HTTPGet.Path = c.LivenessPath
	}
	out.Spec.Template = templateOut{
		Metadata: &metaOut{Annotations: ann},
		Spec:     revisionOut{ContainerConcurrency: c.Concurrency, TimeoutSeconds: c.TimeoutSec, Containers: []containerOut{ct}},
	}
	for _, t := range m.Traffic {
		o := targetOut{Tag: t.Tag, LatestRevision: t.Latest, Percent: t.Percent}
		if !t.Latest {
			o.RevisionName = RevisionName(m.Name, t.Revision)
		}
		out.Spec.Traffic = append(out.Spec.Traffic, o)
	}
	return out
}

// formatWindow writes w in whole seconds when it is (60s), else as Go
// writes durations; Knative reads both.
func formatWindow(w time.Duration) string {
	if w%time.Second == 0 {
		return strconv.FormatInt(int64(w/time.Second), 10) + "s"
	}
	return w.String()
}

// statusOf is svc's status in Knative's shape. Stratus keeps no
// generation count: observedGeneration is the latest revision's number.
func statusOf(svc *v1.Service) *statusOut {
	st := &statusOut{
		ObservedGeneration:        svc.Revision,
		LatestCreatedRevisionName: svc.RevisionName,
		LatestReadyRevisionName:   svc.RevisionName,
		URL:                       svc.HostURL,
	}
	if st.URL == "" {
		st.URL = svc.URL
	}
	status, reason, msg := "Unknown", svc.Status, ""
	switch svc.Status {
	case "Ready", "ScaledToZero":
		status, reason = "True", ""
	case "CrashLoopBackOff":
		status, msg = "False", svc.LastError
	}
	at := svc.UpdatedAt.UTC().Format(time.RFC3339)
	for _, typ := range []string{"ConfigurationsReady", "Ready", "RoutesReady"} {
		st.Conditions = append(st.Conditions, conditionOut{Type: typ, Status: status, Reason: reason, Message: msg, LastTransitionTime: at})
	}
	for _, t := range svc.Traffic {
		name := t.RevisionName
		if name == "" && t.Revision > 0 {
			name = RevisionName(svc.Name, t.Revision)
		}
		st.Traffic = append(st.Traffic, targetOut{Tag: t.Tag, RevisionName: name, LatestRevision: t.Latest, Percent: t.Percent, URL: t.HostURL})
	}
	return st
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
