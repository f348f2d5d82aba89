package series

import (
	"math"
	"slices"
)

// point is what happened to one workload in a span of time (a sample's
// 5 s, a period, a bucket): counts in the span, the histogram of its
// durations, and the largest value each gauge was sampled at in it (nil:
// never sampled). Functions use Calls, Errors, Throttles, ColdStarts,
// Dur, Instances and Busy; services Calls, Errors, Restarts, OOMKills,
// Dur, Instances (ready replicas), Busy (in flight), Desired, ASDesired
// and Panic. It is stored as encode makes it.
type point struct {
	Calls      float64 // invocations or requests
	Errors     float64 // not success, or 5xx
	Throttles  float64
	ColdStarts float64
	Restarts   float64
	OOMKills   float64
	Dur        *hist

	Instances *float64
	Busy      *float64
	Desired   *float64
	ASDesired *float64
	Panic     *float64
}

// add adds o to p: counts and histograms summed, gauges their maximum.
func (p *point) add(o *point) {
	pc, oc := p.counts(), o.counts()
	for i := range pc {
		*pc[i] += *oc[i]
	}
	if o.Dur != nil {
		if p.Dur == nil {
			p.Dur = &hist{}
		}
		p.Dur.add(o.Dur)
	}
	pg, og := p.gauges(), o.gauges()
	for i := range pg {
		*pg[i] = maxOf(*pg[i], *og[i])
	}
}

// maxOf is the larger of two gauge values, nil standing for none.
func maxOf(a, b *float64) *float64 {
	switch {
	case b == nil:
		return a
	case a == nil || *b > *a:
		v := *b
		return &v
	}
	return a
}

// empty reports whether p says nothing but that its workload was idle:
// no counts, no observations, gauges at 0 or not sampled.
func (p *point) empty() bool {
	for _, c := range p.counts() {
		if *c != 0 {
			return false
		}
	}
	if p.Dur != nil && p.Dur.count() != 0 {
		return false
	}
	for _, g := range p.gauges() {
		if *g != nil && **g != 0 {
			return false
		}
	}
	return true
}

// clone is a deep copy of p.
func (p *point) clone() *point {
	c := &point{}
	c.add(p)
	return c
}

// hist is a histogram of observations: N[i] of them fell in bucket i,
// (Le[i-1], Le[i]] (from 0 for the first), and N[len(Le)] above the last
// bound. Its zero value is empty.
type hist struct {
	Le []float64
	N  []float64
}

// count is the number of observations in h.
func (h *hist) count() float64 {
	var n float64
	for _, c := range h.N {
		n += c
	}
	return n
}

// add adds o's observations to h. Histograms of different bounds are
// merged onto the union of their bounds, each count in the bucket of its
// own upper bound.
func (h *hist) add(o *hist) {
	if len(o.N) == 0 {
		return
	}
	if len(h.N) == 0 {
		h.Le, h.N = slices.Clone(o.Le), slices.Clone(o.N)
		return
	}
	if slices.Equal(h.Le, o.Le) {
		for i := range o.N {
			h.N[i] += o.N[i]
		}
		return
	}
	le := slices.Concat(h.Le, o.Le)
	slices.Sort(le)
	le = slices.Compact(le)
	n := make([]float64, len(le)+1)
	for _, x := range []*hist{h, o} {
		for i, c := range x.N {
			j := len(le) // above the last bound
			if i < len(x.Le) {
				j, _ = slices.BinarySearch(le, x.Le[i])
			}
			n[j] += c
		}
	}
	h.Le, h.N = le, n
}

// quantile is the q-quantile (0 ≤ q ≤ 1) of h's observations as
// Prometheus's histogram_quantile estimates it: the bucket holding the
// rank q·count, interpolated linearly between its bounds (from 0 for the
// first bucket); in the bucket above the last bound, that bound. ok is
// false when h is empty.
func (h *hist) quantile(q float64) (v float64, ok bool) {
	total := h.count()
	if total <= 0 || math.IsNaN(q) {
		return 0, false
	}
	q = min(max(q, 0), 1)
	rank := q * total
	var below float64 // observations in the buckets before i
	for i, c := range h.N {
		if c <= 0 || below+c < rank {
			below += c
			continue
		}
		if i >= len(h.Le) {
			if len(h.Le) == 0 {
				return 0, false // no bound to report
			}
			return h.Le[len(h.Le)-1], true
		}
		lo := 0.0
		if i > 0 {
			lo = h.Le[i-1]
		}
		hi := h.Le[i]
		if hi <= 0 {
			return hi, true
		}
		return lo + (hi-lo)*(rank-below)/c, true
	}
	// rank is past every observation only by rounding.
	if len(h.Le) == 0 {
		return 0, false
	}
	for i := len(h.N) - 1; i >= 0; i-- {
		if h.N[i] > 0 {
			if i >= len(h.Le) {
				return h.Le[len(h.Le)-1], true
			}
			return h.Le[i], true
		}
	}
	return 0, false
}
