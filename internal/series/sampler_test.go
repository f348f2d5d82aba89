package series

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/store"
)

// registry is a registry of the families internal/server exports (the
// names and labels the series read), which the tests drive by hand.
type registry struct {
	reg         *prometheus.Registry
	invocations *prometheus.CounterVec
	throttles   *prometheus.CounterVec
	cold        *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	instances   *prometheus.GaugeVec
	concurrency *prometheus.GaugeVec

	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	replicas *prometheus.GaugeVec
	desired  *prometheus.GaugeVec
	asDesire *prometheus.GaugeVec
	panicked *prometheus.GaugeVec
	inFlight *prometheus.GaugeVec
	restarts *prometheus.CounterVec
	ooms     *prometheus.CounterVec
}

var testBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900}

func newRegistry() *registry {
	counter := func(name string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: name}, labels)
	}
	gaugeVec := func(name string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: name}, labels)
	}
	histogram := func(name, label string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: name, Buckets: testBuckets}, []string{label})
	}
	r := &registry{
		reg:         prometheus.NewRegistry(),
		invocations: counter("stratus_function_invocations_total", "function", "outcome", "trigger"),
		throttles:   counter("stratus_function_throttles_total", "function"),
		cold:        counter("stratus_function_cold_starts_total", "function"),
		duration:    histogram("stratus_function_duration_seconds", "function"),
		instances:   gaugeVec("stratus_function_instances", "function", "state"),
		concurrency: gaugeVec("stratus_function_concurrency", "function"),
		requests:    counter("stratus_service_requests_total", "service", "code_class"),
		latency:     histogram("stratus_service_request_duration_seconds", "service"),
		replicas:    gaugeVec("stratus_service_replicas", "service", "state"),
		desired:     gaugeVec("stratus_service_desired_replicas", "service"),
		asDesire:    gaugeVec("stratus_autoscaler_desired_replicas", "service"),
		panicked:    gaugeVec("stratus_autoscaler_panic_mode", "service"),
		inFlight:    gaugeVec("stratus_service_in_flight", "service"),
		restarts:    counter("stratus_service_restarts_total", "service"),
		ooms:        counter("stratus_service_oom_kills_total", "service"),
	}
	r.reg.MustRegister(r.invocations, r.throttles, r.cold, r.duration, r.instances, r.concurrency,
		r.requests, r.latency, r.replicas, r.desired, r.asDesire, r.panicked, r.inFlight, r.restarts, r.ooms)
	return r
}

// invoke counts one invocation of fn lasting d.
func (r *registry) invoke(fn, outcome string, d time.Duration) {
	r.invocations.WithLabelValues(fn, outcome, "sync").Inc()
	r.duration.WithLabelValues(fn).Observe(d.Seconds())
}

// request counts one request to svc answered status class in d.
func (r *registry) request(svc, class string, d time.Duration) {
	r.requests.WithLabelValues(svc, class).Inc()
	r.latency.WithLabelValues(svc).Observe(d.Seconds())
}

// clock is a clock the tests step.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// t0 starts an hour: every range's buckets begin on it.
var t0 = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

type rig struct {
	t   *testing.T
	reg *registry
	st  *store.Store
	clk *clock
	s   *Sampler
}

func newRig(t *testing.T) *rig {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "stratus.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := &rig{t: t, reg: newRegistry(), st: st, clk: &clock{t: t0}}
	r.s = New(Config{Gatherer: r.reg.reg, Store: st, Now: r.clk.now})
	return r
}

// restart is the server started again on the same store: a new registry,
// its counters at 0, and a new sampler.
func (r *rig) restart() {
	r.reg = newRegistry()
	r.s = New(Config{Gatherer: r.reg.reg, Store: r.st, Now: r.clk.now})
}

// sample samples at t0+at.
func (r *rig) sample(at time.Duration) {
	r.t.Helper()
	r.clk.set(t0.Add(at))
	if err := r.s.Sample(context.Background()); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) function(name, rng string, at time.Duration) *v1.FunctionSeries {
	r.t.Helper()
	r.clk.set(t0.Add(at))
	rg, err := ParseRange(rng)
	if err != nil {
		r.t.Fatal(err)
	}
	out, err := r.s.Function(context.Background(), name, rg)
	if err != nil {
		r.t.Fatal(err)
	}
	checkWindow(r.t, out.SeriesWindow, rg, t0.Add(at), len(out.Series.Invocations), len(out.Series.DurationP99Ms), len(out.Series.Instances))
	return out
}

func (r *rig) service(name, rng string, at time.Duration) *v1.ServiceSeries {
	r.t.Helper()
	r.clk.set(t0.Add(at))
	rg, err := ParseRange(rng)
	if err != nil {
		r.t.Fatal(err)
	}
	out, err := r.s.Service(context.Background(), name, rg)
	if err != nil {
		r.t.Fatal(err)
	}
	checkWindow(r.t, out.SeriesWindow, rg, t0.Add(at), len(out.Series.Requests), len(out.Series.Panic), len(out.Series.Replicas))
	return out
}

// checkWindow checks that w has one point per step up to now, and the
// series lengths lens.
func checkWindow(t *testing.T, w v1.SeriesWindow, r Range, now time.Time, lens ...int) {
	t.Helper()
	n := r.Points()
	if len(w.T) != n || w.Start != w.T[0] || w.End != now.Unix() || w.StepSec != int64(r.step/time.Second) || w.Range != r.name {
		t.Fatalf("window %+v: want %d points of %v ending at %v", w, n, r.step, now)
	}
	for i := 1; i < n; i++ {
		if w.T[i]-w.T[i-1] != w.StepSec {
			t.Fatalf("window: t[%d]-t[%d] = %d", i, i-1, w.T[i]-w.T[i-1])
		}
	}
	if last := w.T[n-1]; now.Unix() < last || now.Unix() >= last+w.StepSec {
		t.Fatalf("window: now %d is not in the last bucket %d", now.Unix(), last)
	}
	for _, l := range lens {
		if l != n {
			t.Fatalf("a series of %d points, want %d", l, n)
		}
	}
}

func sum(xs []int64) int64 {
	var n int64
	for _, x := range xs {
		n += x
	}
	return n
}

func last[T any](xs []T) T { return xs[len(xs)-1] }

// TestBucketsAddUpAndMoveLive: the buckets hold what happened, in the
// bucket of the sample that saw it; what happened after the last sample
// is in the last bucket at once, and a later sample moves it without
// counting it twice.
func TestBucketsAddUpAndMoveLive(t *testing.T) {
	r := newRig(t)
	r.sample(0)
	for range 3 {
		r.reg.invoke("fn", "success", 20*time.Millisecond)
	}
	r.reg.cold.WithLabelValues("fn").Inc()
	r.sample(5 * time.Second)
	r.reg.invoke("fn", "error", 3*time.Second)
	r.reg.invoke("fn", "success", 20*time.Millisecond)
	r.reg.throttles.WithLabelValues("fn").Add(2)

	// Not sampled yet: live, in the last bucket.
	for _, at := range []time.Duration{7 * time.Second, 10 * time.Second} {
		if at == 10*time.Second {
			r.sample(at)
		}
		s := r.function("fn", "15m", at)
		if got := last(s.Series.Invocations); got != 5 || sum(s.Series.Invocations) != 5 {
			t.Fatalf("at %v: invocations %v, want 5 in the last bucket", at, s.Series.Invocations)
		}
		if sum(s.Series.Errors) != 1 || sum(s.Series.Throttles) != 2 || sum(s.Series.ColdStarts) != 1 {
			t.Fatalf("at %v: errors %d throttles %d cold starts %d, want 1, 2, 1", at,
				sum(s.Series.Errors), sum(s.Series.Throttles), sum(s.Series.ColdStarts))
		}
		// 4 of 5 in (10 ms, 25 ms], 1 in (2.5 s, 5 s].
		p50, p99 := last(s.Series.DurationP50Ms), last(s.Series.DurationP99Ms)
		if p50 == nil || *p50 < 10 || *p50 > 25 || p99 == nil || *p99 < 2500 || *p99 > 5000 {
			t.Fatalf("at %v: p50 %v p99 %v", at, p50, p99)
		}
		if s.Series.DurationP50Ms[0] != nil || s.Series.Instances[0] != nil || s.Series.Invocations[0] != 0 {
			t.Fatalf("at %v: an empty bucket: %v %v %v", at, s.Series.DurationP50Ms[0], s.Series.Instances[0], s.Series.Invocations[0])
		}
	}

	// The next 15 s bucket: the old ones keep what they had.
	r.reg.invoke("fn", "success", time.Millisecond)
	r.sample(20 * time.Second)
	s := r.function("fn", "15m", 21*time.Second)
	if inv := s.Series.Invocations; inv[len(inv)-2] != 5 || last(inv) != 1 {
		t.Fatalf("invocations %v, want ..., 5, 1", inv)
	}
	// 1h: one bucket of a minute.
	h := r.function("fn", "1h", 21*time.Second)
	if last(h.Series.Invocations) != 6 || sum(h.Series.Invocations) != 6 || sum(h.Series.Errors) != 1 {
		t.Fatalf("1h: invocations %v errors %v", h.Series.Invocations, h.Series.Errors)
	}
	// Minutes: the minute being rolled up, and live.
	r.reg.invoke("fn", "success", time.Millisecond)
	for _, rng := range []string{"24h", "7d"} {
		d := r.function("fn", rng, 22*time.Second)
		if last(d.Series.Invocations) != 7 || sum(d.Series.Invocations) != 7 || sum(d.Series.Throttles) != 2 {
			t.Fatalf("%s: invocations %v throttles %v", rng, d.Series.Invocations, d.Series.Throttles)
		}
	}
}

// TestMinutesAgreeWithSamples: over several minutes, a day's buckets
// (from the minutes) hold what the hour's (from the samples) do, whether
// a read falls on a sample, between two, or in a new minute not sampled
// yet.
func TestMinutesAgreeWithSamples(t *testing.T) {
	r := newRig(t)
	want := int64(0)
	for i := range 50 { // 4 min 10 s of samples, 5 s apart
		at := time.Duration(i) * 5 * time.Second
		for range i % 4 {
			r.reg.invoke("fn", "success", 2*time.Millisecond)
			want++
		}
		r.sample(at)
		if i%7 == 3 {
			r.reg.invoke("fn", "success", 2*time.Millisecond) // live
			want++
		}
		for _, rng := range []string{"15m", "1h", "24h"} {
			s := r.function("fn", rng, at+time.Second)
			if got := sum(s.Series.Invocations); got != want {
				t.Fatalf("sample %d, %s: %d invocations, want %d (%v)", i, rng, got, want, s.Series.Invocations)
			}
		}
	}
	// Minutes 0 to 4 hold it all; minute 5 (now) nothing.
	h := r.function("fn", "1h", 5*time.Minute)
	perMinute := h.Series.Invocations[len(h.Series.Invocations)-7:]
	if perMinute[0] != 0 || perMinute[6] != 0 || sum(perMinute) != want || sum(h.Series.Invocations) != want {
		t.Fatalf("per minute %v, want %d in all", perMinute, want)
	}
	minutes, err := r.st.SeriesRollups(context.Background(), store.SeriesQuery{Step: time.Minute, Kind: KindFunction, Name: "fn"})
	if err != nil {
		t.Fatal(err)
	}
	if len(minutes) != 5 {
		t.Fatalf("%d minutes stored, want 5", len(minutes))
	}
}

// TestCounterGoneDownCountsFromZero: a series made anew (a function
// removed and deployed again) counts from 0, and a new workload's first
// counts are whole.
func TestCounterGoneDownCountsFromZero(t *testing.T) {
	r := newRig(t)
	for range 10 {
		r.reg.invoke("fn", "success", time.Millisecond)
	}
	r.sample(0)
	r.reg.invocations.DeletePartialMatch(prometheus.Labels{"function": "fn"})
	r.reg.duration.DeletePartialMatch(prometheus.Labels{"function": "fn"})
	for range 3 {
		r.reg.invoke("fn", "success", time.Millisecond)
	}
	r.reg.invoke("new", "success", time.Millisecond)
	r.sample(5 * time.Second)
	s := r.function("fn", "15m", 6*time.Second)
	if sum(s.Series.Invocations) != 13 || last(s.Series.DurationP50Ms) == nil {
		t.Fatalf("invocations %v p50 %v, want 13 in all", s.Series.Invocations, last(s.Series.DurationP50Ms))
	}
	if n := sum(r.function("new", "15m", 6*time.Second).Series.Invocations); n != 1 {
		t.Fatalf("new: %d invocations, want 1", n)
	}
}

// TestRestart: after a restart (counters back at 0) what was stored
// stays, the minute goes on from its stored part, and nothing counts
// twice.
func TestRestart(t *testing.T) {
	r := newRig(t)
	for range 4 {
		r.reg.invoke("fn", "success", time.Millisecond)
	}
	r.sample(10 * time.Second)
	r.reg.invoke("fn", "success", time.Millisecond) // lost with the process: never sampled
	r.restart()
	r.clk.set(t0.Add(12 * time.Second))
	if got := sum(r.function("fn", "24h", 12*time.Second).Series.Invocations); got != 4 {
		t.Fatalf("after the restart, before a sample: %d, want 4", got)
	}
	r.reg.invoke("fn", "success", time.Millisecond)
	r.sample(15 * time.Second)
	r.reg.invoke("fn", "success", time.Millisecond)
	for _, rng := range []string{"15m", "1h", "24h", "7d"} {
		if got := sum(r.function("fn", rng, 16*time.Second).Series.Invocations); got != 6 {
			t.Fatalf("%s after the restart: %d, want 6", rng, got)
		}
	}
}

// TestGauges: a gauge's bucket is its largest sample; the autoscaler's
// panic is 1 in every bucket it was seen in.
func TestGauges(t *testing.T) {
	r := newRig(t)
	set := func(ready, desired, panicking float64) {
		r.reg.replicas.WithLabelValues("web", "ready").Set(ready)
		r.reg.replicas.WithLabelValues("web", "draining").Set(7) // not ready: left out
		r.reg.desired.WithLabelValues("web").Set(desired)
		r.reg.asDesire.WithLabelValues("web").Set(desired + 1)
		r.reg.panicked.WithLabelValues("web").Set(panicking)
		r.reg.inFlight.WithLabelValues("web").Set(ready * 2)
	}
	set(1, 1, 0)
	r.sample(0)
	set(4, 5, 1)
	r.sample(5 * time.Second)
	set(2, 2, 0)
	r.sample(10 * time.Second)
	r.reg.request("web", "2xx", 30*time.Millisecond)
	r.reg.request("web", "5xx", time.Second)
	r.reg.restarts.WithLabelValues("web").Inc()
	r.reg.ooms.WithLabelValues("web").Inc()
	set(3, 3, 0)
	r.sample(20 * time.Second)
	s := r.service("web", "15m", 21*time.Second)
	n := len(s.Series.Replicas)
	got := []float64{*s.Series.Replicas[n-2], *s.Series.Desired[n-2], *s.Series.AutoscalerDesired[n-2], *s.Series.InFlight[n-2], float64(s.Series.Panic[n-2])}
	if want := []float64{4, 5, 6, 8, 1}; !equal(got, want) {
		t.Fatalf("first bucket's gauges %v, want %v", got, want)
	}
	if *last(s.Series.Replicas) != 3 || last(s.Series.Panic) != 0 || s.Series.Replicas[0] != nil {
		t.Fatalf("replicas %v panic %v", s.Series.Replicas, s.Series.Panic)
	}
	if last(s.Series.Requests) != 2 || last(s.Series.Errors) != 1 || last(s.Series.Restarts) != 1 || last(s.Series.OOMKills) != 1 {
		t.Fatalf("requests %v errors %v restarts %v ooms %v", s.Series.Requests, s.Series.Errors, s.Series.Restarts, s.Series.OOMKills)
	}
	if p := last(s.Series.LatencyP99Ms); p == nil || *p < 500 || *p > 1000 {
		t.Fatalf("p99 %v", p)
	}
	// The same in a day's buckets, from the minutes.
	d := r.service("web", "24h", 22*time.Second)
	if *last(d.Series.Replicas) != 4 || last(d.Series.Panic) != 1 || sum(d.Series.Requests) != 2 {
		t.Fatalf("24h: replicas %v panic %v requests %v", last(d.Series.Replicas), last(d.Series.Panic), sum(d.Series.Requests))
	}
}

func equal(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestOverview: every workload asked for is there, idle or not, with its
// window's summary; one not asked for (removed) is not.
func TestOverview(t *testing.T) {
	r := newRig(t)
	r.reg.invoke("busy", "success", 10*time.Millisecond)
	r.reg.invoke("busy", "timeout", 3*time.Second)
	r.reg.throttles.WithLabelValues("busy").Inc()
	r.reg.invoke("gone", "success", time.Millisecond)
	r.reg.request("web", "2xx", 5*time.Millisecond)
	r.sample(0)
	r.reg.invoke("busy", "success", 10*time.Millisecond)
	r.clk.set(t0.Add(2 * time.Second))
	rg, _ := ParseRange("1h")
	o, err := r.s.Overview(context.Background(), rg, []string{"busy", "idle"}, []string{"web", "quiet"})
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Functions) != 2 || len(o.Services) != 2 || len(o.T) != 60 {
		t.Fatalf("overview: %d functions %d services %d points", len(o.Functions), len(o.Services), len(o.T))
	}
	b := o.Functions["busy"]
	if b.Summary.Invocations != 3 || b.Summary.Errors != 1 || b.Summary.Throttles != 1 || last(b.Invocations) != 3 || b.Summary.P50Ms == nil {
		t.Fatalf("busy: %+v", b)
	}
	if i := o.Functions["idle"]; sum(i.Invocations) != 0 || len(i.Errors) != 60 || i.Summary.P50Ms != nil {
		t.Fatalf("idle: %+v", i)
	}
	if w := o.Services["web"]; w.Summary.Requests != 1 || w.Summary.P99Ms == nil || *w.Summary.P99Ms > 5 {
		t.Fatalf("web: %+v", w)
	}
	if q := o.Services["quiet"]; q.Summary.Requests != 0 || len(q.Requests) != 60 {
		t.Fatalf("quiet: %+v", q)
	}
}

// TestPrune: samples older than KeepSamples and the periods of each
// level older than its keeping go; each is kept as long as the range
// that reads it spans.
func TestPrune(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	data := (&point{Calls: 1}).encode()
	row := func(step, age time.Duration) store.SeriesRow {
		return store.SeriesRow{Kind: KindFunction, Name: "fn", Step: step, At: t0.Add(-age), Data: data}
	}
	samples := []store.SeriesRow{row(0, KeepSamples+time.Second), row(0, KeepSamples-time.Second)}
	var rollups []store.SeriesRow
	for i, step := range levels {
		rollups = append(rollups, row(step, keepRollups[i]+step), row(step, keepRollups[i]-step))
	}
	if err := r.st.PutSeries(ctx, samples, rollups); err != nil {
		t.Fatal(err)
	}
	r.sample(0)
	kept, _ := r.st.SeriesSamples(ctx, store.SeriesQuery{Kind: KindFunction})
	if len(kept) != 1 || !kept[0].At.Equal(samples[1].At) {
		t.Fatalf("after pruning: samples %v", kept)
	}
	for i, step := range levels {
		got, _ := r.st.SeriesRollups(ctx, store.SeriesQuery{Step: step, Kind: KindFunction})
		if len(got) != 1 || !got[0].At.Equal(rollups[2*i+1].At) {
			t.Errorf("after pruning: periods of %v: %v, want the one %v old", step, got, keepRollups[i]-step)
		}
	}
	// Each keeping covers its range, and is well short of the longest.
	for _, rg := range ranges {
		keep := KeepSamples
		if rg.level >= 0 {
			keep = keepRollups[rg.level]
		}
		if keep < rg.span+rg.step || keep > 2*rg.span+time.Hour {
			t.Errorf("range %s reads rows kept %v", rg.name, keep)
		}
	}
}

// failingStore fails its writes while fail is set.
type failingStore struct {
	Store
	mu   sync.Mutex
	fail bool
}

func (f *failingStore) PutSeries(ctx context.Context, samples, minutes []store.SeriesRow) error {
	f.mu.Lock()
	fail := f.fail
	f.mu.Unlock()
	if fail {
		return errors.New("disk on fire")
	}
	return f.Store.PutSeries(ctx, samples, minutes)
}

// TestFailedSampleIsCoveredByTheNext: a sample the store refuses changes
// nothing; the next one holds its span, and reads count everything once
// meanwhile.
func TestFailedSampleIsCoveredByTheNext(t *testing.T) {
	r := newRig(t)
	fs := &failingStore{Store: r.st}
	r.s = New(Config{Gatherer: r.reg.reg, Store: fs, Now: r.clk.now})
	r.reg.invoke("fn", "success", time.Millisecond)
	r.sample(0)
	r.reg.invoke("fn", "success", time.Millisecond)
	fs.fail = true
	r.clk.set(t0.Add(5 * time.Second))
	if err := r.s.Sample(context.Background()); err == nil {
		t.Fatal("a sample the store refused succeeded")
	}
	if n := sum(r.function("fn", "15m", 6*time.Second).Series.Invocations); n != 2 {
		t.Fatalf("after a failed sample: %d, want 2", n)
	}
	fs.fail = false
	r.sample(20 * time.Second)
	s := r.function("fn", "15m", 21*time.Second)
	if sum(s.Series.Invocations) != 2 || last(s.Series.Invocations) != 1 {
		t.Fatalf("after the next sample: %v", s.Series.Invocations)
	}
}

// TestIdleIsZeroNotStored: an idle workload stores no rows, yet reads as
// 0 where the sampler ran; where it did not (the server was down), its
// gauges are unknown.
func TestIdleIsZeroNotStored(t *testing.T) {
	r := newRig(t)
	r.reg.instances.WithLabelValues("idle", "idle").Set(0)
	r.reg.concurrency.WithLabelValues("idle").Set(0)
	r.reg.instances.WithLabelValues("warm", "idle").Set(2)
	r.sample(0)
	r.sample(5 * time.Second)
	// Down from 10 s to 59 s.
	r.sample(time.Minute)
	ctx := context.Background()
	for name, want := range map[string]int{"idle": 0, "warm": 3} {
		rows, err := r.st.SeriesSamples(ctx, store.SeriesQuery{Kind: KindFunction, Name: name})
		if err != nil || len(rows) != want {
			t.Fatalf("%s: %d rows stored (%v), want %d", name, len(rows), err, want)
		}
	}
	s := r.function("idle", "15m", time.Minute+time.Second)
	inst, n := s.Series.Instances, len(s.Series.Instances)
	// Buckets: t0 (sampled), 15 s, 30 s, 45 s (down), 60 s (sampled, and now).
	for i, want := range map[int]*float64{n - 5: new(float64), n - 4: nil, n - 3: nil, n - 2: nil, n - 1: new(float64), n - 6: nil} {
		if (inst[i] == nil) != (want == nil) || (inst[i] != nil && *inst[i] != 0) {
			t.Errorf("instances[%d] = %v, want %v", i, fmtPtr(inst[i]), fmtPtr(want))
		}
	}
	if c := s.Series.Concurrency[n-5]; c == nil || *c != 0 {
		t.Errorf("concurrency in a sampled bucket: %v", fmtPtr(c))
	}
	w := r.function("warm", "15m", time.Minute+time.Second)
	if x := w.Series.Instances[n-5]; x == nil || *x != 2 {
		t.Errorf("warm: instances %v", fmtPtr(x))
	}
	// The minutes say the same: minute 0 sampled, and the minute of now.
	d := r.function("idle", "1h", time.Minute+time.Second)
	if x := d.Series.Instances[58]; x == nil || *x != 0 {
		t.Errorf("1h: instances of minute 0: %v", fmtPtr(x))
	}
	h := r.function("idle", "24h", time.Minute+time.Second)
	if x := last(h.Series.Instances); x == nil || *x != 0 {
		t.Errorf("24h: instances %v", fmtPtr(x))
	}
	if x := h.Series.Instances[0]; x != nil {
		t.Errorf("24h: instances a day ago %v, want null", fmtPtr(x))
	}
}

func fmtPtr(p *float64) any {
	if p == nil {
		return "null"
	}
	return *p
}
