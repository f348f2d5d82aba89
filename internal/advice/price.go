package advice

import (
	"fmt"
	"math"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/meter"
)

// pricer prices the options of one workload's window for a month.
type pricer struct {
	m      *meter.Meter
	prices meter.Prices
	in     Input
	sz     size
	w      window
	tr     v1.Traffic
	scale  float64 // months per window: monthMinutes / slots
}

// figures are a month's cost, energy and carbon.
type figures struct {
	cost, energy, carbon float64
}

// add adds u, times n, to f.
func (f *figures) add(u stratus.Usage, n float64) {
	f.cost += clean(u.CostUSD, math.MaxFloat64) * n
	f.energy += clean(u.EnergyWh, math.MaxFloat64) * n
	f.carbon += clean(u.CarbonG, math.MaxFloat64) * n
}

// set writes f into o.
func (f figures) set(o *v1.AdviceOption) {
	o.CostUSD, o.EnergyWh, o.CarbonG = f.cost, f.energy, f.carbon
}

// priced is an option with what later options are built from.
type priced struct {
	option v1.AdviceOption
	month  figures
}

// functionMinute is busy minute s run as a function with cold of its
// requests starting cold and taking initMs of init in all. Billed time
// is the requests' own (the measured one without its init, at least the
// duration) plus the init: Stratus's pool bills a cold start's init, as
// Lambda has since August 2025.
func (p *pricer) functionMinute(s slot, cold, initMs float64) stratus.UsageMinute {
	billed := max(s.durationMs, s.billedMs-s.initMs) + initMs
	return stratus.UsageMinute{
		Kind:        stratus.KindFunction,
		Name:        p.in.Name,
		Minute:      s.at,
		Requests:    int64(s.requests),
		Errors:      int64(s.errors),
		ColdStarts:  int64(math.Round(cold)),
		DurationMs:  s.durationMs,
		MaxDuration: s.maxDuration,
		BilledMs:    billed,
		InitMs:      initMs,
		CPUMs:       s.cpuMs,
		GBSeconds:   billed / 1000 * float64(p.sz.memoryMB) / 1024,
		VCPUSeconds: (s.durationMs + initMs) / 1000 * p.sz.vcpu,
		MemoryMB:    p.sz.memoryMB,
		VCPU:        p.sz.vcpu,
		Arch:        p.sz.arch,
	}
}

// functionCost is the month's figures of the busy minutes run as a
// function with cold[i] cold starts in minute i: the measured init where
// the cold starts are the measured ones, else the mean init each.
func (p *pricer) functionCost(cold []float64) figures {
	var sum stratus.UsageMinute
	for i, s := range p.w.busy {
		initMs := cold[i] * p.sz.initMs
		if cold[i] == s.coldStarts && s.initMs > 0 {
			initMs = s.initMs
		}
		addMinute(&sum, p.functionMinute(s, cold[i], initMs))
	}
	var f figures
	f.add(p.m.Minute(sum), p.scale)
	return f
}

// heldMinute is minute s served by replicas held the whole minute, each
// of vcpu vCPUs and the workload's memory.
func (p *pricer) heldMinute(s slot, replicas, vcpu float64) stratus.UsageMinute {
	return stratus.UsageMinute{
		Kind:        stratus.KindService,
		Name:        p.in.Name,
		Minute:      s.at,
		Requests:    int64(s.requests),
		Errors:      int64(s.errors),
		DurationMs:  s.durationMs,
		MaxDuration: s.maxDuration,
		CPUMs:       s.cpuMs,
		GBSeconds:   replicas * 60 * float64(p.sz.memoryMB) / 1024,
		VCPUSeconds: replicas * 60 * vcpu,
		MaxInFlight: int(s.maxInFlight),
		Replicas:    replicas,
		MemoryMB:    p.sz.memoryMB,
		VCPU:        vcpu,
		Arch:        p.sz.arch,
	}
}

// idleSlots is the number of the window's minutes without requests.
func (p *pricer) idleSlots() float64 {
	return float64(p.w.slots - len(p.w.busy))
}

// needs is each busy minute's function instances.
func (p *pricer) needs() []float64 {
	need := make([]float64, len(p.w.busy))
	for i, s := range p.w.busy {
		need[i] = instances(s)
	}
	return need
}

// measuredCold reports whether the workload's own cold starts are the
// function's: it already runs as one.
func (p *pricer) measuredCold() bool {
	return p.in.Kind == stratus.KindFunction
}

// function is option (a): scale to zero, paying per request. Its cold
// starts are the measured ones for a function, else the model's with no
// instance kept warm.
func (p *pricer) function() priced {
	cold := make([]float64, len(p.w.busy))
	var total float64
	if p.measuredCold() {
		for i, s := range p.w.busy {
			cold[i] = s.coldStarts
			total += s.coldStarts
		}
	} else {
		cold, total = coldStarts(p.w.busy, p.needs(), 0, p.sz.idle)
	}
	f := p.functionCost(cold)
	rate := ratio(total, float64(p.tr.Requests))
	o := v1.AdviceOption{
		Model:         v1.ModelFunction,
		Utilisation:   p.tr.CPUUtilisation,
		ColdStartRate: rate,
		P99Ms:         p99(p.tr.P99DurationMs, p.tr.MeanDurationMs, p.sz.initMs, rate),
		Note:          fmt.Sprintf("scales to zero; an idle instance is reaped after %s", p.sz.idle),
	}
	f.set(&o)
	return priced{option: o, month: f}
}

// initPenalty is the cold-start penalty weighed against warm instances
// when there is no latency budget: the month's cold starts' init time
// priced once more as function time, for the clients that waited for it.
func (p *pricer) initPenalty(cold float64) float64 {
	if cold <= 0 {
		return 0
	}
	billed := cold * p.sz.initMs
	u := p.m.Minute(stratus.UsageMinute{
		Kind:        stratus.KindFunction,
		Name:        p.in.Name,
		BilledMs:    billed,
		GBSeconds:   billed / 1000 * float64(p.sz.memoryMB) / 1024,
		VCPUSeconds: billed / 1000 * p.sz.vcpu,
		MemoryMB:    p.sz.memoryMB,
		VCPU:        p.sz.vcpu,
		Arch:        p.sz.arch,
	})
	return clean(u.CostUSD, math.MaxFloat64) * p.scale
}

// functionMin is option (b): N instances kept warm all month, holding
// their memory (priced as a held replica of that memory and no vCPU: an
// idle instance uses none), every request still paid as a function
// request. N runs from 1 to the most instances a minute needs (at most
// stratus.MaxMinInstances). With a latency budget it is the least N
// whose expected p99 keeps it (the largest if none does); without, the N
// that minimises cost plus initPenalty, against none kept warm (option
// (a)); when none wins, N = 1 is shown for comparison. There is no option
// (b) without traffic.
func (p *pricer) functionMin(fn priced) (priced, bool) {
	if len(p.w.busy) == 0 {
		return priced{}, false
	}
	var held figures
	held.add(p.m.Minute(p.heldMinute(slot{at: p.w.start.Truncate(time.Minute)}, 1, 0)), monthMinutes)

	need := p.needs()
	maxN := 1.0
	for _, k := range need {
		maxN = max(maxN, k)
	}
	maxN = min(maxN, stratus.MaxMinInstances)

	type trial struct {
		n, cold float64
		f       figures
	}
	try := func(n float64) trial {
		cold, total := coldStarts(p.w.busy, need, n, p.sz.idle)
		f := p.functionCost(cold)
		f.cost += n * held.cost
		f.energy += n * held.energy
		f.carbon += n * held.carbon
		return trial{n, total, f}
	}
	budget := p.in.LatencyBudgetMs
	var best trial
	bestScore := fn.month.cost + p.initPenalty(fn.option.ColdStartRate*float64(p.tr.Requests))
	for n := 1.0; n <= maxN; n++ {
		tr := try(n)
		if budget > 0 {
			rate := ratio(tr.cold, float64(p.tr.Requests))
			if p99(p.tr.P99DurationMs, p.tr.MeanDurationMs, p.sz.initMs, rate) <= budget || n == maxN {
				best = tr
				break
			}
			continue
		}
		if score := tr.f.cost + p.initPenalty(tr.cold); score < bestScore {
			best, bestScore = tr, score
		}
		if tr.cold == 0 {
			break
		}
	}
	note := fmt.Sprintf("%d %s kept warm all month, holding their memory", int(best.n), plural(int(best.n), "instance", "instances"))
	if best.n == 0 {
		best = try(1)
		note = "one instance kept warm, for comparison: keeping instances warm costs more than the cold starts it saves"
	}
	rate := ratio(best.cold, float64(p.tr.Requests))
	o := v1.AdviceOption{
		Model:         v1.ModelFunctionMin,
		MinInstances:  int(best.n),
		ColdStartRate: rate,
		P99Ms:         p99(p.tr.P99DurationMs, p.tr.MeanDurationMs, p.sz.initMs, rate),
		Note:          note,
	}
	busyMs := p.w.sums().durationMs
	o.Utilisation = p.tr.CPUUtilisation * ratio(busyMs, max(busyMs, best.n*float64(p.w.slots)*60000))
	if budget > 0 && o.P99Ms > budget {
		o.Note += fmt.Sprintf("; its p99 still exceeds the %.0f ms budget", budget)
	}
	best.f.set(&o)
	return priced{option: o, month: best.f}, true
}

// scaled is s with its requests, durations and CPU time times k.
func scaled(s slot, k float64) slot {
	if k == 1 {
		return s
	}
	s.requests *= k
	s.errors *= k
	s.coldStarts *= k
	s.durationMs *= k
	s.billedMs *= k
	s.initMs *= k
	s.cpuMs *= k
	s.maxInFlight = math.Ceil(s.maxInFlight * k)
	return s
}

// service is option (c) with the busy minutes' requests, durations and
// CPU time scaled by k: replicas of the workload's concurrency, as many
// as hold each minute's need (its concurrency and CPU time) at 70 % of a
// replica's, never fewer than the minimum that holds the window's mean
// need, at least one; priced as held capacity: the minimum in idle
// minutes, each busy minute's replicas in it. The busy minutes are
// metered as one (usage adds up), which keeps the break-even's bisection
// fast.
func (p *pricer) service(k float64) priced {
	var total float64
	for _, s := range p.w.busy {
		total += replicaNeed(scaled(s, k), p.sz.concurrency, p.sz.vcpu)
	}
	low := max(1, replicasFor(total/float64(p.w.slots)))
	peak, held := low, p.idleSlots()*low
	var sum stratus.UsageMinute
	for _, s := range p.w.busy {
		s = scaled(s, k)
		r := max(low, replicasFor(replicaNeed(s, p.sz.concurrency, p.sz.vcpu)))
		peak = max(peak, r)
		held += r
		addMinute(&sum, p.heldMinute(s, r, p.sz.vcpu))
	}
	var f figures
	f.add(p.m.Minute(sum), p.scale)
	idle := slot{at: p.w.start.Truncate(time.Minute)}
	f.add(p.m.Minute(p.heldMinute(idle, low, p.sz.vcpu)), p.idleSlots()*p.scale)

	o := v1.AdviceOption{
		Model:        v1.ModelService,
		MinInstances: int(low),
		Replicas:     int(peak),
		Concurrency:  p.sz.concurrency,
		Utilisation:  min(1, ratio(total, held)),
		P99Ms:        p.tr.P99DurationMs,
		Note: fmt.Sprintf("%d to %d replicas of %.3g vCPU and %d MB, %d requests each at most",
			int(low), int(peak), p.sz.vcpu, p.sz.memoryMB, p.sz.concurrency),
	}
	f.set(&o)
	return priced{option: o, month: f}
}

// lambda is reference (d): option (a) at AWS Lambda's list price. The
// meter prices functions at Lambda's list price, init included, so its
// figures are option (a)'s.
func (p *pricer) lambda(fn priced) v1.AdviceOption {
	o := fn.option
	o.Model = v1.ModelLambda
	o.Reference = true
	o.Note = fmt.Sprintf("AWS Lambda at list price (%s, prices of %s), init billed as duration", p.sz.arch, p.prices.AsOf)
	return o
}

// cloudRun is reference (d): option (c) at Cloud Run's list price,
// instance-based, or request-based (CPU allocated only while serving,
// scaling to zero) when that is cheaper. Request-based time is each busy
// minute's replicas times the share of the minute each has a request in
// flight (1 - e^-c for c requests in flight per replica).
func (p *pricer) cloudRun(svc priced, fn priced) v1.AdviceOption {
	inst := svc.option
	inst.Model = v1.ModelCloudRun
	inst.Reference = true

	var req figures
	var reqs, instSeconds float64
	pr := p.prices
	perSecond := p.sz.vcpu*pr.RunRequestVCPUSecond + float64(p.sz.memoryMB)/1024*pr.RunRequestGiBSecond
	for _, s := range p.w.busy {
		r := max(1, replicasFor(replicaNeed(s, p.sz.concurrency, p.sz.vcpu)))
		c := s.durationMs / 60000 / r
		secs := r * 60 * (1 - math.Exp(-c))
		instSeconds += secs
		reqs += s.requests
		u := p.m.Minute(p.heldMinute(s, secs/60, p.sz.vcpu))
		u.CostUSD = 0
		req.add(u, p.scale)
	}
	req.cost = (instSeconds*perSecond + reqs/1e6*pr.RunPerMillionReqs) * p.scale

	if req.cost < inst.CostUSD {
		o := fn.option
		o.Model = v1.ModelCloudRun
		o.Reference = true
		o.MinInstances = 0
		o.Replicas = inst.Replicas
		o.Concurrency = inst.Concurrency
		o.Utilisation = inst.Utilisation
		o.Note = fmt.Sprintf("Cloud Run at list price (prices of %s), request-based billing: scales to zero, CPU only while serving; instance-based would cost $%.2f",
			p.prices.AsOf, inst.CostUSD)
		req.set(&o)
		return o
	}
	inst.Note = fmt.Sprintf("Cloud Run at list price (prices of %s), instance-based billing; request-based would cost $%.2f",
		p.prices.AsOf, req.cost)
	return inst
}

// breakEven is the mean request rate at which option (a), costing fnCost
// at the window's rate, and option (c) cost the same, with the window's
// shape and durations: every minute's requests, durations and CPU time
// scaled by one factor, found by bisection. Option (a)'s cost is
// proportional to the factor. It is 0 when there is no traffic or the
// costs do not cross between 1e-3 and 1e5 requests a second.
func (p *pricer) breakEven(fnCost float64) float64 {
	rps := p.tr.MeanRPS
	if rps <= 0 || fnCost <= 0 {
		return 0
	}
	diff := func(x float64) float64 { // log10 of the rate
		k := math.Pow(10, x) / rps
		return fnCost*k - p.service(k).option.CostUSD
	}
	lo, hi := -3.0, 5.0
	dlo, dhi := diff(lo), diff(hi)
	if dlo == 0 {
		return math.Pow(10, lo)
	}
	if (dlo > 0) == (dhi > 0) {
		return 0
	}
	for range 30 { // 8 decades / 2^30: a relative error of 2e-8
		mid := (lo + hi) / 2
		if d := diff(mid); (d > 0) == (dlo > 0) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return clean(math.Pow(10, (lo+hi)/2), math.MaxFloat64)
}

// addMinute adds the usage fields of m to sum, taking m's kind, name
// and minute too.
func addMinute(sum *stratus.UsageMinute, m stratus.UsageMinute) {
	sum.Kind, sum.Name, sum.Minute = m.Kind, m.Name, m.Minute
	sum.Add(m)
}
