package server

import (
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/logs"
	"github.com/stratus-run/stratus/internal/meter"
	"github.com/stratus-run/stratus/internal/pool"
)

// metrics is the server's Prometheus registry. Invocation records pass
// through it on their way to the log writer (counted, timed and metered
// as they go); everything else is read from the parts on each scrape.
// Labels are names of functions, services and drivers, outcomes, triggers
// and status classes: never request IDs or paths.
type metrics struct {
	next  pool.Sink
	meter *meter.Meter
	reg   *prometheus.Registry

	// fns holds each function's series (*fnSeries), looked up once per
	// record instead of once per series. fnsMu orders the making of a
	// function's series with their removal, so that no series removed
	// from the vectors stays cached.
	fns   sync.Map
	fnsMu sync.Mutex

	invocations *prometheus.CounterVec
	coldStarts  *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	initDur     *prometheus.HistogramVec
	cpu         *prometheus.CounterVec
	gbSeconds   *prometheus.CounterVec
	energy      *prometheus.CounterVec
	carbon      *prometheus.CounterVec
}

// Buckets of invocation durations and init durations, in seconds: 1 ms to
// 15 minutes (Lambda's longest timeout).
var (
	durationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900}
	initBuckets     = []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
)

func newMetrics(next pool.Sink, m *meter.Meter) *metrics {
	fn := []string{"function"}
	counter := func(name, help string, labels []string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	x := &metrics{
		next: next, meter: m, reg: prometheus.NewRegistry(),
		invocations: counter("stratus_function_invocations_total",
			"Invocations by function, outcome (success, error, timeout, crash) and trigger (sync, http, async, topic, schedule); throttled calls are not invocations. Lambda: Invocations, and Errors for outcomes other than success.",
			[]string{"function", "outcome", "trigger"}),
		coldStarts: counter("stratus_function_cold_starts_total",
			"Invocations that started an instance. Lambda: the invocations whose REPORT has an Init Duration.", fn),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "stratus_function_duration_seconds", Help: "Invocation durations (the handler's time, init excluded). Lambda: Duration.",
			Buckets: durationBuckets,
		}, fn),
		initDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "stratus_function_init_duration_seconds", Help: "Init durations of cold starts (sandbox and runtime start until the runtime asks for its first event). Lambda: the REPORT line's Init Duration.",
			Buckets: initBuckets,
		}, fn),
		cpu: counter("stratus_function_cpu_seconds_total",
			"CPU time the function's instances used, read at the end of each invocation (a cold start's first holds the runtime's init; what an instance used while idle, usually nothing, goes to its next).", fn),
		gbSeconds: counter("stratus_function_gb_seconds_total",
			"Memory allocated times billed duration: GB-seconds, the unit Lambda bills (1 GB = 1024 MB).", fn),
		energy: counter("stratus_function_energy_joules_total",
			"Estimated energy of the function's invocations in joules (see docs/metering.md; the usage API gives Wh).", fn),
		carbon: counter("stratus_function_carbon_grams_total",
			"Estimated emissions of the function's invocations in grams CO2e: energy times the region's grid intensity plus embodied emissions (SCI).", fn),
	}
	x.reg.MustRegister(x.invocations, x.coldStarts, x.duration, x.initDur, x.cpu, x.gbSeconds, x.energy, x.carbon,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return x
}

// logs exposes the log writer's and the output limiter's counters: store
// write errors, output lines dropped by reason and the queued bytes.
func (m *metrics) logs(w *logs.Writer, out *logs.Limiter) {
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "stratus_log_store_errors_total", Help: "Failed attempts to store log lines, invocation records or async statuses.",
		}, func() float64 { return float64(w.Stats().StoreErrors) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "stratus_log_queue_bytes", Help: "Bytes of log lines, records and statuses waiting to be stored.",
		}, func() float64 { return float64(w.Stats().QueuedBytes) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "stratus_log_records_dropped_total", Help: "Invocation records and async statuses dropped while the store failed and the queue was full.",
		}, func() float64 { return float64(w.Stats().DroppedRecords) }),
	)
	for reason, n := range map[string]func() int64{
		logs.DropInvocation: func() int64 { return out.Dropped(logs.DropInvocation) },
		logs.DropRate:       func() int64 { return out.Dropped(logs.DropRate) },
		logs.DropStore:      func() int64 { return w.Stats().DroppedLines },
	} {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "stratus_output_lines_dropped_total", Help: "Lines of function and service output dropped, by reason.",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 { return float64(n()) }))
	}
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Log implements pool.Sink.
func (m *metrics) Log(l stratus.LogLine) { m.next.Log(l) }

// fnSeries are one function's series.
type fnSeries struct {
	cold, cpu, gb, energy, carbon prometheus.Counter
	duration, init                prometheus.Observer
}

// series returns fn's series, made at its first record.
func (m *metrics) series(fn string) *fnSeries {
	if s, ok := m.fns.Load(fn); ok {
		return s.(*fnSeries)
	}
	m.fnsMu.Lock()
	defer m.fnsMu.Unlock()
	if s, ok := m.fns.Load(fn); ok {
		return s.(*fnSeries)
	}
	s := &fnSeries{
		cold: m.coldStarts.WithLabelValues(fn), cpu: m.cpu.WithLabelValues(fn), gb: m.gbSeconds.WithLabelValues(fn),
		energy: m.energy.WithLabelValues(fn), carbon: m.carbon.WithLabelValues(fn),
		duration: m.duration.WithLabelValues(fn), init: m.initDur.WithLabelValues(fn),
	}
	m.fns.Store(fn, s)
	return s
}

// Record implements pool.Sink: it counts, times and meters r, then passes
// it on.
func (m *metrics) Record(r stratus.Invocation) {
	trigger := r.Trigger
	if trigger == "" {
		trigger = stratus.TriggerSync
	}
	s := m.series(r.Function)
	m.invocations.WithLabelValues(r.Function, r.Outcome, trigger).Inc()
	s.duration.Observe(r.DurationMs / 1000)
	if r.Cold {
		s.cold.Inc()
		s.init.Observe(r.InitDurationMs / 1000)
	}
	u := m.meter.Invocation(r)
	s.cpu.Add(u.CPUSeconds)
	s.gb.Add(u.GBSeconds)
	s.energy.Add(u.EnergyWh * 3600)
	s.carbon.Add(u.CarbonG)
	m.next.Record(r)
}

// forgetFunction drops the series of a removed function, so that a name
// that is gone is no longer exported. A record of it still in flight
// makes them again, once.
func (m *metrics) forgetFunction(fn string) {
	m.fnsMu.Lock()
	defer m.fnsMu.Unlock()
	m.fns.Delete(fn)
	l := prometheus.Labels{"function": fn}
	for _, v := range []*prometheus.CounterVec{m.invocations, m.coldStarts, m.cpu, m.gbSeconds, m.energy, m.carbon} {
		v.DeletePartialMatch(l)
	}
	m.duration.DeletePartialMatch(l)
	m.initDur.DeletePartialMatch(l)
}
