package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

// function is the warm function every Stratus target invokes.
const function = "lognoop"

// Kinds of targets.
const (
	kindDirect       = "direct"
	kindNative       = "native"
	kindLambdaSigV4  = "lambda-sigv4"
	kindLambdaBearer = "lambda-token"
)

var event = []byte(`{}`)

// target is one endpoint the load generator drives.
type target struct {
	benchkit.Target
	kind string
	pid  int // the process whose CPU is the front's
	// sign, when not nil, makes the headers of a run: a SigV4 signature
	// made now, replayed by every request of the run.
	sign func(ctx context.Context) (http.Header, error)
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

// measure drives t at conc and accounts the CPU time of its processes. A
// signed target is signed once, before the run.
func measure(ctx context.Context, t *target, conc int, warmup, dur time.Duration) (point, error) {
	if t.sign != nil {
		h, err := t.sign(ctx)
		if err != nil {
			return point{}, err
		}
		t.Header = h
	}
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

// work is the run's scratch folder and the binaries it uses.
type work struct {
	dir    string
	root   string // module root
	tiny   string // bench/tinyserver, static
	logZip []byte // bench/lognoop, zipped as the CLI does
	server string // stratus (or stratusprof)
	prof   bool   // the server is the pprof variant
}

func (w *work) build(ctx context.Context, o options) error {
	benchkit.Logf("building tinyserver, lognoop and the server")
	w.tiny = filepath.Join(w.dir, "tinyserver")
	if err := benchkit.GoBuild(ctx, w.root, "./bench/tinyserver", w.tiny); err != nil {
		return err
	}
	boot := filepath.Join(w.dir, "lognoop", "bootstrap")
	if err := benchkit.GoBuild(ctx, w.root, "./bench/lognoop", boot); err != nil {
		return err
	}
	var err error
	if w.logZip, err = benchkit.CodeZip(filepath.Dir(boot)); err != nil {
		return err
	}
	if o.stratusBin != "" {
		w.server = o.stratusBin
		return nil
	}
	pkg := "./cmd/stratus"
	if o.profileDir != "" {
		pkg, w.prof = "./bench/stratusprof", true
	}
	w.server = filepath.Join(w.dir, "stratus")
	return benchkit.GoBuild(ctx, w.root, pkg, w.server)
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
	dir, cleanup, err := benchkit.WorkDir("stratus-lambdaapi-", o.keep)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	w := &work{dir: dir, root: root}
	if err := w.build(ctx, o); err != nil {
		return nil, err
	}
	res.Binary = w.server

	// The floor.
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

	// The server, with the defaults.
	args, note := defaultSandbox()
	if note != "" {
		benchkit.Logf("note: %s", note)
		res.Notes = append(res.Notes, note)
	}
	var env []string
	if w.prof {
		if res.pprofAddr, err = benchkit.FreeAddr(); err != nil {
			return res, err
		}
		env = append(env, "STRATUS_BENCH_PPROF="+res.pprofAddr)
	}
	benchkit.Logf("starting the server")
	s, err := benchkit.StartServer(ctx, w.server, filepath.Join(dir, "data"), filepath.Join(dir, "server.log"), args, env...)
	if err != nil {
		return res, err
	}
	defer s.Stop(15 * time.Second)
	info, err := s.Client.Info(ctx)
	if err != nil {
		return res, fmt.Errorf("server info: %w", err)
	}
	res.Sandbox, res.Region = info.Sandbox.Driver, info.Region
	if info.Sandbox.Driver != "runc" && len(args) == 0 {
		n := fmt.Sprintf("the server chose the %s sandbox, not runc (%s)", info.Sandbox.Driver, info.Sandbox.Why)
		benchkit.Logf("note: %s", n)
		res.Notes = append(res.Notes, n)
	}
	// The default function configuration: the token protects it, default
	// memory and timeouts.
	if _, err := s.Client.Deploy(ctx, function, stratus.FunctionConfig{Runtime: stratus.RuntimeProvided}, bytes.NewReader(w.logZip)); err != nil {
		return res, fmt.Errorf("deploy %s: %w", function, err)
	}
	key, err := createKey(ctx, s)
	if err != nil {
		return res, err
	}
	res.KeyID = key.AccessKeyID

	bearer := http.Header{"Authorization": {"Bearer " + benchkit.Token}}
	lambdaURL := s.URL + "/2015-03-31/functions/" + function + "/invocations"
	native := &target{Target: benchkit.Target{Name: "native /v1 invoke, token", URL: s.URL + "/v1/functions/" + function + "/invoke", Header: bearer, Body: event},
		kind: kindNative, pid: s.PID()}
	signed := &target{Target: benchkit.Target{Name: "Lambda Invoke, SigV4", URL: lambdaURL, Body: event}, kind: kindLambdaSigV4, pid: s.PID()}
	signed.sign = func(ctx context.Context) (http.Header, error) {
		return signedHeader(ctx, key.AccessKeyID, key.SecretAccessKey, info.Region, lambdaURL, event, time.Now())
	}
	lambdaBearer := &target{Target: benchkit.Target{Name: "Lambda Invoke, token", URL: lambdaURL, Header: bearer, Body: event}, kind: kindLambdaBearer, pid: s.PID()}
	if err := checkSigned(ctx, signed); err != nil {
		return res, err
	}

	top := o.concs[len(o.concs)-1]
	benchkit.Logf("starting instances at concurrency %d", top)
	if res.Warm, err = warmUp(ctx, s, &native.Target, top); err != nil {
		return res, fmt.Errorf("warm up: %w", err)
	}
	benchkit.Logf("%d live instances (%d idle), sandbox %s", res.Warm.Live, res.Warm.Idle, res.Sandbox)

	targets := []*target{floor, native, signed, lambdaBearer}
	bts := make([]*benchkit.Target, len(targets))
	for i, t := range targets {
		bts[i] = &t.Target
	}
	// by[target][conc] are the rounds, in order; each round measures the
	// targets in the order turned by the round.
	by := make([]map[int][]point, len(targets))
	for i := range by {
		by[i] = map[int][]point{}
	}
	_, err = benchkit.Interleave(ctx, o.rounds, o.concs, bts, func(round, c, i int) (point, error) {
		ti := turned(round, len(targets))[i]
		t := targets[ti]
		r, err := measure(ctx, t, c, o.warmup, o.duration)
		if err != nil {
			return r, fmt.Errorf("%s: %w", t.Name, err)
		}
		benchkit.Logf("round %d  c=%-3d %-26s %8.0f req/s  p50 %-9s p99 %-9s server CPU %-7s cold %d errors %d load %.1f", round+1, c, t.Name, r.RPS,
			r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), benchkit.FmtDur(r.ServerCPU), r.Cold, r.Errs, r.LoadAvg)
		by[ti][c] = append(by[ti][c], r)
		return r, nil
	})
	if err != nil {
		return res, err
	}
	for i, t := range targets {
		tr := targetResult{Name: t.Name, Kind: t.kind, URL: t.URL}
		for _, c := range o.concs {
			if rs := by[i][c]; len(rs) > 0 {
				tr.Runs = append(tr.Runs, medianRun(rs))
				tr.Rounds = append(tr.Rounds, rs)
			}
		}
		res.Targets = append(res.Targets, tr)
	}
	if w.prof {
		if err := profile(ctx, o, w, res, targets[1:]); err != nil {
			return res, err
		}
	}
	return res, nil
}

// turned is the order in which round measures n targets: 0 .. n-1 turned
// left by round, so that no target always follows the same one.
func turned(round, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = (i + round) % n
	}
	return out
}

// createKey makes an access key as a user does: `stratus keys create -o
// json`.
func createKey(ctx context.Context, s *benchkit.Server) (*v1.AccessKey, error) {
	out, err := s.CLI(ctx, "keys", "create", "--description", "bench/lambdaapi", "-o", "json")
	if err != nil {
		return nil, err
	}
	var k v1.AccessKey
	if err := json.Unmarshal(out, &k); err != nil {
		return nil, fmt.Errorf("stratus keys create -o json: %w: %s", err, out)
	}
	if k.AccessKeyID == "" || k.SecretAccessKey == "" {
		return nil, fmt.Errorf("stratus keys create -o json: no key in %s", out)
	}
	return &k, nil
}

// checkSigned makes sure the server verifies t's signature: the signed
// request is answered 200, the same with one hex digit of its signature
// changed 403 InvalidSignatureException.
func checkSigned(ctx context.Context, t *target) error {
	h, err := t.sign(ctx)
	if err != nil {
		return err
	}
	for _, c := range []struct {
		h         http.Header
		status    int
		errorType string
		what      string
	}{
		{h, http.StatusOK, "", "signed request"},
		{tampered(h), http.StatusForbidden, "InvalidSignatureException", "request with a changed signature"},
	} {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(t.Body))
		if err != nil {
			return err
		}
		req.Header = c.h.Clone()
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("%s: %w", c.what, err)
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode != c.status || resp.Header.Get("X-Amzn-ErrorType") != c.errorType {
			return fmt.Errorf("%s: %s (X-Amzn-ErrorType %q), want %d %s: %s", c.what, resp.Status, resp.Header.Get("X-Amzn-ErrorType"), c.status, c.errorType, bytes.TrimSpace(b))
		}
	}
	return nil
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
// the function's instances are up and idle once the load stops (at least
// twice, at most fifteen times: in runc a sandbox started under load
// takes a while), and reports the instances.
func warmUp(ctx context.Context, s *benchkit.Server, t *benchkit.Target, conc int) (v1.Instances, error) {
	tr := benchkit.NewTransport()
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	var in v1.Instances
	for i := range 15 {
		if _, err := benchkit.Drive(ctx, c, t, conc, time.Second); err != nil {
			return in, err
		}
		// An instance answers, then asks for its next invocation.
		time.Sleep(200 * time.Millisecond)
		f, err := s.Client.Get(ctx, function)
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
