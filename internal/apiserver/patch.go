package apiserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strings"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

// patchFields are the fields of a function's configuration that PATCH
// /v1/functions/NAME changes, by their JSON names. The others (runtime,
// handler, image: the code's) change by a deploy.
var patchFields = []string{
	"memoryMB", "timeoutSec", "maxConcurrency", "minInstances", "env", "description",
	"auth", "maxRetries", "onSuccess", "onFailure", "idleTimeout",
}

// A configPatch is a JSON merge patch (RFC 7396) of a function's
// configuration: each field it holds replaces the configuration's (env
// as a whole), null restores the field's default.
type configPatch map[string]json.RawMessage

// parsePatch reads a merge patch of a function's configuration: a JSON
// object of patchFields only. Anything else is an error wrapping
// stratus.ErrInvalid that names what is wrong.
func parsePatch(b []byte) (configPatch, error) {
	var p configPatch
	if t := bytes.TrimSpace(b); len(t) == 0 || t[0] != '{' || json.Unmarshal(t, &p) != nil {
		return nil, fmt.Errorf("patch: want one JSON object of configuration fields: %w", stratus.ErrInvalid)
	}
	for _, k := range slices.Sorted(maps.Keys(p)) {
		if !slices.Contains(patchFields, k) {
			return nil, fmt.Errorf("patch: field %q cannot be patched (fields: %s): %w", k, strings.Join(patchFields, ", "), stratus.ErrInvalid)
		}
	}
	return p, nil
}

// apply applies p to c, or returns an error wrapping stratus.ErrInvalid
// that names a field whose value is not of its type; c is then
// unchanged. The configuration it leaves is checked by whoever stores it.
func (p configPatch) apply(c *stratus.FunctionConfig) error {
	for _, k := range slices.Sorted(maps.Keys(p)) {
		var probe stratus.FunctionConfig
		if err := json.Unmarshal(bytes.Join([][]byte{[]byte(`{"` + k + `":`), p[k], []byte(`}`)}, nil), &probe); err != nil {
			return fieldErr(k, err)
		}
	}
	cur, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("patch: %w", err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(cur, &m); err != nil {
		return fmt.Errorf("patch: %w", err)
	}
	for k, v := range p {
		if string(bytes.TrimSpace(v)) == "null" {
			delete(m, k)
			continue
		}
		m[k] = v
	}
	merged, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("patch: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(merged))
	dec.DisallowUnknownFields()
	var out stratus.FunctionConfig
	if err := dec.Decode(&out); err != nil {
		return fmt.Errorf("patch: %v: %w", err, stratus.ErrInvalid)
	}
	*c = out
	return nil
}

// fieldErr says why the value of field k could not be read.
func fieldErr(k string, err error) error {
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te):
		return fmt.Errorf("patch: field %q: want %s, not a JSON %s: %w", k, wantType(te.Type), te.Value, stratus.ErrInvalid)
	case errors.Is(err, stratus.ErrInvalid):
		return fmt.Errorf("patch: field %q: %w", k, err)
	}
	return fmt.Errorf("patch: field %q: %v: %w", k, err, stratus.ErrInvalid)
}

// wantType says what a JSON value of Go type t looks like.
func wantType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int64:
		return "a whole number"
	case reflect.String:
		return "a string"
	case reflect.Map:
		return "an object of strings"
	case reflect.Pointer:
		return wantType(t.Elem())
	}
	return t.String()
}

// handlePatch changes a function's configuration by a merge patch (JSON
// or merge-patch+JSON): a new $LATEST with the same code, as the Lambda
// API's UpdateFunctionConfiguration makes, checked as a deploy's. It
// answers the function as GET does.
func (s *Server) handlePatch(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mt != "application/json" && mt != "application/merge-patch+json") {
		s.answer.Error(w, r, fmt.Errorf("patch function %q: want Content-Type application/json or application/merge-patch+json: %w", name, stratus.ErrInvalid))
		return
	}
	var raw json.RawMessage
	if err := decodeSpec(w, r, maxSpecBody, "patch function", &raw); err != nil {
		s.answer.Error(w, r, err)
		return
	}
	p, err := parsePatch(raw)
	if err != nil {
		s.answer.Error(w, r, fmt.Errorf("function %q: %w", name, err))
		return
	}
	f, err := s.fns.Configure(r.Context(), name, func(c *stratus.FunctionConfig) error {
		if err := p.apply(c); err != nil {
			return fmt.Errorf("function %q: %w", name, err)
		}
		return nil
	})
	if err != nil {
		s.answer.Error(w, r, err)
		return
	}
	s.log.Info("configured", "fn", name, "version", f.Version, "fields", slices.Sorted(maps.Keys(p)))
	v := s.view(f)
	if n, age, err := s.queue.Depth(r.Context(), f.Name); err == nil {
		v.Async = &v1.AsyncQueue{Depth: n, OldestAgeSec: age.Seconds()}
	}
	s.answer.JSON(w, r, http.StatusOK, v)
}
