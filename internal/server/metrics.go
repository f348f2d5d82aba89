package server

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/logs"
	"github.com/stratus-run/stratus/internal/pool"
)

// metrics counts invocations on their way to the log writer and exposes
// them with the instance gauge in Prometheus format.
type metrics struct {
	next        pool.Sink
	reg         *prometheus.Registry
	invocations *prometheus.CounterVec
	duration    *prometheus.HistogramVec
}

func newMetrics(next pool.Sink) *metrics {
	m := &metrics{
		next: next,
		reg:  prometheus.NewRegistry(),
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stratus_invocations_total", Help: "Invocations by function, outcome and cold start.",
		}, []string{"function", "outcome", "cold"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "stratus_invocation_duration_seconds", Help: "Invocation durations by function.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"function"}),
	}
	m.reg.MustRegister(m.invocations, m.duration,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) instances(total func() int) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "stratus_instances", Help: "Live function instances.",
	}, func() float64 { return float64(total()) }))
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

// Record implements pool.Sink.
func (m *metrics) Record(r stratus.Invocation) {
	cold := "false"
	if r.Cold {
		cold = "true"
	}
	m.invocations.WithLabelValues(r.Function, r.Outcome, cold).Inc()
	m.duration.WithLabelValues(r.Function).Observe(r.DurationMs / 1000)
	m.next.Record(r)
}
