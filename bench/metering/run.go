package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

// function is the warm function every Stratus target invokes.
const function = "lognoop"

// traceparent is the W3C trace context the traceparent target sends on
// every call: a sampled caller's span.
const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// Kinds of targets.
const (
	kindDirect   = "direct"
	kindBaseline = "baseline"
	kindOff      = "current-off"
	kindOn       = "current-on"
	kindOnParent = "current-on-traceparent"
)

var event = []byte(`{}`)

// target is one endpoint the load generator drives.
type target struct {
	benchkit.Target
	kind   string
	server *benchkit.Server // nil for the floor
	pid    int              // the process whose CPU is the front's
	// sandbox is the driver the server reported; warm its instances once
	// warmed.
	sandbox string
	warm    v1.Instances
}

// point is the result of one measurement at one concurrency.
type point struct {
	benchkit.Run
	// ServerCPU is the CPU time (user + system) of the server process
	// (the floor's process) per answered request; InstanceCPU that of
	// its descendants (the function's instances; 0 for the floor).
	ServerCPU   time.Duration
	InstanceCPU time.Duration
}

// measure drives t at conc and accounts the CPU time of its processes.
func measure(ctx context.Context, t *target, conc int, warmup, dur time.Duration) (point, error) {
	var p point
	around := func() func(benchkit.Run) {
		cpu0 := benchkit.SampleCPU(t.pid)
		return func(r benchkit.Run) {
			if r.OK == 0 {
				return
			}
			cpu1 := benchkit.SampleCPU(t.pid)
			all := cpu1.Since(cpu0)
			front := cpu1[t.pid] - cpu0[t.pid]
			p.ServerCPU = front / time.Duration(r.OK)
			p.InstanceCPU = (all - front) / time.Duration(r.OK)
		}
	}
	r, err := benchkit.Measure(ctx, &t.Target, conc, warmup, dur, around)
	p.Run = r
	return p, err
}

func bench(ctx context.Context, o options) (*results, error) {
	start := time.Now()
	res := &results{Env: benchkit.Environment(), Options: optionsView(o)}
	defer func() {
		res.Elapsed = time.Since(start)
		res.Env["loadavg at end"] = fmt.Sprintf("%.1f", benchkit.LoadAvg())
	}()
	root, err := benchkit.ModuleRoot(ctx)
	if err != nil {
		return nil, err
	}
	res.Env["tree"] = benchkit.TreeDigest(root)
	dir, cleanup, err := benchkit.WorkDir("stratus-metering-", o.keep)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	w := &work{dir: dir, root: root}
	if err := w.build(ctx, o); err != nil {
		return nil, err
	}
	res.BaselineCommit, res.BaselineBinary, res.CurrentBinary = w.commit, w.baseline, w.current

	sandboxFlags, note := defaultSandbox()
	if note != "" {
		benchkit.Logf("note: %s", note)
		res.Notes = append(res.Notes, note)
	}

	rcv, err := startReceiver()
	if err != nil {
		return nil, err
	}
	served := make(chan error, 1)
	go func() { served <- rcv.serve() }()
	defer func() {
		rcv.stop()
		<-served
	}()

	directAddr, err := benchkit.FreeAddr()
	if err != nil {
		return res, err
	}
	direct, err := benchkit.StartProc([]string{w.tiny, "-listen", directAddr}, nil, "", filepath.Join(dir, "direct.log"))
	if err != nil {
		return res, err
	}
	defer direct.Stop(time.Second)
	floor := &target{Target: benchkit.Target{Name: "direct (net/http)", URL: "http://" + directAddr + "/", Body: event}, kind: kindDirect, pid: direct.PID()}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = benchkit.WaitOK(wctx, &floor.Target)
	cancel()
	if err != nil {
		return res, err
	}
	targets := []*target{floor}

	type spec struct {
		kind, name, bin string
		otlp, parent    bool
	}
	specs := []spec{
		{kindBaseline, "baseline " + shortCommit(w.commit), w.baseline, false, false},
		{kindOff, "current, exporter off", w.current, false, false},
		{kindOn, "current, exporter on", w.current, true, false},
	}
	if o.traceparent {
		specs = append(specs, spec{kindOnParent, "current, exporter on, traceparent", w.current, true, true})
	}
	top := o.concs[len(o.concs)-1]
	for i, sp := range specs {
		args := append([]string(nil), sandboxFlags...)
		if sp.otlp {
			args = append(args, "--otlp-endpoint", rcv.endpoint(sp.kind))
		}
		var env []string
		pprof := ""
		if w.prof {
			if pprof, err = benchkit.FreeAddr(); err != nil {
				return res, err
			}
			env = append(env, "STRATUS_BENCH_PPROF="+pprof)
		}
		benchkit.Logf("%s: starting a server", sp.name)
		s, err := benchkit.StartServer(ctx, sp.bin, filepath.Join(dir, fmt.Sprintf("%d-%s-data", i, sp.kind)), filepath.Join(dir, fmt.Sprintf("%d-%s-server.log", i, sp.kind)), args, env...)
		if err != nil {
			return res, fmt.Errorf("%s: %w", sp.name, err)
		}
		defer s.Stop(15 * time.Second)
		info, err := s.Client.Info(ctx)
		if err != nil {
			return res, fmt.Errorf("%s: server info: %w", sp.name, err)
		}
		if info.Sandbox.Driver != "runc" && len(sandboxFlags) == 0 {
			n := fmt.Sprintf("%s: the server chose the %s sandbox, not runc (%s)", sp.name, info.Sandbox.Driver, info.Sandbox.Why)
			benchkit.Logf("note: %s", n)
			res.Notes = append(res.Notes, n)
		}
		cfg := stratus.FunctionConfig{Runtime: stratus.RuntimeProvided, Auth: stratus.AuthNone, IdleTimeout: stratus.Duration(30 * time.Minute)}
		if _, err := s.Client.Deploy(ctx, function, cfg, bytes.NewReader(w.logZip)); err != nil {
			return res, fmt.Errorf("%s: deploy %s: %w", sp.name, function, err)
		}
		t := &target{
			Target: benchkit.Target{
				Name:   sp.name,
				URL:    s.URL + "/v1/functions/" + function + "/invoke",
				Header: http.Header{"Authorization": {"Bearer " + benchkit.Token}},
				Body:   event,
			},
			kind: sp.kind, server: s, pid: s.PID(), sandbox: info.Sandbox.Driver,
		}
		if sp.parent {
			t.Header.Set("Traceparent", traceparent)
		}
		benchkit.Logf("%s: starting instances at concurrency %d", sp.name, top)
		if t.warm, err = warmUp(ctx, t, top); err != nil {
			return res, fmt.Errorf("%s: warm up: %w", sp.name, err)
		}
		benchkit.Logf("%s: %d live instances (%d idle), sandbox %s", sp.name, t.warm.Live, t.warm.Idle, t.sandbox)
		if w.prof {
			res.pprof = append(res.pprof, pprofTarget{t: t, addr: pprof})
		}
		targets = append(targets, t)
	}

	bts := make([]*benchkit.Target, len(targets))
	for i, t := range targets {
		bts[i] = &t.Target
	}
	runs, err := benchkit.Interleave(ctx, o.rounds, o.concs, bts, func(round, c, i int) (point, error) {
		t := targets[i]
		r, err := measure(ctx, t, c, o.warmup, o.duration)
		if err == nil {
			benchkit.Logf("round %d  c=%-3d %-34s %8.0f req/s  p50 %-9s p99 %-9s server CPU %-7s cold %d errors %d load %.1f", round+1, c, t.Name, r.RPS,
				r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), benchkit.FmtDur(r.ServerCPU), r.Cold, r.Errs, r.LoadAvg)
		}
		return r, err
	})
	if err != nil {
		return res, err
	}
	for i, t := range targets {
		tr := targetResult{Name: t.Name, Kind: t.kind, Sandbox: t.sandbox, Live: t.warm.Live, Idle: t.warm.Idle}
		for _, c := range o.concs {
			if rs := runs[i][c]; len(rs) > 0 {
				tr.Runs = append(tr.Runs, medianRun(rs))
				tr.Rounds = append(tr.Rounds, rs)
			}
		}
		if t.server != nil {
			if n, err := invocations(ctx, t.server, function); err == nil {
				tr.Invocations = n
			} else {
				benchkit.Logf("%s: invocations from /metrics: %v", t.Name, err)
			}
			if t.kind == kindOn || t.kind == kindOnParent {
				c := rcv.settle(ctx, t.kind, 2500*time.Millisecond, 15*time.Second)
				tr.Export = &c
			}
		}
		res.Targets = append(res.Targets, tr)
	}
	if w.prof {
		if err := profile(ctx, o, w, res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// defaultSandbox is the server flags for the default sandbox: none (runc
// as root) where runc is usable, else --sandbox process, and a note
// saying why.
func defaultSandbox() ([]string, string) {
	why := ""
	if os.Geteuid() != 0 {
		why = "the bench does not run as root"
	} else if _, err := exec.LookPath("runc"); err != nil {
		why = "runc is not on PATH"
	}
	if why == "" {
		return nil, ""
	}
	return []string{"--sandbox", "process"}, "runc is not usable here (" + why + "): the process driver (--sandbox process) stands in for the default sandbox"
}

// warmUp drives t at concurrency conc, a second at a time, until conc of
// its function's instances are up and idle once the load stops (at least
// twice, at most fifteen times: in runc a sandbox started under load
// takes a while), and reports the instances.
func warmUp(ctx context.Context, t *target, conc int) (v1.Instances, error) {
	tr := benchkit.NewTransport()
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	var in v1.Instances
	for i := range 15 {
		if _, err := benchkit.Drive(ctx, c, &t.Target, conc, time.Second); err != nil {
			return in, err
		}
		// An instance answers, then asks for its next invocation.
		time.Sleep(200 * time.Millisecond)
		f, err := t.server.Client.Get(ctx, function)
		if err != nil {
			return in, err
		}
		in = f.Instances
		if i >= 1 && in.Idle >= conc {
			break
		}
	}
	return in, nil
}

// invocations is the number of invocations of fn the server counted:
// the sum of its stratus_function_invocations_total series for fn, read
// from GET /metrics.
func invocations(ctx context.Context, s *benchkit.Server, fn string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+benchkit.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, fmt.Errorf("GET /metrics: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	return sumSeries(resp.Body, "stratus_function_invocations_total", `function="`+fn+`"`)
}

// sumSeries sums the samples of metric whose labels contain label in the
// Prometheus text exposition r; it fails when there is none.
func sumSeries(r io.Reader, metric, label string) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	total, found := 0.0, false
	for sc.Scan() {
		l := sc.Text()
		rest, ok := strings.CutPrefix(l, metric+"{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok || !strings.Contains(labels, label) {
			continue
		}
		f := strings.Fields(value)
		if len(f) == 0 {
			return 0, fmt.Errorf("metric %s: %q: no value", metric, l)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("metric %s: %q: %w", metric, l, err)
		}
		total, found = total+v, true
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("no %s{%s} series", metric, label)
	}
	return int(total), nil
}

// shortCommit is the first 7 characters of a commit ID ("-baseline" for
// a baseline binary given by flag).
func shortCommit(id string) string {
	if id == "" {
		return "(-baseline)"
	}
	return id[:min(7, len(id))]
}
