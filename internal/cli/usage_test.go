package cli

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

// testReport is a usage report of two functions.
var testReport = v1.UsageReport{
	Since: testTime.Add(-24 * time.Hour), Until: testTime, By: v1.ByFunction,
	Rows: []v1.UsageRow{
		{Key: "api", Kind: "function", Usage: stratus.Usage{Requests: 1200, GBSeconds: 60.5, CPUSeconds: 12.25, CostUSD: 0.00125,
			EnergyWh: 1.5, CarbonG: 0.75, EnergySource: "model"}},
		{Key: "cron", Kind: "function", Usage: stratus.Usage{Requests: 3, GBSeconds: 0.5, CPUSeconds: 0.125, CostUSD: 0.00001,
			EnergyWh: 0.01, CarbonG: 0.005, EnergySource: "model"}},
	},
	Total:  stratus.Usage{Requests: 1203, GBSeconds: 61, CPUSeconds: 12.375, CostUSD: 0.00126, EnergyWh: 1.51, CarbonG: 0.755, EnergySource: "model"},
	Region: "eu-west-1", GridIntensity: 280, PricesAsOf: "2026-01-15",
}

func TestUsage(t *testing.T) {
	f := newFakeAPI(t)
	f.on("GET /v1/usage", jsonReply(200, testReport))
	r := f.run("usage", "--since", "7d", "--by", "function")
	want := [][]string{
		{"NAME", "KIND", "REQUESTS", "GB-S", "CPU-S", "COST-USD"},
		{"api", "function", "1200", "60.500", "12.250", "0.001250"},
		{"cron", "function", "3", "0.500", "0.125", "0.000010"},
		{"TOTAL", "-", "1203", "61.000", "12.375", "0.001260"},
		{"region", "eu-west-1,", "grid", "intensity", "280", "gCO2e/kWh,", "prices", "as", "of", "2026-01-15"},
	}
	if diff := cmp.Diff(want, fields(r.stdout)); r.code != ExitOK || diff != "" {
		t.Errorf("exit %d %s, table (-want +got):\n%s", r.code, r.stderr, diff)
	}
	if q, _ := url.ParseQuery(f.only().Query); q.Get("since") != "7d" || q.Get("by") != "function" {
		t.Errorf("query %v, want since=7d by=function", q)
	}

	r = f.run("usage", "--energy")
	want = [][]string{
		{"NAME", "KIND", "REQUESTS", "GB-S", "CPU-S", "COST-USD", "WH", "GCO2E", "SOURCE"},
		{"api", "function", "1200", "60.500", "12.250", "0.001250", "1.5", "0.75", "model"},
		{"cron", "function", "3", "0.500", "0.125", "0.000010", "0.01", "0.005", "model"},
		{"TOTAL", "-", "1203", "61.000", "12.375", "0.001260", "1.51", "0.755", "model"},
		{"region", "eu-west-1,", "grid", "intensity", "280", "gCO2e/kWh,", "prices", "as", "of", "2026-01-15"},
	}
	if diff := cmp.Diff(want, fields(r.stdout)); r.code != ExitOK || diff != "" {
		t.Errorf("--energy: exit %d %s, table (-want +got):\n%s", r.code, r.stderr, diff)
	}
	if q, _ := url.ParseQuery(f.requests()[1].Query); q.Get("since") != "24h" || q.Get("by") != "function" {
		t.Errorf("defaults: query %v, want since=24h by=function", q)
	}

	byDay := testReport
	byDay.By = v1.ByDay
	byDay.Rows = []v1.UsageRow{{Key: "2026-01-01", Usage: stratus.Usage{Requests: 4}}}
	f.on("GET /v1/usage", jsonReply(200, byDay))
	r = f.run("usage", "--by", "day")
	if rows := fields(r.stdout); r.code != ExitOK || len(rows) != 4 || rows[0][0] != "DAY" || !cmp.Equal(rows[1][:3], []string{"2026-01-01", "-", "4"}) {
		t.Errorf("--by day: exit %d, table:\n%s", r.code, r.stdout)
	}

	f.on("GET /v1/usage", jsonReply(200, testReport))
	r = f.run("usage", "-o", "json")
	var got v1.UsageReport
	decodeJSON(t, r.stdout, &got)
	if diff := cmp.Diff(testReport, got); diff != "" {
		t.Errorf("json (-want +got):\n%s", diff)
	}
}

// testAdvice is advice for a busy function: a service is cheaper.
var testAdvice = v1.Advice{
	Name: "api", Kind: "function", Window: "2025-12-26T03:04:05Z/2026-01-02T03:04:05Z",
	Traffic: v1.Traffic{Requests: 120960000, MeanRPS: 200, PeakRPS: 250, ActiveShare: 1, MeanDurationMs: 50, P99DurationMs: 80, ColdStartRate: 0.0001},
	Options: []v1.AdviceOption{
		{Model: v1.ModelFunction, CostUSD: 600.5, EnergyWh: 9000, CarbonG: 2500, P99Ms: 80, ColdStartRate: 0.0001},
		{Model: v1.ModelFunctionMin, MinInstances: 3, CostUSD: 640, EnergyWh: 9500, CarbonG: 2600, P99Ms: 80},
		{Model: v1.ModelService, MinInstances: 2, Replicas: 5, Concurrency: 80, CostUSD: 150.25, EnergyWh: 4000, CarbonG: 1100, P99Ms: 80},
		{Model: v1.ModelLambda, CostUSD: 600.5, EnergyWh: 9000, CarbonG: 2500, P99Ms: 80, Reference: true},
	},
	Recommended: v1.ModelService, Reason: "busy 100% of minutes at 200 req/s",
	BreakEvenRPS: 12.5, SavingUSD: 450.25,
}

func TestAdvise(t *testing.T) {
	f := newFakeAPI(t)
	f.on("GET /v1/advice/api", jsonReply(200, testAdvice))
	r := f.run("advise", "api", "--window", "7d", "--latency-budget", "800ms")
	rows := fields(r.stdout)
	for _, want := range [][]string{
		{"MODEL", "INSTANCES/REPLICAS", "MONTHLY", "COST", "WH", "GCO2E", "P99", "COLD", "STARTS"},
		{"function", "-", "$600.50", "9000.0", "2500.0", "80", "ms", "0.01%"},
		{"function-min-instances", "3", "$640.00", "9500.0", "2600.0", "80", "ms", "0.00%"},
		{"service", "2-5", "$150.25", "4000.0", "1100.0", "80", "ms", "0.00%"},
		{"aws-lambda", "-", "$600.50", "9000.0", "2500.0", "80", "ms", "0.00%", "(reference)"},
		{"recommended:", "service", "—", "busy", "100%", "of", "minutes", "at", "200", "req/s"},
		{"break-even:", "12.50", "req/s"},
		{"saving:", "$450.25/month"},
	} {
		if !containsRow(rows, want) {
			t.Errorf("advise lacks the row %q; it printed (exit %d %s):\n%s", want, r.code, r.stderr, r.stdout)
		}
	}
	if !strings.Contains(r.stdout, "traffic: 120960000 requests, mean 200.00 req/s") {
		t.Errorf("advise prints no traffic summary:\n%s", r.stdout)
	}
	if q, _ := url.ParseQuery(f.only().Query); q.Get("window") != "7d" || q.Get("latency-budget") != "800ms" {
		t.Errorf("query %v", q)
	}
	r = f.run("advise", "api", "-o", "json")
	var got v1.Advice
	decodeJSON(t, r.stdout, &got)
	if diff := cmp.Diff(testAdvice, got); diff != "" {
		t.Errorf("json (-want +got):\n%s", diff)
	}
	if q, _ := url.ParseQuery(f.requests()[1].Query); q.Get("window") != "7d" || q.Has("latency-budget") {
		t.Errorf("defaults: query %v, want window=7d and no budget", q)
	}

	f.on("GET /v1/advice/nosuch", apiError(404, v1.CodeNotFound, `function or service "nosuch": not found`))
	if r := f.run("advise", "nosuch"); r.code != ExitError || !strings.Contains(r.stderr, `"nosuch": not found`) {
		t.Errorf("advise nosuch: exit %d stderr %q", r.code, r.stderr)
	}
}

func TestAdviseAll(t *testing.T) {
	batch := v1.Advice{Name: "batch", Kind: "service", Recommended: v1.ModelFunction, SavingUSD: 20, Reason: "busy 4% of minutes"}
	l := v1.AdviceList{Advice: []v1.Advice{testAdvice, batch}}
	f := newFakeAPI(t)
	f.on("GET /v1/advice", jsonReply(200, l))
	r := f.run("advise", "--all", "--window", "36h")
	want := [][]string{
		{"NAME", "KIND", "CURRENT", "RECOMMENDED", "SAVING/MONTH", "REASON"},
		{"api", "function", "function", "service", "$450.25", "busy", "100%", "of", "minutes", "at", "200", "req/s"},
		{"batch", "service", "service", "function", "$20.00", "busy", "4%", "of", "minutes"},
	}
	if diff := cmp.Diff(want, fields(r.stdout)); r.code != ExitOK || diff != "" {
		t.Errorf("exit %d %s, table (-want +got):\n%s", r.code, r.stderr, diff)
	}
	if q, _ := url.ParseQuery(f.only().Query); q.Get("window") != "36h" {
		t.Errorf("query %v", q)
	}
	r = f.run("advise", "--all", "-o", "json")
	var got v1.AdviceList
	decodeJSON(t, r.stdout, &got)
	if diff := cmp.Diff(l, got); diff != "" {
		t.Errorf("json (-want +got):\n%s", diff)
	}
}

// TestUsageAndAdviseRefuse: a wrong command line exits 2 with what is
// wrong, and sends nothing.
func TestUsageAndAdviseRefuse(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"usage", "--since", "yesterday"}, `--since: window "yesterday"`},
		{[]string{"usage", "--since", "-1d"}, `--since: window "-1d"`},
		{[]string{"usage", "--since", "30s"}, "must be between 1m and"},
		{[]string{"usage", "--by", "colour"}, `--by "colour": use function, service or day`},
		{[]string{"usage", "extra"}, "extra"},
		{[]string{"advise"}, "give the NAME of a function or service, or --all"},
		{[]string{"advise", "api", "--all"}, "give a NAME or --all, not both"},
		{[]string{"advise", "api", "web"}, "at most 1 arg"},
		{[]string{"advise", "api", "--window", "0"}, `--window: window "0"`},
		{[]string{"advise", "api", "--window", "7x"}, `--window: window "7x"`},
		{[]string{"advise", "--all", "--window", "7x"}, `--window: window "7x"`},
		{[]string{"advise", "api", "--latency-budget", "-1s"}, `--latency-budget "-1s": want a duration of 0 or more`},
		{[]string{"advise", "api", "--latency-budget", "fast"}, `--latency-budget "fast"`},
		{[]string{"advise", "--all", "--latency-budget", "1s"}, "--latency-budget applies to one workload"},
	} {
		f := newFakeAPI(t)
		r := f.run(tc.args...)
		if r.code != ExitUsage || !strings.Contains(r.stderr, tc.stderr) {
			t.Errorf("stratus %v: exit %d stderr %q; want %d saying %q", tc.args, r.code, r.stderr, ExitUsage, tc.stderr)
		}
		if n := len(f.requests()); n != 0 {
			t.Errorf("stratus %v sent %d requests", tc.args, n)
		}
	}
}

func TestSig3(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want string
	}{
		{0, "0"}, {1, "1"}, {0.0000342149, "0.0000342"}, {12345.6, "12300"}, {1.005, "1"}, {0.75, "0.75"}, {-2.5, "-2.5"},
	} {
		if got := sig3(tc.v); got != tc.want {
			t.Errorf("sig3(%v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}
