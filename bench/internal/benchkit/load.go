package benchkit

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	v1 "github.com/stratus-run/stratus/api/v1"
)

// Target is one HTTP endpoint the load generator drives: a POST of Body
// as application/json when Body is not nil, else a GET.
type Target struct {
	Name string
	URL  string
	// URLs, when not empty, are the endpoints the requests go to in turn,
	// instead of URL: worker w sends its n-th request to
	// URLs[(w+n)%len(URLs)], so that the requests spread evenly at any
	// concurrency (one server of several, each its own keep-alive
	// connections).
	URLs   []string
	Header http.Header // extra headers (the bearer token)
	Body   []byte
	// MaxConc is the highest concurrency the target serves (the
	// emulator: 1); 0 for no limit.
	MaxConc int
}

// maxSamples bounds the latencies one measurement keeps.
const maxSamples = 2_000_000

// NewTransport is the client side of every measurement: keep-alive, an
// idle pool larger than any concurrency used, no compression.
func NewTransport() *http.Transport {
	return &http.Transport{
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 4096,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}

// Run is the result of driving a target at one concurrency.
type Run struct {
	Conc     int
	Elapsed  time.Duration
	OK, Errs int
	Cold     int // answers marked X-Stratus-Cold-Start: true
	RPS      float64
	P50, P99 time.Duration
	Mean     time.Duration
	// LoadAvg is the machine's 1-minute load average after the run (the
	// highest of the rounds, in a median run).
	LoadAvg float64
}

// Concurrency is r.Conc (see At).
func (r Run) Concurrency() int { return r.Conc }

// outcome of one request.
type outcome struct {
	d        time.Duration
	ok, cold bool
}

// URLFor is the URL of t's i-th request: URLs[i%len(URLs)], else URL.
func (t *Target) URLFor(i int) string {
	if len(t.URLs) == 0 {
		return t.URL
	}
	return t.URLs[i%len(t.URLs)]
}

// do sends t's request once to url and reads the whole answer, so the
// connection goes back to the pool.
func do(ctx context.Context, c *http.Client, t *Target, url string) outcome {
	method, body := http.MethodGet, io.Reader(nil)
	if t.Body != nil {
		method, body = http.MethodPost, bytes.NewReader(t.Body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return outcome{}
	}
	if t.Body != nil {
		req.Header["Content-Type"] = []string{"application/json"}
	}
	for k, v := range t.Header {
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
	return outcome{d: d, ok: err == nil && resp.StatusCode == http.StatusOK, cold: resp.Header.Get(v1.HeaderColdStart) == "true"}
}

// Drive runs conc workers sharing c, each sending t's request back to
// back for dur, and summarises what they saw. It fails when no request
// succeeded.
func Drive(ctx context.Context, c *http.Client, t *Target, conc int, dur time.Duration) (Run, error) {
	ctx, cancel := context.WithTimeout(ctx, dur+30*time.Second)
	defer cancel()
	deadline := time.Now().Add(dur)
	perWorker := maxSamples / conc
	type tally struct {
		lat            []time.Duration
		ok, errs, cold int
	}
	tallies := make([]tally, conc)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range conc {
		wg.Go(func() {
			tl := &tallies[i]
			tl.lat = make([]time.Duration, 0, 4096)
			for n := i; time.Now().Before(deadline) && ctx.Err() == nil; n++ {
				o := do(ctx, c, t, t.URLFor(n))
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
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	r := Run{Conc: conc, Elapsed: elapsed}
	var lat []time.Duration
	for _, tl := range tallies {
		r.OK += tl.ok
		r.Errs += tl.errs
		r.Cold += tl.cold
		lat = append(lat, tl.lat...)
	}
	if r.OK == 0 {
		return r, fmt.Errorf("%s at concurrency %d: no request succeeded (%d errors)", t.Name, conc, r.Errs)
	}
	r.RPS = float64(r.OK) / elapsed.Seconds()
	r.P50, r.P99, r.Mean = Percentiles(lat)
	return r, nil
}

// Measure drives t with conc goroutines sharing one keep-alive Transport:
// warmup first (not counted: it opens the connections), then dur,
// counted. With conc 1 it is the one-connection latency measurement.
// around, when not nil, is called just before the counted part, and the
// func it returns just after it, with its Run: it samples what the
// caller accounts (CPU time of the target's processes).
func Measure(ctx context.Context, t *Target, conc int, warmup, dur time.Duration, around func() func(Run)) (Run, error) {
	tr := NewTransport()
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	if warmup > 0 {
		if _, err := Drive(ctx, c, t, conc, warmup); err != nil {
			return Run{}, err
		}
	}
	after := func(Run) {}
	if around != nil {
		after = around()
	}
	r, err := Drive(ctx, c, t, conc, dur)
	if err != nil {
		return Run{}, err
	}
	after(r)
	r.LoadAvg = LoadAvg()
	return r, nil
}

// MedianRun is the median of each figure of the rounds rs (of one target
// at one concurrency); counts and elapsed times are summed, LoadAvg is the
// highest.
func MedianRun(rs []Run) Run {
	out := Run{Conc: rs[0].Conc}
	for _, r := range rs {
		out.OK += r.OK
		out.Errs += r.Errs
		out.Cold += r.Cold
		out.Elapsed += r.Elapsed
		out.LoadAvg = max(out.LoadAvg, r.LoadAvg)
	}
	out.RPS = MedianOf(rs, func(r Run) float64 { return r.RPS })
	out.P50 = MedianOf(rs, func(r Run) time.Duration { return r.P50 })
	out.P99 = MedianOf(rs, func(r Run) time.Duration { return r.P99 })
	out.Mean = MedianOf(rs, func(r Run) time.Duration { return r.Mean })
	return out
}

// At is the run of runs at concurrency conc, nil if there is none.
func At[R interface{ Concurrency() int }](runs []R, conc int) *R {
	for i := range runs {
		if runs[i].Concurrency() == conc {
			return &runs[i]
		}
	}
	return nil
}

// Interleave calls measure rounds times for every concurrency of concs
// and every target (but at concurrencies above its MaxConc), in that
// nesting, so that each ratio compares figures taken seconds apart;
// measure gets the index of the target in targets. It returns, for each
// target (by index) and concurrency, the results in round order.
func Interleave[P any](ctx context.Context, rounds int, concs []int, targets []*Target, measure func(round, conc, target int) (P, error)) ([]map[int][]P, error) {
	out := make([]map[int][]P, len(targets))
	for i := range out {
		out[i] = map[int][]P{}
	}
	for round := range rounds {
		for _, c := range concs {
			for i, t := range targets {
				if t.MaxConc > 0 && c > t.MaxConc {
					continue
				}
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				p, err := measure(round, c, i)
				if err != nil {
					return nil, err
				}
				out[i][c] = append(out[i][c], p)
			}
		}
	}
	return out, nil
}
