// Package advice answers "function or container?" for one workload from
// its measured traffic: it prices the ways of running it with the
// meter's table and recommends one. It is pure: records in, advice out.
//
// Every option is the window's minutes replayed under one model and
// priced, metered for energy and carbon, by the meter, for a 30-day month
// at the window's traffic pattern; docs/advice.md states the models.
package advice

import (
	"cmp"
	"math"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/meter"
)

// Input is the traffic of one workload over a window, and what it holds.
type Input struct {
	Name    string
	Kind    string // "function" or "service"
	Start   time.Time
	End     time.Time
	Minutes []stratus.UsageMinute // minutes with traffic; others had none
	// P99DurationMs is the p99 of single requests' durations where known
	// (functions' retained records); else it is estimated from minutes.
	P99DurationMs float64
	MemoryMB      int
	VCPU          float64
	Arch          string
	// Concurrency is a service's per-replica concurrency (0: default).
	Concurrency int
	// LatencyBudgetMs is the p99 the workload must keep (0: none).
	LatencyBudgetMs float64
	// IdleTimeout is how long an idle function instance lives before it
	// is reaped (0: stratus.DefaultIdleTimeout).
	IdleTimeout time.Duration
	// InitMs is a cold start's init duration when the minutes measured
	// none, as for a service (0: one second).
	InitMs float64
}

// FromMinutes is the input of workload name of kind over [start, end)
// from its minutes: their memory, vCPU and architecture are the latest
// minute's that has them. A zero start or end is the first minute's start
// or the last minute's end.
func FromMinutes(kind, name string, minutes []stratus.UsageMinute, start, end time.Time) Input {
	in := Input{Name: name, Kind: kind, Start: start, End: end, Minutes: minutes}
	var latest time.Time
	for i, m := range minutes {
		if start.IsZero() && (i == 0 || m.Minute.Before(in.Start)) {
			in.Start = m.Minute
		}
		if end.IsZero() && m.Minute.Add(time.Minute).After(in.End) {
			in.End = m.Minute.Add(time.Minute)
		}
		if m.Minute.Before(latest) {
			continue
		}
		latest = m.Minute
		if m.MemoryMB > 0 {
			in.MemoryMB = m.MemoryMB
		}
		if m.VCPU > 0 {
			in.VCPU = m.VCPU
		}
		if m.Arch != "" {
			in.Arch = m.Arch
		}
	}
	return in
}

// size is what one instance or replica of the workload holds, and the
// parameters of its models, with defaults filled in.
type size struct {
	memoryMB    int
	vcpu        float64
	arch        string
	concurrency int
	idle        time.Duration
	initMs      float64
}

// sizeOf is in's size: a function's defaults are Stratus's (128 MB, a
// vCPU per 1,769 MB), a service's Stratus's service defaults.
func sizeOf(in Input) size {
	sz := size{
		memoryMB:    in.MemoryMB,
		vcpu:        clean(in.VCPU, stratus.MaxServiceCPU),
		arch:        cmp.Or(in.Arch, stratus.ArchX86),
		concurrency: in.Concurrency,
		idle:        in.IdleTimeout,
		initMs:      clean(in.InitMs, maxMs),
	}
	if sz.memoryMB <= 0 || sz.memoryMB > stratus.MaxServiceMemoryMB {
		sz.memoryMB = stratus.DefaultMemoryMB
		if in.Kind == stratus.KindService {
			sz.memoryMB = stratus.DefaultServiceMemoryMB
		}
	}
	if sz.vcpu == 0 {
		sz.vcpu = float64(sz.memoryMB) / meter.LambdaMBPerVCPU
		if in.Kind == stratus.KindService {
			sz.vcpu = stratus.DefaultServiceCPU
		}
	}
	if sz.concurrency <= 0 || sz.concurrency > stratus.MaxServiceConcurrency {
		sz.concurrency = stratus.DefaultServiceConcurrency
	}
	if sz.idle <= 0 {
		sz.idle = stratus.DefaultIdleTimeout
	}
	if sz.initMs == 0 {
		sz.initMs = defaultInitMs
	}
	return sz
}

// Advise compares the ways of running in, priced and metered with t in
// region, and recommends one. It never fails: the minutes' figures that
// are negative or not finite count as 0, and an empty window advises a
// function.
func Advise(in Input, t meter.Table, region string) v1.Advice {
	sz := sizeOf(in)
	w := cut(in)
	tr := w.traffic(in, sz)
	if tr.InitMs > 0 {
		sz.initMs = tr.InitMs
	}
	p := &pricer{
		m:      meter.New(t, region),
		prices: t.Prices,
		in:     in,
		sz:     sz,
		w:      w,
		tr:     tr,
		scale:  monthMinutes / float64(w.slots),
	}
	a := v1.Advice{
		Name:    in.Name,
		Kind:    in.Kind,
		Window:  w.start.UTC().Format(time.RFC3339) + "/" + w.end.UTC().Format(time.RFC3339),
		Traffic: tr,
	}

	fn := p.function()
	warm, hasWarm := p.functionMin(fn)
	svc := p.service(1)
	a.Options = append(a.Options, fn.option)
	if hasWarm {
		a.Options = append(a.Options, warm.option)
	}
	a.Options = append(a.Options, svc.option, p.lambda(fn), p.cloudRun(svc, fn))
	for i := range a.Options {
		finite(&a.Options[i])
	}

	rec := recommend(a.Options, in.LatencyBudgetMs)
	if tr.Requests == 0 {
		rec = a.Options[0] // nothing to pay for while it scales to zero
	}
	a.Recommended = rec.Model
	a.Reason = reason(tr, in.LatencyBudgetMs, a.Options, rec)
	a.BreakEvenRPS = p.breakEven(fn.option.CostUSD)

	// A function that runs with min instances is compared as one that
	// does not: the minutes do not say how many it keeps.
	switch in.Kind {
	case stratus.KindFunction:
		a.SavingUSD = max(0, find(a.Options, v1.ModelFunction).CostUSD-rec.CostUSD)
	case stratus.KindService:
		a.SavingUSD = max(0, find(a.Options, v1.ModelService).CostUSD-rec.CostUSD)
	}
	return a
}

// finite sets o's figures that are not finite or are negative to 0.
func finite(o *v1.AdviceOption) {
	for _, f := range []*float64{&o.CostUSD, &o.EnergyWh, &o.CarbonG, &o.Utilisation, &o.ColdStartRate, &o.P99Ms} {
		*f = clean(*f, math.MaxFloat64)
	}
}

// recommend is the cheapest option that is not a reference and keeps
// the p99 within budget (any, with no budget), the earlier one of equal
// cost; when none keeps it, the one with the lowest p99.
func recommend(opts []v1.AdviceOption, budget float64) v1.AdviceOption {
	var best *v1.AdviceOption
	for i := range opts {
		o := &opts[i]
		if o.Reference || (budget > 0 && o.P99Ms > budget) {
			continue
		}
		if best == nil || o.CostUSD < best.CostUSD {
			best = o
		}
	}
	if best != nil {
		return *best
	}
	for i := range opts {
		o := &opts[i]
		if o.Reference {
			continue
		}
		if best == nil || o.P99Ms < best.P99Ms || (o.P99Ms == best.P99Ms && o.CostUSD < best.CostUSD) {
			best = o
		}
	}
	return *best
}

// find is the option of model in opts (the zero option if none is).
func find(opts []v1.AdviceOption, model string) v1.AdviceOption {
	for _, o := range opts {
		if o.Model == model {
			return o
		}
	}
	return v1.AdviceOption{}
}
