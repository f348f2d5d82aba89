package advice

import (
	"fmt"
	"math"

	v1 "github.com/stratus-run/stratus/api/v1"
)

// reason is one sentence with the numbers that decided rec among opts:
// how busy the workload is, cold-start exposure against the budget (or,
// when warm instances win on cost, the billed init they save), and cost
// and carbon against the runner-up model.
func reason(tr v1.Traffic, budget float64, opts []v1.AdviceOption, rec v1.AdviceOption) string {
	fn := find(opts, v1.ModelFunction)
	svc := find(opts, v1.ModelService)
	if tr.Requests == 0 {
		return fmt.Sprintf("no traffic in the window: a function that scales to zero costs nothing while idle, against %s a month for %s held by a service",
			usd(svc.CostUSD), replicas(svc.MinInstances))
	}
	busy := fmt.Sprintf("busy %s of minutes at %s req/s", percent(tr.ActiveShare), num(tr.MeanRPS))
	if budget > 0 && rec.P99Ms > budget {
		return fmt.Sprintf("%s, no option keeps the p99 within the %s budget: %s comes closest at %s for %s a month",
			busy, ms(budget), name(rec), ms(rec.P99Ms), usd(rec.CostUSD))
	}
	switch rec.Model {
	case v1.ModelService:
		return fmt.Sprintf("%s: %s cost %s a month against %s as a function (%s against %s CO2e)",
			busy, replicaRange(rec.MinInstances, rec.Replicas), usd(rec.CostUSD), usd(fn.CostUSD), grams(rec.CarbonG), grams(fn.CarbonG))
	case v1.ModelFunctionMin:
		n := rec.MinInstances
		if budget <= 0 || fn.P99Ms <= budget {
			// Chosen on cost alone (the function keeps the budget, if
			// any): the init its cold starts bill is more than the
			// memory the warm instances hold.
			return fmt.Sprintf("%s, cold starts on %s of requests as a function, each billing its init: %d warm %s %s %s a month of billed init, net of the memory %s: %s a month against %s as a function (%s against %s CO2e)",
				busy, percent(fn.ColdStartRate), n, plural(n, "instance", "instances"), plural(n, "saves", "save"),
				usd(fn.CostUSD-rec.CostUSD), plural(n, "it holds", "they hold"), usd(rec.CostUSD), usd(fn.CostUSD), grams(rec.CarbonG), grams(fn.CarbonG))
		}
		return fmt.Sprintf("%s, cold starts on %s of requests put a function's p99 at %s, over the %s budget: %d warm %s %s it at %s for %s a month against %s as a service (%s against %s CO2e)",
			busy, percent(fn.ColdStartRate), ms(fn.P99Ms), ms(budget), n, plural(n, "instance", "instances"), plural(n, "keeps", "keep"),
			ms(rec.P99Ms), usd(rec.CostUSD), usd(svc.CostUSD), grams(rec.CarbonG), grams(svc.CarbonG))
	default:
		return fmt.Sprintf("%s: as a function it costs %s a month against %s for %s held by a service (%s against %s CO2e)",
			busy, usd(rec.CostUSD), usd(svc.CostUSD), replicas(svc.MinInstances), grams(rec.CarbonG), grams(svc.CarbonG))
	}
}

func name(o v1.AdviceOption) string {
	switch o.Model {
	case v1.ModelFunction:
		return "a function"
	case v1.ModelFunctionMin:
		return fmt.Sprintf("a function with %d warm %s", o.MinInstances, plural(o.MinInstances, "instance", "instances"))
	case v1.ModelService:
		return "a service"
	}
	return o.Model
}

func replicas(n int) string {
	return fmt.Sprintf("%d %s", n, plural(n, "replica", "replicas"))
}

// replicaRange is "3 replicas" or "2 to 5 replicas".
func replicaRange(low, high int) string {
	if low >= high {
		return replicas(high)
	}
	return fmt.Sprintf("%d to %d replicas", low, high)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// usd is a monthly amount: cents below $100, whole dollars above.
func usd(v float64) string {
	if v < 100 {
		return fmt.Sprintf("$%.2f", v)
	}
	return fmt.Sprintf("$%.0f", v)
}

// percent is a share as a percentage with the precision it needs.
func percent(share float64) string {
	p := share * 100
	switch {
	case p == 0 || p >= 10:
		return fmt.Sprintf("%.0f %%", p)
	case p >= 1:
		return fmt.Sprintf("%.1f %%", p)
	}
	return fmt.Sprintf("%.2g %%", p)
}

// num is a rate with three significant digits, without an exponent
// below a million.
func num(v float64) string {
	if v >= 100 && v < 1e6 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.3g", v)
}

func ms(v float64) string {
	if v >= 10000 {
		return fmt.Sprintf("%.1f s", v/1000)
	}
	return fmt.Sprintf("%.0f ms", math.Round(v))
}

// grams is a carbon mass in g or kg.
func grams(g float64) string {
	if g >= 1000 {
		return fmt.Sprintf("%.1f kg", g/1000)
	}
	return fmt.Sprintf("%.0f g", g)
}
