package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/eventually"
)

// versionedApp is a Python handler that says which code it is (%s) and
// which version its instance runs as.
const versionedApp = `import os


def handler(event, context):
    return {"code": "%s", "version": context.function_version, "env": os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")}
`

// codeAnswer is what versionedApp answers.
type codeAnswer struct {
	Code    string `json:"code"`
	Version string `json:"version"`
	Env     string `json:"env"`
}

// TestVersionsAndAliases publishes two versions of a Python function,
// invokes each by number, by $LATEST and through a weighted alias on
// every route, moves the alias back, and checks bad input and that each
// version's invocations are recorded as that version's.
func TestVersionsAndAliases(t *testing.T) {
	needTool(t, "python3")
	s := startServer(t)
	deploy := func(code string) {
		t.Helper()
		dir := writeFiles(t, map[string]string{"app.py": fmt.Sprintf(versionedApp, code)})
		s.mustCLI("deploy", "ver", "--runtime", "python3", "--handler", "app.handler", dir)
	}
	// ran counts, by version, what each call answered ran.
	ran := map[string]int{}
	call := func(method, path string) codeAnswer {
		t.Helper()
		resp, body := s.do(method, path, []byte(`{}`), true)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Amz-Function-Error") != "" {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, body)
		}
		a := decode[codeAnswer](t, body)
		executed := resp.Header.Get("X-Amz-Executed-Version")
		if a.Version != executed || a.Env != executed {
			t.Fatalf("%s %s: executed version %q, the instance runs as %q (env %q)", method, path, executed, a.Version, a.Env)
		}
		ran[executed]++
		return a
	}

	deploy("v1")
	if out := s.mustCLI("publish", "ver"); out != "1\n" {
		t.Fatalf("first publish printed %q", out)
	}
	deploy("v2")
	if out := s.mustCLI("publish", "ver", "--description", "the second"); out != "2\n" {
		t.Fatalf("second publish printed %q", out)
	}
	r := s.cli("publish", "ver")
	if r.Code != 0 || r.Stdout != "2\n" || !strings.Contains(r.Stderr, "not changed since version 2") {
		t.Errorf("publish with nothing changed: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	var vs []v1.Version
	if err := json.Unmarshal([]byte(s.mustCLI("versions", "ver", "-o", "json")), &vs); err != nil {
		t.Fatal(err)
	}
	if len(vs) != 3 || vs[0].Version != "$LATEST" || vs[1].Version != "1" || vs[2].Version != "2" ||
		vs[2].Description != "the second" || vs[0].CodeSHA != vs[2].CodeSHA || vs[1].CodeSHA == vs[2].CodeSHA {
		t.Errorf("versions: %+v", vs)
	}
	if out := s.mustCLI("versions", "ver"); !strings.Contains(out, "the second") || !strings.HasPrefix(out, "VERSION") {
		t.Errorf("versions table:\n%s", out)
	}
	deploy("v3") // $LATEST moves on; the published versions stay

	// Each version by number, by $LATEST, on both routes, the ':' plain
	// or URL-encoded.
	for _, tc := range []struct{ name, code string }{
		{"ver:1", "v1"}, {"ver%3A2", "v2"}, {"ver", "v3"}, {"ver:$LATEST", "v3"}, {"ver%3a1", "v1"},
	} {
		if a := call("POST", "/v1/functions/"+tc.name+"/invoke"); a.Code != tc.code {
			t.Errorf("invoke %s ran code %s, want %s", tc.name, a.Code, tc.code)
		}
		if a := call("GET", "/fn/"+tc.name+"/some/path"); a.Code != tc.code {
			t.Errorf("/fn/%s ran code %s, want %s", tc.name, a.Code, tc.code)
		}
	}
	r = s.cli("invoke", "ver:1")
	if r.Code != 0 || !strings.Contains(r.Stdout, `"v1"`) || r.Stderr != "ran ver:1 version 1\n" {
		t.Errorf("stratus invoke ver:1: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	ran["1"]++

	// A weighted alias splits /fn/ver:live between 1 and 2.
	if out := s.mustCLI("alias", "set", "ver", "live", "1", "--weight", "2=0.3"); out != "created alias ver:live: version 1 (70%), 2 (30%)\n" {
		t.Errorf("alias set printed %q", out)
	}
	const n = 200
	split := map[string]int{}
	for range n {
		a := call("POST", "/fn/ver:live")
		split[a.Version]++
		if want := map[string]string{"1": "v1", "2": "v2"}[a.Version]; a.Code != want {
			t.Fatalf("fn:live ran code %s as version %q", a.Code, a.Version)
		}
	}
	mean, sigma := n*0.3, math.Sqrt(n*0.3*0.7)
	if d := math.Abs(float64(split["2"]) - mean); d > 3*sigma || split["1"]+split["2"] != n {
		t.Errorf("over %d calls of ver:live: %v; want %.0f ± %.0f of version 2", n, split, mean, 3*sigma)
	}
	t.Logf("ver:live with 2=0.3 over %d calls: %v", n, split)

	// Rolling back is moving the alias.
	if out := s.mustCLI("alias", "set", "ver", "live", "1"); out != "updated alias ver:live: version 1\n" {
		t.Errorf("alias set (rollback) printed %q", out)
	}
	for range 10 {
		if a := call("GET", "/fn/ver%3Alive/"); a.Version != "1" {
			t.Fatalf("after the rollback ver:live ran version %s", a.Version)
		}
	}
	if out := s.mustCLI("alias", "ls", "ver"); !strings.Contains(out, "live") {
		t.Errorf("alias ls:\n%s", out)
	}

	// Bad input: refused, with the error kinds' statuses, nothing changed.
	resp, body := s.do("PUT", "/v1/functions/ver/aliases/live", []byte(`{"version":"1","weights":{"2":1.5}}`), true)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("weights over 1: %d %s", resp.StatusCode, body)
	}
	if r := s.cli("alias", "set", "ver", "live", "1", "--weight", "2=0.6", "--weight", "3=0.6"); r.Code != 2 {
		t.Errorf("alias set with weights over 1: exit %d, stderr %q", r.Code, r.Stderr)
	}
	if r := s.cli("alias", "set", "ver", "live", "9"); r.Code != 1 || !strings.Contains(r.Stderr, "ResourceNotFoundException") {
		t.Errorf("alias to missing version 9: exit %d, stderr %q", r.Code, r.Stderr)
	}
	for _, path := range []string{"/v1/functions/ver:9/invoke", "/v1/functions/ver:nope/invoke", "/fn/ver:9", "/fn/ver%3Anope/x", "/v1/functions/nope:1/invoke"} {
		if resp, body := s.do("POST", path, []byte(`{}`), true); resp.StatusCode != http.StatusNotFound {
			t.Errorf("POST %s: %d %s, want 404", path, resp.StatusCode, body)
		}
	}
	resp, body = s.do("DELETE", "/v1/functions/ver/versions/1", nil, true)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(string(body), "live") {
		t.Errorf("delete of aliased version 1: %d %s", resp.StatusCode, body)
	}
	a := decode[struct {
		Version string             `json:"version"`
		Weights map[string]float64 `json:"weights"`
	}](t, []byte(s.mustCLI("alias", "get", "ver", "live", "-o", "json")))
	if a.Version != "1" || len(a.Weights) != 0 {
		t.Errorf("after refused changes the alias is %+v", a)
	}

	// Async invocations, schedules and subscriptions of qualified names.
	id := s.enqueue("ver%3A2", `{}`)
	s.waitState(id, "succeeded", time.Minute)
	ran["2"]++
	s.mustCLI("schedule", "create", "tick", "--function", "ver:live", "--rate", "1 hour")
	s.mustCLI("topic", "create", "bus")
	s.mustCLI("subscribe", "bus", "--function", "ver:2")
	s.mustCLI("topic", "publish", "bus", "--data", `{"n":1}`)
	byTrigger := map[string]string{}
	eventually.True(t, time.Minute, "the schedule's and the subscription's invocations", func() bool {
		for _, rec := range s.versionRecords("ver") {
			if rec.Trigger == "schedule" || rec.Trigger == "topic" {
				byTrigger[rec.Trigger] = rec.Qualifier
			}
		}
		return len(byTrigger) == 2
	})
	if byTrigger["schedule"] != "1" || byTrigger["topic"] != "2" {
		t.Errorf("the schedule of ver:live ran %q, the subscription of ver:2 ran %q; want 1 and 2", byTrigger["schedule"], byTrigger["topic"])
	}
	ran["1"]++
	ran["2"]++
	s.mustCLI("schedule", "rm", "tick")

	// Each version's invocations are recorded as its own.
	recorded := map[string]int{}
	for _, rec := range s.versionRecords("ver") {
		recorded[rec.Qualifier]++
	}
	if fmt.Sprint(recorded) != fmt.Sprint(ran) {
		t.Errorf("records by version %v, want %v", recorded, ran)
	}
	// So are its log lines: NAME:N lists those of the instances that ran
	// N, whose START lines name it; NAME lists every version's.
	starts := 0
	for _, q := range []string{"1", "2", "$LATEST"} {
		resp, body := s.do("GET", "/v1/functions/ver:"+q+"/logs?limit=1000", nil, true)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("logs of ver:%s: %d %s", q, resp.StatusCode, body)
		}
		n := 0
		for _, l := range decode[v1.LogList](t, body).Lines {
			if strings.HasPrefix(l.Text, "START ") {
				n++
				if !strings.HasSuffix(l.Text, " Version: "+q) {
					t.Errorf("logs of ver:%s hold %q", q, l.Text)
				}
			}
		}
		if n == 0 {
			t.Errorf("logs of ver:%s hold no START line", q)
		}
		starts += n
	}
	allResp, allBody := s.do("GET", "/v1/functions/ver/logs?limit=1000", nil, true)
	all := 0
	for _, l := range decode[v1.LogList](t, allBody).Lines {
		if strings.HasPrefix(l.Text, "START ") {
			all++
		}
	}
	if allResp.StatusCode != http.StatusOK || all != starts {
		t.Errorf("logs of ver: %d, %d START lines, want %d (every version's)", allResp.StatusCode, all, starts)
	}

	// With the alias moved off it, version 2 goes; so do its invocations' route.
	s.mustCLI("alias", "rm", "ver", "live")
	if resp, body := s.do("DELETE", "/v1/functions/ver/versions/1", nil, true); resp.StatusCode != http.StatusNoContent {
		t.Errorf("delete of version 1: %d %s", resp.StatusCode, body)
	}
	if resp, body := s.do("POST", "/v1/functions/ver:1/invoke", []byte(`{}`), true); resp.StatusCode != http.StatusNotFound {
		t.Errorf("invoke of deleted version 1: %d %s", resp.StatusCode, body)
	}
	if a := call("POST", "/v1/functions/ver:2/invoke"); a.Code != "v2" {
		t.Errorf("version 2 after version 1 went: code %s", a.Code)
	}
}

// versionRecords returns the invocation records of fn.
func (s *server) versionRecords(fn string) []v1.InvocationRecord {
	s.t.Helper()
	resp, body := s.do("GET", "/v1/functions/"+fn+"/invocations?limit=10000", nil, true)
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("records of %s: %d %s", fn, resp.StatusCode, body)
	}
	return decode[v1.InvocationList](s.t, body).Invocations
}
