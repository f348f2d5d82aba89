package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/store"
)

// scrape reads /metrics with the Prometheus text parser.
func (s *server) scrape() map[string]*dto.MetricFamily {
	s.t.Helper()
	resp, body := s.do("GET", "/metrics", nil, true)
	if resp.StatusCode != 200 {
		s.t.Fatalf("GET /metrics: %d %s", resp.StatusCode, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		s.t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams
}

// metric sums the series of family name whose labels include want: a
// counter's or gauge's value, a histogram's sample count.
func metric(fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	f, ok := fams[name]
	if !ok {
		return math.NaN()
	}
	sum := 0.0
series:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(want); i += 2 {
			if have[want[i]] != want[i+1] {
				continue series
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

// TestMetricsAfterKnownWorkload runs a known workload on a function and a
// service and reads the counts back from /metrics, parsed as Prometheus
// parses it.
func TestMetricsAfterKnownWorkload(t *testing.T) {
	s := startServicesServer(t, "--throttle-wait", "200ms")
	s.mustCLI("deploy", "m", "--runtime", "provided.al2023", "--max-concurrency", "1", fixture("goecho"))

	for range 3 {
		s.mustCLI("invoke", "m", "--data", `{}`)
	}
	if r := s.cli("invoke", "m", "--data", `{"fail":"boom"}`); r.Code == 0 {
		t.Fatalf("a failing invocation exited 0: %+v", r)
	}
	for range 2 {
		if resp, body := s.do("POST", "/fn/m/hook", []byte(`{}`), true); resp.StatusCode != 200 {
			t.Fatalf("POST /fn/m: %d %s", resp.StatusCode, body)
		}
	}
	id := s.enqueue("m", `{}`)
	s.waitState(id, stratus.AsyncSucceeded, time.Minute)

	// At most one instance: of three calls at once that each hold it for
	// a second, those that wait longer than --throttle-wait get 429.
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		ok, thrtl int
	)
	for range 3 {
		wg.Go(func() {
			c := s.tryInvoke("m", `{"sleep":1000}`)
			mu.Lock()
			defer mu.Unlock()
			switch c.Status {
			case 200:
				ok++
			case 429:
				thrtl++
			default:
				t.Errorf("call at the cap: %s", c)
			}
		})
	}
	wg.Wait()
	if thrtl == 0 {
		t.Fatalf("no call was throttled (%d answered)", ok)
	}

	s.mustCLI("service", "deploy", "web", "--image", "gosvc:v1", "--min", "1")
	for range 4 {
		if code, body := s.get("/svc/web/"); code != 200 {
			t.Fatalf("GET /svc/web/: %d %s", code, body)
		}
	}
	if code, _ := s.get("/svc/web/nosuch"); code != 404 {
		t.Fatalf("GET /svc/web/nosuch: %d, want 404", code)
	}

	recs := s.records("m")
	cold := 0
	for _, r := range recs {
		if r.Cold {
			cold++
		}
	}
	var fams map[string]*dto.MetricFamily
	// Records reach the metrics as they are made; the async event's
	// attempt may be counted a moment after its status is stored.
	eventually.True(t, 10*time.Second, "every invocation counted in /metrics", func() bool {
		fams = s.scrape()
		return metric(fams, "stratus_function_invocations_total", "function", "m") == float64(len(recs))
	})
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"stratus_function_invocations_total", []string{"function", "m", "outcome", "success", "trigger", "sync"}, float64(3 + ok)},
		{"stratus_function_invocations_total", []string{"function", "m", "outcome", "error", "trigger", "sync"}, 1},
		{"stratus_function_invocations_total", []string{"function", "m", "outcome", "success", "trigger", "http"}, 2},
		{"stratus_function_invocations_total", []string{"function", "m", "outcome", "success", "trigger", "async"}, 1},
		{"stratus_function_invocations_total", []string{"function", "m"}, float64(len(recs))},
		{"stratus_function_throttles_total", []string{"function", "m"}, float64(thrtl)},
		{"stratus_function_cold_starts_total", []string{"function", "m"}, float64(cold)},
		{"stratus_function_duration_seconds", []string{"function", "m"}, float64(len(recs))},
		{"stratus_function_init_duration_seconds", []string{"function", "m"}, float64(cold)},
		{"stratus_function_instances", []string{"function", "m", "state", "busy"}, 0},
		{"stratus_function_instances", []string{"function", "m", "state", "idle"}, 1},
		{"stratus_function_concurrency", []string{"function", "m"}, 0},
		{"stratus_function_async_queue_depth", []string{"function", "m"}, 0},
		{"stratus_function_async_event_age_seconds", []string{"function", "m"}, 0},
		{"stratus_function_async_retries_total", []string{"function", "m"}, 0},
		{"stratus_service_requests_total", []string{"service", "web", "code_class", "2xx"}, 4},
		{"stratus_service_requests_total", []string{"service", "web", "code_class", "4xx"}, 1},
		{"stratus_service_request_duration_seconds", []string{"service", "web"}, 5},
		{"stratus_service_replicas", []string{"service", "web", "state", "ready"}, 1},
		{"stratus_service_in_flight", []string{"service", "web"}, 0},
		{"stratus_service_restarts_total", []string{"service", "web"}, 0},
	} {
		if got := metric(fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// The server's own: one function instance (at most one at a time,
	// kept warm since) and one replica started by the runc driver.
	if got := metric(fams, "stratus_sandbox_starts_total", "driver", "runc"); got < 2 {
		t.Errorf("stratus_sandbox_starts_total{driver=runc} = %v, want at least 2", got)
	}
	for _, name := range []string{"stratus_store_write_duration_seconds", "stratus_jetstream_up", "stratus_function_cpu_seconds_total", "stratus_function_energy_joules_total"} {
		if math.IsNaN(metric(fams, name)) {
			t.Errorf("/metrics has no %s", name)
		}
	}
	// A removed workload's series go with it.
	s.mustCLI("rm", "m")
	s.mustCLI("service", "rm", "web")
	gone := s.scrape()
	for _, c := range []struct{ name, label, value string }{
		{"stratus_function_invocations_total", "function", "m"}, {"stratus_function_duration_seconds", "function", "m"},
		{"stratus_function_instances", "function", "m"}, {"stratus_service_requests_total", "service", "web"},
		{"stratus_service_replicas", "service", "web"},
	} {
		if v := metric(gone, c.name, c.label, c.value); v > 0 {
			t.Errorf("after removal %s{%s=%q} = %v, want no series", c.name, c.label, c.value, v)
		}
	}
	// Bounded labels: no request ID or path in any series.
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), "/") || len(l.GetValue()) == 36 && strings.Count(l.GetValue(), "-") == 4 {
					t.Errorf("%s has label %s=%q", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
}

// TestUsageEnergyAndCarbon burns known CPU in a function and checks its
// usage, energy and carbon against the documented model, computed here by
// hand from the records.
func TestUsageEnergyAndCarbon(t *testing.T) {
	meterFile := filepath.Join(t.TempDir(), "meter.json")
	writeFile(t, meterFile, `{"energy": {"gridIntensity": {"test-region": 300}}}`)
	s := startServer(t, "--region", "test-region", "--meter-file", meterFile)
	s.mustCLI("deploy", "burn", "--runtime", "provided.al2023", "--memory", "512", fixture("goecho"))
	for range 3 {
		s.mustCLI("invoke", "burn", "--data", `{"burn":200}`)
	}
	recs := decode[[]v1.InvocationRecord](t, []byte(s.mustCLI("invocations", "burn", "-o", "json")))
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	// The documented defaults (docs/metering.md): Lambda x86 per GB-s and
	// per request; CCF's AWS coefficients; the test region's 300 g/kWh.
	const (
		gbSecondUSD = 0.0000166667
		requestUSD  = 0.20 / 1e6
		minW, maxW  = 0.74, 3.5
		memW        = 0.392
		pue         = 1.135
		intensity   = 300.0
	)
	var want stratus.Usage
	for _, r := range recs {
		if r.CPUMs < 190 || r.CPUMs > r.DurationMs+r.InitDurationMs+50 {
			t.Errorf("record %s: CPU %.1f ms for a 200 ms burn that took %.1f ms", r.RequestID, r.CPUMs, r.DurationMs)
		}
		if r.Trigger != stratus.TriggerSync || r.Arch == "" {
			t.Errorf("record %s: trigger %q arch %q", r.RequestID, r.Trigger, r.Arch)
		}
		billed := math.Ceil(r.DurationMs + r.InitDurationMs)
		if !r.Cold {
			billed = math.Ceil(r.DurationMs)
		}
		if float64(r.BilledMs) != max(1, billed) {
			t.Errorf("record %s: billed %d ms; want %v (duration %.2f + init %.2f, init billed as Lambda bills it)", r.RequestID, r.BilledMs, billed, r.DurationMs, r.InitDurationMs)
		}
		gbs := 0.5 * float64(r.BilledMs) / 1000
		vcpus := 512.0 / 1769 * (r.DurationMs + r.InitDurationMs) / 1000
		cpus := r.CPUMs / 1000
		wh := pue * (minW*vcpus + (maxW-minW)*cpus + memW*0.5*(r.DurationMs+r.InitDurationMs)/1000) / 3600
		want.Add(stratus.Usage{
			Requests: 1, GBSeconds: gbs, CPUSeconds: cpus, CostUSD: gbs*gbSecondUSD + requestUSD, EnergyWh: wh,
		})
		if !near(r.Usage.EnergyWh, wh, 0.01) || !near(r.Usage.GBSeconds, gbs, 0.001) {
			t.Errorf("record %s: usage %+v; want %.6g Wh, %.6g GB-s", r.RequestID, r.Usage, wh, gbs)
		}
		if r.Usage.CarbonG <= wh/1000*intensity {
			t.Errorf("record %s: %.6g gCO2e, want more than the operational %.6g g (embodied is added)", r.RequestID, r.Usage.CarbonG, wh/1000*intensity)
		}
	}
	// Minutes reach the store with their records.
	var rep v1.UsageReport
	eventually.True(t, 10*time.Second, "the three invocations in the usage", func() bool {
		rep = decode[v1.UsageReport](t, []byte(s.mustCLI("usage", "--since", "1h", "--by", "function", "--energy", "-o", "json")))
		return rep.Total.Requests == 3
	})
	if len(rep.Rows) != 1 || rep.Rows[0].Key != "burn" {
		t.Fatalf("usage rows: %+v", rep.Rows)
	}
	got := rep.Rows[0].Usage
	if !near(got.GBSeconds, want.GBSeconds, 0.001) || !near(got.CPUSeconds, want.CPUSeconds, 0.001) ||
		!near(got.CostUSD, want.CostUSD, 0.001) || !near(got.EnergyWh, want.EnergyWh, 0.01) {
		t.Errorf("usage %+v\nwant (by hand) %+v", got, want)
	}
	if rep.Region != "test-region" || rep.GridIntensity != intensity || got.EnergySource == "" {
		t.Errorf("report region %q intensity %v source %q", rep.Region, rep.GridIntensity, got.EnergySource)
	}
	table := s.mustCLI("usage", "--since", "1h", "--energy")
	for _, w := range []string{"burn", "WH", "GCO2E"} {
		if !strings.Contains(table, w) {
			t.Errorf("stratus usage --energy lacks %q:\n%s", w, table)
		}
	}
	if out := s.mustCLI("invocations", "burn"); !strings.Contains(strings.ToUpper(out), "GCO2E") {
		t.Errorf("stratus invocations shows no carbon:\n%s", out)
	}

	// Bad input changes nothing and says what is wrong.
	for _, args := range [][]string{
		{"usage", "--since", "yesterday"}, {"usage", "--since", "-1d"}, {"usage", "--by", "colour"},
		{"advise", "burn", "--window", "0"}, {"advise", "burn", "--window", "7x"},
	} {
		if r := s.cli(args...); r.Code != 2 || r.Stderr == "" {
			t.Errorf("stratus %v: exit %d stderr %q; want 2 with a message", args, r.Code, r.Stderr)
		}
	}
	if r := s.cli("advise", "nosuch"); r.Code != 1 || !strings.Contains(r.Stderr, "nosuch") {
		t.Errorf("advise nosuch: exit %d stderr %q", r.Code, r.Stderr)
	}
	if resp, body := s.do("GET", "/v1/usage?since=-5m", nil, true); resp.StatusCode != 400 {
		t.Errorf("GET /v1/usage?since=-5m: %d %s", resp.StatusCode, body)
	}
}

// TestBadMeterFile: a price table that does not parse stops the server at
// start with the file's line.
func TestBadMeterFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "meter.json")
	writeFile(t, f, "{\n  \"prices\": {\n    \"lambdaGBSecondX86\": \"cheap\"\n  }\n}\n")
	r := runCLIIn(t, t.TempDir(), nil, "server", "--listen", "127.0.0.1:0", "--data", t.TempDir(), "--meter-file", f)
	if r.Code == 0 || !strings.Contains(r.Stderr, "meter.json:3") {
		t.Errorf("server with a bad meter file: exit %d stderr %q; want an error naming line 3", r.Code, r.Stderr)
	}
	writeFile(t, f, `{"energy": {"pue": 0.5}}`)
	r = runCLIIn(t, t.TempDir(), nil, "server", "--listen", "127.0.0.1:0", "--data", t.TempDir(), "--meter-file", f)
	if r.Code == 0 || !strings.Contains(r.Stderr, "pue") {
		t.Errorf("server with PUE 0.5: exit %d stderr %q", r.Code, r.Stderr)
	}
}

// TestAdviseOnRecordedTraffic writes a week of synthetic traffic for three
// workloads into the store and asks for advice on each: a steady API
// should be a service, a nightly batch a function, a bursty webhook with a
// latency budget a function with warm instances.
func TestAdviseOnRecordedTraffic(t *testing.T) {
	data := t.TempDir()
	s := startServerIn(t, data)
	for _, fn := range []string{"api", "batch", "webhook"} {
		s.mustCLI("deploy", fn, "--runtime", "provided.al2023", "--memory", "512", fixture("goecho"))
	}
	s.Stop()

	now := time.Now().UTC().Truncate(time.Minute)
	var minutes []stratus.UsageMinute
	// cpu is the share of a request's time it spends on a CPU.
	minute := func(fn string, at time.Time, reqs int64, durMs, cpu float64, cold int64, initMs float64, memMB int) {
		minutes = append(minutes, stratus.UsageMinute{
			Kind: stratus.KindFunction, Name: fn, Minute: at, Requests: reqs,
			ColdStarts: cold, DurationMs: float64(reqs) * durMs, MaxDuration: durMs,
			BilledMs: float64(reqs) * math.Ceil(durMs), InitMs: float64(cold) * initMs,
			CPUMs: float64(reqs) * durMs * cpu, GBSeconds: float64(memMB) / 1024 * float64(reqs) * math.Ceil(durMs) / 1000,
			VCPUSeconds: float64(memMB) / 1769 * float64(reqs) * durMs / 1000, MemoryMB: memMB, VCPU: float64(memMB) / 1769,
			Arch: stratus.ArchX86,
		})
	}
	start := now.Add(-7 * 24 * time.Hour)
	for m := start; m.Before(now); m = m.Add(time.Minute) {
		minute("api", m, 200*60, 50, 0.2, 0, 0, 512) // 200 req/s all week
		if m.Hour() == 2 {
			minute("batch", m, 20*60, 2000, 0.5, 1, 800, 1024) // an hour a night
		}
		if m.Sub(start)%(2*time.Hour) == 0 {
			minute("webhook", m, 50, 300, 0.25, 1, 1500, 512) // a burst every 2 hours
		}
	}
	st, err := store.Open(context.Background(), filepath.Join(data, "stratus.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddUsageMinutes(context.Background(), minutes); err != nil {
		t.Fatal(err)
	}
	st.Close()
	s.Restart()

	for _, c := range []struct {
		name, budget, want string
	}{
		{"api", "", v1.ModelService},
		{"batch", "", v1.ModelFunction},
		{"webhook", "800ms", v1.ModelFunctionMin},
	} {
		args := []string{"advise", c.name, "--window", "7d"}
		if c.budget != "" {
			args = append(args, "--latency-budget", c.budget)
		}
		a := decode[v1.Advice](t, []byte(s.mustCLI(append(args, "-o", "json")...)))
		if a.Recommended != c.want || a.Reason == "" || len(a.Options) < 3 {
			t.Errorf("advise %s: recommended %q (reason %q), want %q; options %+v", c.name, a.Recommended, a.Reason, c.want, a.Options)
		}
		if a.Traffic.Requests == 0 || c.name == "api" && a.BreakEvenRPS <= 0 {
			t.Errorf("advise %s: traffic %+v break-even %v", c.name, a.Traffic, a.BreakEvenRPS)
		}
		table := s.mustCLI(args...)
		if !strings.Contains(table, c.want) || !strings.Contains(strings.ToLower(table), "break-even") {
			t.Errorf("stratus advise %s prints:\n%s", c.name, table)
		}
	}
	all := decode[v1.AdviceList](t, []byte(s.mustCLI("advise", "--all", "--window", "7d", "-o", "json")))
	if len(all.Advice) != 3 {
		t.Fatalf("advise --all: %d workloads, want 3", len(all.Advice))
	}
	for i := 1; i < len(all.Advice); i++ {
		if all.Advice[i].SavingUSD > all.Advice[i-1].SavingUSD {
			t.Errorf("advise --all not ranked by saving: %v before %v", all.Advice[i-1].SavingUSD, all.Advice[i].SavingUSD)
		}
	}
	if all.Advice[0].Name != "api" {
		t.Errorf("advise --all: %s first; the steady API as a function wastes the most", all.Advice[0].Name)
	}
}

// TestLogFormatJSON: with --log-format json every line of the server's
// log is a JSON object with a level and a message.
func TestLogFormatJSON(t *testing.T) {
	s := startServer(t, "--log-format", "json")
	s.mustCLI("ls")
	s.Stop()
	sc := bufio.NewScanner(strings.NewReader(s.Stderr()))
	n := 0
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line is not JSON: %q", sc.Text())
		}
		if line["level"] == nil || line["msg"] == nil {
			t.Errorf("log line without level or msg: %q", sc.Text())
		}
		n++
	}
	if n == 0 {
		t.Fatal("the server logged nothing")
	}
	if r := runCLIIn(t, t.TempDir(), nil, "server", "--log-format", "xml", "--data", t.TempDir()); r.Code != 2 {
		t.Errorf("--log-format xml: exit %d %q, want 2", r.Code, r.Stderr)
	}
}

// near reports whether got is within rel (relative) of want.
func near(got, want, rel float64) bool {
	return math.Abs(got-want) <= rel*math.Abs(want)+1e-12
}

// writeFile writes content to path.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
