package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

// result is a target with the given throughputs and server CPU (µs) per
// round at each concurrency.
func result(kind string, rounds map[int][]float64, cpuus float64) targetResult {
	t := targetResult{Name: kind, Kind: kind}
	for _, c := range []int{1, 32} {
		var rs []point
		for _, rps := range rounds[c] {
			rs = append(rs, point{Run: benchkit.Run{Conc: c, RPS: rps, OK: 1}, ServerCPU: durationUS(cpuus)})
		}
		if len(rs) > 0 {
			t.Rounds = append(t.Rounds, rs)
			t.Runs = append(t.Runs, medianRun(rs))
		}
	}
	return t
}

func durationUS(us float64) time.Duration { return time.Duration(us * float64(time.Microsecond)) }

func TestCompare(t *testing.T) {
	base := result(kindBaseline, map[int][]float64{1: {1000, 800, 1200}, 32: {2000, 1000, 1500}}, 300)
	cur := result(kindOff, map[int][]float64{1: {950, 800, 1000}, 32: {1000, 1000, 1500}}, 330)
	got := compare(&cur, &base)
	want := []ratio{
		// paired: 0.95, 1.0, 0.833; medians: 950/1000
		{Conc: 1, RPS: 0.95, Paired: 0.95, RoundMin: 1000.0 / 1200, RoundMax: 1, CPU: 1.1},
		// paired: 0.5, 1, 1; medians: 1000/1500
		{Conc: 32, RPS: 1000.0 / 1500, Paired: 1, RoundMin: 0.5, RoundMax: 1, CPU: 1.1},
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateApprox(0, 1e-9)); diff != "" {
		t.Errorf("compare (-want +got):\n%s", diff)
	}
}

func TestGoal(t *testing.T) {
	for _, tc := range []struct {
		name   string
		paired []float64
		want   float64
		ok     bool
	}{
		{"all above", []float64{0.97, 1.02}, goalOff, true},
		{"at the goal", []float64{0.95, 0.95}, goalOff, true},
		{"one below", []float64{0.99, 0.94}, goalOff, false},
		{"on: 14 % less", []float64{0.86, 0.9}, goalOn, true},
		{"on: 16 % less", []float64{0.84, 0.9}, goalOn, false},
		{"nothing measured", nil, goalOn, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rs []ratio
			for i, p := range tc.paired {
				rs = append(rs, ratio{Conc: 1 << (3 * i), Paired: p, RPS: math.NaN()})
			}
			if g := goal("x", rs, tc.want); g.OK != tc.ok {
				t.Errorf("goal = %+v, want OK %v", g, tc.ok)
			}
		})
	}
}

// TestPrint checks that the report names every target, the ratios, the
// spans per invocation and the goals' verdicts.
func TestPrint(t *testing.T) {
	r := &results{
		Env:     map[string]string{"date": "2026-12-06", "cpus": "2"},
		Options: map[string]any{"rounds": 3, "duration": "3s"},
		Targets: []targetResult{
			result(kindDirect, map[int][]float64{1: {7000, 7000, 7000}, 32: {15000, 15000, 15000}}, 90),
			result(kindBaseline, map[int][]float64{1: {1000, 1000, 1000}, 32: {1500, 1500, 1500}}, 300),
			result(kindOff, map[int][]float64{1: {990, 990, 990}, 32: {1480, 1480, 1480}}, 310),
			result(kindOn, map[int][]float64{1: {900, 900, 900}, 32: {1200, 1200, 1200}}, 400),
		},
	}
	r.Targets[3].Invocations = 100
	r.Targets[3].Export = &spanCount{Exports: 2, Spans: 210, ByName: map[string]int{"invoke lognoop": 100, "POST /v1/functions/{name}/invoke": 100, "queue wait": 10}}
	var b bytes.Buffer
	r.print(&b)
	out := b.String()
	for _, want := range []string{
		kindBaseline, kindOff, kindOn,
		"0.990 [0.99, 0.99]",
		"2.100 per invocation",
		`"queue wait" 0.100`,
		"+100 µs", // server CPU added at c=32, exporter on
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	var verdicts []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "throughput over the baseline's (paired)") {
			verdicts = append(verdicts, strings.Fields(l)[len(strings.Fields(l))-1])
		}
	}
	if diff := cmp.Diff([]string{"met", "MISSED"}, verdicts); diff != "" {
		t.Errorf("verdicts (-want +got):\n%s\n%s", diff, out)
	}
}

func TestSumSeries(t *testing.T) {
	const exposition = `# HELP stratus_function_invocations_total Invocations.
# TYPE stratus_function_invocations_total counter
stratus_function_invocations_total{function="lognoop",outcome="success",trigger="sync"} 48615
stratus_function_invocations_total{function="lognoop",outcome="error",trigger="sync"} 2
stratus_function_invocations_total{function="other",outcome="success",trigger="sync"} 7
stratus_function_invocations_total_other{function="lognoop"} 1000
stratus_function_cold_starts_total{function="lognoop"} 32
`
	for _, tc := range []struct {
		name, metric, label string
		want                int
		wantErr             bool
	}{
		{"summed over outcomes", "stratus_function_invocations_total", `function="lognoop"`, 48617, false},
		{"another function", "stratus_function_invocations_total", `function="other"`, 7, false},
		{"no such function", "stratus_function_invocations_total", `function="none"`, 0, true},
		{"no such metric", "stratus_missing", `function="lognoop"`, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := sumSeries(strings.NewReader(exposition), tc.metric, tc.label)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("sumSeries = %d, %v; want %d, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// FuzzSumSeries checks that no exposition text makes the reader panic.
func FuzzSumSeries(f *testing.F) {
	f.Add("m{function=\"f\"} 1\n")
	f.Add("m{function=\"f\"} \n")
	f.Add("m{function=\"f\"} 1e3 1700000000\nm{function=\"f\"} NaN\n")
	f.Add("m{")
	f.Fuzz(func(t *testing.T, text string) {
		_, _ = sumSeries(strings.NewReader(text), "m", `function="f"`)
	})
}

func TestCondense(t *testing.T) {
	const top = `File: stratus
Build ID: abc
Type: cpu
Duration: 8s, Total samples = 9.87s (123.4%)
Showing nodes accounting for 9.87s, 100% of 9.87s total
      flat  flat%   sum%        cum   cum%
     0.01s  0.1%  0.1%      5.00s 50.7%  net/http.(*conn).serve
     0.02s  0.2%  0.3%      1.00s 10.1%  go.opentelemetry.io/otel/sdk/trace.(*batchSpanProcessor).processQueue
     0.03s  0.3%  0.6%      0.50s  5.1%  fmt.Sprintf
`
	got, total := benchkit.Condense(top, 10, interesting)
	if total.Seconds() != 9.87 {
		t.Errorf("total = %v, want 9.87s", total)
	}
	if strings.Contains(got, "fmt.Sprintf") || strings.Contains(got, "Build ID") || !strings.Contains(got, "batchSpanProcessor") || !strings.Contains(got, "(*conn).serve") {
		t.Errorf("condense kept:\n%s", got)
	}
}
