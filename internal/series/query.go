package series

import (
	"context"
	"math"
	"time"

	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/store"
)

// buckets are the points of a range's buckets, per workload.
type buckets struct {
	first, step int64 // unix seconds
	n           int
	end         time.Time
	of          map[key][]point
	// sampled holds the buckets the sampler ran in: in them a gauge not
	// sampled is 0 (its workload was idle), not unknown.
	sampled []bool
}

func (b *buckets) at(k key) []point {
	ps := b.of[k]
	if ps == nil {
		ps = make([]point, b.n)
		b.of[k] = ps
	}
	return ps
}

// add adds p, of a span that began or was sampled at t, to its bucket;
// points outside the window are left out.
func (b *buckets) add(k key, t time.Time, p *point) {
	i := floorDiv(t.Unix()-b.first, b.step)
	if i < 0 || i >= int64(b.n) {
		return
	}
	if k == marker {
		b.sampled[i] = true
		return
	}
	b.at(k)[i].add(p)
}

// collect buckets what the workloads that want selects did in r up to
// now: stored samples or periods, the period being rolled up, and the
// registry's figures beyond the last stored sample. kind and name narrow
// the store's reads (empty: all).
func (s *Sampler) collect(ctx context.Context, r Range, kind, name string, want func(key) bool) (*buckets, error) {
	now := s.now()
	first, step, n := r.window(now)
	b := &buckets{first: first, step: step, n: n, end: now, of: map[key][]point{}, sampled: make([]bool, n)}
	snap, rolled, rows, err := s.stored(ctx, r, kind, name, time.Unix(first, 0), now)
	if err != nil {
		return nil, err
	}
	for _, row := range rows {
		k := key{row.Kind, row.Name}
		if k == marker {
			b.add(k, row.At, nil)
			continue
		}
		if !want(k) {
			continue
		}
		p, err := decodePoint(row.Data)
		if err != nil {
			continue // a row this program cannot read counts as none
		}
		b.add(k, row.At, p)
	}
	for k, p := range rolled.points {
		if k == marker || want(k) {
			b.add(k, rolled.start, p)
		}
	}
	b.sampled[n-1] = true // read now
	// Live: what happened since the last stored sample.
	cur, err := s.liveReading(now, snap.prev)
	if err != nil {
		return nil, err
	}
	for k, p := range cur.since(snap.prev) {
		if want(k) {
			b.add(k, now, p)
		}
	}
	return b, nil
}

// stored reads the rows of r's level since since that the snapshot it
// returns does not account for, and the period of it being rolled up.
func (s *Sampler) stored(ctx context.Context, r Range, kind, name string, since, now time.Time) (snap snapshot, rolled roll, rows []store.SeriesRow, err error) {
	for attempt := 0; ; attempt++ {
		snap = s.snapshot()
		q := store.SeriesQuery{Kind: kind, Name: name, Since: since, Until: snap.lastAt}
		list := s.st.SeriesSamples
		if r.level >= 0 {
			list = s.st.SeriesRollups
			q.Step = levels[r.level]
			rolled = snap.rolls[r.level]
			q.Until = now
			if !rolled.start.IsZero() {
				q.Until = rolled.start.Add(-time.Nanosecond) // the period being rolled up is newer
			}
		}
		rows, err = list(ctx, q)
		if err != nil {
			return snap, rolled, nil, err
		}
		if kind != "" {
			mq := q
			mq.Kind, mq.Name = marker.kind, marker.name
			markers, err := list(ctx, mq)
			if err != nil {
				return snap, rolled, nil, err
			}
			rows = append(rows, markers...)
		}
		// Before this run's first sample, the period being rolled up is
		// read whole from the store: if that sample stored it meanwhile,
		// its rows hold what the live reading adds again. Read anew.
		if !rolled.start.IsZero() || r.level < 0 || s.snapshot().prev == snap.prev || attempt >= 3 {
			return snap, rolled, rows, nil
		}
	}
}

func (b *buckets) window(r Range) v1.SeriesWindow {
	w := v1.SeriesWindow{Range: r.name, StepSec: b.step, Start: b.first, End: b.end.Unix(), T: make([]int64, b.n)}
	for i := range w.T {
		w.T[i] = b.first + int64(i)*b.step
	}
	return w
}

// Function answers function name's series over r. The caller checks that
// the function exists.
func (s *Sampler) Function(ctx context.Context, name string, r Range) (*v1.FunctionSeries, error) {
	k := key{KindFunction, name}
	b, err := s.collect(ctx, r, k.kind, k.name, func(x key) bool { return x == k })
	if err != nil {
		return nil, err
	}
	ps := b.at(k)
	return &v1.FunctionSeries{
		Name: name, Kind: v1.SeriesFunction, SeriesWindow: b.window(r),
		Series: v1.FunctionPoints{
			Invocations: counts(ps, cCalls), Errors: counts(ps, cErrors),
			Throttles: counts(ps, cThrottles), ColdStarts: counts(ps, cColdStarts),
			DurationP50Ms: quantiles(ps, 0.5), DurationP99Ms: quantiles(ps, 0.99),
			Instances: gauges(ps, gInstances, b.sampled), Concurrency: gauges(ps, gBusy, b.sampled),
		},
	}, nil
}

// Service answers service name's series over r. The caller checks that
// the service exists.
func (s *Sampler) Service(ctx context.Context, name string, r Range) (*v1.ServiceSeries, error) {
	k := key{KindService, name}
	b, err := s.collect(ctx, r, k.kind, k.name, func(x key) bool { return x == k })
	if err != nil {
		return nil, err
	}
	ps := b.at(k)
	panics := make([]int64, len(ps))
	for i := range ps {
		if p := ps[i].Panic; p != nil && *p > 0 {
			panics[i] = 1
		}
	}
	return &v1.ServiceSeries{
		Name: name, Kind: v1.SeriesService, SeriesWindow: b.window(r),
		Series: v1.ServicePoints{
			Requests: counts(ps, cCalls), Errors: counts(ps, cErrors),
			LatencyP50Ms: quantiles(ps, 0.5), LatencyP99Ms: quantiles(ps, 0.99),
			Replicas: gauges(ps, gInstances, b.sampled), Desired: gauges(ps, gDesired, b.sampled),
			AutoscalerDesired: gauges(ps, gASDesired, b.sampled),
			Panic:             panics, InFlight: gauges(ps, gBusy, b.sampled),
			Restarts: counts(ps, cRestarts), OOMKills: counts(ps, cOOMKills),
		},
	}, nil
}

// Overview answers the calls and errors of functions fns and services
// svcs over r, with each one's summary; each is in the answer, idle or
// not.
func (s *Sampler) Overview(ctx context.Context, r Range, fns, svcs []string) (*v1.SeriesOverview, error) {
	want := make(map[key]bool, len(fns)+len(svcs))
	for _, n := range fns {
		want[key{KindFunction, n}] = true
	}
	for _, n := range svcs {
		want[key{KindService, n}] = true
	}
	b, err := s.collect(ctx, r, "", "", func(k key) bool { return want[k] })
	if err != nil {
		return nil, err
	}
	out := &v1.SeriesOverview{
		SeriesWindow: b.window(r),
		Functions:    make(map[string]v1.FunctionOverview, len(fns)),
		Services:     make(map[string]v1.ServiceOverview, len(svcs)),
	}
	for _, n := range fns {
		ps := b.at(key{KindFunction, n})
		var all point
		for i := range ps {
			all.add(&ps[i])
		}
		out.Functions[n] = v1.FunctionOverview{
			Invocations: counts(ps, cCalls), Errors: counts(ps, cErrors),
			Summary: v1.FunctionSummary{
				Invocations: round(all.Calls), Errors: round(all.Errors), Throttles: round(all.Throttles),
				P50Ms: quantile(&all, 0.5), P99Ms: quantile(&all, 0.99),
			},
		}
	}
	for _, n := range svcs {
		ps := b.at(key{KindService, n})
		var all point
		for i := range ps {
			all.add(&ps[i])
		}
		out.Services[n] = v1.ServiceOverview{
			Requests: counts(ps, cCalls), Errors: counts(ps, cErrors),
			Summary: v1.ServiceSummary{
				Requests: round(all.Calls), Errors: round(all.Errors),
				P50Ms: quantile(&all, 0.5), P99Ms: quantile(&all, 0.99),
			},
		}
	}
	return out, nil
}

func round(v float64) int64 { return int64(math.Round(v)) }

func counts(ps []point, c counter) []int64 {
	out := make([]int64, len(ps))
	for i := range ps {
		out[i] = round(*c.of(&ps[i]))
	}
	return out
}

// gauges are the values of gauge g in ps; one not sampled is 0 where
// the sampler ran (sampled), else null.
func gauges(ps []point, g gauge, sampled []bool) []*float64 {
	out := make([]*float64, len(ps))
	for i := range ps {
		switch v := *g.of(&ps[i]); {
		case v != nil:
			x := *v
			out[i] = &x
		case sampled[i]:
			out[i] = new(float64)
		}
	}
	return out
}

func quantiles(ps []point, q float64) []*float64 {
	out := make([]*float64, len(ps))
	for i := range ps {
		out[i] = quantile(&ps[i], q)
	}
	return out
}

// quantile is the q-quantile of p's durations in milliseconds, rounded
// to the microsecond, or nil without any.
func quantile(p *point, q float64) *float64 {
	if p.Dur == nil {
		return nil
	}
	v, ok := p.Dur.quantile(q)
	if !ok {
		return nil
	}
	ms := math.Round(v*1e6) / 1e3
	return &ms
}
