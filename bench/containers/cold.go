package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/bench/internal/benchkit"
	"github.com/stratus-run/stratus/client"
)

// series is a set of timed runs of one kind of start.
type series struct {
	Name string
	benchkit.Summary
	// Parts are the p50s of named parts of each run (a breakdown; they
	// need not add up), in the order given by PartNames.
	PartNames []string                 `json:",omitempty"`
	Parts     map[string]time.Duration `json:",omitempty"`
	Notes     []string                 `json:",omitempty"`
	samples   []time.Duration
	parts     map[string][]time.Duration
}

func (s *series) add(d time.Duration) { s.samples = append(s.samples, d) }

func (s *series) addPart(name string, d time.Duration) {
	if s.parts == nil {
		s.parts = map[string][]time.Duration{}
	}
	if _, ok := s.parts[name]; !ok {
		s.PartNames = append(s.PartNames, name)
	}
	s.parts[name] = append(s.parts[name], d)
}

// summarise fills the figures from the samples.
func (s *series) summarise() {
	if len(s.samples) == 0 {
		return
	}
	s.Summary = benchkit.Summarise(s.samples)
	if len(s.parts) > 0 {
		s.Parts = map[string]time.Duration{}
		for k, v := range s.parts {
			s.Parts[k], _, _ = benchkit.Percentiles(v)
		}
	}
}

// svcColdRun is one timed scale-from-zero request.
type svcColdRun struct {
	sent, answered time.Time
	d              time.Duration
}

// coldServices measures scale from zero for each memory size in mems:
// one service per size (min 0, max 1), and before every run all of them
// at zero with no replica left (not even a stopping one), so that no
// teardown overlaps a start. Each run is one GET /svc/NAME/ on a
// keep-alive connection to the server, timed from send to the whole
// answer. The replicas' log lines (gosvc prints "gosvc listening on" once
// it listens and "GET /" when the request reaches it; the server stamps
// each line as it reads it) split each run in parts.
func coldServices(ctx context.Context, s *stratusServer, mems []int, runs int) ([]series, error) {
	names := make([]string, len(mems))
	for i, m := range mems {
		names[i] = fmt.Sprintf("coldsvc-%d", m)
		cfg := stratus.ServiceConfig{MinScale: 0, MaxScale: 1, Concurrency: stratus.DefaultServiceConcurrency, MemoryMB: m}
		if _, err := s.deployService(ctx, names[i], cfg); err != nil {
			return nil, err
		}
	}
	defer func() {
		for _, n := range names {
			_ = s.Client.RemoveService(context.WithoutCancel(ctx), n)
		}
	}()
	c := &http.Client{Transport: benchkit.NewTransport()}
	defer c.CloseIdleConnections()
	if err := benchkit.GetOK(ctx, c, s.URL+"/healthz", nil); err != nil {
		return nil, err
	}
	hdr := authHeader()
	timed := make([][]svcColdRun, len(mems))
	var waits []time.Duration
	for i := range runs {
		for j, n := range names {
			w0 := time.Now()
			if err := waitAllZero(ctx, s, names); err != nil {
				return nil, err
			}
			waits = append(waits, time.Since(w0))
			// Let the last teardown's background work settle.
			time.Sleep(50 * time.Millisecond)
			sent := time.Now()
			if err := benchkit.GetOK(ctx, c, s.URL+"/svc/"+n+"/", hdr); err != nil {
				return nil, fmt.Errorf("cold request %d to %s: %w", i+1, n, err)
			}
			answered := time.Now()
			timed[j] = append(timed[j], svcColdRun{sent: sent, answered: answered, d: answered.Sub(sent)})
		}
		if (i+1)%10 == 0 {
			benchkit.Logf("coldsvc: %d/%d runs", i+1, runs)
		}
	}
	out := make([]series, len(mems))
	for j, n := range names {
		sr := series{Name: fmt.Sprintf("service from zero, GET /svc/NAME/ (--memory %d)", mems[j])}
		for _, r := range timed[j] {
			sr.add(r.d)
		}
		lines, err := allServiceLogs(ctx, s.Client, n)
		if err != nil {
			sr.Notes = append(sr.Notes, "no breakdown: "+err.Error())
		} else {
			breakdown(&sr, timed[j], lines)
		}
		sr.summarise()
		out[j] = sr
	}
	wp50, _, _ := benchkit.Percentiles(waits)
	out[0].Notes = append(out[0].Notes, fmt.Sprintf("time waited before a run for every service to be at zero with no replica left: p50 %s", benchkit.FmtDur(wp50)))
	return out, nil
}

// breakdown splits each run by the log lines of the replica it started:
// the first replica whose "gosvc listening" line falls in the run.
func breakdown(sr *series, runs []svcColdRun, lines []stratus.LogLine) {
	type inst struct{ listen, get time.Time }
	byInst := map[string]*inst{}
	for _, l := range lines {
		in := byInst[l.Instance]
		if in == nil {
			in = &inst{}
			byInst[l.Instance] = in
		}
		switch {
		case strings.HasPrefix(l.Text, "gosvc listening on") && in.listen.IsZero():
			in.listen = l.Time
		case l.Text == "GET /" && in.get.IsZero():
			in.get = l.Time
		}
	}
	matched := 0
	for _, r := range runs {
		for _, in := range byInst {
			if in.listen.IsZero() || in.get.IsZero() || in.listen.Before(r.sent) || in.listen.After(r.answered) {
				continue
			}
			matched++
			sr.addPart("send → replica listens (its log line)", in.listen.Sub(r.sent))
			sr.addPart("listens → request reaches it", in.get.Sub(in.listen))
			sr.addPart("request reaches it → answer read", r.answered.Sub(in.get))
			break
		}
	}
	if matched < len(runs) {
		sr.Notes = append(sr.Notes, fmt.Sprintf("breakdown from the replicas' log lines for %d of %d runs", matched, len(runs)))
	}
}

// allServiceLogs pages through every stored log line of service name.
func allServiceLogs(ctx context.Context, c *client.Client, name string) ([]stratus.LogLine, error) {
	var all []stratus.LogLine
	var after int64
	for range 100 {
		lines, err := c.ServiceLogs(ctx, name, client.LogQuery{AfterID: after})
		if err != nil {
			return nil, err
		}
		if len(lines) == 0 {
			break
		}
		all = append(all, lines...)
		after = lines[len(lines)-1].ID
	}
	return all, nil
}

// waitAllZero polls until every service in names has 0 ready, 0 desired
// and no replica listed.
func waitAllZero(ctx context.Context, s *stratusServer, names []string) error {
	deadline := time.Now().Add(60 * time.Second)
	for _, n := range names {
		for {
			svc, err := s.Client.Service(ctx, n)
			if err != nil {
				return err
			}
			if svc.Replicas.Ready == 0 && svc.Replicas.Desired == 0 && len(svc.Detail) == 0 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("service %s not at zero within 60s: %+v", n, svc.Replicas)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}

// coldFunctions holds fresh functions (same code), one per run and
// memory size, deployed up front: each is invoked once through POST
// /v1/functions/NAME/invoke on a keep-alive connection to the server,
// and only that invoke is timed.
type coldFunctions struct {
	s     *stratusServer
	mems  []int
	names [][]string // [mem][run]
	c     *http.Client
	out   []series
	warm  []int // first invokes not marked as cold starts, per memory size
}

func newColdFunctions(ctx context.Context, s *stratusServer, zip []byte, mems []int, runs int) (*coldFunctions, error) {
	f := &coldFunctions{s: s, mems: mems, c: &http.Client{Transport: benchkit.NewTransport()}, out: make([]series, len(mems)), warm: make([]int, len(mems))}
	var all []string
	cfgOf := map[string]stratus.FunctionConfig{}
	for j, m := range mems {
		f.out[j].Name = fmt.Sprintf("function cold invoke, provided.al2023 (--memory %d)", m)
		var names []string
		for i := range runs {
			n := fmt.Sprintf("coldfn-%d-%03d", m, i)
			names = append(names, n)
			all = append(all, n)
			cfgOf[n] = stratus.FunctionConfig{Runtime: stratus.RuntimeProvidedAL2023, MemoryMB: m}
		}
		f.names = append(f.names, names)
	}
	benchkit.Logf("coldfn: deploying %d functions", len(all))
	err := benchkit.Parallel(ctx, all, 4, func(n string) error {
		if _, err := s.Client.Deploy(ctx, n, cfgOf[n], bytes.NewReader(zip)); err != nil {
			return fmt.Errorf("deploy %s: %w", n, err)
		}
		return nil
	})
	if err != nil {
		f.close(ctx)
		return nil, err
	}
	if err := benchkit.GetOK(ctx, f.c, s.URL+"/healthz", nil); err != nil {
		f.close(ctx)
		return nil, err
	}
	return f, nil
}

// run times the first invoke of each memory size's function number i.
func (f *coldFunctions) run(ctx context.Context, i int) error {
	for j := range f.mems {
		n := f.names[j][i]
		t := benchkit.Target{URL: f.s.URL + "/v1/functions/" + n + "/invoke", Header: authHeader(), Body: []byte("{}")}
		in, err := benchkit.Invoke(ctx, f.c, &t)
		if err != nil {
			return fmt.Errorf("cold invoke %s: %w", n, err)
		}
		f.out[j].add(in.D)
		if !in.Cold {
			f.warm[j]++
		}
		if in.Init > 0 {
			f.out[j].addPart("server's Init Duration (instance start → runtime's first invocation/next)", in.Init)
		}
	}
	return nil
}

func (f *coldFunctions) results() []series {
	for j := range f.out {
		if f.warm[j] > 0 {
			f.out[j].Notes = append(f.out[j].Notes, fmt.Sprintf("%d first invokes were not marked as cold starts", f.warm[j]))
		}
		f.out[j].summarise()
	}
	return f.out
}

func (f *coldFunctions) close(ctx context.Context) {
	f.c.CloseIdleConnections()
	var all []string
	for _, ns := range f.names {
		all = append(all, ns...)
	}
	_ = benchkit.Parallel(context.WithoutCancel(ctx), all, 4, func(n string) error { return f.s.Client.Remove(context.WithoutCancel(ctx), n) })
}
