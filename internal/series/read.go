package series

import (
	"maps"
	"slices"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/stratus-run/stratus"
)

// Workload kinds.
const (
	KindFunction = stratus.KindFunction
	KindService  = stratus.KindService
)

// key names a workload.
type key struct{ kind, name string }

// counter is one of point's counts.
type counter int

const (
	cCalls counter = iota
	cErrors
	cThrottles
	cColdStarts
	cRestarts
	cOOMKills
)

func (c counter) of(p *point) *float64 {
	switch c {
	case cCalls:
		return &p.Calls
	case cErrors:
		return &p.Errors
	case cThrottles:
		return &p.Throttles
	case cColdStarts:
		return &p.ColdStarts
	case cRestarts:
		return &p.Restarts
	default:
		return &p.OOMKills
	}
}

// gauge is one of point's gauges.
type gauge int

const (
	gInstances gauge = iota
	gBusy
	gDesired
	gASDesired
	gPanic
)

func (g gauge) of(p *point) **float64 {
	switch g {
	case gInstances:
		return &p.Instances
	case gBusy:
		return &p.Busy
	case gDesired:
		return &p.Desired
	case gASDesired:
		return &p.ASDesired
	default:
		return &p.Panic
	}
}

// A source says what one metric family of the server's registry gives
// to the series: the workload it is of (its kind and the label naming
// it), and, for each of its metrics, the counts it adds to (a counter or
// a histogram of durations) or the gauge it adds to (summed over the
// metrics of one reading: a function's instances by state). sel and
// vals select by another label: the gauge's metrics whose sel is one of
// vals; for counters, those that are errors (errors says which).
type source struct {
	kind, label string
	sel         string
	vals        []string
	counts      []counter // a counter's
	errors      errorsBy  // a counter's: which of its metrics also count as errors
	gauge       gauge
	isGauge     bool
	histogram   bool
}

// errorsBy says which metrics of a counter are errors.
type errorsBy int

const (
	noErrors      errorsBy = iota
	errorsOutside          // those whose sel is none of vals
	errorsInside           // those whose sel is one of vals
)

func counting(cs ...counter) source { return source{counts: cs} }

func gaugeOf(g gauge, sel string, vals ...string) source {
	return source{gauge: g, isGauge: true, sel: sel, vals: vals}
}

func (s source) of(kind, label string) source {
	s.kind, s.label = kind, label
	return s
}

// selected reports whether labels' sel value is one of s.vals.
func (s source) selected(labels map[string]string) bool {
	return slices.Contains(s.vals, labels[s.sel])
}

// sources are the families the series are made of, by name: those
// internal/server registers (their names and labels are /metrics'
// contract, and its tests check them against Sources).
var sources = map[string]source{
	"stratus_function_invocations_total": {kind: KindFunction, label: "function", counts: []counter{cCalls},
		sel: "outcome", vals: []string{"success"}, errors: errorsOutside},
	"stratus_function_throttles_total":   counting(cThrottles).of(KindFunction, "function"),
	"stratus_function_cold_starts_total": counting(cColdStarts).of(KindFunction, "function"),
	"stratus_function_duration_seconds":  {kind: KindFunction, label: "function", histogram: true},
	"stratus_function_instances":         gaugeOf(gInstances, "state", "busy", "idle", "starting").of(KindFunction, "function"),
	"stratus_function_concurrency":       gaugeOf(gBusy, "").of(KindFunction, "function"),

	"stratus_service_requests_total": {kind: KindService, label: "service", counts: []counter{cCalls},
		sel: "code_class", vals: []string{"5xx"}, errors: errorsInside},
	"stratus_service_request_duration_seconds": {kind: KindService, label: "service", histogram: true},
	"stratus_service_restarts_total":           counting(cRestarts).of(KindService, "service"),
	"stratus_service_oom_kills_total":          counting(cOOMKills).of(KindService, "service"),
	"stratus_service_replicas":                 gaugeOf(gInstances, "state", "ready").of(KindService, "service"),
	"stratus_service_in_flight":                gaugeOf(gBusy, "").of(KindService, "service"),
	"stratus_service_desired_replicas":         gaugeOf(gDesired, "").of(KindService, "service"),
	"stratus_autoscaler_desired_replicas":      gaugeOf(gASDesired, "").of(KindService, "service"),
	"stratus_autoscaler_panic_mode":            gaugeOf(gPanic, "").of(KindService, "service"),
}

// A Source is a metric family the series read, as the server must
// export it: its name, its type, the label naming the workload, and
// another label whose values the series select on (Label: Values;
// empty when they take every metric).
type Source struct {
	Family   string
	Type     dto.MetricType
	Workload string
	Label    string
	Values   []string
}

// Sources are the metric families the series read, sorted by name.
func Sources() []Source {
	out := make([]Source, 0, len(sources))
	for _, name := range slices.Sorted(maps.Keys(sources)) {
		src := sources[name]
		t := dto.MetricType_COUNTER
		switch {
		case src.histogram:
			t = dto.MetricType_HISTOGRAM
		case src.isGauge:
			t = dto.MetricType_GAUGE
		}
		out = append(out, Source{Family: name, Type: t, Workload: src.label, Label: src.sel, Values: slices.Clone(src.vals)})
	}
	return out
}

// A reading is the registry's series as one Gather found them: counters
// and histograms as their running totals (since the server started, or
// since the workload's series were made again), gauges as sampled. It
// is not changed once made.
type reading struct {
	at time.Time
	// began and ended are Sampler.gathered as its Gather began and once
	// it ended (which names the Gather: no two end alike); partial says
	// that a collector failed in it.
	began, ended uint64
	partial      bool
	counters     map[seriesID]float64
	hists        map[seriesID]cumHist
	gauges       map[key]*point // gauge fields only
}

// seriesID names one series of the registry: its family and labels,
// with the workload and count it adds to.
type seriesID struct {
	w      key
	c      counter
	metric string // family name and label values
}

// cumHist is a histogram as Prometheus exports it: cumulative counts by
// upper bound, and the count of all observations.
type cumHist struct {
	le    []float64
	cum   []uint64
	count uint64
}

// read makes a reading of families, taken at at.
func read(families []*dto.MetricFamily, at time.Time) *reading {
	r := &reading{at: at, counters: map[seriesID]float64{}, hists: map[seriesID]cumHist{}, gauges: map[key]*point{}}
	for _, f := range families {
		src, ok := sources[f.GetName()]
		if !ok {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := make(map[string]string, len(m.GetLabel()))
			var id strings.Builder
			id.WriteString(f.GetName())
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
				id.WriteByte(0)
				id.WriteString(lp.GetName())
				id.WriteByte('=')
				id.WriteString(lp.GetValue())
			}
			w := key{src.kind, labels[src.label]}
			if w.name == "" {
				continue
			}
			switch {
			case src.histogram:
				h := m.GetHistogram()
				if h == nil {
					continue
				}
				ch := cumHist{count: h.GetSampleCount()}
				for _, b := range h.GetBucket() {
					ch.le = append(ch.le, b.GetUpperBound())
					ch.cum = append(ch.cum, b.GetCumulativeCount())
				}
				r.hists[seriesID{w: w, metric: id.String()}] = ch
			case src.counts != nil:
				v := m.GetCounter().GetValue()
				if m.GetCounter() == nil {
					v = m.GetUntyped().GetValue()
				}
				cs := src.counts
				if src.errors == errorsOutside && !src.selected(labels) || src.errors == errorsInside && src.selected(labels) {
					cs = append(slices.Clip(cs), cErrors)
				}
				for _, c := range cs {
					r.counters[seriesID{w: w, c: c, metric: id.String()}] = v
				}
			case src.isGauge:
				if src.sel != "" && !src.selected(labels) {
					continue
				}
				g := src.gauge
				p := r.gauges[w]
				if p == nil {
					p = &point{}
					r.gauges[w] = p
				}
				v := m.GetGauge().GetValue()
				if f := g.of(p); *f == nil {
					*f = &v
				} else {
					**f += v
				}
			}
		}
	}
	return r
}

// carry is r with the counters and histograms that prev has and r has
// not (a collector failed in r's Gather) as prev had them: they did not
// go, and so do not count anew once read again. r is partial; its gauges
// stay as read.
func (r *reading) carry(prev *reading) *reading {
	if prev == nil {
		return r
	}
	out := *r
	out.counters = maps.Clone(r.counters)
	out.hists = maps.Clone(r.hists)
	for id, v := range prev.counters {
		if _, ok := out.counters[id]; !ok {
			out.counters[id] = v
		}
	}
	for id, h := range prev.hists {
		if _, ok := out.hists[id]; !ok {
			out.hists[id] = h
		}
	}
	return &out
}

// since is what happened from prev (nil: the server's start, when every
// total was 0) to r, per workload: the counts' increases and the
// histograms' new observations, with r's gauges. A total that went down
// (its series was made again: a removal and a new deploy) counts from 0.
// Only workloads in r are in it.
func (r *reading) since(prev *reading) map[key]*point {
	out := map[key]*point{}
	at := func(w key) *point {
		p := out[w]
		if p == nil {
			p = &point{}
			out[w] = p
		}
		return p
	}
	for id, v := range r.counters {
		d := v
		if prev != nil {
			if pv, ok := prev.counters[id]; ok && pv <= v {
				d = v - pv
			}
		}
		*id.c.of(at(id.w)) += d
	}
	for id, h := range r.hists {
		var ph *cumHist
		if prev != nil {
			if x, ok := prev.hists[id]; ok {
				ph = &x
			}
		}
		if d := h.since(ph); d != nil {
			p := at(id.w)
			if p.Dur == nil {
				p.Dur = &hist{}
			}
			p.Dur.add(d)
		}
	}
	for w, g := range r.gauges {
		at(w).add(g)
	}
	return out
}

// since is the histogram of the observations h has that prev had not
// (all of h's if prev is nil, of other bounds, or counted more), or nil
// if there are none.
func (h cumHist) since(prev *cumHist) *hist {
	cum, count := h.cum, h.count
	if prev != nil && prev.count <= h.count && equalBounds(prev.le, h.le) && cumulativeLE(prev.cum, h.cum) {
		cum = make([]uint64, len(h.cum))
		for i := range h.cum {
			cum[i] = h.cum[i] - prev.cum[i]
		}
		count -= prev.count
	}
	if count == 0 {
		return nil
	}
	out := &hist{Le: h.le, N: make([]float64, len(h.le)+1)}
	var below uint64
	for i, c := range cum {
		if c < below { // not cumulative: take it as it is
			c = below
		}
		out.N[i] = float64(c - below)
		below = c
	}
	if count > below {
		out.N[len(h.le)] = float64(count - below)
	}
	return out
}

func equalBounds(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func cumulativeLE(a, b []uint64) bool {
	for i := range a {
		if a[i] > b[i] {
			return false
		}
	}
	return true
}
