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
	"strconv"
	"strings"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

// patchFields are the fields of a function's configuration that PATCH
// /v1/functions/NAME changes, by their JSON names. The others (runtime,
// handler, image: the code's) change by a deploy.
var patchFields = []string{
	"memoryMB", "timeoutSec", "maxConcurrency", "minInstances", "env", "description",
	"auth", "maxRetries", "maxEventAge", "onSuccess", "onFailure", "idleTimeout",
}

// A configPatch is a JSON merge patch (RFC 7396) of a function's
// configuration: each field it holds replaces the configuration's, null
// restores the field's default; env is merged key by key the same way
// (a string sets a variable, null removes it, "env": null removes them
// all), so a patch that names every variable, with null for those to
// drop, replaces the environment whole.
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

// isNull reports whether v is JSON's null.
func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

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
		if isNull(v) {
			delete(m, k)
			continue
		}
		if k == "env" {
			env, err := mergeEnv(c.Env, v)
			if err != nil {
				return err
			}
			if len(env) == 0 {
				delete(m, k)
				continue
			}
			if v, err = json.Marshal(env); err != nil {
				return fmt.Errorf("patch: %w", err)
			}
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

// mergeEnv is env with the merge patch v (a JSON object of strings and
// nulls) applied: a new map.
func mergeEnv(env map[string]string, v json.RawMessage) (map[string]string, error) {
	var vars map[string]*string
	if err := json.Unmarshal(v, &vars); err != nil {
		return nil, fieldErr("env", err)
	}
	out := maps.Clone(env)
	if out == nil {
		out = make(map[string]string, len(vars))
	}
	for k, x := range vars {
		if x == nil {
			delete(out, k)
			continue
		}
		out[k] = *x
	}
	return out, nil
}

// sameConfig reports whether configurations a and b are the same once
// the defaults a deploy fills in (maxConc: the server's cap) are.
func sameConfig(a, b stratus.FunctionConfig, maxConc int) bool {
	for _, c := range []*stratus.FunctionConfig{&a, &b} {
		if c.MaxConcurrency == 0 {
			c.MaxConcurrency = min(stratus.DefaultMaxConc, maxConc)
		}
		c.Defaults()
		if len(c.Env) == 0 {
			c.Env = nil
		}
	}
	return reflect.DeepEqual(a, b)
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

// errUnchanged is what a patch that changes nothing returns from
// Configure's change, so that no version is made.
var errUnchanged = errors.New("configuration unchanged")

// A staleError is a patch made against another version of the function
// than its head (If-Match).
type staleError struct {
	name    string
	ifMatch string
	version int
}

func (e *staleError) Error() string {
	return fmt.Sprintf("patch function %q: If-Match %s: the function is at version %d now: read it again and retry", e.name, e.ifMatch, e.version)
}

// Unwrap makes a staleError a stratus.ErrPrecondition (412).
func (e *staleError) Unwrap() error { return stratus.ErrPrecondition }

// matches reports whether If-Match header value h (a list of entity
// tags, "*" for any) names version: as GET shows it ("7") or quoted as
// an ETag ("\"7\"", weak or not).
func matches(h string, version int) bool {
	for _, tag := range strings.Split(h, ",") {
		tag = strings.TrimSpace(tag)
		if tag == "*" {
			return true
		}
		tag = strings.Trim(strings.TrimPrefix(tag, "W/"), `"`)
		if tag == strconv.Itoa(version) {
			return true
		}
	}
	return false
}

// handlePatch changes a function's configuration by a merge patch (JSON
// or merge-patch+JSON, both merged the same way): a new $LATEST with the
// same code, as the Lambda API's UpdateFunctionConfiguration makes,
// checked as a deploy's. A patch that changes nothing makes no version
// (no instance restarts). If-Match (the version GET shows, or "*") makes
// it conditional: 412 when the head is another. It answers the function
// as GET does, with its version as ETag.
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
	ifMatch := strings.Join(r.Header.Values("If-Match"), ",")
	maxConc, _, _ := s.fns.ServerLimits()
	f, err := s.fns.Configure(r.Context(), name, func(c *stratus.FunctionConfig) error {
		// Configure calls this with no other change in between: the
		// head checked is the one changed.
		if ifMatch != "" {
			head, ok := s.fns.Head(name)
			if !ok {
				return fmt.Errorf("function %q: %w", name, stratus.ErrNotFound)
			}
			if !matches(ifMatch, head.Version) {
				return &staleError{name: name, ifMatch: ifMatch, version: head.Version}
			}
		}
		before := *c
		before.Env = maps.Clone(c.Env)
		if err := p.apply(c); err != nil {
			return fmt.Errorf("function %q: %w", name, err)
		}
		if sameConfig(before, *c, maxConc) {
			return errUnchanged
		}
		return nil
	})
	switch {
	case errors.Is(err, errUnchanged):
		f, err = s.fns.Get(r.Context(), name)
	case err == nil:
		s.log.Info("configured", "fn", name, "version", f.Version, "fields", slices.Sorted(maps.Keys(p)))
	}
	if err != nil {
		s.answer.Error(w, r, err)
		return
	}
	v := s.view(f)
	if n, age, err := s.queue.Depth(r.Context(), f.Name); err == nil {
		v.Async = &v1.AsyncQueue{Depth: n, OldestAgeSec: age.Seconds()}
	}
	w.Header().Set("ETag", `"`+strconv.Itoa(f.Version)+`"`)
	s.answer.JSON(w, r, http.StatusOK, v)
}
