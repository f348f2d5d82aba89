package benchkit

import (
	"slices"
	"time"
)

// Percentiles returns the 50th and 99th percentiles (nearest rank) and the
// mean of d, which it sorts.
func Percentiles(d []time.Duration) (p50, p99, mean time.Duration) {
	if len(d) == 0 {
		return 0, 0, 0
	}
	slices.Sort(d)
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return Rank(d, 0.50), Rank(d, 0.99), sum / time.Duration(len(d))
}

// Rank is the nearest-rank p-quantile (0 < p ≤ 1) of sorted d: the
// smallest value at least p of the values are at or below; 0 for none.
func Rank(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(p*float64(len(d))+0.999999) - 1
	return d[max(0, min(i, len(d)-1))]
}

// Median is the median of v, the mean of the two middle values for an
// even count; 0 for none. It leaves v as it is.
func Median[T ~int64 | ~float64](v []T) T {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// MedianOf is the median of f over xs.
func MedianOf[X any, T ~int64 | ~float64](xs []X, f func(X) T) T {
	v := make([]T, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	return Median(v)
}

// Summary describes timed runs of one kind (cold starts, floors): their
// count, nearest-rank p50 and p99 (with up to 100 runs, p99 is the
// slowest), fastest, slowest and mean.
type Summary struct {
	Runs               int
	P50, P99, Min, Max time.Duration
	Mean               time.Duration
}

// Summarise summarises d, which it sorts.
func Summarise(d []time.Duration) Summary {
	if len(d) == 0 {
		return Summary{}
	}
	p50, p99, mean := Percentiles(d)
	return Summary{Runs: len(d), P50: p50, P99: p99, Min: d[0], Max: d[len(d)-1], Mean: mean}
}
