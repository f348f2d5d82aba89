package main

import (
	"context"
	"fmt"
	"github.com/stratus-run/stratus/bench/internal/benchkit"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// target is one HTTP endpoint the load generator drives with GET.
type target struct {
	name   string
	url    string
	header http.Header // extra headers (the bearer token)
	// cpu samples the CPU time used so far by the processes the
	// measurement accounts for; nil for none.
	cpu func() cpuSample
}

// cpuSample is CPU time used so far (user + system): by the Stratus
// server process, the bare proxy process, and the replicas' containers
// (their cgroups).
type cpuSample struct {
	Server, Proxy, Replicas time.Duration
}

// maxSamples bounds the latencies one measurement keeps.
const maxSamples = 2_000_000

// newTransport is the client side of every measurement: keep-alive, an
// idle pool larger than any concurrency used, no compression.
func newTransport() *http.Transport {
	return &http.Transport{
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 4096,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}

// do sends one GET and reads the whole answer, so the connection goes
// back to the pool.
func do(ctx context.Context, c *http.Client, t *target) (time.Duration, bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
	if err != nil {
		return 0, false
	}
	for k, v := range t.header {
		req.Header[k] = v
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return time.Since(start), false
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return time.Since(start), err == nil && resp.StatusCode == http.StatusOK
}

// point is the result of one measurement at one concurrency.
type point struct {
	Conc     int
	Elapsed  time.Duration
	OK, Errs int
	RPS      float64
	P50, P99 time.Duration
	Mean     time.Duration
	// CPU time per answered request of the server, the bare proxy and
	// the replicas' containers (0 when not sampled).
	ServerCPU, ProxyCPU, ReplicaCPU time.Duration
	// LoadAvg is the machine's 1-minute load average after the run.
	LoadAvg float64
}

// measure drives t with conc goroutines sharing one keep-alive Transport:
// warmup first (not counted, it opens the connections), then dur counted.
// With conc 1 it is the one-connection latency measurement.
func measure(ctx context.Context, t *target, conc int, warmup, dur time.Duration) (point, error) {
	tr := newTransport()
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	if warmup > 0 {
		if _, err := drive(ctx, c, t, conc, warmup); err != nil {
			return point{}, err
		}
	}
	var cpu0 cpuSample
	if t.cpu != nil {
		cpu0 = t.cpu()
	}
	r, err := drive(ctx, c, t, conc, dur)
	if err != nil {
		return point{}, err
	}
	if t.cpu != nil && r.OK > 0 {
		cpu1 := t.cpu()
		n := time.Duration(r.OK)
		r.ServerCPU = (cpu1.Server - cpu0.Server) / n
		r.ProxyCPU = (cpu1.Proxy - cpu0.Proxy) / n
		r.ReplicaCPU = (cpu1.Replicas - cpu0.Replicas) / n
	}
	r.LoadAvg = loadAvg()
	return r, nil
}

// drive runs conc workers for dur and summarises what they saw.
func drive(ctx context.Context, c *http.Client, t *target, conc int, dur time.Duration) (point, error) {
	ctx, cancel := context.WithTimeout(ctx, dur+30*time.Second)
	defer cancel()
	deadline := time.Now().Add(dur)
	perWorker := maxSamples / conc
	type tally struct {
		lat      []time.Duration
		ok, errs int
	}
	tallies := make([]tally, conc)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tl := &tallies[i]
			tl.lat = make([]time.Duration, 0, 4096)
			for time.Now().Before(deadline) && ctx.Err() == nil {
				d, ok := do(ctx, c, t)
				if !ok {
					tl.errs++
					if tl.errs > 1000 && tl.ok == 0 {
						return // the target is down; don't spin
					}
					continue
				}
				tl.ok++
				if len(tl.lat) < perWorker {
					tl.lat = append(tl.lat, d)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	r := point{Conc: conc, Elapsed: elapsed}
	var lat []time.Duration
	for _, tl := range tallies {
		r.OK += tl.ok
		r.Errs += tl.errs
		lat = append(lat, tl.lat...)
	}
	if r.OK == 0 {
		return r, fmt.Errorf("%s at concurrency %d: no request succeeded (%d errors)", t.name, conc, r.Errs)
	}
	r.RPS = float64(r.OK) / elapsed.Seconds()
	r.P50, r.P99, r.Mean = percentiles(lat)
	return r, nil
}

// median of v (sorted in place); the lower middle for an even count.
func median(v []time.Duration) time.Duration {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[(len(v)-1)/2]
}

// medianRun takes the median of each figure over rounds; counts are summed.
func medianRun(rs []point) point {
	out := point{Conc: rs[0].Conc}
	med := func(f func(point) time.Duration) time.Duration {
		v := make([]time.Duration, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		return median(v)
	}
	rps := make([]float64, len(rs))
	for i, r := range rs {
		out.OK += r.OK
		out.Errs += r.Errs
		out.Elapsed += r.Elapsed
		rps[i] = r.RPS
		out.LoadAvg = max(out.LoadAvg, r.LoadAvg)
	}
	slices.Sort(rps)
	out.RPS = rps[(len(rps)-1)/2]
	out.P50 = med(func(r point) time.Duration { return r.P50 })
	out.P99 = med(func(r point) time.Duration { return r.P99 })
	out.Mean = med(func(r point) time.Duration { return r.Mean })
	out.ServerCPU = med(func(r point) time.Duration { return r.ServerCPU })
	out.ProxyCPU = med(func(r point) time.Duration { return r.ProxyCPU })
	out.ReplicaCPU = med(func(r point) time.Duration { return r.ReplicaCPU })
	return out
}

// Shared with the other benchmark programs.
var (
	percentiles = benchkit.Percentiles
	rank        = benchkit.Rank
)
