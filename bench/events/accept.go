package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	v1 "github.com/stratus-run/stratus/api/v1"
)

// acceptResult is one run of async invokes at a fixed concurrency.
type acceptResult struct {
	Rate        float64       // 202s per second
	Accepted    int64         // 202s
	Failed      int64         // other answers or transport errors
	P50, P99    time.Duration // of one 202's round trip
	ServerCPUus float64       // server CPU (user+system) per 202, µs
	ClientCPUus float64       // this process's CPU per 202, µs
	FirstErr    string
}

// acceptRun has conc clients POST event as an async invoke of fn, back to
// back, for warmup (unmeasured) and then d.
func acceptRun(ctx context.Context, s *server, fn string, event []byte, conc int, warmup, d time.Duration) acceptResult {
	return postRun(ctx, s.hc, s.base+"/v1/functions/"+fn+"/invoke", event, conc, warmup, d, s.pid())
}

// postRun has conc clients POST event to url as async invokes, back to
// back, for warmup (unmeasured) and then d, and counts the 202s. The
// server's CPU is that of process pid; the client's that of this process.
func postRun(ctx context.Context, hc *http.Client, url string, event []byte, conc int, warmup, d time.Duration, pid int) acceptResult {
	type worker struct {
		ok, bad int64
		lat     []time.Duration
		err     string
	}
	ws := make([]worker, conc)
	var wg sync.WaitGroup
	begin := time.Now()
	measureFrom := begin.Add(warmup)
	end := measureFrom.Add(d)
	var cpu0, self0 time.Duration
	self := os.Getpid()
	cpuOnce := sync.OnceFunc(func() { cpu0, self0 = procCPU(pid), procCPU(self) })
	for i := range ws {
		w := &ws[i]
		wg.Go(func() {
			for {
				t0 := time.Now()
				if !t0.Before(end) || ctx.Err() != nil {
					return
				}
				measured := !t0.Before(measureFrom)
				if measured {
					cpuOnce()
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(event))
				req.Header.Set("Authorization", "Bearer "+benchToken)
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set(v1.HeaderInvocationType, v1.InvocationEvent)
				resp, err := hc.Do(req)
				code := 0
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				if !measured {
					continue
				}
				if code == http.StatusAccepted {
					w.ok++
					w.lat = append(w.lat, time.Since(t0))
				} else {
					w.bad++
					if w.err == "" {
						w.err = fmt.Sprintf("status %d err %v", code, err)
					}
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(measureFrom)
	cpu, selfCPU := procCPU(pid)-cpu0, procCPU(self)-self0
	var r acceptResult
	var lat []time.Duration
	for _, w := range ws {
		r.Accepted += w.ok
		r.Failed += w.bad
		lat = append(lat, w.lat...)
		if r.FirstErr == "" {
			r.FirstErr = w.err
		}
	}
	r.Rate = float64(r.Accepted) / el.Seconds()
	r.P50, r.P99 = pct(lat, 50), pct(lat, 99)
	if r.Accepted > 0 {
		r.ServerCPUus = float64(cpu.Microseconds()) / float64(r.Accepted)
		r.ClientCPUus = float64(selfCPU.Microseconds()) / float64(r.Accepted)
	}
	return r
}

// pct is the p-th percentile of ds (nearest rank); it sorts ds.
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(float64(len(ds))*p/100+0.5) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

// paddedEvent is a JSON object of exactly size bytes: fields, then a
// "pad" string filling the rest.
func paddedEvent(fields string, size int) []byte {
	head := `{` + fields + `,"pad":"`
	n := size - len(head) - len(`"}`)
	return []byte(head + string(bytes.Repeat([]byte("x"), max(n, 0))) + `"}`)
}
