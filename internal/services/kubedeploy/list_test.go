package kubedeploy

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stratus-run/stratus/internal/kube"
	"github.com/stratus-run/stratus/internal/services"
)

// TestRevisionOf: a Deployment names its revision by its annotation, or
// made without it by its service label, when the label holds the name
// as given; one whose label lost the name, or whose name is not the
// revision's, names none.
func TestRevisionOf(t *testing.T) {
	meta := func(name, label, annotation string, number string) *metav1.ObjectMeta {
		m := &metav1.ObjectMeta{Name: name, Labels: map[string]string{kube.LabelService: label, LabelRevision: number}}
		if annotation != "" {
			m.Annotations = map[string]string{AnnotationService: annotation}
		}
		return m
	}
	for _, tc := range []struct {
		what string
		m    *metav1.ObjectMeta
		want services.RevisionRef
		ok   bool
	}{
		{"annotated", meta(Name("My_Svc", 2), kube.Name("My_Svc"), "My_Svc", "2"), services.RevisionRef{Service: "My_Svc", Number: 2}, true},
		{"a label that is the name", meta(Name("web", 1), "web", "", "1"), services.RevisionRef{Service: "web", Number: 1}, true},
		{"a label that lost the name", meta(Name("My_Svc", 2), kube.Name("My_Svc"), "", "2"), services.RevisionRef{}, false},
		{"another object's name", meta("web-r1", "web", "", "1"), services.RevisionRef{}, false},
		{"no number", meta(Name("web", 1), "web", "", "x"), services.RevisionRef{}, false},
	} {
		got, ok := revisionOf(tc.m)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: %v, %v; want %v, %v", tc.what, got, ok, tc.want, tc.ok)
		}
	}
}
