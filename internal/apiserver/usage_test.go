package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/functions"
	"github.com/stratus-run/stratus/internal/meter"
	"github.com/stratus-run/stratus/internal/services"
	"github.com/stratus-run/stratus/internal/store"
)

// usageNow is the clock of the usage tests: windows end here.
var usageNow = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

// noPools takes deploys and removals and runs nothing.
type noPools struct{}

func (noPools) Deploy(*stratus.Version) {}
func (noPools) Remove(string)           {}

// fakeServices is a service manager of fixed services; only Get and List
// are called.
type fakeServices struct {
	serviceManager
	svcs []stratus.Service
}

func (f fakeServices) Get(name string) (stratus.Service, services.Status, error) {
	for _, s := range f.svcs {
		if s.Name == name {
			return s, services.Status{}, nil
		}
	}
	return stratus.Service{}, services.Status{}, fmt.Errorf("service %q: %w", name, stratus.ErrNotFound)
}

func (f fakeServices) List() ([]stratus.Service, []services.Status) {
	return f.svcs, make([]services.Status, len(f.svcs))
}

// usageRig is a server over a real store holding functions a (512 MB) and
// b (128 MB) and service web, with their traffic:
//   - a: 100 records 2h before now lasting 1..100 ms, 5 records of 40 ms
//     26h before now (the day before), and one a minute after now;
//   - b: one record of 10 ms an hour before now;
//   - web: a minute of 30 requests on one replica half an hour before now,
//     and the lives of its replicas in rigLives.
type usageRig struct {
	s  *Server
	st *store.Store
	m  *meter.Meter
}

// rigLives are the lives of web's replicas in the rig, in the store's
// order (service, start, replica): old ended two days ago; straddle began
// before the last 24h and ended in them; r1 lived an hour of them; live
// still runs (last reported a minute ago); later begins after now.
var rigLives = []stratus.ReplicaUsage{
	{Service: "web", Revision: 1, Replica: "old", Start: usageNow.Add(-50 * time.Hour), End: usageNow.Add(-48 * time.Hour),
		CPU: 1, MemoryMB: 512, CPUMs: 60000, Requests: 10, Arch: stratus.ArchX86},
	{Service: "web", Revision: 1, Replica: "straddle", Start: usageNow.Add(-25 * time.Hour), End: usageNow.Add(-23 * time.Hour),
		CPU: 1, MemoryMB: 512, CPUMs: 90000, Requests: 20, Arch: stratus.ArchX86},
	{Service: "web", Revision: 2, Replica: "r1", Start: usageNow.Add(-3 * time.Hour), End: usageNow.Add(-2 * time.Hour),
		CPU: 2, MemoryMB: 1024, CPUMs: 30000, Requests: 5, Arch: stratus.ArchX86},
	{Service: "web", Revision: 2, Replica: "live", Start: usageNow.Add(-30 * time.Minute), End: usageNow.Add(-time.Minute),
		CPU: 1, MemoryMB: 512, CPUMs: 300, Requests: 30, Arch: stratus.ArchX86},
	{Service: "web", Revision: 2, Replica: "later", Start: usageNow.Add(time.Minute), End: usageNow.Add(2 * time.Minute),
		CPU: 1, MemoryMB: 512},
}

func newUsageRig(t testing.TB) *usageRig {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "stratus.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for name, mem := range map[string]int{"a": 512, "b": 128} {
		cfg := stratus.FunctionConfig{Runtime: "provided.al2023", MemoryMB: mem, TimeoutSec: 3}
		if _, err := st.PutVersion(ctx, name, cfg, "sha-"+name, 1); err != nil {
			t.Fatal(err)
		}
	}
	fns, err := functions.Open(ctx, functions.Config{Store: st, Pools: noPools{}, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	rec := func(fn string, mem int, start time.Time, ms float64) stratus.Invocation {
		return stratus.Invocation{
			RequestID: stratus.NewRequestID(), Function: fn, Version: 1, Start: start, DurationMs: ms,
			BilledMs: int64(ms), MemoryMB: mem, Outcome: stratus.OutcomeSuccess, Trigger: stratus.TriggerSync,
			CPUMs: ms / 2, Arch: stratus.ArchX86,
		}
	}
	var recs []stratus.Invocation
	for i := range 100 {
		recs = append(recs, rec("a", 512, usageNow.Add(-2*time.Hour+time.Duration(i)*100*time.Millisecond), float64(i+1)))
	}
	for range 5 {
		recs = append(recs, rec("a", 512, usageNow.Add(-26*time.Hour), 40))
	}
	recs = append(recs, rec("a", 512, usageNow.Add(time.Minute), 5000), rec("b", 128, usageNow.Add(-time.Hour), 10))
	if err := st.InsertInvocations(ctx, recs); err != nil {
		t.Fatal(err)
	}
	err = st.AddUsageMinutes(ctx, []stratus.UsageMinute{{
		Kind: stratus.KindService, Name: "web", Minute: usageNow.Add(-30 * time.Minute), Requests: 30,
		DurationMs: 30 * 20, MaxDuration: 20, CPUMs: 300, Replicas: 1, MemoryMB: 512, VCPU: 1, MaxInFlight: 2,
		Arch: stratus.ArchX86,
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.InsertReplicaUsages(ctx, rigLives); err != nil {
		t.Fatal(err)
	}
	m := meter.New(meter.Default(), "test-region")
	svcs := fakeServices{svcs: []stratus.Service{{
		Name: "web", Revision: 1, Config: stratus.ServiceConfig{Image: "web:1", MemoryMB: 512, CPU: 1, Concurrency: 10},
	}}}
	s := New(Config{
		Functions: fns, Store: st, Pools: stubPools{}, Logs: stubFlusher{}, Queue: stubQueue{}, Token: "tok",
		Services: ServicesConfig{Manager: svcs}, Meter: m, Info: v1.Info{Region: "test-region"},
		Now: func() time.Time { return usageNow },
	})
	return &usageRig{s: s, st: st, m: m}
}

// get answers GET path, decoding a 200's JSON into out; else it returns
// the error answer.
func (r *usageRig) get(t *testing.T, path string, out any) (int, v1.Error) {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	req.Header.Set("Authorization", "Bearer tok")
	w := httptest.NewRecorder()
	r.s.ServeHTTP(w, req)
	var e v1.Error
	if w.Code != http.StatusOK {
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
			t.Fatalf("GET %s: %d %q is not an error answer", path, w.Code, w.Body)
		}
		return w.Code, e
	}
	if err := json.Unmarshal(w.Body.Bytes(), out); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, w.Body)
	}
	return w.Code, e
}

// priced sums, with the meter, the stored minutes of kind/name that begin
// in [since, usageNow).
func (r *usageRig) priced(t *testing.T, kind, name string, since time.Time) stratus.Usage {
	t.Helper()
	ms, err := r.st.UsageMinutes(context.Background(), store.UsageQuery{Kind: kind, Name: name, Since: since, Until: usageNow})
	if err != nil {
		t.Fatal(err)
	}
	var u stratus.Usage
	for _, m := range ms {
		u.Add(r.m.Minute(m))
	}
	return u
}

func TestUsage(t *testing.T) {
	r := newUsageRig(t)
	day := usageNow.Add(-24 * time.Hour)
	row := func(key, kind string, u stratus.Usage) v1.UsageRow {
		return v1.UsageRow{Key: key, Kind: kind, Usage: u}
	}
	a, b := r.priced(t, stratus.KindFunction, "a", day), r.priced(t, stratus.KindFunction, "b", day)
	web := r.priced(t, stratus.KindService, "web", day)
	if a.Requests != 100 || b.Requests != 1 || web.Requests != 30 || a.CostUSD <= b.CostUSD {
		t.Fatalf("the rig's usage: a %+v, b %+v, web %+v", a, b, web)
	}
	sum := func(us ...stratus.Usage) stratus.Usage {
		var t stratus.Usage
		for _, u := range us {
			t.Add(u)
		}
		return t
	}
	for _, tc := range []struct {
		query string
		since time.Time
		by    string
		rows  []v1.UsageRow
		total stratus.Usage
	}{
		{"", day, v1.ByFunction, []v1.UsageRow{row("a", "function", a), row("b", "function", b)}, sum(a, b)},
		{"?by=function&since=24h", day, v1.ByFunction, []v1.UsageRow{row("a", "function", a), row("b", "function", b)}, sum(a, b)},
		{"?by=service", day, v1.ByService, []v1.UsageRow{row("web", "service", web)}, web},
		{"?by=service&since=10m", usageNow.Add(-10 * time.Minute), v1.ByService, []v1.UsageRow{}, stratus.Usage{}},
		{"?by=day&since=1d", day, v1.ByDay, []v1.UsageRow{row("2026-03-10", "", sum(a, b, web))}, sum(a, b, web)},
	} {
		var got v1.UsageReport
		if code, e := r.get(t, "/v1/usage"+tc.query, &got); code != http.StatusOK {
			t.Errorf("GET /v1/usage%s: %d %+v", tc.query, code, e)
			continue
		}
		want := v1.UsageReport{
			Since: tc.since, Until: usageNow, By: tc.by, Rows: tc.rows, Total: tc.total,
			Region: "test-region", GridIntensity: r.m.Intensity(), PricesAsOf: r.m.Table().Prices.AsOf,
		}
		if diff := cmp.Diff(want, got, cmpopts.EquateApprox(1e-9, 1e-12)); diff != "" {
			t.Errorf("GET /v1/usage%s (-want +got):\n%s", tc.query, diff)
		}
	}

	// By day, oldest first, over two days.
	var got v1.UsageReport
	if code, e := r.get(t, "/v1/usage?by=day&since=2d", &got); code != http.StatusOK {
		t.Fatalf("by day over 2d: %d %+v", code, e)
	}
	var keys []string
	var reqs []int64
	for _, row := range got.Rows {
		keys = append(keys, row.Key)
		reqs = append(reqs, row.Requests)
	}
	if !slices.Equal(keys, []string{"2026-03-09", "2026-03-10"}) || !slices.Equal(reqs, []int64{5, 131}) || got.Total.Requests != 136 {
		t.Errorf("by day over 2d: days %v requests %v total %d; want 2026-03-09 (5), 2026-03-10 (131), 136", keys, reqs, got.Total.Requests)
	}
}

// TestUsageByReplica: by replica, a row for each life of a replica that
// overlaps the window, priced whole by the meter, in the store's order.
func TestUsageByReplica(t *testing.T) {
	r := newUsageRig(t)
	row := func(l stratus.ReplicaUsage) v1.UsageRow {
		return v1.UsageRow{
			Key: l.Replica, Kind: stratus.KindService, Service: l.Service, Revision: l.Revision,
			Start: l.Start, End: l.End, Usage: r.m.Replica(l),
		}
	}
	old, straddle, r1, live := rigLives[0], rigLives[1], rigLives[2], rigLives[3]
	for _, tc := range []struct {
		query string
		since time.Time
		lives []stratus.ReplicaUsage
	}{
		// straddle began before the window: its two hours count whole.
		{"?by=replica", usageNow.Add(-24 * time.Hour), []stratus.ReplicaUsage{straddle, r1, live}},
		{"?by=replica&since=3d", usageNow.Add(-72 * time.Hour), []stratus.ReplicaUsage{old, straddle, r1, live}},
		{"?by=replica&since=10m", usageNow.Add(-10 * time.Minute), []stratus.ReplicaUsage{live}},
		// r1 ended before the window: a life is in when it ended after since.
		{"?by=replica&since=90m", usageNow.Add(-90 * time.Minute), []stratus.ReplicaUsage{live}},
		{"?by=replica&since=121m", usageNow.Add(-121 * time.Minute), []stratus.ReplicaUsage{r1, live}},
	} {
		want := v1.UsageReport{
			Since: tc.since, Until: usageNow, By: v1.ByReplica, Rows: []v1.UsageRow{},
			Region: "test-region", GridIntensity: r.m.Intensity(), PricesAsOf: r.m.Table().Prices.AsOf,
		}
		for _, l := range tc.lives {
			want.Rows = append(want.Rows, row(l))
			want.Total.Add(r.m.Replica(l))
		}
		var got v1.UsageReport
		if code, e := r.get(t, "/v1/usage"+tc.query, &got); code != http.StatusOK {
			t.Errorf("GET /v1/usage%s: %d %+v", tc.query, code, e)
			continue
		}
		if diff := cmp.Diff(want, got, cmpopts.EquateApprox(1e-9, 1e-12)); diff != "" {
			t.Errorf("GET /v1/usage%s (-want +got):\n%s", tc.query, diff)
		}
	}

	// The meter prices the allocation of a whole life: straddle's two
	// hours of 1 vCPU and 512 MB, and the CPU time it used.
	u := r.m.Replica(straddle)
	if u.VCPUSeconds != 7200 || u.GBSeconds != 3600 || u.CPUSeconds != 90 || u.Requests != 20 || u.CostUSD <= 0 {
		t.Errorf("straddle's usage %+v, want 7200 vCPU-s, 3600 GB-s, 90 CPU-s, 20 requests at a cost", u)
	}
}

func TestUsageRefusesBadInput(t *testing.T) {
	r := newUsageRig(t)
	for _, tc := range []struct{ path, message string }{
		{"/v1/usage?by=colour", `by "colour": want function, service, replica or day`},
		{"/v1/usage?by=replicas", `by "replicas": want function, service, replica or day`},
		{"/v1/usage?since=-5m", `since: window "-5m"`},
		{"/v1/usage?since=yesterday", `since: window "yesterday"`},
		{"/v1/usage?since=30s", `since: window "30s": must be between 1m`},
		{"/v1/advice/a?window=0", `window: window "0"`},
		{"/v1/advice/a?window=7x", `window: window "7x"`},
		{"/v1/advice?window=7x", `window: window "7x"`},
		{"/v1/advice/a?latency-budget=-1s", `latency-budget "-1s": want a duration of 0 or more`},
		{"/v1/advice/a?latency-budget=fast", `latency-budget "fast"`},
	} {
		code, e := r.get(t, tc.path, nil)
		if code != http.StatusBadRequest || e.Code != v1.CodeInvalid || !strings.Contains(e.Message, tc.message) {
			t.Errorf("GET %s: %d %+v, want 400 with %q", tc.path, code, e, tc.message)
		}
	}
	code, e := r.get(t, "/v1/advice/nosuch", nil)
	if want := `function or service "nosuch": not found`; code != http.StatusNotFound || e.Message != want {
		t.Errorf("GET /v1/advice/nosuch: %d %+v, want 404 %q", code, e, want)
	}
}

func TestAdvice(t *testing.T) {
	r := newUsageRig(t)
	for _, tc := range []struct {
		path      string
		kind      string
		requests  int64
		p99       float64 // of the records, 0 for a service's estimate
		sample    int     // records the p99 is of; 0 when estimated
		memoryMB  int
		vcpu      float64
		budgetHit bool
	}{
		// The records' p99 (nearest rank of 1..100 ms and five of 40 ms):
		// the 104th of 105 durations; the one after now is not read.
		{"/v1/advice/a", stratus.KindFunction, 105, 99, 105, 512, 512.0 / meter.LambdaMBPerVCPU, false},
		{"/v1/advice/a?window=1h", stratus.KindFunction, 0, 0, 0, 512, 512.0 / meter.LambdaMBPerVCPU, false},
		{"/v1/advice/b?window=36h&latency-budget=1ms", stratus.KindFunction, 1, 10, 1, 128, 128.0 / meter.LambdaMBPerVCPU, true},
		{"/v1/advice/web?window=7d", stratus.KindService, 30, 0, 0, 512, 1, false},
	} {
		var a v1.Advice
		if code, e := r.get(t, tc.path, &a); code != http.StatusOK {
			t.Errorf("GET %s: %d %+v", tc.path, code, e)
			continue
		}
		name := strings.TrimPrefix(strings.SplitN(tc.path, "?", 2)[0], "/v1/advice/")
		if a.Name != name || a.Kind != tc.kind || a.Traffic.Requests != tc.requests || a.Recommended == "" || a.Reason == "" || len(a.Options) < 3 {
			t.Errorf("GET %s: %s (%s) %d requests, recommended %q (%q), %d options; want %s (%s), %d requests",
				tc.path, a.Name, a.Kind, a.Traffic.Requests, a.Recommended, a.Reason, len(a.Options), name, tc.kind, tc.requests)
		}
		if tc.p99 > 0 && a.Traffic.P99DurationMs != tc.p99 {
			t.Errorf("GET %s: p99 %v ms, want the records' %v ms", tc.path, a.Traffic.P99DurationMs, tc.p99)
		}
		if a.Traffic.P99Sample != tc.sample {
			t.Errorf("GET %s: p99 of %d records, want %d", tc.path, a.Traffic.P99Sample, tc.sample)
		}
		if a.Traffic.MemoryMB != tc.memoryMB || a.Traffic.VCPU != tc.vcpu {
			t.Errorf("GET %s: sized %d MB %v vCPU, want the config's %d MB %v vCPU", tc.path, a.Traffic.MemoryMB, a.Traffic.VCPU, tc.memoryMB, tc.vcpu)
		}
		if tc.budgetHit && !strings.Contains(strings.ToLower(a.Reason), "budget") {
			t.Errorf("GET %s: reason %q does not speak of the budget no option keeps", tc.path, a.Reason)
		}
	}
}

func TestP99(t *testing.T) {
	end := usageNow
	recs := func(start time.Time, ms ...float64) []stratus.Invocation {
		var out []stratus.Invocation
		for _, d := range ms {
			out = append(out, stratus.Invocation{Start: start, DurationMs: d})
		}
		return out
	}
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(100 - i) // newest first, as the store lists them
	}
	for _, tc := range []struct {
		name string
		recs []stratus.Invocation
		ms   float64
		n    int
	}{
		{"none", nil, 0, 0},
		{"one", recs(end.Add(-time.Second), 7), 7, 1},
		{"1..100 ms", recs(end.Add(-time.Minute), hundred...), 99, 100},
		{"after the window", recs(end, 5000), 0, 0},
		{"some after the window", append(recs(end.Add(time.Second), 5000), recs(end.Add(-time.Second), 3, 4)...), 4, 2},
		{"every one 0 ms: estimated instead", recs(end.Add(-time.Second), 0, 0, 0), 0, 0},
	} {
		if ms, n := p99(tc.recs, end); ms != tc.ms || n != tc.n {
			t.Errorf("%s: p99 = %v ms of %d records, want %v of %d", tc.name, ms, n, tc.ms, tc.n)
		}
	}
}

func TestAdviceAll(t *testing.T) {
	r := newUsageRig(t)
	var l v1.AdviceList
	if code, e := r.get(t, "/v1/advice?window=7d", &l); code != http.StatusOK {
		t.Fatalf("GET /v1/advice: %d %+v", code, e)
	}
	var names []string
	for _, a := range l.Advice {
		names = append(names, a.Name)
	}
	if got := slices.Sorted(slices.Values(names)); !slices.Equal(got, []string{"a", "b", "web"}) {
		t.Fatalf("advice for %v, want a, b and web", names)
	}
	if !slices.IsSortedFunc(l.Advice, func(x, y v1.Advice) int {
		if x.SavingUSD != y.SavingUSD {
			if x.SavingUSD > y.SavingUSD {
				return -1
			}
			return 1
		}
		return strings.Compare(x.Name, y.Name)
	}) {
		t.Errorf("advice not by saving, then name: %v", l.Advice)
	}
	// Each is the advice GET /v1/advice/NAME answers.
	for _, got := range l.Advice {
		var one v1.Advice
		if code, e := r.get(t, "/v1/advice/"+got.Name+"?window=7d", &one); code != http.StatusOK {
			t.Fatalf("GET /v1/advice/%s: %d %+v", got.Name, code, e)
		}
		if diff := cmp.Diff(one, got); diff != "" {
			t.Errorf("%s in the list (-alone +listed):\n%s", got.Name, diff)
		}
	}
}

func TestInvocationRecordsHaveUsage(t *testing.T) {
	r := newUsageRig(t)
	var l v1.InvocationList
	if code, e := r.get(t, "/v1/functions/b/invocations", &l); code != http.StatusOK {
		t.Fatalf("GET invocations: %d %+v", code, e)
	}
	if len(l.Invocations) != 1 {
		t.Fatalf("%d records of b, want 1", len(l.Invocations))
	}
	got := l.Invocations[0]
	if want := r.m.Invocation(got.Invocation); got.Usage != want || got.Usage.CostUSD <= 0 || got.Usage.CarbonG <= 0 {
		t.Errorf("record's usage %+v, want the meter's %+v", got.Usage, want)
	}
	if got.Trigger != stratus.TriggerSync || got.CPUMs != 5 {
		t.Errorf("record %+v lost its trigger or CPU time", got.Invocation)
	}
}

// TestNoUsageRoutesWithoutMeter: without a meter /v1/usage and
// /v1/advice are not served, and records carry no usage.
func TestNoUsageRoutesWithoutMeter(t *testing.T) {
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "stratus.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := New(Config{Token: "tok", Store: st})
	for _, path := range []string{"/v1/usage", "/v1/advice", "/v1/advice/a"} {
		r := httptest.NewRequest("GET", path, nil)
		r.Header.Set("Authorization", "Bearer tok")
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if w.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d %s, want 404", path, w.Code, w.Body)
		}
	}
}

// FuzzUsageQuery: whatever the query of /v1/usage or /v1/advice, the
// answer is 200, 400 or (advice for no such workload) 404: never a
// server error.
func FuzzUsageQuery(f *testing.F) {
	for _, seed := range [][3]string{
		{"24h", "function", ""}, {"7d", "day", "800ms"}, {"-5m", "colour", "-1s"}, {"400d", "service", "0"},
		{"1e9h", "", "fast"}, {"9223372036854775807d", "day", "1h"}, {"", "", ""}, {"1m", "DAY", "1ns"},
		{"400d", "replica", ""}, {"1m", "replica", "0s"},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	r := newUsageRig(f)
	f.Fuzz(func(t *testing.T, since, by, budget string) {
		for _, path := range []string{
			"/v1/usage?" + url.Values{"since": {since}, "by": {by}}.Encode(),
			"/v1/advice/a?" + url.Values{"window": {since}, "latency-budget": {budget}}.Encode(),
			"/v1/advice?" + url.Values{"window": {since}}.Encode(),
		} {
			req := httptest.NewRequest("GET", path, nil)
			req.Header.Set("Authorization", "Bearer tok")
			w := httptest.NewRecorder()
			r.s.ServeHTTP(w, req)
			if w.Code != http.StatusOK && w.Code != http.StatusBadRequest {
				t.Errorf("GET %s: %d %s", path, w.Code, w.Body)
			}
		}
	})
}
