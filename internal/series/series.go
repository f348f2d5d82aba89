// Package series keeps the time series the console draws: per function
// its invocations, errors, throttles, cold starts, duration quantiles,
// instances and concurrency; per service its requests, 5xx, latency
// quantiles, replicas, desired replicas, the autoscaler's panic, requests
// in flight, restarts and OOM kills.
//
// Its source is the server's own Prometheus registry, nothing else (the
// server hands it a registry of just the families named in Sources): a
// Sampler gathers it every few seconds (Config.Every, 5 s), off every
// request's path, and turns what it finds into what each workload did
// since the previous sample: counters into their increase (a counter that
// went down, its series made anew by a removal and a deploy, counts from
// 0; one missing from a Gather in which a collector failed is carried
// over, not counted again), histograms into the observations of each
// bucket (so that the quantiles of any span come from summed buckets, as
// Prometheus's histogram_quantile computes them), gauges into their
// sampled value. In one transaction per sample it stores a row per
// workload that did anything, a marker row saying that it sampled, and
// adds the sample to the workload's periods of a minute, ten minutes and
// an hour (counts and buckets summed, gauges their maximum, panic whether
// it ever was). A period it has not rolled up yet is read back first, so
// that one rolled up by an earlier run, or before the clock went back,
// is added to, never replaced. Each kind of row is kept as long as the
// range that reads it spans, with a margin: samples 30 minutes, minutes
// 2 hours, ten minutes 26 hours, hours 8 days.
//
// Reads (Function, Service, Overview) bucket the 15m range from the
// samples and the others from the periods of their step (1h: minutes,
// 24h: ten minutes, 7d: hours), so that a chart reads about one row per
// point and workload; a bucket the sampler ran in but a workload has no
// row in is one where it was idle (gauges 0), one without a marker is
// unknown (gauges null). The last bucket also gets what the registry
// holds beyond the last stored sample: a chart moves as soon as an
// invocation ends, give or take LiveFor, for one Gather serves every read
// within LiveFor of it (a sample's too).
//
// Rows are history of a name, as usage is: they outlive a removed
// workload and go only with age.
//
// Goroutines: Run is the only one the package starts, and it returns
// once stopped. Sample runs one sample at a time (sampleMu); reads gather
// one at a time (liveMu); mu guards the state a read takes a snapshot of
// (the last reading and the periods being rolled up) and the last
// reading, which are replaced, never changed, so that reads do no store
// I/O or Gather while holding it. Lock order: sampleMu, then mu; liveMu,
// then mu.
package series

import (
	"fmt"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

// A Range is a window of the series endpoints and its step.
type Range struct {
	name string
	span time.Duration
	step time.Duration
	// level is the index in levels of the rollups of step the range is
	// bucketed from; -1: from the samples.
	level int
}

// levels are the periods the sampler rolls samples up into: each range
// but the shortest reads the rollups of its step, one row per bucket.
var levels = [...]time.Duration{time.Minute, 10 * time.Minute, time.Hour}

// ranges are the windows the API answers, as the contract fixes them.
var ranges = []Range{
	{name: v1.Range15m, span: 15 * time.Minute, step: 15 * time.Second, level: -1},
	{name: v1.Range1h, span: time.Hour, step: time.Minute, level: 0},
	{name: v1.Range24h, span: 24 * time.Hour, step: 10 * time.Minute, level: 1},
	{name: v1.Range7d, span: 7 * 24 * time.Hour, step: time.Hour, level: 2},
}

// ParseRange returns the range named s (v1.RangeDefault when s is
// empty), or an error wrapping stratus.ErrInvalid.
func ParseRange(s string) (Range, error) {
	if s == "" {
		s = v1.RangeDefault
	}
	names := make([]string, len(ranges))
	for i, r := range ranges {
		if s == r.name {
			return r, nil
		}
		names[i] = r.name
	}
	if len(s) > 32 {
		s = s[:32] + "…"
	}
	return Range{}, fmt.Errorf("range %q: want one of %s: %w", s, strings.Join(names, ", "), stratus.ErrInvalid)
}

// Name is the range as the API names it ("1h").
func (r Range) Name() string { return r.name }

// Step is the width of the range's buckets.
func (r Range) Step() time.Duration { return r.step }

// Points is the number of buckets of the range.
func (r Range) Points() int { return int(r.span / r.step) }

// window is the range's time axis ending at now: the unix second of the
// first bucket's start and the step in seconds.
func (r Range) window(now time.Time) (first, step int64, n int) {
	step = int64(r.step / time.Second)
	n = r.Points()
	last := floorDiv(now.Unix(), step) * step
	return last - int64(n-1)*step, step, n
}

// floorDiv is a / b rounded down (b > 0).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}
