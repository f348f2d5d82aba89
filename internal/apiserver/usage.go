package apiserver

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/advice"
	"github.com/stratus-run/stratus/internal/meter"
	"github.com/stratus-run/stratus/internal/store"
)

// Defaults of the usage and advice windows.
const (
	defaultUsageWindow  = "24h"
	defaultAdviceWindow = "7d"
)

// usageRoutes serves GET /v1/usage and GET /v1/advice[/NAME]: the usage
// minutes in the store, priced and metered by m.
type usageRoutes struct {
	s      *Server
	m      *meter.Meter
	region string
	svcs   serviceManager // nil without services
	now    func() time.Time
}

// routeUsage registers the usage and advice routes on mux; a nil m leaves
// them out.
func (s *Server) routeUsage(mux *http.ServeMux, m *meter.Meter, region string, svcs serviceManager, now func() time.Time) {
	if m == nil {
		return
	}
	u := &usageRoutes{s: s, m: m, region: region, svcs: svcs, now: now}
	auth := s.requireToken
	mux.Handle("GET /v1/usage", auth(http.HandlerFunc(u.usage)))
	mux.Handle("GET /v1/advice", auth(http.HandlerFunc(u.adviceAll)))
	mux.Handle("GET /v1/advice/{name}", auth(http.HandlerFunc(u.advice)))
}

// window parses the window in query parameter key of r (def if absent)
// with stratus.ParseWindow.
func window(r *http.Request, key, def string) (time.Duration, error) {
	w := r.URL.Query().Get(key)
	if w == "" {
		w = def
	}
	d, err := stratus.ParseWindow(w)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", key, err)
	}
	return d, nil
}

// usage answers v1.UsageReport: the usage minutes of [now−since, now)
// priced and summed by function, service or UTC day, or the lives of
// services' replicas that overlap it, one row each.
func (u *usageRoutes) usage(w http.ResponseWriter, r *http.Request) {
	since, err := window(r, "since", defaultUsageWindow)
	if err != nil {
		u.s.answer.Error(w, r, err)
		return
	}
	by := cmp.Or(r.URL.Query().Get("by"), v1.ByFunction)
	q := store.UsageQuery{}
	switch by {
	case v1.ByFunction:
		q.Kind = stratus.KindFunction
	case v1.ByService:
		q.Kind = stratus.KindService
	case v1.ByReplica, v1.ByDay:
	default:
		u.s.answer.Error(w, r, fmt.Errorf("by %q: want %s, %s, %s or %s: %w",
			by, v1.ByFunction, v1.ByService, v1.ByReplica, v1.ByDay, stratus.ErrInvalid))
		return
	}
	now := u.now()
	q.Since, q.Until = now.Add(-since), now
	// Read your writes: the minutes and lives of what finished before
	// this request.
	if u.s.logs != nil {
		_ = u.s.logs.Sync(r.Context())
	}
	var rep v1.UsageReport
	if by == v1.ByReplica {
		lives, err := u.s.st.ReplicaUsages(r.Context(), "", q.Since, q.Until)
		if err != nil {
			u.s.answer.Error(w, r, err)
			return
		}
		rep = replicaReport(u.m, lives)
	} else {
		minutes, err := u.s.st.UsageMinutes(r.Context(), q)
		if err != nil {
			u.s.answer.Error(w, r, err)
			return
		}
		rep = usageReport(u.m, by, minutes)
	}
	rep.Since, rep.Until = q.Since, q.Until
	rep.Region, rep.GridIntensity, rep.PricesAsOf = u.region, u.m.Intensity(), u.m.Table().Prices.AsOf
	u.s.answer.JSON(w, r, http.StatusOK, rep)
}

// usageReport prices minutes with m and sums them by (by) workload name
// or UTC day: workloads' rows by cost, most first, then by name; days'
// rows by date.
func usageReport(m *meter.Meter, by string, minutes []stratus.UsageMinute) v1.UsageReport {
	rep := v1.UsageReport{By: by, Rows: []v1.UsageRow{}}
	index := make(map[string]int)
	for _, mn := range minutes {
		key, kind := mn.Name, mn.Kind
		if by == v1.ByDay {
			key, kind = mn.Minute.UTC().Format(time.DateOnly), ""
		}
		i, ok := index[key]
		if !ok {
			i = len(rep.Rows)
			index[key] = i
			rep.Rows = append(rep.Rows, v1.UsageRow{Key: key, Kind: kind})
		}
		use := m.Minute(mn)
		rep.Rows[i].Add(use)
		rep.Total.Add(use)
	}
	slices.SortFunc(rep.Rows, func(a, b v1.UsageRow) int {
		if by == v1.ByDay {
			return strings.Compare(a.Key, b.Key)
		}
		return cmp.Or(cmp.Compare(b.CostUSD, a.CostUSD), strings.Compare(a.Key, b.Key))
	})
	return rep
}

// replicaReport prices each of lives with m, one row a life in the
// store's order (by service, start and replica). A life's figures are
// whole, not cut at the window's edges: a replica that started before
// the window, or runs on after it, counts its whole life (so far), as
// the store keeps one figure a life and not its minutes.
func replicaReport(m *meter.Meter, lives []stratus.ReplicaUsage) v1.UsageReport {
	rep := v1.UsageReport{By: v1.ByReplica, Rows: make([]v1.UsageRow, 0, len(lives))}
	for _, l := range lives {
		use := m.Replica(l)
		rep.Rows = append(rep.Rows, v1.UsageRow{
			Key: l.Replica, Kind: stratus.KindService, Service: l.Service, Revision: l.Revision,
			Start: l.Start, End: l.End, Usage: use,
		})
		rep.Total.Add(use)
	}
	return rep
}

// workload is a deployed function or service and what advice needs of
// its configuration.
type workload struct {
	kind, name  string
	memoryMB    int
	vcpu        float64
	concurrency int
	idle        time.Duration
}

// lookup is the deployed function or service name, or ErrNotFound.
func (u *usageRoutes) lookup(name string) (workload, error) {
	if u.s.fns != nil {
		if v, ok := u.s.fns.Head(name); ok {
			return functionWorkload(v), nil
		}
	}
	if u.svcs != nil {
		if sv, _, err := u.svcs.Get(name); err == nil {
			return serviceWorkload(sv), nil
		}
	}
	return workload{}, fmt.Errorf("function or service %q: %w", name, stratus.ErrNotFound)
}

func functionWorkload(v *stratus.Version) workload {
	return workload{
		kind: stratus.KindFunction, name: v.Function, memoryMB: v.Config.MemoryMB,
		vcpu: float64(v.Config.MemoryMB) / meter.LambdaMBPerVCPU, idle: time.Duration(v.Config.IdleTimeout),
	}
}

func serviceWorkload(sv stratus.Service) workload {
	return workload{
		kind: stratus.KindService, name: sv.Name, memoryMB: sv.Config.MemoryMB,
		vcpu: sv.Config.CPU, concurrency: sv.Config.Concurrency,
	}
}

// adviceQuery is what an advice request asks: its window and latency
// budget.
type adviceQuery struct {
	window time.Duration
	budget time.Duration
}

func parseAdviceQuery(r *http.Request) (adviceQuery, error) {
	var q adviceQuery
	var err error
	if q.window, err = window(r, "window", defaultAdviceWindow); err != nil {
		return q, err
	}
	if b := r.URL.Query().Get("latency-budget"); b != "" {
		q.budget, err = time.ParseDuration(b)
		if err != nil || q.budget < 0 {
			return q, fmt.Errorf("latency-budget %q: want a duration of 0 or more, such as 800ms: %w", b, stratus.ErrInvalid)
		}
	}
	return q, nil
}

// advice answers v1.Advice for one deployed function or service.
func (u *usageRoutes) advice(w http.ResponseWriter, r *http.Request) {
	q, err := parseAdviceQuery(r)
	if err != nil {
		u.s.answer.Error(w, r, err)
		return
	}
	wl, err := u.lookup(r.PathValue("name"))
	if err != nil {
		u.s.answer.Error(w, r, err)
		return
	}
	now := u.now()
	start := now.Add(-q.window)
	if u.s.logs != nil {
		_ = u.s.logs.Sync(r.Context())
	}
	minutes, err := u.s.st.UsageMinutes(r.Context(), store.UsageQuery{Kind: wl.kind, Name: wl.name, Since: start, Until: now})
	if err != nil {
		u.s.answer.Error(w, r, err)
		return
	}
	a, err := u.advise(r.Context(), wl, minutes, start, now, q.budget)
	if err != nil {
		u.s.answer.Error(w, r, err)
		return
	}
	u.s.answer.JSON(w, r, http.StatusOK, a)
}

// adviceAll answers v1.AdviceList: advice for every deployed function and
// service, the largest saving first, then by name.
func (u *usageRoutes) adviceAll(w http.ResponseWriter, r *http.Request) {
	q, err := parseAdviceQuery(r)
	if err != nil {
		u.s.answer.Error(w, r, err)
		return
	}
	var wls []workload
	if u.s.fns != nil {
		fns, err := u.s.fns.List(r.Context())
		if err != nil {
			u.s.answer.Error(w, r, err)
			return
		}
		for i := range fns {
			if v, ok := u.s.fns.Head(fns[i].Name); ok {
				wls = append(wls, functionWorkload(v))
			}
		}
	}
	if u.svcs != nil {
		svcs, _ := u.svcs.List() // List cannot fail: its second value is the statuses, not needed here
		for _, sv := range svcs {
			wls = append(wls, serviceWorkload(sv))
		}
	}
	now := u.now()
	start := now.Add(-q.window)
	if u.s.logs != nil {
		_ = u.s.logs.Sync(r.Context())
	}
	minutes, err := u.s.st.UsageMinutes(r.Context(), store.UsageQuery{Since: start, Until: now})
	if err != nil {
		u.s.answer.Error(w, r, err)
		return
	}
	byWorkload := make(map[[2]string][]stratus.UsageMinute)
	for _, m := range minutes {
		k := [2]string{m.Kind, m.Name}
		byWorkload[k] = append(byWorkload[k], m)
	}
	out := v1.AdviceList{Advice: make([]v1.Advice, 0, len(wls))}
	for _, wl := range wls {
		a, err := u.advise(r.Context(), wl, byWorkload[[2]string{wl.kind, wl.name}], start, now, q.budget)
		if err != nil {
			u.s.answer.Error(w, r, err)
			return
		}
		out.Advice = append(out.Advice, a)
	}
	slices.SortFunc(out.Advice, func(a, b v1.Advice) int {
		return cmp.Or(cmp.Compare(b.SavingUSD, a.SavingUSD), strings.Compare(a.Name, b.Name), strings.Compare(a.Kind, b.Kind))
	})
	u.s.answer.JSON(w, r, http.StatusOK, out)
}

// advise is the advice for wl from its minutes of [start, end) and, for a
// function, the p99 of the durations of its newest records (at most
// store.MaxInvocationLimit) that started in it.
func (u *usageRoutes) advise(ctx context.Context, wl workload, minutes []stratus.UsageMinute, start, end time.Time, budget time.Duration) (v1.Advice, error) {
	in := advice.FromMinutes(wl.kind, wl.name, minutes, start, end)
	if wl.memoryMB > 0 {
		in.MemoryMB = wl.memoryMB
	}
	if wl.vcpu > 0 {
		in.VCPU = wl.vcpu
	}
	in.Concurrency = wl.concurrency
	in.IdleTimeout = wl.idle
	in.LatencyBudgetMs = float64(budget) / float64(time.Millisecond)
	// A function's p99 is of its newest records that started in the
	// window, at most store.MaxInvocationLimit of them: the answer's
	// Traffic.P99Sample says how many.
	var sample int
	if wl.kind == stratus.KindFunction {
		recs, err := u.s.st.ListInvocations(ctx, wl.name, store.InvocationQuery{Since: start, Limit: store.MaxInvocationLimit})
		if err != nil {
			return v1.Advice{}, fmt.Errorf("advise %q: %w", wl.name, err)
		}
		in.P99DurationMs, sample = p99(recs, end)
	}
	a := advice.Advise(in, u.m.Table(), u.region)
	a.Traffic.P99Sample = sample
	return a, nil
}

// p99 is the 99th percentile (nearest rank) of the durations of the
// records that started before end, and how many there were; 0, 0 without
// any, or when every one lasted 0 ms (advice then estimates the p99 from
// the minutes).
func p99(recs []stratus.Invocation, end time.Time) (ms float64, n int) {
	ds := make([]float64, 0, len(recs))
	for _, r := range recs {
		if r.Start.Before(end) {
			ds = append(ds, r.DurationMs)
		}
	}
	if len(ds) == 0 {
		return 0, 0
	}
	slices.Sort(ds)
	ms = ds[int(math.Ceil(0.99*float64(len(ds))))-1]
	if ms <= 0 {
		return 0, 0
	}
	return ms, len(ds)
}

// records are recs with their usage as m computes it (none if m is nil).
func records(m *meter.Meter, recs []stratus.Invocation) []v1.InvocationRecord {
	out := make([]v1.InvocationRecord, len(recs))
	for i, r := range recs {
		out[i].Invocation = r
		if m != nil {
			out[i].Usage = m.Invocation(r)
		}
	}
	return out
}
