package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/series"
)

func sumOf(xs []int64) int64 {
	var n int64
	for _, x := range xs {
		n += x
	}
	return n
}

// seriesGet answers GET path with the token, decoded into T on 200.
func seriesGet[T any](t *testing.T, s *server, path string) T {
	t.Helper()
	code, body := s.get(path)
	if code != 200 {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	return decode[T](t, []byte(body))
}

// TestSeriesAPI: the series of a Go function and a service add up to
// what their clients did, in every range; the last bucket holds an
// invocation as soon as it ended; what was sampled outlives a restart;
// a bad range is 400, an unknown workload 404.
func TestSeriesAPI(t *testing.T) {
	s := startServicesServer(t)
	s.mustCLI("deploy", "fn", "--runtime", "provided", fixture("goecho"))
	s.mustCLI("service", "deploy", "web", "--image", "gosvc:v1", "--min", "1")

	const n = 7 // invocations, one of them failing
	for i := range n {
		event := `{"sleep":5}`
		if i == 3 {
			event = `{"fail":"on purpose"}`
		}
		resp, body := s.invoke("fn", event)
		if resp.StatusCode != 200 {
			t.Fatalf("invoke %d: %d %s", i, resp.StatusCode, body)
		}
	}
	const m = 9 // requests to the service: 6 answered 200, 3 answered 404
	for i := range m {
		path := "/svc/web/"
		if i%3 == 0 {
			path = "/svc/web/nothing-here"
		}
		if code, body := s.get(path); code != 200 && code != 404 {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
	}

	ranges := []struct {
		name   string
		points int
		step   int64
	}{{"15m", 60, 15}, {"1h", 60, 60}, {"24h", 144, 600}, {"7d", 168, 3600}}
	check := func(when string) {
		t.Helper()
		for _, r := range ranges {
			f := seriesGet[v1.FunctionSeries](t, s, "/v1/functions/fn/series?range="+r.name)
			if f.Name != "fn" || f.Kind != "function" || f.Range != r.name || f.StepSec != r.step || len(f.T) != r.points ||
				len(f.Series.Invocations) != r.points || len(f.Series.DurationP99Ms) != r.points || f.T[0] != f.Start {
				t.Fatalf("%s: fn %s: %d points of %d s, window %d..%d", when, r.name, len(f.T), f.StepSec, f.Start, f.End)
			}
			if now := time.Now().Unix(); f.End < now-60 || f.End > now+1 || f.T[r.points-1] > f.End || f.T[r.points-1]+r.step <= f.End {
				t.Fatalf("%s: fn %s: the last bucket %d does not hold the answer's time %d (now %d)", when, r.name, f.T[r.points-1], f.End, now)
			}
			if got := sumOf(f.Series.Invocations); got != n {
				t.Errorf("%s: fn %s: %d invocations, want %d: %v", when, r.name, got, n, f.Series.Invocations)
			}
			if got := sumOf(f.Series.Errors); got != 1 {
				t.Errorf("%s: fn %s: %d errors, want 1", when, r.name, got)
			}
			if got := sumOf(f.Series.ColdStarts); got < 1 {
				t.Errorf("%s: fn %s: %d cold starts, want at least 1", when, r.name, got)
			}
			var p50s int
			for _, p := range f.Series.DurationP50Ms {
				if p != nil {
					p50s++
					if *p <= 0 || *p > 1000 {
						t.Errorf("%s: fn %s: a p50 of %v ms", when, r.name, *p)
					}
				}
			}
			if p50s == 0 {
				t.Errorf("%s: fn %s: no duration quantile", when, r.name)
			}

			w := seriesGet[v1.ServiceSeries](t, s, "/v1/services/web/series?range="+r.name)
			if w.Kind != "service" || len(w.Series.Requests) != r.points || len(w.Series.Panic) != r.points {
				t.Fatalf("%s: web %s: %+v", when, r.name, w.SeriesWindow)
			}
			if got := sumOf(w.Series.Requests); got != m {
				t.Errorf("%s: web %s: %d requests, want %d: %v", when, r.name, got, m, w.Series.Requests)
			}
			if got := sumOf(w.Series.Errors); got != 0 {
				t.Errorf("%s: web %s: %d errors, want 0 (404s are not errors)", when, r.name, got)
			}
			var ready bool
			for _, x := range w.Series.Replicas {
				ready = ready || (x != nil && *x >= 1)
			}
			if !ready {
				t.Errorf("%s: web %s: no ready replica in %v", when, r.name, w.Series.Replicas)
			}

			o := seriesGet[v1.SeriesOverview](t, s, "/v1/series?range="+r.name)
			if fo := o.Functions["fn"]; fo.Summary.Invocations != n || fo.Summary.Errors != 1 || sumOf(fo.Invocations) != n || fo.Summary.P99Ms == nil {
				t.Errorf("%s: overview %s: fn %+v", when, r.name, fo.Summary)
			}
			if wo := o.Services["web"]; wo.Summary.Requests != m || len(wo.Requests) != r.points {
				t.Errorf("%s: overview %s: web %+v", when, r.name, wo.Summary)
			}
		}
	}
	// A read within series.LiveFor of the last Gather (a sample's or a
	// read's) answers from it: what the clients did is there within it.
	waitSums := func(when string, fns, reqs int64) {
		t.Helper()
		eventually.True(t, 10*series.LiveFor, when+": the overview holds what the clients did", func() bool {
			o := seriesGet[v1.SeriesOverview](t, s, "/v1/series?range=15m")
			return o.Functions["fn"].Summary.Invocations >= fns && o.Services["web"].Summary.Requests >= reqs
		})
	}
	waitSums("right after", n, m)
	check("right after")

	// The last bucket moves with an invocation without waiting for a
	// sample: within a second (series.LiveFor: one reading of the
	// registry serves the reads within it), well before the next sample
	// is due.
	before := seriesGet[v1.FunctionSeries](t, s, "/v1/functions/fn/series?range=15m")
	if resp, body := s.invoke("fn", `{}`); resp.StatusCode != 200 {
		t.Fatalf("invoke: %d %s", resp.StatusCode, body)
	}
	invoked := time.Now()
	var after v1.FunctionSeries
	eventually.True(t, 3*time.Second, "the invocation in the last bucket", func() bool {
		after = seriesGet[v1.FunctionSeries](t, s, "/v1/functions/fn/series?range=15m")
		return sumOf(after.Series.Invocations) == sumOf(before.Series.Invocations)+1 && after.Series.Invocations[59] >= 1
	})
	if took := time.Since(invoked); took > 2*series.LiveFor {
		t.Errorf("the last bucket held the invocation after %v", took)
	}
	if x := after.Series.Instances[59]; x == nil || *x < 1 {
		t.Errorf("after an invoke: instances %v in the last bucket", x)
	}

	// What the server sampled (on its last sample as it stops, too) is
	// kept: after a restart, whose counters start at 0, the sums hold.
	s.Stop()
	s.Restart()
	eventually.True(t, 30*time.Second, "web ready again", func() bool {
		code, _ := s.get("/svc/web/")
		return code == 200
	})
	const mAfter = 1 // the request just made
	waitSums("after a restart", n+1, m+mAfter)
	for _, r := range ranges {
		f := seriesGet[v1.FunctionSeries](t, s, "/v1/functions/fn/series?range="+r.name)
		if got := sumOf(f.Series.Invocations); got != n+1 {
			t.Errorf("after a restart: fn %s: %d invocations, want %d", r.name, got, n+1)
		}
		w := seriesGet[v1.ServiceSeries](t, s, "/v1/services/web/series?range="+r.name)
		if got := sumOf(w.Series.Requests); got < m+mAfter {
			t.Errorf("after a restart: web %s: %d requests, want at least %d", r.name, got, m+mAfter)
		}
	}

	// Bad input.
	for _, path := range []string{"/v1/series?range=2h", "/v1/functions/fn/series?range=1d", "/v1/services/web/series?range=15M"} {
		code, body := s.get(path)
		var e v1.Error
		if code != 400 || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Message, "range") {
			t.Errorf("GET %s: %d %s, want 400 naming the range", path, code, body)
		}
	}
	for _, path := range []string{"/v1/functions/nope/series", "/v1/services/nope/series", "/v1/functions/web/series"} {
		if code, body := s.get(path); code != 404 {
			t.Errorf("GET %s: %d %s, want 404", path, code, body)
		}
	}
	if resp, _ := s.do("GET", "/v1/series", nil, false); resp.StatusCode != 401 {
		t.Errorf("GET /v1/series without the token: %d", resp.StatusCode)
	}
}

// TestFunctionPatch: PATCH changes memory, timeout and env in a new
// version with the same code, which the next invoke runs; env merges key
// by key (null removes one); a patch that changes nothing makes no
// version and keeps the instance; If-Match of a stale version is 412; a
// bad field is 400 and changes nothing; stratus get shows the change.
func TestFunctionPatch(t *testing.T) {
	s := startServer(t)
	s.mustCLI("deploy", "fn", "--runtime", "provided", "--env", "GREETING=hello", "--env", "OTHER=x", "--env", "KEEP=k", fixture("goecho"))
	type answer struct {
		Env   map[string]string `json:"env"`
		PID   int               `json:"pid"`
		PIDNS string            `json:"pidns"`
	}
	invoke := func() answer {
		t.Helper()
		resp, body := s.invoke("fn", `{}`)
		if resp.StatusCode != 200 {
			t.Fatalf("invoke: %d %s", resp.StatusCode, body)
		}
		return decode[answer](t, body)
	}
	invokeEnv := func() map[string]string { t.Helper(); return invoke().Env }
	if env := invokeEnv(); env["GREETING"] != "hello" {
		t.Fatalf("before: env %v", env)
	}
	get := func() v1.Function {
		t.Helper()
		return decode[v1.Function](t, []byte(s.mustCLI("get", "fn", "-o", "json")))
	}
	before := get()

	resp, body := s.do("PATCH", "/v1/functions/fn", []byte(`{"memoryMB":256,"timeoutSec":10,"env":{"GREETING":"patched","OTHER":null}}`), true,
		"Content-Type", "application/merge-patch+json")
	if resp.StatusCode != 200 {
		t.Fatalf("PATCH: %d %s", resp.StatusCode, body)
	}
	patched := decode[v1.Function](t, body)
	if patched.Version != before.Version+1 || patched.CodeSHA != before.CodeSHA || patched.Config.MemoryMB != 256 ||
		patched.Config.TimeoutSec != 10 || len(patched.Config.Env) != 2 || patched.Config.Env["GREETING"] != "patched" || patched.Config.Env["KEEP"] != "k" {
		t.Fatalf("PATCH answered %+v", patched)
	}
	if etag := resp.Header.Get("ETag"); etag != fmt.Sprintf(`"%d"`, patched.Version) {
		t.Errorf("PATCH answered ETag %q for version %d", etag, patched.Version)
	}
	warm := invoke()
	env := warm.Env
	if env["GREETING"] != "patched" || env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] != "256" {
		t.Errorf("after the patch the function saw env %v", env)
	}
	out := s.mustCLI("get", "fn")
	for _, want := range []string{"256 MB", "10 s", "GREETING", "patched", fmt.Sprintf("Version:              %d", before.Version+1)} {
		if !strings.Contains(out, want) {
			t.Errorf("stratus get does not show %q:\n%s", want, out)
		}
	}

	// A patch that changes nothing: 200, no version, the same instance.
	for _, body := range []string{`{}`, `{"memoryMB":256,"env":{"KEEP":"k","OTHER":null}}`} {
		resp, b := s.do("PATCH", "/v1/functions/fn", []byte(body), true, "Content-Type", "application/json")
		if f := decode[v1.Function](t, b); resp.StatusCode != 200 || f.Version != patched.Version {
			t.Fatalf("PATCH %s changes nothing: %d, version %d, want 200 and %d", body, resp.StatusCode, f.Version, patched.Version)
		}
	}
	if again := invoke(); again.PID != warm.PID || again.PIDNS != warm.PIDNS {
		t.Errorf("a patch that changed nothing restarted the instance: pid %d %s, was %d %s", again.PID, again.PIDNS, warm.PID, warm.PIDNS)
	}

	// If-Match: a stale version is refused, the current one goes.
	resp, body = s.do("PATCH", "/v1/functions/fn", []byte(`{"description":"late"}`), true,
		"Content-Type", "application/json", "If-Match", fmt.Sprint(before.Version))
	if resp.StatusCode != 412 {
		t.Errorf("PATCH with a stale If-Match: %d %s, want 412", resp.StatusCode, body)
	}
	resp, body = s.do("PATCH", "/v1/functions/fn", []byte(`{"description":"now"}`), true,
		"Content-Type", "application/json", "If-Match", fmt.Sprintf(`"%d"`, patched.Version))
	if f := decode[v1.Function](t, body); resp.StatusCode != 200 || f.Config.Description != "now" || f.Version != patched.Version+1 {
		t.Errorf("PATCH with the current If-Match: %d %s", resp.StatusCode, body)
	}

	// Bad input: 400, the function as it was.
	after := get()
	for _, tc := range []struct{ body, say, ctype string }{
		{`{"memoryMB":512,"runtime":"python3"}`, `"runtime"`, "application/json"},
		{`{"memoryMB":64}`, "memory", "application/json"},
		{`{"timeoutSec":"long"}`, `"timeoutSec"`, "application/json"},
		{`{"env":{"A":1}}`, `"env"`, "application/json"},
		{`{"memoryMB":512}`, "Content-Type", "text/plain"},
	} {
		resp, body := s.do("PATCH", "/v1/functions/fn", []byte(tc.body), true, "Content-Type", tc.ctype)
		var e v1.Error
		if resp.StatusCode != 400 || json.Unmarshal(body, &e) != nil || !strings.Contains(e.Message, tc.say) {
			t.Errorf("PATCH %s: %d %s, want 400 saying %s", tc.body, resp.StatusCode, body, tc.say)
		}
		if now := get(); now.Version != after.Version || now.Config.MemoryMB != 256 {
			t.Fatalf("PATCH %s changed the function: %+v", tc.body, now)
		}
	}
	if resp, body := s.do("PATCH", "/v1/functions/nope", []byte(`{"memoryMB":512}`), true, "Content-Type", "application/json"); resp.StatusCode != 404 {
		t.Errorf("PATCH of no function: %d %s", resp.StatusCode, body)
	}
	if env := invokeEnv(); env["GREETING"] != "patched" {
		t.Errorf("after refused patches: env %v", env)
	}
	// A null removes a variable from what the function sees.
	resp, body = s.do("PATCH", "/v1/functions/fn", []byte(`{"env":{"GREETING":null}}`), true, "Content-Type", "application/merge-patch+json")
	if f := decode[v1.Function](t, body); resp.StatusCode != 200 || len(f.Config.Env) != 1 || f.Config.Env["KEEP"] != "k" {
		t.Fatalf("PATCH GREETING: null: %d %s", resp.StatusCode, body)
	}
	if env, ok := invokeEnv()["GREETING"]; ok {
		t.Errorf("GREETING was patched to null, yet the function sees %q", env)
	}
}
