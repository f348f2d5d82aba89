package knative

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/stratus-run/stratus"
)

// FuzzDecode checks that Decode never panics, that every refusal is an
// *Error (ErrInvalid), and that what it accepts round-trips: decoding
// EncodeManifest's output gives the same manifest.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		head,
		withContainer("env:\n- {name: A, value: x}\nports: [{containerPort: 9000}]\nresources: {limits: {memory: 1G, cpu: 333m}}"),
		withContainer("readinessProbe: {httpGet: {path: /r}}\nlivenessProbe: {httpGet: {path: /l, port: 0}}\ncommand: [a]\nargs: [b, \"\"]"),
		withTemplate("annotations:\n  autoscaling.knative.dev/min-scale: \"1\"\n  autoscaling.knative.dev/window: 1m30s\n  autoscaling.knative.dev/target: \"0.5\"\n  autoscaling.knative.dev/initial-scale: \"1\"",
			"containerConcurrency: 3\ntimeoutSeconds: 9\n"),
		withContainer("", "traffic:\n- {revisionName: web-00001, percent: 30, tag: a}\n- {percent: 70}"),
		strings.Replace(head, "  name: web\n", "  name: web\n  annotations: {stratus.dev/auth: none}\n", 1),
		`{"apiVersion":"serving.knative.dev/v1","kind":"Service","metadata":{"name":"j"},"spec":{"template":{"spec":{"containers":[{"image":"i"}]}}}}`,
		`{"apiVersion":"serving.knative.dev/v1","kind":"Service","metadata":{"name":"w","annotations":{"stratus.dev/auth":"none"}},
		  "spec":{"template":{"metadata":{"annotations":{"autoscaling.knative.dev/max-scale":"0"}},"spec":{"containerConcurrency":2,
		  "containers":[{"image":"i","ports":[{"containerPort":81}],"resources":{"requests":{"cpu":0.5}}}]}},
		  "traffic":[{"revisionName":"w-00002","percent":100,"tag":"t"}]}}`,
		withContainer("volumeMounts: []"),
		"a: &a [*a, *a]\n",
		"- - - -\n",
		"{",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := Decode(in)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, stratus.ErrInvalid) || len(e.Fields) == 0 {
				t.Fatalf("error %v (%T) is no *Error of ErrInvalid", err, err)
			}
			return
		}
		out, err := EncodeManifest(m)
		if err != nil {
			t.Fatalf("EncodeManifest(%+v): %v", m, err)
		}
		back, err := Decode(out)
		if err != nil {
			t.Fatalf("Decode of EncodeManifest's output: %v\ninput:\n%s\noutput:\n%s", err, in, out)
		}
		if diff := cmp.Diff(m, back, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s\ninput:\n%s\noutput:\n%s", diff, in, out)
		}
	})
}
