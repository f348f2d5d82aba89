package apiserver

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

// TestPatchFunction: a merge patch makes a new $LATEST with the same
// code; env is replaced whole, null restores a default; anything wrong is
// 400 (404 for no function) and changes nothing.
func TestPatchFunction(t *testing.T) {
	r := newVersionsRig(t)
	sha := r.deploy("fn", "one")
	patch := func(status int, body string, out any, hdr ...string) string {
		t.Helper()
		if len(hdr) == 0 {
			hdr = []string{"Content-Type", "application/json"}
		}
		code, _, b := r.do("PATCH", "/v1/functions/fn", body, hdr...)
		if code != status {
			t.Fatalf("PATCH %s: %d %s, want %d", body, code, b, status)
		}
		return string(b)
	}
	// get answers GET of fn, decoded afresh.
	get := func() v1.Function {
		t.Helper()
		var f v1.Function
		r.want(200, "GET", "/v1/functions/fn", "", &f)
		return f
	}
	before := get()

	patch(200, `{"memoryMB": 512, "timeoutSec": 30, "env": {"A": "1", "B": "2"}, "description": "d", "maxRetries": 0}`, nil)
	got := get()
	if got.Version != before.Version+1 || got.CodeSHA != sha || got.Config.MemoryMB != 512 || got.Config.TimeoutSec != 30 ||
		!cmp.Equal(got.Config.Env, map[string]string{"A": "1", "B": "2"}) || got.Config.Description != "d" ||
		got.Config.MaxRetries == nil || *got.Config.MaxRetries != 0 || got.Config.Runtime != "provided" {
		t.Fatalf("after a patch: %+v", got)
	}

	// env is replaced, not merged; null restores the default; the answer
	// is the function as GET shows it.
	code, _, b := r.do("PATCH", "/v1/functions/fn", `{"env": {"C": "3"}, "memoryMB": null, "maxRetries": null}`,
		"Content-Type", "application/merge-patch+json; charset=utf-8")
	if code != 200 {
		t.Fatalf("merge-patch+json: %d %s", code, b)
	}
	var answered v1.Function
	got = get()
	if err := json.Unmarshal(b, &answered); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, answered); diff != "" {
		t.Errorf("PATCH's answer and GET differ (-get +patch)\n%s", diff)
	}
	if !cmp.Equal(got.Config.Env, map[string]string{"C": "3"}) || got.Config.MemoryMB != stratus.DefaultMemoryMB ||
		got.Config.MaxRetries != nil || got.Config.TimeoutSec != 30 || got.Version != before.Version+2 {
		t.Fatalf("after the second patch: %+v", got.Config)
	}
	want := got

	for _, tc := range []struct {
		name, body, say string
		hdr             []string
	}{
		{"an unknown field", `{"memoryMB": 256, "runtime": "python3"}`, `field "runtime"`, nil},
		{"a field of another case", `{"MemoryMB": 256}`, `field "MemoryMB"`, nil},
		{"a field of the code", `{"handler": "x"}`, `field "handler"`, nil},
		{"a bad value", `{"memoryMB": 5}`, "memory", nil},
		{"a timeout too long", `{"timeoutSec": 100000}`, "timeout", nil},
		{"a wrong type", `{"memoryMB": "big"}`, `field "memoryMB": want a whole number`, nil},
		{"a fraction", `{"timeoutSec": 1.5}`, `field "timeoutSec"`, nil},
		{"env not an object", `{"env": ["A=1"]}`, `field "env"`, nil},
		{"a bad destination", `{"onFailure": "queue:x"}`, "destination", nil},
		{"a bad duration", `{"idleTimeout": "soon"}`, `field "idleTimeout"`, nil},
		{"a bad auth", `{"auth": "maybe"}`, "auth", nil},
		{"not an object", `[{"memoryMB": 256}]`, "JSON object", nil},
		{"null", `null`, "JSON object", nil},
		{"two objects", `{"memoryMB": 256} {}`, "one JSON object", nil},
		{"not JSON", `memoryMB=256`, "JSON object", nil},
		{"another content type", `{"memoryMB": 256}`, "Content-Type", []string{"Content-Type", "text/plain"}},
		{"no content type", `{"memoryMB": 256}`, "Content-Type", []string{"X-None", "1"}},
	} {
		var e v1.Error
		if err := json.Unmarshal([]byte(patch(400, tc.body, nil, tc.hdr...)), &e); err != nil {
			t.Fatal(err)
		}
		if msg := e.Message; !strings.Contains(msg, tc.say) {
			t.Errorf("%s: %q does not say %q", tc.name, msg, tc.say)
		}
		if diff := cmp.Diff(want, get()); diff != "" {
			t.Fatalf("%s changed the function (-want +got)\n%s", tc.name, diff)
		}
	}
	code, _, b = r.do("PATCH", "/v1/functions/nope", `{"memoryMB": 256}`, "Content-Type", "application/json")
	if code != 404 {
		t.Errorf("PATCH of no function: %d %s", code, b)
	}
}

// FuzzParsePatch: any body is refused with ErrInvalid or is a patch of
// the patchable fields only, whose application to a configuration either
// fails with ErrInvalid and leaves it, or changes no other field.
func FuzzParsePatch(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"memoryMB":256}`, `{"env":{"A":"1"}}`, `{"env":null}`, `{"maxRetries":null,"auth":"none"}`,
		`{"runtime":"x"}`, `[]`, `null`, `{"memoryMB":1e400}`, `{"idleTimeout":"5m"}`, `{"env":{"A":1}}`, `{"a":1,"a":2}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parsePatch(b)
		if err != nil {
			if !errors.Is(err, stratus.ErrInvalid) {
				t.Fatalf("parsePatch(%q): %v is not ErrInvalid", b, err)
			}
			return
		}
		retries := 1
		orig := stratus.FunctionConfig{
			Runtime: "python3", Handler: "app.handler", MemoryMB: 256, TimeoutSec: 9, Env: map[string]string{"K": "V"},
			MaxConcurrency: 4, Auth: "token", MaxRetries: &retries, Throttled: true, Role: "r",
		}
		c := orig
		c.Env = map[string]string{"K": "V"}
		if err := p.apply(&c); err != nil {
			if !errors.Is(err, stratus.ErrInvalid) {
				t.Fatalf("apply(%q): %v is not ErrInvalid", b, err)
			}
			if !cmp.Equal(orig, c) {
				t.Fatalf("apply(%q) failed and changed the config", b)
			}
			return
		}
		if c.Runtime != orig.Runtime || c.Handler != orig.Handler || c.Throttled != orig.Throttled || c.Role != orig.Role || c.Image != "" {
			t.Fatalf("apply(%q) changed a field it may not: %+v", b, c)
		}
	})
}
