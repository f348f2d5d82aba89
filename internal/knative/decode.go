package knative

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/stratus-run/stratus"
)

// maxErrors bounds the problems Decode reports about one manifest.
const maxErrors = 20

// Decode reads one Service manifest, YAML or JSON. It refuses, by name,
// every field that Stratus does not support; it ignores status, which
// the server writes (as Kubernetes ignores a status given to apply).
// Its errors are an *Error (a stratus.ErrInvalid) listing each problem
// with its line and field.
func Decode(data []byte) (*Manifest, error) {
	if len(data) > MaxManifestBytes {
		return nil, &Error{Fields: []*FieldError{{Msg: fmt.Sprintf("the manifest takes %d bytes, more than %d", len(data), MaxManifestBytes)}}}
	}
	parse := document
	if isJSON(data) {
		parse = jsonDocument
	}
	root, err := parse(data)
	if err != nil {
		return nil, &Error{Fields: []*FieldError{err}}
	}
	d := &decoder{}
	d.service(root)
	d.finishTraffic()
	if len(d.errs) > 0 {
		return nil, &Error{Fields: d.errs}
	}
	cfg := d.m.Config
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, &Error{Fields: []*FieldError{{Path: "spec.template", Msg: strings.TrimSuffix(err.Error(), ": "+stratus.ErrInvalid.Error())}}}
	}
	d.m.Config = cfg
	d.m.Traffic = NormalTraffic(d.m.Traffic)
	return &d.m, nil
}

// document parses data and returns its one document's root node.
func document(data []byte) (*yaml.Node, *FieldError) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &FieldError{Msg: "the manifest is empty"}
		}
		return nil, &FieldError{Msg: "malformed YAML or JSON: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	for {
		var more yaml.Node
		err := dec.Decode(&more)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, &FieldError{Msg: "malformed YAML or JSON: " + strings.TrimPrefix(err.Error(), "yaml: ")}
		}
		if !empty(&more) {
			return nil, &FieldError{Line: more.Line, Msg: "the file holds more than one document: apply one Service at a time"}
		}
	}
	if empty(&doc) {
		return nil, &FieldError{Msg: "the manifest is empty"}
	}
	return doc.Content[0], nil
}

// empty tells whether document n holds nothing (or null).
func empty(n *yaml.Node) bool {
	return len(n.Content) == 0 || isNull(n.Content[0])
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// decoder walks a manifest's nodes, filling m and collecting problems.
type decoder struct {
	m    Manifest
	errs []*FieldError

	// port is the container's port once read (0: not given), for the
	// probes' ports.
	port int
	// trafficNode is spec.traffic (nil: none) at trafficPath; revNames
	// are its targets' revision names.
	trafficNode *yaml.Node
	trafficPath string
	revNames    []revRef
}

func (d *decoder) fail(n *yaml.Node, path, format string, a ...any) {
	if len(d.errs) >= maxErrors {
		return
	}
	line := 0
	if n != nil {
		line = n.Line
	}
	d.errs = append(d.errs, &FieldError{Line: line, Path: path, Msg: fmt.Sprintf(format, a...)})
}

// handler reads the value v of the field at path.
type handler func(path string, v *yaml.Node)

// object reads mapping n: each key's handler gets its value; a key
// without a handler is refused, with its hint if hints has one. Null
// values count as absent. It reports whether n was a mapping.
func (d *decoder) object(path string, n *yaml.Node, fields map[string]handler, hints map[string]string) bool {
	if !d.kind(path, n, yaml.MappingNode, "a mapping") {
		return false
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		p := join(path, k.Value)
		if k.Kind != yaml.ScalarNode {
			d.fail(k, path, "a key must be a plain string")
			continue
		}
		if seen[k.Value] {
			d.fail(k, p, "given twice")
			continue
		}
		seen[k.Value] = true
		h, ok := fields[k.Value]
		if !ok {
			msg := notSupported
			if hint := hints[k.Value]; hint != "" {
				msg += " (" + hint + ")"
			}
			d.fail(k, p, "%s", msg)
			continue
		}
		if isNull(v) {
			continue
		}
		if v.Kind == yaml.AliasNode {
			d.fail(v, p, "YAML aliases are not supported")
			continue
		}
		h(p, v)
	}
	return true
}

// kind checks that n is of kind k, described as what.
func (d *decoder) kind(path string, n *yaml.Node, k yaml.Kind, what string) bool {
	if n.Kind == yaml.AliasNode {
		d.fail(n, path, "YAML aliases are not supported")
		return false
	}
	if n.Kind != k {
		d.fail(n, path, "want %s, got %s", what, describe(n))
		return false
	}
	return true
}

// describe names what node n holds, for errors.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!str":
			return fmt.Sprintf("the string %q", n.Value)
		case "!!int", "!!float":
			return "the number " + n.Value
		case "!!bool":
			return "the boolean " + n.Value
		case "!!null":
			return "null"
		}
		return fmt.Sprintf("%q (%s)", n.Value, n.Tag)
	}
	return "something else"
}

// list reads sequence n, calling item for each element.
func (d *decoder) list(path string, n *yaml.Node, item func(path string, i int, v *yaml.Node)) {
	if !d.kind(path, n, yaml.SequenceNode, "a list") {
		return
	}
	for i, v := range n.Content {
		p := fmt.Sprintf("%s[%d]", path, i)
		if v.Kind == yaml.AliasNode {
			d.fail(v, p, "YAML aliases are not supported")
			continue
		}
		item(p, i, v)
	}
}

// str reads a string; numbers and booleans are refused, as Kubernetes
// refuses them where it wants a string.
func (d *decoder) str(path string, n *yaml.Node) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		hint := ""
		if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
			hint = fmt.Sprintf(" (quote it: %q)", n.Value)
		}
		d.fail(n, path, "want a string, got %s%s", describe(n), hint)
		return "", false
	}
	if !utf8.ValidString(n.Value) {
		d.fail(n, path, "not valid UTF-8")
		return "", false
	}
	return n.Value, true
}

// strings reads a list of strings; an empty one is nil.
func (d *decoder) strings(path string, n *yaml.Node) []string {
	var out []string
	d.list(path, n, func(p string, _ int, v *yaml.Node) {
		if s, ok := d.str(p, v); ok {
			out = append(out, s)
		}
	})
	return out
}

// integer reads an integer between lo and hi.
func (d *decoder) integer(path string, n *yaml.Node, lo, hi int) (int, bool) {
	var v int64
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&v) != nil {
		d.fail(n, path, "want an integer, got %s", describe(n))
		return 0, false
	}
	if v < int64(lo) || v > int64(hi) {
		d.fail(n, path, "%d: must be between %d and %d", v, lo, hi)
		return 0, false
	}
	return int(v), true
}

// boolean reads true or false.
func (d *decoder) boolean(path string, n *yaml.Node) (bool, bool) {
	var v bool
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&v) != nil {
		d.fail(n, path, "want true or false, got %s", describe(n))
		return false, false
	}
	return v, true
}

// exact reads a string that must be want.
func (d *decoder) exact(path string, n *yaml.Node, want, why string) {
	if s, ok := d.str(path, n); ok && s != want {
		d.fail(n, path, "%q: %s", s, why)
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// annotationPath names annotation key under path.
func annotationPath(path, key string) string { return path + "[" + key + "]" }

func (d *decoder) service(n *yaml.Node) {
	var hasAPI, hasKind, hasMeta, hasSpec bool
	d.object("", n, map[string]handler{
		"apiVersion": func(p string, v *yaml.Node) {
			hasAPI = true
			d.exact(p, v, APIVersion, "Stratus takes "+APIVersion+" Services")
		},
		"kind": func(p string, v *yaml.Node) {
			hasKind = true
			d.exact(p, v, Kind, "Stratus takes Knative Services (kind: Service)")
		},
		"metadata": func(p string, v *yaml.Node) { hasMeta = true; d.metadata(p, v) },
		"spec":     func(p string, v *yaml.Node) { hasSpec = true; d.spec(p, v) },
		// The server writes status; apply ignores it.
		"status": func(string, *yaml.Node) {},
	}, nil)
	if n.Kind != yaml.MappingNode {
		return
	}
	for _, f := range []struct {
		has  bool
		path string
	}{{hasAPI, "apiVersion"}, {hasKind, "kind"}, {hasMeta, "metadata.name"}, {hasSpec, "spec.template.spec.containers"}} {
		if !f.has {
			d.fail(n, f.path, "required")
		}
	}
}

func (d *decoder) metadata(path string, n *yaml.Node) {
	hasName := false
	d.object(path, n, map[string]handler{
		"name": func(p string, v *yaml.Node) {
			hasName = true
			if s, ok := d.str(p, v); ok {
				if err := stratus.ValidName(s); err != nil {
					d.fail(v, p, "%q: names are 1-64 letters, digits, '-' or '_'", s)
					return
				}
				d.m.Name = s
			}
		},
		// Stratus has one namespace; "default" is what Knative assumes
		// when none is given.
		"namespace": func(p string, v *yaml.Node) {
			d.exact(p, v, "default", "Stratus has no namespaces but default")
		},
		"annotations": func(p string, v *yaml.Node) {
			d.annotations(p, v, map[string]func(p string, v *yaml.Node, s string){
				AnnotationAuth: func(p string, v *yaml.Node, s string) {
					if s != stratus.AuthNone && s != stratus.AuthToken {
						d.fail(v, p, "%q: want %q or %q", s, stratus.AuthNone, stratus.AuthToken)
						return
					}
					d.m.Config.Auth = s
				},
				AnnotationRegions: func(p string, v *yaml.Node, s string) {
					r, err := stratus.ParseRegions(s)
					if err != nil {
						d.fail(v, p, "%q: want regions separated by commas, as eu-west-1,eu-central-1", s)
						return
					}
					d.m.Config.Regions = r
				},
			}, "autoscaling.knative.dev annotations go under spec.template.metadata.annotations")
		},
	}, map[string]string{"labels": "labels have no meaning to Stratus", "generateName": "give metadata.name"})
	if n.Kind == yaml.MappingNode && !hasName {
		d.fail(n, join(path, "name"), "required")
	}
}

// annotations reads mapping n of annotations: each known key's handler
// gets its string value; other keys are refused, with hint for those of
// Knative's autoscaler.
func (d *decoder) annotations(path string, n *yaml.Node, known map[string]func(p string, v *yaml.Node, s string), hint string) {
	if !d.kind(path, n, yaml.MappingNode, "a mapping") {
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		p := annotationPath(path, k.Value)
		switch {
		case k.Kind != yaml.ScalarNode:
			d.fail(k, path, "a key must be a plain string")
		case seen[k.Value]:
			d.fail(k, p, "given twice")
		case known[k.Value] == nil:
			msg := notSupported
			if hint != "" && strings.HasPrefix(k.Value, "autoscaling.knative.dev/") {
				msg += " here (" + hint + ")"
			}
			d.fail(k, p, "%s", msg)
		default:
			if s, ok := d.str(p, v); ok {
				known[k.Value](p, v, s)
			}
		}
		seen[k.Value] = true
	}
}

func (d *decoder) spec(path string, n *yaml.Node) {
	hasTemplate := false
	d.object(path, n, map[string]handler{
		"template": func(p string, v *yaml.Node) { hasTemplate = true; d.template(p, v) },
		"traffic":  d.traffic,
	}, nil)
	if n.Kind == yaml.MappingNode && !hasTemplate {
		d.fail(n, join(path, "template.spec.containers"), "required")
	}
}

func (d *decoder) template(path string, n *yaml.Node) {
	hasSpec := false
	d.object(path, n, map[string]handler{
		"metadata": d.templateMetadata,
		"spec":     func(p string, v *yaml.Node) { hasSpec = true; d.revisionSpec(p, v) },
	}, nil)
	if n.Kind == yaml.MappingNode && !hasSpec {
		d.fail(n, join(path, "spec.containers"), "required")
	}
}

func (d *decoder) templateMetadata(path string, n *yaml.Node) {
	c := &d.m.Config
	// given is which of the scale settings was given, under either
	// spelling: both spellings at once are refused.
	given := map[string]bool{}
	scale := func(what string, set func(int)) func(p string, v *yaml.Node, s string) {
		return func(p string, v *yaml.Node, s string) {
			if given[what] {
				d.fail(v, p, "%s is given under both its spellings: give one", what)
				return
			}
			given[what] = true
			x, err := strconv.Atoi(s)
			if err != nil || x < 0 || x > stratus.MaxServiceScale {
				d.fail(v, p, "%q: want a whole number between 0 and %d", s, stratus.MaxServiceScale)
				return
			}
			set(x)
		}
	}
	minScale := scale("min-scale", func(x int) { c.MinScale = x })
	// max-scale 0 is Knative's "no bound": Stratus's most.
	maxScale := scale("max-scale", func(x int) {
		if x == 0 {
			x = stratus.MaxServiceScale
		}
		c.MaxScale = x
	})
	initialScale := scale("initial-scale", func(x int) { c.InitialScale = &x })
	d.object(path, n, map[string]handler{
		"annotations": func(p string, v *yaml.Node) {
			d.annotations(p, v, map[string]func(p string, v *yaml.Node, s string){
				AnnotationMinScale:                     minScale,
				"autoscaling.knative.dev/minScale":     minScale,
				AnnotationMaxScale:                     maxScale,
				"autoscaling.knative.dev/maxScale":     maxScale,
				AnnotationInitialScale:                 initialScale,
				"autoscaling.knative.dev/initialScale": initialScale,
				AnnotationTarget: func(p string, v *yaml.Node, s string) {
					x, err := strconv.ParseFloat(s, 64)
					if err != nil || math.IsNaN(x) || x < stratus.MinServiceTarget || x > stratus.MaxServiceConcurrency {
						d.fail(v, p, "%q: want a number of in-flight requests between %g and %d", s, stratus.MinServiceTarget, stratus.MaxServiceConcurrency)
						return
					}
					c.Target = x
				},
				AnnotationWindow: func(p string, v *yaml.Node, s string) {
					w, err := time.ParseDuration(s)
					if err != nil || w < stratus.MinServiceWindow || w > stratus.MaxServiceWindow {
						d.fail(v, p, "%q: want a duration between %s and %s (such as 60s)", s, stratus.MinServiceWindow, stratus.MaxServiceWindow)
						return
					}
					c.Window = stratus.Duration(w)
				},
				// Stratus scales on concurrency, as Knative's default
				// autoscaler does: those two values only say so.
				AnnotationClass: func(p string, v *yaml.Node, s string) {
					if s != "kpa.autoscaling.knative.dev" {
						d.fail(v, p, "%q: Stratus has one autoscaler, kpa.autoscaling.knative.dev", s)
					}
				},
				AnnotationMetric: func(p string, v *yaml.Node, s string) {
					if s != "concurrency" {
						d.fail(v, p, "%q: Stratus scales on concurrency", s)
					}
				},
			}, "")
		},
	}, map[string]string{
		"name":   "Stratus names revisions NAME-00001, NAME-00002, ... itself",
		"labels": "labels have no meaning to Stratus",
	})
}
