package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/bench/internal/benchkit"
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

func (t *targetResult) at(conc int) *point { return benchkit.At(t.Runs, conc) }

// Names of the throughput targets.
const (
	tDirect  = "direct: the replica at its address"
	tBare    = "bare proxy (httputil) → the replica"
	tGateway = "stratus /svc/NAME/ (--concurrency 0: no limit)"
	tGate80  = "stratus /svc/NAME/ (--concurrency 80)"
)

func clientOf(tr http.RoundTripper) *http.Client { return &http.Client{Transport: tr} }

func authHeader() http.Header { return http.Header{"Authorization": {"Bearer " + benchkit.Token}} }

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
		_ = s.Client.RemoveService(context.WithoutCancel(ctx), "tp")
		_ = s.Client.RemoveService(context.WithoutCancel(ctx), "tp80")
	}()
	addr, err := s.readyAddr(ctx, "tp")
	if err != nil {
		return nil, err
	}
	res.Replica = addr

	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	p, proxyAddr, err := benchkit.StartProcLine(pctx, []string{w.bareproxy, "-listen", "127.0.0.1:0", "-upstream", "http://" + addr}, nil, "", filepath.Join(w.dir, "bareproxy.log"), "listening on ")
	cancel()
	if err != nil {
		return nil, fmt.Errorf("bareproxy: %w", err)
	}
	defer p.Stop(5 * time.Second)
	proxyAddr = strings.TrimSpace(proxyAddr)

	cpu := func() cpuSample {
		server, containers := s.cpu()
		return cpuSample{Server: server, Proxy: benchkit.ProcCPU(p.PID()), Replicas: containers}
	}
	targets := []*target{
		{Target: benchkit.Target{Name: tDirect, URL: "http://" + addr + "/"}, cpu: cpu},
		{Target: benchkit.Target{Name: tBare, URL: "http://" + proxyAddr + "/"}, cpu: cpu},
		{Target: benchkit.Target{Name: tGateway, URL: s.URL + "/svc/tp/", Header: authHeader()}, cpu: cpu},
		{Target: benchkit.Target{Name: tGate80, URL: s.URL + "/svc/tp80/", Header: authHeader()}, cpu: cpu},
	}
	bts := make([]*benchkit.Target, len(targets))
	for i, t := range targets {
		bts[i] = &t.Target
		if err := benchkit.GetOK(ctx, clientOf(benchkit.NewTransport()), t.URL, t.Header); err != nil {
			return nil, fmt.Errorf("%s: %w", t.Name, err)
		}
	}
	runs, err := benchkit.Interleave(ctx, o.rounds, o.concs, bts, func(round, c, i int) (point, error) {
		t := targets[i]
		r, err := measure(ctx, t, c, o.warmup, o.duration)
		if err == nil {
			benchkit.Logf("round %d  c=%-3d %-48s %8.0f req/s  p50 %-9s p99 %-9s errors %d", round+1, c, t.Name, r.RPS,
				r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Errs)
		}
		return r, err
	})
	if err != nil {
		return nil, err
	}
	for i, t := range targets {
		tr := targetResult{Name: t.Name}
		for _, c := range o.concs {
			if rs := runs[i][c]; len(rs) > 0 {
				tr.Runs = append(tr.Runs, medianRun(rs))
			}
		}
		res.Targets = append(res.Targets, tr)
	}
	return res, nil
}
