package advice

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

// Bounds that keep every sum finite whatever the minutes hold: a field
// that is negative, NaN or infinite counts as 0, and one above its bound
// as the bound.
const (
	maxRequests = 1e12 // requests in one minute
	maxMs       = 1e15 // milliseconds summed over one minute
)

// slot is one busy minute of the window: the minutes that began in it,
// summed, with values cleaned.
type slot struct {
	at          time.Time // the minute's start
	requests    float64
	errors      float64
	coldStarts  float64
	durationMs  float64 // summed
	maxDuration float64
	billedMs    float64
	initMs      float64 // summed over cold starts
	cpuMs       float64
	maxInFlight float64
}

// window is a workload's traffic cut into minutes: slots minutes in all,
// busy the ones with requests, in time order.
type window struct {
	start, end time.Time
	slots      int
	busy       []slot
}

// clean is v as a usable figure: 0 for NaN, infinities and negatives, at
// most limit.
func clean(v, limit float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 {
		return 0
	}
	return min(v, limit)
}

// cut makes the window of in: the minute slots that overlap [Start, End)
// (or, when End is not after Start, those from the first minute to the
// last), at least one. Minutes outside it are left out; minutes that begin
// in the same slot are summed.
func cut(in Input) window {
	start, end := in.Start, in.End
	if !end.After(start) {
		start, end = time.Time{}, time.Time{}
		for i, m := range in.Minutes {
			if i == 0 || m.Minute.Before(start) {
				start = m.Minute
			}
			if i == 0 || m.Minute.Add(time.Minute).After(end) {
				end = m.Minute.Add(time.Minute)
			}
		}
	}
	first := start.Truncate(time.Minute)
	last := end.Truncate(time.Minute)
	if last.Before(end) {
		last = last.Add(time.Minute)
	}
	w := window{start: start, end: end, slots: max(1, int(last.Sub(first)/time.Minute))}

	bySlot := map[int]*slot{}
	for _, m := range in.Minutes {
		if !m.Minute.Add(time.Minute).After(start) || !m.Minute.Before(end) {
			continue
		}
		i := int(m.Minute.Sub(first) / time.Minute)
		s := bySlot[i]
		if s == nil {
			s = &slot{at: first.Add(time.Duration(i) * time.Minute)}
			bySlot[i] = s
		}
		add(s, m)
	}
	for _, s := range bySlot {
		if s.requests > 0 {
			w.busy = append(w.busy, *s)
		}
	}
	slices.SortFunc(w.busy, func(a, b slot) int { return a.at.Compare(b.at) })
	return w
}

// add adds minute m to s: counts and times add up, maxima take the
// larger.
func add(s *slot, m stratus.UsageMinute) {
	s.requests = min(s.requests+clean(float64(m.Requests), maxRequests), maxRequests)
	s.errors = min(s.errors+clean(float64(m.Errors), maxRequests), maxRequests)
	s.coldStarts = min(s.coldStarts+clean(float64(m.ColdStarts), maxRequests), s.requests)
	s.durationMs = min(s.durationMs+clean(m.DurationMs, maxMs), maxMs)
	s.maxDuration = max(s.maxDuration, clean(m.MaxDuration, maxMs))
	s.billedMs = min(s.billedMs+clean(m.BilledMs, maxMs), maxMs)
	s.initMs = min(s.initMs+clean(m.InitMs, maxMs), maxMs)
	s.cpuMs = min(s.cpuMs+clean(m.CPUMs, maxMs), maxMs)
	// A peak is not a sum: two records of one minute take the larger,
	// as the store does when it adds them.
	s.maxInFlight = max(s.maxInFlight, clean(float64(m.MaxInFlight), maxRequests))
}

// sums are a window's totals.
type sums struct {
	requests, coldStarts, durationMs, maxDuration, initMs, cpuMs float64
	peakRequests, peakDurationMs                                 float64
}

func (w window) sums() sums {
	var s sums
	for _, m := range w.busy {
		s.requests += m.requests
		s.coldStarts += m.coldStarts
		s.durationMs += m.durationMs
		s.maxDuration = max(s.maxDuration, m.maxDuration)
		s.initMs += m.initMs
		s.cpuMs += m.cpuMs
		s.peakRequests = max(s.peakRequests, m.requests)
		s.peakDurationMs = max(s.peakDurationMs, m.durationMs)
	}
	return s
}

// ratio is a/b, or 0 when b is 0.
func ratio(a, b float64) float64 {
	if b <= 0 || math.IsNaN(a) || math.IsNaN(b) {
		return 0
	}
	r := a / b
	if math.IsInf(r, 0) || math.IsNaN(r) {
		return 0
	}
	return r
}

// traffic is what the window shows of the workload sized by sz.
func (w window) traffic(in Input, sz size) v1.Traffic {
	s := w.sums()
	secs := float64(w.slots) * 60
	tr := v1.Traffic{
		Requests:        int64(s.requests),
		MeanRPS:         ratio(s.requests, secs),
		PeakRPS:         s.peakRequests / 60,
		ActiveShare:     ratio(float64(len(w.busy)), float64(w.slots)),
		MeanDurationMs:  ratio(s.durationMs, s.requests),
		P99DurationMs:   clean(in.P99DurationMs, maxMs),
		MeanConcurrency: ratio(s.durationMs, secs*1000),
		PeakConcurrency: s.peakDurationMs / 60000,
		ColdStartRate:   ratio(s.coldStarts, s.requests),
		InitMs:          ratio(s.initMs, s.coldStarts),
		CPUUtilisation:  min(1, ratio(s.cpuMs, sz.vcpu*s.durationMs)),
		MemoryMB:        sz.memoryMB,
		VCPU:            sz.vcpu,
	}
	if tr.P99DurationMs == 0 {
		tr.P99DurationMs = cmp.Or(s.maxDuration, tr.MeanDurationMs)
	}
	return tr
}
