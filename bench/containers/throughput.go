package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
)

// throughputResult holds each target's runs, one per concurrency (the
// median of the rounds).
type throughputResult struct {
	Replica  string // the replica's address that direct and the bare proxy hit
	MemoryMB int
	CPU      float64
	Targets  []targetResult
}

type targetResult struct {
	Name string
	Runs []point
}

func (t *targetResult) at(conc int) *point {
	for i := range t.Runs {
		if t.Runs[i].Conc == conc {
			return &t.Runs[i]
		}
	}
	return nil
}

// Names of the throughput targets.
const (
	tDirect  = "direct: the replica at its address"
	tBare    = "bare proxy (httputil) → the replica"
	tGateway = "stratus /svc/NAME/ (--concurrency 0: no limit)"
	tGate80  = "stratus /svc/NAME/ (--concurrency 80)"
)

func clientOf(tr http.RoundTripper) *http.Client { return &http.Client{Transport: tr} }

func authHeader() http.Header { return http.Header{"Authorization": {"Bearer " + benchToken}} }

// throughput deploys gosvc twice (--min 1 --max 1, concurrency 0 and
// 80) and drives, interleaved round by round: the replica of the first
// directly, a bare reverse proxy (its own process) in front of that
// replica, and both services through the gateway.
func throughput(ctx context.Context, o options, w *work, s *stratusServer) (*throughputResult, error) {
	res := &throughputResult{MemoryMB: o.tpMemory, CPU: o.tpCPU}
	base := stratus.ServiceConfig{MinScale: 1, MaxScale: 1, MemoryMB: o.tpMemory, CPU: o.tpCPU}
	nolimit, c80 := base, base
	nolimit.Concurrency = 0
	c80.Concurrency = 80
	if _, err := s.deployService(ctx, "tp", nolimit); err != nil {
		return nil, err
	}
	if _, err := s.deployService(ctx, "tp80", c80); err != nil {
		return nil, err
	}
	defer func() {
		_ = s.c.RemoveService(context.WithoutCancel(ctx), "tp")
		_ = s.c.RemoveService(context.WithoutCancel(ctx), "tp80")
	}()
	addr, err := s.readyAddr(ctx, "tp")
	if err != nil {
		return nil, err
	}
	res.Replica = addr

	p, out, err := startProc([]string{w.bareproxy, "-listen", "127.0.0.1:0", "-upstream", "http://" + addr}, os.Environ(), filepath.Join(w.dir, "bareproxy.log"), true)
	if err != nil {
		return nil, err
	}
	defer p.stop(5 * time.Second)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	proxyAddr, err := firstLine(pctx, p, out, "listening on ")
	cancel()
	if err != nil {
		return nil, fmt.Errorf("bareproxy: %w", err)
	}
	proxyAddr = strings.TrimSpace(proxyAddr)

	cpu := func() cpuSample {
		server, containers := s.cpu()
		return cpuSample{Server: server, Proxy: procCPU(p.pid()), Replicas: containers}
	}
	targets := []*target{
		{name: tDirect, url: "http://" + addr + "/", cpu: cpu},
		{name: tBare, url: "http://" + proxyAddr + "/", cpu: cpu},
		{name: tGateway, url: "http://" + s.addr + "/svc/tp/", header: authHeader(), cpu: cpu},
		{name: tGate80, url: "http://" + s.addr + "/svc/tp80/", header: authHeader(), cpu: cpu},
	}
	for _, t := range targets {
		if err := getOK(ctx, clientOf(newTransport()), t.url, t.header); err != nil {
			return nil, fmt.Errorf("%s: %w", t.name, err)
		}
	}
	runs := map[string]map[int][]point{}
	for _, t := range targets {
		runs[t.name] = map[int][]point{}
	}
	for round := range o.rounds {
		for _, c := range o.concs {
			for _, t := range targets {
				r, err := measure(ctx, t, c, o.warmup, o.duration)
				if err != nil {
					return nil, err
				}
				logf("round %d  c=%-3d %-48s %8.0f req/s  p50 %-9s p99 %-9s errors %d", round+1, c, t.name, r.RPS,
					r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Errs)
				runs[t.name][c] = append(runs[t.name][c], r)
			}
		}
	}
	for _, t := range targets {
		tr := targetResult{Name: t.name}
		for _, c := range o.concs {
			if rs := runs[t.name][c]; len(rs) > 0 {
				tr.Runs = append(tr.Runs, medianRun(rs))
			}
		}
		res.Targets = append(res.Targets, tr)
	}
	return res, nil
}
