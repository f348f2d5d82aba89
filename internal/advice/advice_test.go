package advice

import (
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/meter"
)

var t0 = time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)

// workload describes synthetic traffic: what one request takes and which
// minutes of the window have how many requests.
type workload struct {
	kind       string
	memoryMB   int
	vcpu       float64
	durationMs float64 // every request's
	cpuShare   float64 // CPU used per request: cpuShare × vcpu × duration
	initMs     float64 // a cold start's init
	days       int
	// requests is the number of requests that start in the minute i
	// minutes after t0.
	requests func(i int) int64
}

// minutes generates w's minutes. A function's first busy minute after an
// idle spell longer than the idle timeout has as many cold starts as it
// has requests in flight (at least one); its other minutes have none.
func (w workload) minutes() []stratus.UsageMinute {
	idle := int(stratus.DefaultIdleTimeout / time.Minute)
	var out []stratus.UsageMinute
	last := -idle - 2
	for i := range w.days * 24 * 60 {
		r := w.requests(i)
		if r == 0 {
			continue
		}
		dur := float64(r) * w.durationMs
		m := stratus.UsageMinute{
			Kind:        w.kind,
			Name:        "w",
			Minute:      t0.Add(time.Duration(i) * time.Minute),
			Requests:    r,
			DurationMs:  dur,
			MaxDuration: w.durationMs,
			BilledMs:    float64(r) * math.Ceil(w.durationMs),
			CPUMs:       dur * w.cpuShare * w.vcpu,
			MemoryMB:    w.memoryMB,
			VCPU:        w.vcpu,
			Arch:        stratus.ArchX86,
		}
		if w.kind == stratus.KindFunction && i-last > idle+1 {
			m.ColdStarts = max(1, int64(math.Ceil(dur/60000)))
			m.InitMs = float64(m.ColdStarts) * w.initMs
			m.BilledMs += m.InitMs // the pool bills a cold start's init
		}
		out = append(out, m)
		last = i
	}
	return out
}

// input is w's input over its days.
func (w workload) input() Input {
	in := FromMinutes(w.kind, "w", w.minutes(), t0, t0.Add(time.Duration(w.days)*24*time.Hour))
	in.MemoryMB, in.VCPU = w.memoryMB, w.vcpu
	return in
}

// Traffic shapes.
var (
	// steady API: 200 req/s, 50 ms each, 20 % of a vCPU while running.
	api = workload{kind: stratus.KindService, memoryMB: 512, vcpu: 1, durationMs: 50, cpuShare: 0.2, days: 7,
		requests: func(int) int64 { return 200 * 60 }}
	// nightly batch: 20 req/s from 02:00 to 03:00, 2 s of CPU-bound work each.
	batch = workload{kind: stratus.KindFunction, memoryMB: 1024, vcpu: 1024.0 / meter.LambdaMBPerVCPU, durationMs: 2000,
		cpuShare: 0.9, initMs: 300, days: 7,
		requests: func(i int) int64 {
			if i%1440 >= 120 && i%1440 < 180 {
				return 20 * 60
			}
			return 0
		}}
	// bursty webhook: 50 requests in one minute, every 110 to 130 minutes.
	webhook = workload{kind: stratus.KindFunction, memoryMB: 256, vcpu: 256.0 / meter.LambdaMBPerVCPU, durationMs: 300,
		cpuShare: 0.3, initMs: 1500, days: 7,
		requests: func(i int) int64 {
			if i%240 == 0 || i%240 == 110 {
				return 50
			}
			return 0
		}}
)

func TestAdvise(t *testing.T) {
	tests := []struct {
		name  string
		in    Input
		want  string // recommended model
		check func(t *testing.T, a v1.Advice)
	}{
		{
			name: "steady API",
			in:   func() Input { in := api.input(); in.Concurrency = 80; return in }(),
			want: v1.ModelService,
			check: func(t *testing.T, a v1.Advice) {
				want := v1.Traffic{
					Requests: 7 * 1440 * 12000, MeanRPS: 200, PeakRPS: 200, ActiveShare: 1,
					MeanDurationMs: 50, P99DurationMs: 50, MeanConcurrency: 10, PeakConcurrency: 10,
					CPUUtilisation: 0.2, MemoryMB: 512, VCPU: 1,
				}
				if diff := cmp.Diff(want, a.Traffic, cmpopts.EquateApprox(1e-9, 1e-9)); diff != "" {
					t.Errorf("traffic (-want +got):\n%s", diff)
				}
				// 2 vCPUs of work at 70 % of 1 vCPU each: 3 replicas.
				svc := find(a.Options, v1.ModelService)
				if svc.MinInstances != 3 || svc.Replicas != 3 || svc.Concurrency != 80 {
					t.Errorf("service = %d to %d replicas of %d, want 3 to 3 of 80", svc.MinInstances, svc.Replicas, svc.Concurrency)
				}
				if a.BreakEvenRPS <= 0 || a.BreakEvenRPS >= 200 {
					t.Errorf("break-even = %g req/s, want between 0 and 200", a.BreakEvenRPS)
				}
				if a.SavingUSD != 0 {
					t.Errorf("saving = %g, want 0 for a service that should stay one", a.SavingUSD)
				}
			},
		},
		{
			name: "nightly batch",
			in:   batch.input(),
			want: v1.ModelFunction,
			check: func(t *testing.T, a v1.Advice) {
				if got, want := a.Traffic.ActiveShare, 1.0/24; math.Abs(got-want) > 1e-9 {
					t.Errorf("active share = %g, want %g", got, want)
				}
				if got := a.Traffic.PeakConcurrency; got != 40 {
					t.Errorf("peak concurrency = %g, want 40", got)
				}
				// CPU-bound work busy one hour a day: a service holds
				// replicas for the daily mean all day on top of the busy
				// hour's, so it costs more than a function at any rate.
				if a.BreakEvenRPS != 0 {
					t.Errorf("break-even = %g req/s, want 0 (the costs never cross)", a.BreakEvenRPS)
				}
			},
		},
		{
			name: "bursty webhook",
			in:   func() Input { in := webhook.input(); in.LatencyBudgetMs = 800; return in }(),
			want: v1.ModelFunctionMin,
			check: func(t *testing.T, a v1.Advice) {
				fn := find(a.Options, v1.ModelFunction)
				if fn.P99Ms != 1800 {
					t.Errorf("function p99 = %g, want 1800 (init + duration)", fn.P99Ms)
				}
				warm := find(a.Options, v1.ModelFunctionMin)
				if warm.MinInstances < 1 || warm.P99Ms > 800 {
					t.Errorf("function-min: %d warm, p99 %g, want ≥ 1 warm within 800 ms", warm.MinInstances, warm.P99Ms)
				}
				if a.SavingUSD != 0 {
					t.Errorf("saving = %g, want 0: the warm instances cost more than a function that misses the budget", a.SavingUSD)
				}
			},
		},
		{
			name: "no traffic",
			in:   FromMinutes(stratus.KindService, "w", nil, t0, t0.Add(24*time.Hour)),
			want: v1.ModelFunction,
			check: func(t *testing.T, a v1.Advice) {
				if !strings.Contains(a.Reason, "no traffic") {
					t.Errorf("reason %q does not say there was no traffic", a.Reason)
				}
				if got := find(a.Options, v1.ModelFunction).CostUSD; got != 0 {
					t.Errorf("function cost = %g, want 0", got)
				}
				if find(a.Options, v1.ModelService).CostUSD <= 0 {
					t.Error("a held replica costs nothing")
				}
				if a.SavingUSD <= 0 {
					t.Errorf("saving = %g, want the service's cost", a.SavingUSD)
				}
				if a.BreakEvenRPS != 0 {
					t.Errorf("break-even = %g, want 0 without traffic", a.BreakEvenRPS)
				}
			},
		},
		{
			name: "single minute",
			in: FromMinutes(stratus.KindFunction, "w", []stratus.UsageMinute{{
				Kind: stratus.KindFunction, Minute: t0.Add(time.Hour), Requests: 6, DurationMs: 600, MaxDuration: 150,
				BilledMs: 600, CPUMs: 30, ColdStarts: 1, InitMs: 200, MemoryMB: 128, VCPU: 128.0 / meter.LambdaMBPerVCPU,
			}}, t0, t0.Add(24*time.Hour)),
			want: v1.ModelFunction,
			check: func(t *testing.T, a v1.Advice) {
				want := v1.Traffic{
					Requests: 6, MeanRPS: 6.0 / 86400, PeakRPS: 0.1, ActiveShare: 1.0 / 1440,
					MeanDurationMs: 100, P99DurationMs: 150, MeanConcurrency: 600.0 / 86400 / 1000, PeakConcurrency: 0.01,
					ColdStartRate: 1.0 / 6, InitMs: 200, CPUUtilisation: 30 / (128.0 / meter.LambdaMBPerVCPU * 600),
					MemoryMB: 128, VCPU: 128.0 / meter.LambdaMBPerVCPU,
				}
				if diff := cmp.Diff(want, a.Traffic, cmpopts.EquateApprox(1e-9, 0)); diff != "" {
					t.Errorf("traffic (-want +got):\n%s", diff)
				}
			},
		},
		{
			name: "zero durations",
			in: FromMinutes(stratus.KindService, "w", []stratus.UsageMinute{
				{Kind: stratus.KindService, Minute: t0, Requests: 100},
				{Kind: stratus.KindService, Minute: t0.Add(time.Minute), Requests: 100},
			}, t0, t0.Add(time.Hour)),
			want: v1.ModelFunction,
			check: func(t *testing.T, a v1.Advice) {
				if a.Traffic.MeanDurationMs != 0 || a.Traffic.CPUUtilisation != 0 {
					t.Errorf("traffic = %+v, want zero durations and CPU", a.Traffic)
				}
			},
		},
		{
			name: "window shorter than a minute",
			in: FromMinutes(stratus.KindFunction, "w", []stratus.UsageMinute{
				{Kind: stratus.KindFunction, Minute: t0, Requests: 30, DurationMs: 300, MaxDuration: 10, BilledMs: 300},
			}, t0.Add(10*time.Second), t0.Add(40*time.Second)),
			want: v1.ModelFunction,
			check: func(t *testing.T, a v1.Advice) {
				if a.Traffic.Requests != 30 || a.Traffic.MeanRPS != 0.5 || a.Traffic.ActiveShare != 1 {
					t.Errorf("traffic = %+v, want the minute's 30 requests over one minute", a.Traffic)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := Advise(tt.in, meter.Default(), "local")
			t.Logf("%s: %s", a.Recommended, a.Reason)
			for _, o := range a.Options {
				t.Logf("  %-24s $%10.2f %10.0f Wh %10.0f g  util %.2f  cold %.4f  p99 %6.0f ms  N=%d R=%d  %s",
					o.Model, o.CostUSD, o.EnergyWh, o.CarbonG, o.Utilisation, o.ColdStartRate, o.P99Ms, o.MinInstances, o.Replicas, o.Note)
			}
			if a.Recommended != tt.want {
				t.Errorf("recommended %s (%s), want %s", a.Recommended, a.Reason, tt.want)
			}
			if a.Name != tt.in.Name || a.Kind != tt.in.Kind {
				t.Errorf("name, kind = %q, %q, want %q, %q", a.Name, a.Kind, tt.in.Name, tt.in.Kind)
			}
			if a.Reason == "" {
				t.Error("no reason")
			}
			checkSane(t, a)
			var models []string
			for _, o := range a.Options {
				models = append(models, o.Model)
			}
			wantModels := []string{v1.ModelFunction, v1.ModelFunctionMin, v1.ModelService, v1.ModelLambda, v1.ModelCloudRun}
			if a.Traffic.Requests == 0 {
				wantModels = slicesDelete(wantModels, v1.ModelFunctionMin)
			}
			if diff := cmp.Diff(wantModels, models); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
			if tt.check != nil {
				tt.check(t, a)
			}
		})
	}
}

func slicesDelete(s []string, v string) []string {
	var out []string
	for _, x := range s {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}

// checkSane fails t if any figure of a is NaN, infinite or negative, or
// the recommendation is not one of its non-reference options.
func checkSane(t *testing.T, a v1.Advice) {
	t.Helper()
	var bad []string
	walkFloats(reflect.ValueOf(a), "advice", func(path string, v float64) {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			bad = append(bad, path)
		}
	})
	if len(bad) > 0 {
		t.Errorf("figures NaN, infinite or negative: %v", bad)
	}
	if a.Traffic.Requests < 0 {
		t.Errorf("requests = %d", a.Traffic.Requests)
	}
	found := false
	for _, o := range a.Options {
		if o.MinInstances < 0 || o.Replicas < 0 {
			t.Errorf("%s: negative counts %d, %d", o.Model, o.MinInstances, o.Replicas)
		}
		if o.Model == a.Recommended && !o.Reference {
			found = true
		}
	}
	if !found {
		t.Errorf("recommended %q is not a non-reference option", a.Recommended)
	}
}

// walkFloats calls f with every float64 in v.
func walkFloats(v reflect.Value, path string, f func(string, float64)) {
	switch v.Kind() {
	case reflect.Float64:
		f(path, v.Float())
	case reflect.Struct:
		for i := range v.NumField() {
			walkFloats(v.Field(i), path+"."+v.Type().Field(i).Name, f)
		}
	case reflect.Slice:
		for i := range v.Len() {
			walkFloats(v.Index(i), path, f)
		}
	}
}

func TestFunctionIsItsMeteredUsage(t *testing.T) {
	// Option (a) of a function is what the meter makes of its own
	// minutes, scaled from the window to a 30-day month.
	for _, w := range []workload{batch, webhook} {
		in := w.input()
		m := meter.New(meter.Default(), "local")
		var u stratus.Usage
		for _, x := range in.Minutes {
			u.Add(m.Minute(x))
		}
		scale := 30.0 / float64(w.days)
		fn := find(Advise(in, meter.Default(), "local").Options, v1.ModelFunction)
		got := []float64{fn.CostUSD, fn.EnergyWh, fn.CarbonG}
		want := []float64{u.CostUSD * scale, u.EnergyWh * scale, u.CarbonG * scale}
		if diff := cmp.Diff(want, got, cmpopts.EquateApprox(1e-9, 0)); diff != "" {
			t.Errorf("%s: cost, energy, carbon (-want +got):\n%s", in.Name, diff)
		}
	}
}

func TestAdviseColdStartsOfAService(t *testing.T) {
	// The webhook's traffic as a service: the function's cold starts come
	// from the model (a run every 2 hours, idle far longer than the idle
	// timeout), not from the minutes, which have none.
	w := webhook
	w.kind = stratus.KindService
	in := w.input()
	a := Advise(in, meter.Default(), "local")
	fn := find(a.Options, v1.ModelFunction)
	busy := 7 * 24 * 60 / 240 * 2
	// Each burst needs 3 instances (50 requests with 0.25 in flight on
	// average): 3 cold starts per burst.
	if got, want := fn.ColdStartRate, float64(3*busy)/float64(50*busy); math.Abs(got-want) > 1e-9 {
		t.Errorf("cold-start rate = %g, want %g", got, want)
	}
	if fn.P99Ms != 1000+300 {
		t.Errorf("p99 = %g, want the default init (1 s) + 300 ms", fn.P99Ms)
	}
	in.InitMs = 400
	if got := find(Advise(in, meter.Default(), "local").Options, v1.ModelFunction).P99Ms; got != 700 {
		t.Errorf("p99 with a 400 ms init = %g, want 700", got)
	}
}

func TestAdviseWarmWithoutBudget(t *testing.T) {
	// Without a budget, keeping instances warm only adds cost: N = 1 is
	// shown for comparison and the function is recommended.
	a := Advise(webhook.input(), meter.Default(), "local")
	if a.Recommended != v1.ModelFunction {
		t.Errorf("recommended %s, want %s", a.Recommended, v1.ModelFunction)
	}
	warm := find(a.Options, v1.ModelFunctionMin)
	fn := find(a.Options, v1.ModelFunction)
	if warm.MinInstances != 1 || !strings.Contains(warm.Note, "for comparison") {
		t.Errorf("function-min = %d warm (%s), want 1 for comparison", warm.MinInstances, warm.Note)
	}
	if warm.CostUSD <= fn.CostUSD {
		t.Errorf("a warm instance costs %g, not more than the function's %g", warm.CostUSD, fn.CostUSD)
	}
}

func TestAdviseWarmWinsWithoutBudget(t *testing.T) {
	// One request of 100 ms every 3 minutes, 1 GB, a 30 s init and a
	// 1-minute idle timeout: every request starts cold and bills 30 s of
	// init (14,400 a month: $7.23). One instance kept warm holds 1 GiB
	// all month ($5.18) and starts nothing cold.
	in := FromMinutes(stratus.KindFunction, "w", minutesFrom(stratus.KindFunction, 7*480, 3, 1, 100, 10, 1, 30000, 0),
		t0, t0.Add(7*24*time.Hour))
	in.MemoryMB, in.IdleTimeout = 1024, time.Minute
	a := Advise(in, meter.Default(), "local")
	checkSane(t, a)
	if a.Recommended != v1.ModelFunctionMin {
		t.Fatalf("recommended %s (%s), want %s", a.Recommended, a.Reason, v1.ModelFunctionMin)
	}
	fn, warm := find(a.Options, v1.ModelFunction), find(a.Options, v1.ModelFunctionMin)
	if warm.MinInstances != 1 || warm.ColdStartRate != 0 {
		t.Errorf("function-min = %d warm, %g cold, want 1 and none", warm.MinInstances, warm.ColdStartRate)
	}
	want := "busy 33 % of minutes at 0.00556 req/s, cold starts on 100 % of requests as a function, each billing its init: " +
		"1 warm instance saves " + usd(fn.CostUSD-warm.CostUSD) + " a month of billed init, net of the memory it holds: " +
		usd(warm.CostUSD) + " a month against " + usd(fn.CostUSD) + " as a function (" + grams(warm.CarbonG) + " against " + grams(fn.CarbonG) + " CO2e)"
	if a.Reason != want {
		t.Errorf("reason\n got %q\nwant %q", a.Reason, want)
	}
	if strings.Contains(a.Reason, "budget") {
		t.Errorf("reason %q speaks of a budget there is not", a.Reason)
	}
}

func TestReasonWarm(t *testing.T) {
	tr := v1.Traffic{Requests: 4150, MeanRPS: 0.00686, ActiveShare: 0.0082}
	fn := v1.AdviceOption{Model: v1.ModelFunction, CostUSD: 7.23, CarbonG: 40, ColdStartRate: 0.02, P99Ms: 1800}
	svc := v1.AdviceOption{Model: v1.ModelService, CostUSD: 8.05, CarbonG: 155.5, MinInstances: 1, Replicas: 1, P99Ms: 300}
	warm := func(n int) v1.AdviceOption {
		return v1.AdviceOption{Model: v1.ModelFunctionMin, MinInstances: n, CostUSD: 3.91, CarbonG: 116.4, P99Ms: 300}
	}
	const busy = "busy 0.82 % of minutes at 0.00686 req/s, "
	for _, tt := range []struct {
		name   string
		budget float64
		n      int
		want   string
	}{
		{"budget, one", 800, 1, busy + "cold starts on 2.0 % of requests put a function's p99 at 1800 ms, over the 800 ms budget: " +
			"1 warm instance keeps it at 300 ms for $3.91 a month against $8.05 as a service (116 g against 156 g CO2e)"},
		{"budget, three", 800, 3, busy + "cold starts on 2.0 % of requests put a function's p99 at 1800 ms, over the 800 ms budget: " +
			"3 warm instances keep it at 300 ms for $3.91 a month against $8.05 as a service (116 g against 156 g CO2e)"},
		{"no budget, one", 0, 1, busy + "cold starts on 2.0 % of requests as a function, each billing its init: " +
			"1 warm instance saves $3.32 a month of billed init, net of the memory it holds: $3.91 a month against $7.23 as a function (116 g against 40 g CO2e)"},
		// A budget the function keeps: warm instances win on cost alone.
		{"budget kept, one", 2000, 1, busy + "cold starts on 2.0 % of requests as a function, each billing its init: " +
			"1 warm instance saves $3.32 a month of billed init, net of the memory it holds: $3.91 a month against $7.23 as a function (116 g against 40 g CO2e)"},
		{"no budget, two", 0, 2, busy + "cold starts on 2.0 % of requests as a function, each billing its init: " +
			"2 warm instances save $3.32 a month of billed init, net of the memory they hold: $3.91 a month against $7.23 as a function (116 g against 40 g CO2e)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := warm(tt.n)
			got := reason(tr, tt.budget, []v1.AdviceOption{fn, rec, svc}, rec)
			if got != tt.want {
				t.Errorf("reason\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestAdviseUnreachableBudget(t *testing.T) {
	in := webhook.input()
	in.LatencyBudgetMs = 100 // below the requests' own 300 ms
	a := Advise(in, meter.Default(), "local")
	if !strings.Contains(a.Reason, "no option keeps the p99 within") {
		t.Errorf("reason %q does not say the budget cannot be met", a.Reason)
	}
	checkSane(t, a)
}

func TestAdviseSavingForAService(t *testing.T) {
	// The batch's traffic held as a service costs more than as a
	// function: the saving is the difference.
	w := batch
	w.kind = stratus.KindService
	a := Advise(w.input(), meter.Default(), "local")
	if a.Recommended != v1.ModelFunction {
		t.Fatalf("recommended %s, want %s", a.Recommended, v1.ModelFunction)
	}
	want := find(a.Options, v1.ModelService).CostUSD - find(a.Options, v1.ModelFunction).CostUSD
	if want <= 0 || math.Abs(a.SavingUSD-want) > 1e-9 {
		t.Errorf("saving = %g, want %g", a.SavingUSD, want)
	}
}

func TestBreakEvenIsWhereCostsCross(t *testing.T) {
	in := api.input()
	a := Advise(in, meter.Default(), "local")
	if a.BreakEvenRPS == 0 {
		t.Fatal("no break-even")
	}
	// Scaled to the break-even rate, the two costs are (nearly) equal.
	k := a.BreakEvenRPS / a.Traffic.MeanRPS
	scaled := in
	scaled.Minutes = nil
	for _, m := range in.Minutes {
		m.Requests = int64(math.Round(float64(m.Requests) * k))
		m.DurationMs *= k
		m.BilledMs *= k
		m.CPUMs *= k
		scaled.Minutes = append(scaled.Minutes, m)
	}
	b := Advise(scaled, meter.Default(), "local")
	fn, svc := find(b.Options, v1.ModelFunction).CostUSD, find(b.Options, v1.ModelService).CostUSD
	if math.Abs(fn-svc) > 0.02*svc {
		t.Errorf("at %g req/s: function $%.2f, service $%.2f, want about equal", a.BreakEvenRPS, fn, svc)
	}
}

func TestAdviseZeroTable(t *testing.T) {
	// A table of zeros prices everything at 0: the function (listed
	// first) is recommended and nothing is NaN.
	a := Advise(api.input(), meter.Table{}, "local")
	checkSane(t, a)
	if a.Recommended != v1.ModelFunction || a.BreakEvenRPS != 0 {
		t.Errorf("recommended %s, break-even %g, want function and 0", a.Recommended, a.BreakEvenRPS)
	}
}

func TestFromMinutes(t *testing.T) {
	ms := []stratus.UsageMinute{
		{Minute: t0.Add(5 * time.Minute), MemoryMB: 256, VCPU: 0.5, Arch: stratus.ArchArm},
		{Minute: t0.Add(2 * time.Minute), MemoryMB: 128, VCPU: 0.25, Arch: stratus.ArchX86},
		{Minute: t0.Add(4 * time.Minute)},
	}
	got := FromMinutes(stratus.KindService, "s", ms, time.Time{}, time.Time{})
	want := Input{Name: "s", Kind: stratus.KindService, Start: t0.Add(2 * time.Minute), End: t0.Add(6 * time.Minute),
		Minutes: ms, MemoryMB: 256, VCPU: 0.5, Arch: stratus.ArchArm}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("FromMinutes (-want +got):\n%s", diff)
	}
	got = FromMinutes(stratus.KindService, "s", ms, t0, t0.Add(time.Hour))
	if !got.Start.Equal(t0) || !got.End.Equal(t0.Add(time.Hour)) {
		t.Errorf("window = %s to %s, want the one given", got.Start, got.End)
	}
}

func TestCut(t *testing.T) {
	in := Input{
		Start: t0.Add(30 * time.Second), End: t0.Add(3*time.Minute + 30*time.Second),
		Minutes: []stratus.UsageMinute{
			{Minute: t0.Add(-time.Minute), Requests: 9},                // before the window
			{Minute: t0, Requests: 1, DurationMs: 10, MaxDuration: 10}, // overlaps its start
			{Minute: t0.Add(2 * time.Minute), Requests: 2, DurationMs: 40, MaxDuration: 30, MaxInFlight: 3},
			{Minute: t0.Add(2 * time.Minute), Requests: 3, DurationMs: 30, MaxDuration: 20, MaxInFlight: 2}, // same minute
			{Minute: t0.Add(time.Minute), Requests: 0},                                                      // no requests
			{Minute: t0.Add(3 * time.Minute), Requests: -5, DurationMs: math.NaN()},                         // nonsense
			{Minute: t0.Add(4 * time.Minute), Requests: 7},                                                  // after
		},
	}
	w := cut(in)
	if w.slots != 4 {
		t.Errorf("slots = %d, want 4", w.slots)
	}
	want := []slot{
		{at: t0, requests: 1, durationMs: 10, maxDuration: 10},
		// Counts and times add up; the longest duration and the most in
		// flight are the larger of the two.
		{at: t0.Add(2 * time.Minute), requests: 5, durationMs: 70, maxDuration: 30, maxInFlight: 3},
	}
	if diff := cmp.Diff(want, w.busy, cmp.AllowUnexported(slot{})); diff != "" {
		t.Errorf("busy (-want +got):\n%s", diff)
	}
}

func TestInstances(t *testing.T) {
	tests := []struct {
		name string
		s    slot
		want float64
	}{
		{"no requests", slot{}, 0},
		{"zero duration", slot{requests: 10}, 1},
		{"measured in flight", slot{requests: 10, durationMs: 60000, maxInFlight: 7}, 7},
		// 0.25 in flight on average: P(≥2) = 2.6 % of 50 requests is 1.3
		// arrivals, P(≥3) = 0.22 % is 0.11.
		{"50 requests of 300 ms", slot{requests: 50, durationMs: 15000}, 3},
		{"one short request", slot{requests: 1, durationMs: 10}, 1},
		// 10 in flight on average: P(≥25) × 12000 = 0.56, P(≥26) × 12000 = 0.21.
		{"200 req/s of 50 ms", slot{requests: 12000, durationMs: 600000}, 26},
		// A large mean takes the normal approximation: above the mean.
		{"large", slot{requests: 1e9, durationMs: 1e9 * 60}, math.Ceil(1e6 + 6.1*1e3)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := instances(tt.s)
			if tt.name == "large" {
				if got < 1e6+5e3 || got > 1e6+7e3 {
					t.Errorf("instances = %g, want about %g", got, tt.want)
				}
				return
			}
			if got != tt.want {
				t.Errorf("instances = %g, want %g", got, tt.want)
			}
		})
	}
}

func TestColdStarts(t *testing.T) {
	at := func(min int, need float64) slot {
		return slot{at: t0.Add(time.Duration(min) * time.Minute), requests: 100}
	}
	tests := []struct {
		name  string
		mins  []int
		need  []float64
		warm  float64
		want  []float64
		total float64
	}{
		{"first minute starts all", []int{0}, []float64{3}, 0, []float64{3}, 3},
		{"warm ones cover it", []int{0}, []float64{3}, 3, []float64{0}, 0},
		{"warm ones cover part", []int{0}, []float64{3}, 1, []float64{2}, 2},
		// Within the idle timeout (5 min) plus the minute: still warm.
		{"reused", []int{0, 6}, []float64{2, 2}, 0, []float64{2, 0}, 2},
		{"reaped", []int{0, 7}, []float64{2, 2}, 0, []float64{2, 2}, 4},
		{"grows", []int{0, 1, 2}, []float64{1, 3, 2}, 0, []float64{1, 2, 0}, 3},
		// The peak at minute 1 is reaped by minute 8; minute 5's need of
		// 1 keeps one warm.
		{"window max", []int{0, 1, 5, 8}, []float64{1, 4, 1, 3}, 0, []float64{1, 3, 0, 2}, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var busy []slot
			for i, m := range tt.mins {
				busy = append(busy, at(m, tt.need[i]))
			}
			cold, total := coldStarts(busy, tt.need, tt.warm, 5*time.Minute)
			if diff := cmp.Diff(tt.want, cold); diff != "" || total != tt.total {
				t.Errorf("cold starts (-want +got):\n%s\ntotal %g, want %g", diff, total, tt.total)
			}
		})
	}
}

func TestRecommend(t *testing.T) {
	opts := []v1.AdviceOption{
		{Model: v1.ModelFunction, CostUSD: 5, P99Ms: 2000},
		{Model: v1.ModelFunctionMin, CostUSD: 8, P99Ms: 300},
		{Model: v1.ModelService, CostUSD: 12, P99Ms: 300},
		{Model: v1.ModelLambda, CostUSD: 1, P99Ms: 100, Reference: true},
	}
	for _, tt := range []struct {
		budget float64
		want   string
	}{
		{0, v1.ModelFunction},
		{2000, v1.ModelFunction},
		{800, v1.ModelFunctionMin},
		{100, v1.ModelFunctionMin}, // none keeps it: the lowest p99, then the cheaper
	} {
		if got := recommend(opts, tt.budget).Model; got != tt.want {
			t.Errorf("budget %g: recommended %s, want %s", tt.budget, got, tt.want)
		}
	}
}

// minutesFrom makes n minutes gap minutes apart of the given figures,
// for the fuzz and property tests.
func minutesFrom(kind string, n, gap int, req int64, dur, cpu float64, cold int64, initMs float64, inFlight int) []stratus.UsageMinute {
	var out []stratus.UsageMinute
	for i := range n {
		out = append(out, stratus.UsageMinute{
			Kind: kind, Minute: t0.Add(time.Duration(i*gap) * time.Minute), Requests: req, ColdStarts: cold,
			DurationMs: dur, MaxDuration: dur, BilledMs: dur, InitMs: initMs, CPUMs: cpu, MaxInFlight: inFlight,
		})
	}
	return out
}

func FuzzAdvise(f *testing.F) {
	f.Add(true, uint8(10), int16(1), int64(100), 5000.0, 1000.0, int64(1), 300.0, 0, 128, 0.1, int64(3600), 0.0, 0)
	f.Add(false, uint8(1), int16(0), int64(1), 0.0, 0.0, int64(0), 0.0, 5, 0, 0.0, int64(30), 500.0, 80)
	f.Add(false, uint8(200), int16(-3), int64(-1), -1.0, math.NaN(), int64(-5), math.Inf(1), -2, -1, -0.5, int64(-10), -1.0, -1)
	f.Add(true, uint8(50), int16(120), int64(math.MaxInt64), math.MaxFloat64, math.Inf(1), int64(math.MaxInt64), 1e300, math.MaxInt, 1<<30, 1e9, int64(1)<<62, 1e-300, 1<<30)
	f.Fuzz(func(t *testing.T, isFn bool, n uint8, gap int16, req int64, dur, cpu float64, cold int64, initMs float64, inFlight, mem int, vcpu float64, windowSec int64, budget float64, conc int) {
		kind := stratus.KindService
		if isFn {
			kind = stratus.KindFunction
		}
		ms := minutesFrom(kind, int(n), int(gap), req, dur, cpu, cold, initMs, inFlight)
		in := FromMinutes(kind, "f", ms, t0, t0.Add(time.Duration(windowSec)*time.Second))
		in.MemoryMB, in.VCPU, in.LatencyBudgetMs, in.Concurrency, in.InitMs = mem, vcpu, budget, conc, initMs
		checkSane(t, Advise(in, meter.Default(), "local"))
	})
}

func TestAdviseNeverNaN(t *testing.T) {
	// Random minutes, with nonsense mixed in: no figure is ever NaN,
	// infinite or negative.
	r := rand.New(rand.NewPCG(1, 2))
	odd := []float64{0, -1, math.NaN(), math.Inf(1), math.Inf(-1), math.MaxFloat64, 1e-300}
	pick := func(scale float64) float64 {
		if r.IntN(8) == 0 {
			return odd[r.IntN(len(odd))]
		}
		return r.Float64() * scale
	}
	for i := range 300 {
		kind := stratus.KindFunction
		if i%2 == 1 {
			kind = stratus.KindService
		}
		var ms []stratus.UsageMinute
		for range r.IntN(50) {
			ms = append(ms, stratus.UsageMinute{
				Kind: kind, Minute: t0.Add(time.Duration(r.IntN(3000)-100) * time.Minute),
				Requests: r.Int64N(100000) - 10, ColdStarts: r.Int64N(20), DurationMs: pick(1e7), MaxDuration: pick(1e4),
				BilledMs: pick(1e7), InitMs: pick(1e4), CPUMs: pick(1e7), MaxInFlight: r.IntN(100),
				MemoryMB: r.IntN(4096), VCPU: pick(4),
			})
		}
		in := FromMinutes(kind, "r", ms, t0, t0.Add(time.Duration(r.IntN(4000)-10)*time.Minute))
		in.LatencyBudgetMs = pick(3000)
		in.P99DurationMs = pick(5000)
		a := Advise(in, meter.Default(), "local")
		checkSane(t, a)
		if t.Failed() {
			t.Fatalf("input %d: %+v", i, in)
		}
	}
}

func BenchmarkAdvise35Days(b *testing.B) {
	w := api
	w.days = 35
	in := w.input()
	t := meter.Default()
	for b.Loop() {
		Advise(in, t, "local")
	}
}
