package server

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/stratus-run/stratus/internal/config"
	"github.com/stratus-run/stratus/internal/events"
	"github.com/stratus-run/stratus/internal/functions"
	"github.com/stratus-run/stratus/internal/store"
)

// newTopics builds the topics on bus, delivering to functions through
// queue, creates their stream (so that NATS clients may publish from the
// start) and exposes their counters.
func newTopics(ctx context.Context, bus *events.Bus, st *store.Store, queue *events.Queue,
	fns *functions.Service, cfg config.Config, met *metrics, tracer oteltrace.Tracer, log *slog.Logger) (*events.Topics, error) {
	tp := events.NewTopics(events.TopicsConfig{
		Bus: bus, Store: st, Queue: queue, FunctionExists: func(fn string) bool { _, ok := fns.Head(fn); return ok },
		MaxEventSize: int(cfg.MaxAsyncEventBytes),
		Tracer:       tracer,
		Log:          log,
	})
	if err := tp.Ensure(ctx); err != nil {
		return nil, err
	}
	counter := func(name, help string, v func(events.TopicStats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(v(tp.Stats())) })
	}
	met.reg.MustRegister(
		counter("stratus_topic_events_published_total", "Events stored on topics through the API and destinations.",
			func(s events.TopicStats) int64 { return s.Published }),
		counter("stratus_topic_deliveries_total", "Topic events handed to subscribers.",
			func(s events.TopicStats) int64 { return s.Delivered }),
		counter("stratus_topic_events_invalid_total", "Topic messages that were not valid CloudEvents, dropped (per subscription).",
			func(s events.TopicStats) int64 { return s.Invalid }),
		counter("stratus_topic_deliveries_dropped_total", "Topic events a subscription gave up on.",
			func(s events.TopicStats) int64 { return s.Dropped }),
	)
	return tp, nil
}
