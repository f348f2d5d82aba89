package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/services"
)

// seriesGatherer is a registry of just the families the console's time
// series read (series.Sources), beside the server's: the function and
// service series of m and sm, and the pools' and services' figures, read
// again on each Gather as /metrics reads them. The sampler and every
// series read gather it, so that a chart never waits on JetStream's
// statistics (up to two seconds when they are stale) nor walks the Go
// runtime's and the process's collectors.
func (m *metrics) seriesGatherer(fns func() map[string]stratus.InstanceStats, svcs func() []services.ServiceStats, sm *serviceMetrics) prometheus.Gatherer {
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.invocations, m.coldStarts, m.duration, sm.requests, sm.latency)
	// The same collectors as the server's registry has, made for this one.
	side := &metrics{reg: reg}
	side.functionStats(fns)
	side.serviceStats(svcs)
	return reg
}
