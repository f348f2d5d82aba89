// Package knative reads and writes Knative Serving's Service manifests
// (serving.knative.dev/v1, YAML or JSON) as Stratus services. It does no
// I/O: Decode turns one manifest into a stratus.ServiceConfig and a
// traffic split, refusing by name every field Stratus does not support;
// Encode writes a service back as a manifest with a status in Knative's
// shape, and Decode(Encode(s)) gives back s's configuration and traffic.
// docs/knative.md lists what is supported and what is refused.
package knative

import (
	"fmt"
	"strings"

	"github.com/stratus-run/stratus"
)

// The manifest's type, as Knative Serving names it.
const (
	APIVersion = "serving.knative.dev/v1"
	Kind       = "Service"
)

// MaxManifestBytes bounds a manifest.
const MaxManifestBytes = 1 << 20

// Annotations Stratus reads. Knative accepts the older camel-case
// spellings of the scaling bounds too (minScale, maxScale,
// initialScale); so does Decode. Encode writes the current ones.
const (
	AnnotationAuth         = "stratus.dev/auth"
	AnnotationRegions      = "stratus.dev/regions"
	AnnotationMinScale     = "autoscaling.knative.dev/min-scale"
	AnnotationMaxScale     = "autoscaling.knative.dev/max-scale"
	AnnotationTarget       = "autoscaling.knative.dev/target"
	AnnotationInitialScale = "autoscaling.knative.dev/initial-scale"
	AnnotationWindow       = "autoscaling.knative.dev/window"
	AnnotationClass        = "autoscaling.knative.dev/class"
	AnnotationMetric       = "autoscaling.knative.dev/metric"
)

// Manifest is what a Service manifest asks for.
type Manifest struct {
	// Name is metadata.name.
	Name string
	// Config is the revision's configuration, with Stratus's defaults
	// filled in and validated.
	Config stratus.ServiceConfig
	// Traffic is spec.traffic; nil when the manifest has none, or when it
	// gives the latest revision all requests without a tag (Knative's
	// default): the latest ready revision then takes all.
	Traffic []stratus.TrafficTarget
}

// FieldError is a problem with one field of a manifest.
type FieldError struct {
	// Line is the field's line in the manifest, 1-based; 0 when unknown.
	Line int
	// Path names the field as kubectl does:
	// spec.template.spec.containers[0].env[1].valueFrom.
	Path string
	Msg  string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap makes every FieldError a stratus.ErrInvalid.
func (e *FieldError) Unwrap() error { return stratus.ErrInvalid }

// Error is every problem Decode found in a manifest, in the order of the
// manifest's fields.
type Error struct {
	Fields []*FieldError
}

func (e *Error) Error() string {
	if len(e.Fields) == 1 {
		return e.Fields[0].Error()
	}
	lines := make([]string, 0, len(e.Fields)+1)
	lines = append(lines, fmt.Sprintf("%d problems:", len(e.Fields)))
	for _, f := range e.Fields {
		lines = append(lines, "  "+f.Error())
	}
	return strings.Join(lines, "\n")
}

// Unwrap makes an Error a stratus.ErrInvalid.
func (e *Error) Unwrap() error { return stratus.ErrInvalid }

// notSupported is the message of a field Stratus refuses.
const notSupported = "not supported by Stratus"

// isDefaultTraffic tells whether t is Knative's default split: the latest
// revision takes all, without a tag.
func isDefaultTraffic(t []stratus.TrafficTarget) bool {
	return len(t) == 1 && t[0].Latest && t[0].Percent == 100 && t[0].Tag == ""
}

// NormalTraffic returns t, or nil when t is Knative's default split (the
// latest revision at 100 percent, no tag): two splits that route alike
// compare equal once normalised.
func NormalTraffic(t []stratus.TrafficTarget) []stratus.TrafficTarget {
	if len(t) == 0 || isDefaultTraffic(t) {
		return nil
	}
	return t
}

// RevisionName is the name Stratus gives revision n of service name.
func RevisionName(name string, n int) string {
	r := stratus.Revision{Service: name, Number: n}
	return r.Name()
}
