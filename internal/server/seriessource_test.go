package server

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/meter"
	"github.com/stratus-run/stratus/internal/series"
	"github.com/stratus-run/stratus/internal/services"
)

// seriesRig is the server's registry as Run builds it, with every series
// the series read made: an invocation of each outcome, a request of each
// status class, a function and a service with their figures.
func seriesRig(t testing.TB) (*metrics, prometheus.Gatherer) {
	t.Helper()
	m := newMetrics(discard{}, meter.New(meter.Default(), "local"))
	for _, o := range []string{stratus.OutcomeSuccess, stratus.OutcomeError, stratus.OutcomeTimeout, stratus.OutcomeCrash} {
		m.Record(stratus.Invocation{Function: "f", Outcome: o, DurationMs: 5, BilledMs: 5, MemoryMB: 128, Cold: o == stratus.OutcomeSuccess, InitDurationMs: 10})
	}
	fns := func() map[string]stratus.InstanceStats {
		return map[string]stratus.InstanceStats{"f": {Live: 3, Idle: 1, Busy: 2, Starting: 1, Throttles: 2}}
	}
	svcs := func() []services.ServiceStats {
		return []services.ServiceStats{{Name: "web", ReadyReplicas: 1, DesiredReplicas: 2, AutoscalerDesired: 2, Panic: true, InFlight: 1, Restarts: 1, OOMKills: 1}}
	}
	m.functionStats(fns)
	sm := m.serviceRequests()
	for status := 100; status < 600; status += 100 {
		sm.observe("web", status, time.Millisecond)
	}
	sm.observe("web", 499, time.Millisecond)
	m.serviceStats(svcs)
	return m, m.seriesGatherer(fns, svcs, sm)
}

// TestSeriesSourcesExist: every family the console's series read is in
// the server's registry (/metrics) and in the one the sampler gathers,
// of the type the series take it as, labelled with its workload, and
// each label value the series select on is one the server gives: a
// metric renamed or relabelled fails here, not in empty charts. The
// sampler's registry holds nothing else worth a Gather (no Go runtime,
// process or JetStream collectors).
func TestSeriesSourcesExist(t *testing.T) {
	m, g := seriesRig(t)
	for name, gatherer := range map[string]prometheus.Gatherer{"/metrics": m.reg, "series": g} {
		fams, err := gatherer.Gather()
		if err != nil {
			t.Fatal(err)
		}
		byName := make(map[string]*dto.MetricFamily, len(fams))
		for _, f := range fams {
			byName[f.GetName()] = f
		}
		for _, src := range series.Sources() {
			f := byName[src.Family]
			if f == nil {
				t.Errorf("%s: no family %s (has %v)", name, src.Family, slices.Sorted(maps.Keys(byName)))
				continue
			}
			if f.GetType() != src.Type {
				t.Errorf("%s: %s is a %v, the series read a %v", name, src.Family, f.GetType(), src.Type)
			}
			values := map[string]bool{}
			for _, mt := range f.GetMetric() {
				labels := map[string]string{}
				for _, lp := range mt.GetLabel() {
					labels[lp.GetName()] = lp.GetValue()
				}
				if labels[src.Workload] == "" {
					t.Errorf("%s: %s has a metric without the label %q: %v", name, src.Family, src.Workload, labels)
				}
				if src.Label != "" {
					v, ok := labels[src.Label]
					if !ok {
						t.Errorf("%s: %s has a metric without the label %q: %v", name, src.Family, src.Label, labels)
					}
					values[v] = true
				}
			}
			for _, v := range src.Values {
				if !values[v] {
					t.Errorf("%s: %s has no %s=%q (has %v)", name, src.Family, src.Label, v, slices.Sorted(maps.Keys(values)))
				}
			}
		}
		if name != "series" {
			continue
		}
		for n := range byName {
			if strings.HasPrefix(n, "go_") || strings.HasPrefix(n, "process_") || strings.HasPrefix(n, "stratus_jetstream_") || strings.Contains(n, "async") {
				t.Errorf("the series' registry gathers %s", n)
			}
		}
	}
}

// BenchmarkGather: what one Gather of the series' registry costs, next
// to one of the server's whole registry (without JetStream's statistics,
// which only the latter reads).
func BenchmarkGather(b *testing.B) {
	m, g := seriesRig(b)
	for name, gatherer := range map[string]prometheus.Gatherer{"all": m.reg, "series": g} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := gatherer.Gather(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
