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
		{Key: "api", Kind: "function", Usage: stratus.Usage{Requests: 1200, GBSeconds: 60.5, VCPUSeconds: 40.25, CPUSeconds: 12.25,
			CostUSD: 0.00125, EnergyWh: 1.5, CarbonG: 0.75, EnergySource: "model"}},
		{Key: "cron", Kind: "function", Usage: stratus.Usage{Requests: 3, GBSeconds: 0.5, VCPUSeconds: 0.375, CPUSeconds: 0.125,
			CostUSD: 0.00001, EnergyWh: 0.01, CarbonG: 0.005, EnergySource: "model"}},
	},
	Total: stratus.Usage{Requests: 1203, GBSeconds: 61, VCPUSeconds: 40.625, CPUSeconds: 12.375, CostUSD: 0.00126,
		EnergyWh: 1.51, CarbonG: 0.755, EnergySource: "model"},
	Region: "eu-west-1", GridIntensity: 280, PricesAsOf: "2026-01-15",
}

func TestUsage(t *testing.T) {
	f := newFakeAPI(t)
	f.on("GET /v1/usage", jsonReply(200, testReport))
	r := f.run("usage", "--since", "7d", "--by", "function")
	want := [][]string{
		{"NAME", "KIND", "REQUESTS", "GB-S", "VCPU-S", "CPU-S", "COST-USD"},
		{"api", "function", "1200", "60.500", "40.250", "12.250", "0.001250"},
		{"cron", "function", "3", "0.500", "0.375", "0.125", "0.000010"},
		{"TOTAL", "(functions)", "-", "1203", "61.000", "40.625", "12.375", "0.001260"},
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
		{"NAME", "KIND", "REQUESTS", "GB-S", "VCPU-S", "CPU-S", "COST-USD", "WH", "GCO2E", "SOURCE"},
		{"api", "function", "1200", "60.500", "40.250", "12.250", "0.001250", "1.5", "0.75", "model"},
		{"cron", "function", "3", "0.500", "0.375", "0.125", "0.000010", "0.01", "0.005", "model"},
		{"TOTAL", "(functions)", "-", "1203", "61.000", "40.625", "12.375", "0.001260", "1.51", "0.755", "model"},
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
	if rows := fields(r.stdout); r.code != ExitOK || len(rows) != 4 || rows[0][0] != "DAY" || !cmp.Equal(rows[1][:3], []string{"2026-01-01", "-", "4"}) ||
		!cmp.Equal(rows[2][:2], []string{"TOTAL", "-"}) {
		t.Errorf("--by day: exit %d, table:\n%s", r.code, r.stdout)
	}

	byService := testReport
	byService.By = v1.ByService
	byService.Rows = []v1.UsageRow{{Key: "web", Kind: "service", Usage: stratus.Usage{Requests: 9, VCPUSeconds: 3600}}}
	byService.Total = byService.Rows[0].Usage
	f.on("GET /v1/usage", jsonReply(200, byService))
	r = f.run("usage", "--by", "service")
	if rows := fields(r.stdout); r.code != ExitOK || len(rows) != 4 ||
		!cmp.Equal(rows[2], []string{"TOTAL", "(services)", "-", "9", "0.000", "3600.000", "0.000", "0.000000"}) {
		t.Errorf("--by service: exit %d, table:\n%s", r.code, r.stdout)
	}

	f.on("GET /v1/usage", jsonReply(200, testReport))
	r = f.run("usage", "-o", "json")
	var got v1.UsageReport
	decodeJSON(t, r.stdout, &got)
	if diff := cmp.Diff(testReport, got); diff != "" {
		t.Errorf("json (-want +got):\n%s", diff)
	}
}

// testReplicas is a usage report by replica: two lives of web's
// replicas, one still running.
var testReplicas = v1.UsageReport{
	Since: testTime.Add(-24 * time.Hour), Until: testTime, By: v1.ByReplica,
	Rows: []v1.UsageRow{
		{Key: "web-7f3a", Kind: "service", Service: "web", Revision: 2, Start: testTime.Add(-26 * time.Hour), End: testTime.Add(-23 * time.Hour),
			Usage: stratus.Usage{Requests: 40, BilledMs: 10800000, GBSeconds: 5400, VCPUSeconds: 10800, CPUSeconds: 95.5, CostUSD: 0.2592,
				EnergyWh: 12.5, CarbonG: 4.25, EnergySource: "model"}},
		{Key: "web-9c01", Kind: "service", Service: "web", Revision: 3, Start: testTime.Add(-time.Hour), End: testTime.Add(-time.Minute),
			Usage: stratus.Usage{Requests: 2, BilledMs: 3540000, GBSeconds: 1770, VCPUSeconds: 3540, CPUSeconds: 1.25, CostUSD: 0.08496,
				EnergyWh: 3.5, CarbonG: 1.25, EnergySource: "model"}},
	},
	Total: stratus.Usage{Requests: 42, BilledMs: 14340000, GBSeconds: 7170, VCPUSeconds: 14340, CPUSeconds: 96.75, CostUSD: 0.34416,
		EnergyWh: 16, CarbonG: 5.5, EnergySource: "model"},
	Region: "eu-west-1", GridIntensity: 280, PricesAsOf: "2026-01-15",
}

func TestUsageByReplica(t *testing.T) {
	f := newFakeAPI(t)
	f.on("GET /v1/usage", jsonReply(200, testReplicas))
	r := f.run("usage", "--by", "replica", "--since", "1d")
	want := [][]string{
		{"REPLICA", "SERVICE", "REVISION", "START", "END", "VCPU-S", "CPU-S", "GB-S", "COST-USD"},
		{"web-7f3a", "web", "2", "2026-01-01T01:04:05", "2026-01-01T04:04:05", "10800.000", "95.500", "5400.000", "0.259200"},
		{"web-9c01", "web", "3", "2026-01-02T02:04:05", "2026-01-02T03:03:05", "3540.000", "1.250", "1770.000", "0.084960"},
		{"TOTAL", "(replicas)", "-", "-", "-", "-", "14340.000", "96.750", "7170.000", "0.344160"},
		strings.Fields("each replica's figures are of its whole life (so far), also where it began before the window"),
		{"region", "eu-west-1,", "grid", "intensity", "280", "gCO2e/kWh,", "prices", "as", "of", "2026-01-15"},
	}
	if diff := cmp.Diff(want, fields(r.stdout)); r.code != ExitOK || diff != "" {
		t.Errorf("exit %d %s, table (-want +got):\n%s", r.code, r.stderr, diff)
	}
	if q, _ := url.ParseQuery(f.only().Query); q.Get("since") != "1d" || q.Get("by") != "replica" {
		t.Errorf("query %v, want since=1d by=replica", q)
	}

	r = f.run("usage", "--by", "replica", "--energy")
	want[0] = append(want[0], "WH", "GCO2E")
	want[1] = append(want[1], "12.5", "4.25")
	want[2] = append(want[2], "3.5", "1.25")
	want[3] = append(want[3], "16", "5.5")
	if diff := cmp.Diff(want, fields(r.stdout)); r.code != ExitOK || diff != "" {
		t.Errorf("--energy: exit %d %s, table (-want +got):\n%s", r.code, r.stderr, diff)
	}

	r = f.run("usage", "--by", "replica", "-o", "json")
	var got v1.UsageReport
	decodeJSON(t, r.stdout, &got)
	if diff := cmp.Diff(testReplicas, got); diff != "" {
		t.Errorf("json (-want +got):\n%s", diff)
	}
}

// testAdvice is advice for a busy function: a service is cheaper.
var testAdvice = v1.Advice{
	Name: "api", Kind: "function", Window: "2025-12-26T03:04:05Z/2026-01-02T03:04:05Z",
	Traffic: v1.Traffic{Requests: 120960000, MeanRPS: 200, PeakRPS: 250, ActiveShare: 1, MeanDurationMs: 50, P99DurationMs: 80,
		P99Sample: 10000, ColdStartRate: 0.0001},
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
		{"break-even:", "12.5", "req/s"},
		{"saving:", "$450.25/month"},
	} {
		if !containsRow(rows, want) {
			t.Errorf("advise lacks the row %q; it printed (exit %d %s):\n%s", want, r.code, r.stderr, r.stdout)
		}
	}
	if want := "traffic: 120960000 requests, mean 200.00 req/s, peak 250.00 req/s, active 100% of minutes, " +
		"duration mean 50.0 ms, p99 80 ms of 10000 records, 0.01% cold starts\n"; !strings.Contains(r.stdout, want) {
		t.Errorf("advise prints no traffic summary %q:\n%s", want, r.stdout)
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

// TestAdviseFigures: the p99 says where it came from, and the break-even
// is shown to three significant digits, or as none.
func TestAdviseFigures(t *testing.T) {
	for _, tc := range []struct {
		name      string
		p99       float64
		sample    int
		breakEven float64
		want      []string
	}{
		{"records", 300, 4150, 12345.6, []string{"p99 300 ms of 4150 records,", "break-even: 1.23e+04 req/s\n"}},
		{"one record", 12.34, 1, 0.0123456, []string{"p99 12.3 ms of 1 record,", "break-even: 0.0123 req/s\n"}},
		{"estimated", 300, 0, 1.5, []string{"p99 ≤ 300 ms (estimated),", "break-even: 1.5 req/s\n"}},
		{"no break-even", 0.25, 0, 0, []string{"p99 ≤ 0.25 ms (estimated),",
			"break-even: none (a function and a service never cost the same between 0.001 and 100000 req/s)\n"}},
	} {
		a := testAdvice
		a.Traffic.P99DurationMs, a.Traffic.P99Sample, a.BreakEvenRPS = tc.p99, tc.sample, tc.breakEven
		f := newFakeAPI(t)
		f.on("GET /v1/advice/api", jsonReply(200, a))
		r := f.run("advise", "api")
		for _, w := range tc.want {
			if r.code != ExitOK || !strings.Contains(r.stdout, w) {
				t.Errorf("%s: exit %d %s, want %q in:\n%s", tc.name, r.code, r.stderr, w, r.stdout)
			}
		}
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
		{[]string{"usage", "--by", "colour"}, `--by "colour": use function, service, replica or day`},
		{[]string{"usage", "--by", "replicas"}, `--by "replicas": use function, service, replica or day`},
		{[]string{"usage", "extra"}, "extra"},
		{[]string{"advise"}, "give the NAME of a function or service, or --all"},
		{[]string{"advise", ""}, "NAME is empty: give the NAME of a function or service, or --all"},
		{[]string{"advise", " "}, "NAME is empty"},
		{[]string{"advise", "", "--window", "1d"}, "NAME is empty"},
		{[]string{"advise", "", "--all"}, "give a NAME or --all, not both"},
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
