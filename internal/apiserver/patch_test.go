package apiserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

// TestPatchFunction: a merge patch makes a new $LATEST with the same
// code; env is merged key by key, null restores a default; anything wrong
// is 400 (404 for no function) and changes nothing.
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

	// env is merged, a null removing a variable; null restores a
	// field's default; the answer is the function as GET shows it.
	code, _, b := r.do("PATCH", "/v1/functions/fn", `{"env": {"C": "3", "A": null, "Z": null}, "memoryMB": null, "maxRetries": null}`,
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
	if !cmp.Equal(got.Config.Env, map[string]string{"B": "2", "C": "3"}) || got.Config.MemoryMB != stratus.DefaultMemoryMB ||
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
		{"env of numbers", `{"env": {"A": 1}}`, `field "env": want a string`, nil},
		{"a reserved variable", `{"env": {"_HANDLER": "x"}}`, "_HANDLER", nil},
		{"an event age too short", `{"maxEventAge": "1s"}`, "max event age", nil},
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
		`{"env":{"A":null,"B":"2"}}`, `{"env":{"K":null}}`, `{"maxEventAge":"2m"}`, `{"maxEventAge":null}`,
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

// TestPatchEnvMergeNoChangeAndIfMatch: env merges as RFC 7396 says (a
// patch naming every variable replaces it); a patch that changes nothing
// makes no version; If-Match holds a patch to the version it names
// (412 otherwise, nothing changed); maxEventAge is patched.
func TestPatchEnvMergeNoChangeAndIfMatch(t *testing.T) {
	r := newVersionsRig(t)
	r.deploy("fn", "one")
	patch := func(status int, body string, hdr ...string) (v1.Function, http.Header) {
		t.Helper()
		code, h, b := r.do("PATCH", "/v1/functions/fn", body, append([]string{"Content-Type", "application/merge-patch+json"}, hdr...)...)
		if code != status {
			t.Fatalf("PATCH %s %v: %d %s, want %d", body, hdr, code, b, status)
		}
		var f v1.Function
		if status == 200 {
			if err := json.Unmarshal(b, &f); err != nil {
				t.Fatal(err)
			}
		}
		return f, h
	}
	f, h := patch(200, `{"env": {"A": "1", "B": "2"}}`)
	if !cmp.Equal(f.Config.Env, map[string]string{"A": "1", "B": "2"}) || h.Get("ETag") != fmt.Sprintf(`"%d"`, f.Version) {
		t.Fatalf("env %v ETag %q (version %d)", f.Config.Env, h.Get("ETag"), f.Version)
	}
	v := f.Version

	// Nothing changes: no new version.
	for _, body := range []string{`{}`, `{"env": {"A": "1"}}`, `{"env": {"Z": null}}`, `{"memoryMB": 128, "env": {"B": "2"}}`, `{"maxRetries": null}`, `{"maxConcurrency": null}`} {
		if f, _ := patch(200, body); f.Version != v || !cmp.Equal(f.Config.Env, map[string]string{"A": "1", "B": "2"}) {
			t.Errorf("PATCH %s changed nothing, yet version %d (was %d), env %v", body, f.Version, v, f.Config.Env)
		}
	}

	// A null removes a variable; naming every one replaces the env.
	if f, _ = patch(200, `{"env": {"A": null, "C": "3"}}`); !cmp.Equal(f.Config.Env, map[string]string{"B": "2", "C": "3"}) || f.Version != v+1 {
		t.Fatalf("after A: null: env %v version %d", f.Config.Env, f.Version)
	}
	if f, _ = patch(200, `{"env": {"B": null, "C": null, "D": "4"}}`); !cmp.Equal(f.Config.Env, map[string]string{"D": "4"}) {
		t.Fatalf("a replacing patch: env %v", f.Config.Env)
	}
	if f, _ = patch(200, `{"env": null}`); len(f.Config.Env) != 0 {
		t.Fatalf("env: null left %v", f.Config.Env)
	}
	v = f.Version

	// If-Match: a stale version is 412 and changes nothing; the current
	// one (plain, quoted or weak) or * goes through.
	code, _, b := r.do("PATCH", "/v1/functions/fn", `{"memoryMB": 256}`, "Content-Type", "application/json", "If-Match", strconv.Itoa(v-1))
	var e v1.Error
	if code != http.StatusPreconditionFailed || json.Unmarshal(b, &e) != nil || e.Code != "PreconditionFailedException" || !strings.Contains(e.Message, fmt.Sprint(v)) {
		t.Fatalf("a stale If-Match: %d %s", code, b)
	}
	var now v1.Function
	r.want(200, "GET", "/v1/functions/fn", "", &now)
	if now.Version != v || now.Config.MemoryMB != stratus.DefaultMemoryMB {
		t.Fatalf("a refused patch changed the function: %+v", now)
	}
	f, _ = patch(200, `{"memoryMB": 256}`, "If-Match", strconv.Itoa(v))
	f, _ = patch(200, `{"memoryMB": 512}`, "If-Match", fmt.Sprintf(`"1", W/"%d"`, f.Version))
	f, _ = patch(200, `{"maxEventAge": "2m"}`, "If-Match", "*")
	if f.Version != v+3 || f.Config.MemoryMB != 512 || time.Duration(f.Config.MaxEventAge) != 2*time.Minute {
		t.Fatalf("after three conditional patches: version %d (want %d), %+v", f.Version, v+3, f.Config)
	}
	if code, _, b := r.do("PATCH", "/v1/functions/nope", `{}`, "Content-Type", "application/json", "If-Match", "1"); code != 404 {
		t.Errorf("If-Match on no function: %d %s", code, b)
	}
}
