package main

import (
	"bytes"
	"context"
	"fmt"
	"github.com/stratus-run/stratus/bench/internal/benchkit"
	"io"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"
)

// target is one HTTP endpoint the load generator drives. Every target gets
// the same request: POST of the event {} as application/json.
type target struct {
	name string
	// kind is what the target is (kindDirect, …); for Stratus, sandbox,
	// path (/v1 or /fn) and function say which server, route and function.
	kind                    string
	sandbox, path, function string
	url                     string
	header                  http.Header // extra headers (the bearer token)
	// maxConc is the highest concurrency the target serves; 0 for no limit
	// (the emulator serves one invocation at a time).
	maxConc int
	// pids lists the processes serving the target, for CPU accounting.
	pids func() []int
}

// Kinds of targets.
const (
	kindDirect  = "direct"
	kindProxy   = "proxy"
	kindStratus = "stratus"
	kindRelay   = "relay"
	kindRIE     = "rie"
)

var event = []byte(`{}`)

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
		ForceAttemptHTTP2:   false,
	}
}

// outcome of one request.
type outcome struct {
	d    time.Duration
	ok   bool
	cold bool
}

// do sends one request and reads the whole answer, so the connection goes
// back to the pool.
func do(ctx context.Context, c *http.Client, t *target) outcome {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(event))
	if err != nil {
		return outcome{}
	}
	req.Header["Content-Type"] = []string{"application/json"}
	for k, v := range t.header {
		req.Header[k] = v
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return outcome{d: time.Since(start)}
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	return outcome{d: d, ok: err == nil && resp.StatusCode == http.StatusOK, cold: resp.Header.Get("X-Stratus-Cold-Start") == "true"}
}

// point is the result of one measurement at one concurrency.
type point struct {
	Conc     int
	Elapsed  time.Duration
	OK, Errs int
	Cold     int // answers marked as cold starts (Stratus only)
	RPS      float64
	P50, P99 time.Duration
	Mean     time.Duration
	// CPUPerReq is the CPU time the target's processes (and their
	// children) spent per answered request (user + system), 0 when
	// unknown; FrontCPUPerReq counts the first process alone (the Stratus
	// server without its instances, the proxy without its upstream).
	CPUPerReq      time.Duration
	FrontCPUPerReq time.Duration
	// Throttled is the number of CFS periods in which the quota held back
	// a cgroup of the target's processes, summed over them, per second of
	// the run (a runc sandbox's CPU share: 10 periods a second per
	// sandbox; 0 in the process driver).
	Throttled float64
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
	var front int
	var cgs []string
	var thr0 int64
	if t.pids != nil {
		pids := t.pids()
		front = pids[0]
		cpu0 = sampleCPU(pids)
		cgs = cpuCgroups(slices.Collect(maps.Keys(cpu0)))
		thr0 = throttledPeriods(cgs)
	}
	r, err := drive(ctx, c, t, conc, dur)
	if err != nil {
		return point{}, err
	}
	if t.pids != nil && r.OK > 0 {
		cpu1 := sampleCPU(t.pids())
		r.CPUPerReq = cpu1.since(cpu0) / time.Duration(r.OK)
		r.FrontCPUPerReq = (cpu1[front] - cpu0[front]) / time.Duration(r.OK)
		r.Throttled = float64(throttledPeriods(cgs)-thr0) / r.Elapsed.Seconds()
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
		cold     int
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
				o := do(ctx, c, t)
				if !o.ok {
					tl.errs++
					if tl.errs > 1000 && tl.ok == 0 {
						return // the target is down; don't spin
					}
					continue
				}
				tl.ok++
				if o.cold {
					tl.cold++
				}
				if len(tl.lat) < perWorker {
					tl.lat = append(tl.lat, o.d)
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
		r.Cold += tl.cold
		lat = append(lat, tl.lat...)
	}
	if r.OK == 0 {
		return r, fmt.Errorf("%s at concurrency %d: no request succeeded (%d errors)", t.name, conc, r.Errs)
	}
	r.RPS = float64(r.OK) / elapsed.Seconds()
	r.P50, r.P99, r.Mean = percentiles(lat)
	return r, nil
}

// Shared with the other benchmark programs.
var (
	percentiles = benchkit.Percentiles
	rank        = benchkit.Rank
)
