package apiserver

import (
	"context"
	"encoding/json"
	"maps"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/functions"
	"github.com/stratus-run/stratus/internal/series"
	"github.com/stratus-run/stratus/internal/store"
)

// newSeriesRig is a versions rig (real store and functions service) with
// service web and the series of a real sampler over reg, which counts
// invocations as internal/server's registry does.
func newSeriesRig(t *testing.T) (*versionsRig, *prometheus.CounterVec) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "stratus.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	fns, err := functions.Open(ctx, functions.Config{Store: st, Pools: &echoPools{byKey: map[string]*stratus.Version{}}, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	inv := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stratus_function_invocations_total", Help: "h"},
		[]string{"function", "outcome", "trigger"})
	reg.MustRegister(inv)
	r := &versionsRig{t: t, fns: fns, queue: &recordingQueue{}, targets: &recordingTargets{}}
	r.s = New(Config{
		Functions: fns, Store: st, Pools: stubPools{}, Logs: stubFlusher{}, Queue: r.queue, Token: "tok",
		Services: ServicesConfig{Manager: fakeServices{svcs: []stratus.Service{{Name: "web"}}}},
		Series:   series.New(series.Config{Gatherer: reg, Store: st}),
	})
	return r, inv
}

// keys are the keys of the JSON object b, sorted.
func keys(t *testing.T, b json.RawMessage) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
	return slices.Sorted(maps.Keys(m))
}

// field is the value of key in the JSON object b.
func field(t *testing.T, b json.RawMessage, key string) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
	return m[key]
}

// TestSeriesRoutes: the answers have the contract's shapes; a bad range
// is 400, an unknown workload 404; every deployed workload is in the
// overview.
func TestSeriesRoutes(t *testing.T) {
	r, inv := newSeriesRig(t)
	r.deploy("fn", "one")
	r.deploy("idle", "two")
	inv.WithLabelValues("fn", "success", "sync").Add(2)
	inv.WithLabelValues("fn", "error", "sync").Inc()
	inv.WithLabelValues("removed", "success", "sync").Inc()

	code, _, b := r.do("GET", "/v1/functions/fn/series", "")
	if code != 200 {
		t.Fatalf("GET function series: %d %s", code, b)
	}
	window := []string{"end", "range", "start", "stepSec", "t"}
	if diff := cmp.Diff(slices.Sorted(slices.Values(append(window, "kind", "name", "series"))), keys(t, b)); diff != "" {
		t.Errorf("function series keys (-want +got)\n%s", diff)
	}
	if diff := cmp.Diff([]string{"coldStarts", "concurrency", "durationP50Ms", "durationP99Ms", "errors", "instances", "invocations", "throttles"},
		keys(t, field(t, b, "series"))); diff != "" {
		t.Errorf("function series' series keys (-want +got)\n%s", diff)
	}
	var fs v1.FunctionSeries
	if err := json.Unmarshal(b, &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Name != "fn" || fs.Kind != "function" || fs.Range != "1h" || fs.StepSec != 60 || len(fs.T) != 60 ||
		fs.Series.Invocations[59] != 3 || fs.Series.Errors[59] != 1 {
		t.Errorf("function series: %+v", fs)
	}

	code, _, b = r.do("GET", "/v1/services/web/series?range=15m", "")
	if code != 200 {
		t.Fatalf("GET service series: %d %s", code, b)
	}
	if diff := cmp.Diff([]string{"autoscalerDesired", "desired", "errors", "inflight", "latencyP50Ms", "latencyP99Ms", "oomKills", "panic", "replicas", "requests", "restarts"},
		keys(t, field(t, b, "series"))); diff != "" {
		t.Errorf("service series keys (-want +got)\n%s", diff)
	}
	if k := string(field(t, b, "kind")); k != `"service"` {
		t.Errorf("service series kind %s", k)
	}

	for _, rng := range []struct {
		q    string
		n    int
		step int64
	}{{"15m", 60, 15}, {"1h", 60, 60}, {"24h", 144, 600}, {"7d", 168, 3600}} {
		var o v1.SeriesOverview
		r.want(200, "GET", "/v1/series?range="+rng.q, "", &o)
		if len(o.T) != rng.n || o.StepSec != rng.step || o.Range != rng.q {
			t.Errorf("overview %s: %d points of %d s", rng.q, len(o.T), o.StepSec)
		}
		if got := slices.Sorted(maps.Keys(o.Functions)); !slices.Equal(got, []string{"fn", "idle"}) {
			t.Errorf("overview %s: functions %v", rng.q, got)
		}
		if _, ok := o.Services["web"]; !ok || len(o.Services) != 1 {
			t.Errorf("overview %s: services %v", rng.q, o.Services)
		}
		if s := o.Functions["fn"].Summary; s.Invocations != 3 || s.Errors != 1 {
			t.Errorf("overview %s: fn's summary %+v", rng.q, s)
		}
		if len(o.Functions["idle"].Invocations) != rng.n {
			t.Errorf("overview %s: idle's invocations %v", rng.q, o.Functions["idle"].Invocations)
		}
	}
	_, _, b = r.do("GET", "/v1/series", "")
	if diff := cmp.Diff(slices.Sorted(slices.Values(append(window, "functions", "services"))), keys(t, b)); diff != "" {
		t.Errorf("overview keys (-want +got)\n%s", diff)
	}
	fn := field(t, field(t, b, "functions"), "fn")
	if diff := cmp.Diff([]string{"errors", "invocations", "summary"}, keys(t, fn)); diff != "" {
		t.Errorf("overview function keys (-want +got)\n%s", diff)
	}
	if diff := cmp.Diff([]string{"errors", "invocations", "p50Ms", "p99Ms", "throttles"}, keys(t, field(t, fn, "summary"))); diff != "" {
		t.Errorf("overview function summary keys (-want +got)\n%s", diff)
	}
	svc := field(t, field(t, b, "services"), "web")
	if diff := cmp.Diff([]string{"errors", "p50Ms", "p99Ms", "requests"}, keys(t, field(t, svc, "summary"))); diff != "" {
		t.Errorf("overview service summary keys (-want +got)\n%s", diff)
	}

	for _, tc := range []struct{ path, want string }{
		{"/v1/series?range=2h", "range"},
		{"/v1/functions/fn/series?range=1d", "range"},
		{"/v1/services/web/series?range=", ""}, // empty: the default
	} {
		if tc.want == "" {
			r.want(200, "GET", tc.path, "", nil)
			continue
		}
		r.want(400, "GET", tc.path, "", nil)
	}
	r.want(404, "GET", "/v1/functions/nope/series", "", nil)
	r.want(404, "GET", "/v1/functions/removed/series", "", nil)
	r.want(404, "GET", "/v1/services/nope/series", "", nil)
	// The token (or a session) is needed.
	if code, _, _ := r.do("GET", "/v1/series", "", "Authorization", "Bearer wrong"); code != 401 {
		t.Errorf("GET /v1/series with a wrong token: %d", code)
	}
}

// TestNoSeriesRoutesWithoutSeries: without Config.Series the routes are
// unknown ones.
func TestNoSeriesRoutesWithoutSeries(t *testing.T) {
	r := newVersionsRig(t)
	r.deploy("fn", "one")
	r.want(404, "GET", "/v1/series", "", nil)
	r.want(404, "GET", "/v1/functions/fn/series", "", nil)
}
