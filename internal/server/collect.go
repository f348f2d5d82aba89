package server

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/events"
	"github.com/stratus-run/stratus/internal/services"
	"github.com/stratus-run/stratus/internal/store"
)

// scraped is a Prometheus collector whose series are read from a part of
// the server on each scrape (the pools' instance counts, the queue's
// depth, the services' replicas): one read per scrape, no bookkeeping on
// the hot path.
type scraped struct {
	descs   []*prometheus.Desc
	collect func(ch chan<- prometheus.Metric)
}

func (s scraped) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range s.descs {
		ch <- d
	}
}

func (s scraped) Collect(ch chan<- prometheus.Metric) { s.collect(ch) }

// functionStats exposes the pools' figures per function.
func (m *metrics) functionStats(all func() map[string]stratus.InstanceStats) {
	var (
		instances = prometheus.NewDesc("stratus_function_instances",
			"Instances of a function by state: busy (running an invocation), idle (warm, waiting), starting (being made for a cold start), prepared (a sandbox made ahead). Lambda: ConcurrentExecutions counts busy and starting.",
			[]string{"function", "state"}, nil)
		concurrency = prometheus.NewDesc("stratus_function_concurrency",
			"Instances in use (busy or starting) out of the function's --max-concurrency. Lambda: ConcurrentExecutions.",
			[]string{"function"}, nil)
		waiting = prometheus.NewDesc("stratus_function_waiting",
			"Invocations waiting for an instance (at most --function-queue-size).",
			[]string{"function"}, nil)
		throttles = prometheus.NewDesc("stratus_function_throttles_total",
			"Invocations refused with 429 for want of an instance; they are not invocations and leave no record. Lambda: Throttles.",
			[]string{"function"}, nil)
		hits = prometheus.NewDesc("stratus_prepare_hits_total",
			"Cold starts that found a sandbox prepared ahead (create-ahead).", nil, nil)
		misses = prometheus.NewDesc("stratus_prepare_misses_total",
			"Cold starts that had to make their sandbox while create-ahead was on.", nil, nil)
	)
	m.reg.MustRegister(scraped{
		descs: []*prometheus.Desc{instances, concurrency, waiting, throttles, hits, misses},
		collect: func(ch chan<- prometheus.Metric) {
			var h, ms int64
			for fn, s := range all() {
				busy := max(0, s.Busy-s.Starting)
				for state, n := range map[string]int{"busy": busy, "idle": s.Idle, "starting": s.Starting, "prepared": s.Prepared} {
					ch <- prometheus.MustNewConstMetric(instances, prometheus.GaugeValue, float64(n), fn, state)
				}
				ch <- prometheus.MustNewConstMetric(concurrency, prometheus.GaugeValue, float64(s.Busy), fn)
				ch <- prometheus.MustNewConstMetric(waiting, prometheus.GaugeValue, float64(s.Waiting), fn)
				ch <- prometheus.MustNewConstMetric(throttles, prometheus.CounterValue, float64(s.Throttles), fn)
				h += s.PrepareHits
				ms += s.PrepareMisses
			}
			ch <- prometheus.MustNewConstMetric(hits, prometheus.CounterValue, float64(h))
			ch <- prometheus.MustNewConstMetric(misses, prometheus.CounterValue, float64(ms))
		},
	})
}

// sandboxes exposes the driver's prepare and start counts.
func (m *metrics) sandboxes(driver string, d *countingDriver) {
	l := prometheus.Labels{"driver": driver}
	counter := func(name, help string, n *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: l},
			func() float64 { return float64(n.Load()) })
	}
	m.reg.MustRegister(
		counter("stratus_sandbox_starts_total", "Sandboxes whose program the driver started (function instances, of prepared sandboxes too, and service replicas), by driver.", &d.starts),
		counter("stratus_sandbox_start_failures_total", "Sandboxes the driver failed to start (calls cut short by the server stopping or a caller leaving excepted), by driver.", &d.failures),
		counter("stratus_sandbox_prepares_total", "Sandboxes the driver made ahead of their start (create-ahead), by driver.", &d.prepares),
		counter("stratus_sandbox_prepare_failures_total", "Sandboxes the driver failed to make ahead, by driver.", &d.prepFailed),
	)
}

// timedStore is the store as the log writer uses it, with each batch
// write timed and its failures counted for /metrics.
type timedStore struct {
	*store.Store
	took *prometheus.HistogramVec
	errs *prometheus.CounterVec
}

// newTimedStore returns st timed; its collectors are registered by the
// caller.
func newTimedStore(st *store.Store) timedStore {
	s := timedStore{
		Store: st,
		took: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "stratus_store_write_duration_seconds", Help: "Time of one batch written to the store (one transaction), by what it held.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9),
		}, []string{"op"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stratus_store_write_errors_total", Help: "Batches the store failed to write (the writer retries them), by what they held.",
		}, []string{"op"}),
	}
	for _, op := range []string{"logs", "invocations", "async", "usage", "replicas"} {
		s.took.WithLabelValues(op)
		s.errs.WithLabelValues(op)
	}
	return s
}

func (s timedStore) observe(op string, start time.Time, err error) error {
	s.took.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil {
		s.errs.WithLabelValues(op).Inc()
	}
	return err
}

func (s timedStore) InsertLogs(ctx context.Context, lines []stratus.LogLine) error {
	t := time.Now()
	return s.observe("logs", t, s.Store.InsertLogs(ctx, lines))
}

func (s timedStore) InsertInvocations(ctx context.Context, recs []stratus.Invocation) error {
	t := time.Now()
	return s.observe("invocations", t, s.Store.InsertInvocations(ctx, recs))
}

func (s timedStore) PutAsyncStatuses(ctx context.Context, sts []stratus.AsyncStatus) error {
	t := time.Now()
	return s.observe("async", t, s.Store.PutAsyncStatuses(ctx, sts))
}

func (s timedStore) AddUsageMinutes(ctx context.Context, us []stratus.UsageMinute) error {
	t := time.Now()
	return s.observe("usage", t, s.Store.AddUsageMinutes(ctx, us))
}

func (s timedStore) InsertReplicaUsages(ctx context.Context, us []stratus.ReplicaUsage) error {
	t := time.Now()
	return s.observe("replicas", t, s.Store.InsertReplicaUsages(ctx, us))
}

// serviceMetrics counts services' requests as the proxy answers them and
// reads their replicas from the services on each scrape.
type serviceMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// codeClasses are the labels of status classes, by status / 100.
var codeClasses = [...]string{"1xx", "1xx", "2xx", "3xx", "4xx", "5xx"}

// observe counts one answered request (the proxy's Observe hook).
func (s *serviceMetrics) observe(service string, status int, d time.Duration) {
	class := "5xx"
	if c := status / 100; c >= 1 && c < len(codeClasses) {
		class = codeClasses[c]
	}
	s.requests.WithLabelValues(service, class).Inc()
	s.latency.WithLabelValues(service).Observe(d.Seconds())
}

// serviceRequests makes and registers the services' request series.
func (m *metrics) serviceRequests() *serviceMetrics {
	sm := &serviceMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stratus_service_requests_total",
			Help: "Requests answered for a service, by status class (a client that left before the answer counts as 4xx: 499). Knative: revision_request_count by response_code_class.",
		}, []string{"service", "code_class"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "stratus_service_request_duration_seconds", Help: "Time from a request's arrival to its answer, waiting for a replica included. Knative: revision_request_latencies.",
			Buckets: durationBuckets,
		}, []string{"service"}),
	}
	m.reg.MustRegister(sm.requests, sm.latency)
	return sm
}

// serviceStats exposes the services' replicas, read on each scrape.
func (m *metrics) serviceStats(all func() []services.ServiceStats) {
	var (
		replicas = prometheus.NewDesc("stratus_service_replicas",
			"Replicas of a service by state: ready (serving), draining (stopping while they finish their requests). Knative: actual_pods, terminating_pods.",
			[]string{"service", "state"}, nil)
		wanted = prometheus.NewDesc("stratus_service_desired_replicas",
			"Replicas a service should have now: the autoscaler's decision within --min and --max, and the server's cap. Knative: desired_pods.",
			[]string{"service"}, nil)
		inFlight = prometheus.NewDesc("stratus_service_in_flight",
			"Requests a service's replicas are serving. Knative: the activator's and queue-proxy's concurrency.",
			[]string{"service"}, nil)
		queued = prometheus.NewDesc("stratus_service_queued",
			"Requests waiting for a replica (at most --service-queue-size).", []string{"service"}, nil)
		desired = prometheus.NewDesc("stratus_autoscaler_desired_replicas",
			"The autoscaler's last decision for a service, before --min, --max and the server's cap. Knative: the autoscaler's desired_pods.", []string{"service"}, nil)
		panicMode = prometheus.NewDesc("stratus_autoscaler_panic_mode",
			"1 while the autoscaler of a service is in panic mode (scaling on the short window). Knative: autoscaler panic_mode.", []string{"service"}, nil)
		restarts = prometheus.NewDesc("stratus_service_restarts_total",
			"Replicas of a service restarted after they exited or failed their liveness probe. Kubernetes: kube_pod_container_status_restarts_total.", []string{"service"}, nil)
		ooms = prometheus.NewDesc("stratus_service_oom_kills_total",
			"Replicas of a service killed for exceeding their memory.", []string{"service"}, nil)
	)
	m.reg.MustRegister(scraped{
		descs: []*prometheus.Desc{replicas, wanted, inFlight, queued, desired, panicMode, restarts, ooms},
		collect: func(ch chan<- prometheus.Metric) {
			for _, s := range all() {
				gauge := func(d *prometheus.Desc, v int, labels ...string) {
					ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), append([]string{s.Name}, labels...)...)
				}
				gauge(replicas, s.ReadyReplicas, "ready")
				gauge(wanted, s.DesiredReplicas)
				gauge(replicas, s.Draining, "draining")
				gauge(inFlight, s.InFlight)
				gauge(queued, s.Queued)
				gauge(desired, s.AutoscalerDesired)
				p := 0
				if s.Panic {
					p = 1
				}
				gauge(panicMode, p)
				ch <- prometheus.MustNewConstMetric(restarts, prometheus.CounterValue, float64(s.Restarts), s.Name)
				ch <- prometheus.MustNewConstMetric(ooms, prometheus.CounterValue, float64(s.OOMKills), s.Name)
			}
		},
	})
}

// eventStats exposes the async queue's figures per function and
// JetStream's health and use.
func (m *metrics) eventStats(queue func() map[string]events.QueueStats, bus func() events.BusStats) {
	fn := []string{"function"}
	var (
		depth = prometheus.NewDesc("stratus_function_async_queue_depth",
			"Async events of a function not yet done: queued, running or waiting for a retry.", fn, nil)
		age = prometheus.NewDesc("stratus_function_async_event_age_seconds",
			"Age of the oldest async event of a function not yet done (0: none). Lambda: AsyncEventAge.", fn, nil)
		retries = prometheus.NewDesc("stratus_function_async_retries_total",
			"Async attempts after the first (retries of failed attempts).", fn, nil)
		dropped = prometheus.NewDesc("stratus_function_async_events_dropped_total",
			"Async events that failed for good: out of retries, older than their maximum age, or their function gone. Lambda: AsyncEventsDropped.", fn, nil)
		dead = prometheus.NewDesc("stratus_function_async_dead_lettered_total",
			"Failed async events whose record reached the function's on-failure destination.", fn, nil)
		destFail = prometheus.NewDesc("stratus_function_destination_failures_total",
			"Destination deliveries (on success or on failure) that failed. Lambda: DestinationDeliveryFailures.", fn, nil)
		up = prometheus.NewDesc("stratus_jetstream_up",
			"1 while JetStream is enabled and can store; 0 else (see /readyz for the reason).", nil, nil)
		msgs = prometheus.NewDesc("stratus_jetstream_stream_messages",
			"Messages in a Stratus JetStream stream.", []string{"stream"}, nil)
		bytes = prometheus.NewDesc("stratus_jetstream_stream_bytes",
			"Bytes in a Stratus JetStream stream.", []string{"stream"}, nil)
		storeMax = prometheus.NewDesc("stratus_jetstream_store_max_bytes",
			"The most JetStream's file store may hold.", nil, nil)
		storeReserved = prometheus.NewDesc("stratus_jetstream_store_reserved_bytes",
			"What JetStream's streams reserve of its file store (their maximum sizes).", nil, nil)
		storeUsed = prometheus.NewDesc("stratus_jetstream_store_used_bytes",
			"What JetStream's file store holds.", nil, nil)
	)
	m.reg.MustRegister(scraped{
		descs: []*prometheus.Desc{depth, age, retries, dropped, dead, destFail, up, msgs, bytes, storeMax, storeReserved, storeUsed},
		collect: func(ch chan<- prometheus.Metric) {
			for f, s := range queue() {
				ch <- prometheus.MustNewConstMetric(depth, prometheus.GaugeValue, float64(s.Depth), f)
				ch <- prometheus.MustNewConstMetric(age, prometheus.GaugeValue, s.OldestAge.Seconds(), f)
				ch <- prometheus.MustNewConstMetric(retries, prometheus.CounterValue, float64(s.Retries), f)
				ch <- prometheus.MustNewConstMetric(dropped, prometheus.CounterValue, float64(s.Expired), f)
				ch <- prometheus.MustNewConstMetric(dead, prometheus.CounterValue, float64(s.DeadLettered), f)
				ch <- prometheus.MustNewConstMetric(destFail, prometheus.CounterValue, float64(s.DestinationFailures), f)
			}
			b := bus()
			v := 0.0
			if b.Enabled && b.Healthy {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(up, prometheus.GaugeValue, v)
			for name, s := range b.Streams {
				ch <- prometheus.MustNewConstMetric(msgs, prometheus.GaugeValue, float64(s.Messages), name)
				ch <- prometheus.MustNewConstMetric(bytes, prometheus.GaugeValue, float64(s.Bytes), name)
			}
			ch <- prometheus.MustNewConstMetric(storeMax, prometheus.GaugeValue, float64(b.StoreMax))
			ch <- prometheus.MustNewConstMetric(storeReserved, prometheus.GaugeValue, float64(b.StoreReserved))
			ch <- prometheus.MustNewConstMetric(storeUsed, prometheus.GaugeValue, float64(b.StoreUsed))
		},
	})
}

// forget drops the request series of a removed service.
func (s *serviceMetrics) forget(service string) {
	l := prometheus.Labels{"service": service}
	s.requests.DeletePartialMatch(l)
	s.latency.DeletePartialMatch(l)
}
