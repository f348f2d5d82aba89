// Command bench measures Stratus against its floors and its reference peer,
// in one run on one machine, with one load generator (ours: net/http
// client, keep-alive, an idle pool larger than any concurrency, N
// goroutines bounded by a duration), and prints the figures and ratios.
// The warm and cold sections measure the sandbox users get by default
// first (the server started without --sandbox: runc as root), then the
// process driver (--sandbox process) as a second column (-sandboxes);
// where runc is not usable the process driver stands in and the report
// says so.
//
//   - warm: a plain net/http handler hit directly and through a bare
//     httputil.ReverseProxy (the floors), next to, in each sandbox at the
//     default memory (128 MB), a warm no-op aws-lambda-go function invoked
//     through POST /v1/functions/NAME/invoke and ANY /fn/NAME, and the
//     same function logging one line per call (bench/lognoop) through
//     /v1: p50/p99 on one keep-alive connection, throughput at
//     concurrency 1, 8 and 32, CPU per request; the ratios of issue 10
//     (point 3) to the floors and of runc to process;
//   - relay: a diagnostic floor, the least a Runtime API server can do
//     (bench/relayfloor: the same bootstrap behind a bare relay, no
//     records or logs), to tell the contract's cost from Stratus's own;
//   - rie: AWS's Lambda Runtime Interface Emulator running the same
//     bootstrap (classic mode, one invocation at a time: concurrency 1);
//   - cold: scale from zero to the first answer in each sandbox (runc:
//     with create-ahead, as by default), next to starting a static Go
//     HTTP server as a plain process (polling its port, and handing it an
//     already listening socket) and the Runtime API floor of a cold start;
//   - fleet: 1,000 deployed functions: `stratus ls` time and the idle
//     server's memory (process driver);
//   - coldmatrix (not in the default list): cold starts in the default
//     sandbox (runc as root) of provided, python3 and nodejs functions at
//     128 and 1769 MB, with and without create-ahead, next to each
//     runtime's floor (its program exec'd on the host) and a burst of
//     concurrent first calls (issue 10).
//
// Run it from the module root: go run ./bench [-sections warm,relay,rie,cold,fleet]
// [-sandboxes runc,process]. Everything listens on 127.0.0.1; every loop
// is bounded. Results are recorded in bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

type options struct {
	sections    map[string]bool
	concs       []int
	duration    time.Duration
	warmup      time.Duration
	rounds      int
	coldRuns    int
	fleetSize   int
	lsRuns      int
	stratusBin  string
	rieBin      string
	profileDir  string
	jsonOut     string
	keep        bool
	matrixRuns  int
	matrixBurst int
	sandboxes   []string
}

func main() { os.Exit(run()) }

func run() int {
	var o options
	var sections, concs, sandboxes string
	flag.StringVar(&sections, "sections", "warm,relay,rie,cold,fleet", "sections to run: warm (floors + warm invoke), relay (the Runtime API floor), rie, cold, fleet, coldmatrix (runc cold starts of three runtimes at two memory sizes; not in the default list: needs root and runc, about 2.5 minutes)")
	flag.StringVar(&sandboxes, "sandboxes", "runc,process", "sandboxes the warm and cold sections measure, in this order: runc (the default sandbox: the server started without --sandbox, runc as root; where runc is not usable the process driver stands in, and the report says so) and process (--sandbox process)")
	flag.StringVar(&concs, "conc", "1,8,32", "concurrency levels of the throughput runs (1 is also the one-connection latency run)")
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "measured time of each run")
	flag.DurationVar(&o.warmup, "warmup", 500*time.Millisecond, "unmeasured load before each run (opens the connections)")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds over every target and concurrency, interleaved; figures are the median of the rounds")
	flag.IntVar(&o.coldRuns, "cold-runs", 50, "cold starts measured (and process starts per floor variant)")
	flag.IntVar(&o.matrixRuns, "matrix-runs", 20, "coldmatrix: fresh functions (first invokes) per cell, and floor runs per runtime")
	flag.IntVar(&o.matrixBurst, "matrix-burst", 20, "coldmatrix: concurrent first calls of the burst")
	flag.IntVar(&o.fleetSize, "fleet", 1000, "functions deployed in the fleet section")
	flag.IntVar(&o.lsRuns, "ls-runs", 5, "timed runs of stratus ls and stratus ls -o json")
	flag.StringVar(&o.stratusBin, "stratus", "", "stratus binary to use (default: build ./cmd/stratus)")
	flag.StringVar(&o.rieBin, "rie", "", "aws-lambda-rie binary (default: on PATH or GOBIN, else go install into the work dir)")
	flag.StringVar(&o.profileDir, "profile", "", "write CPU profiles of the server under load to this folder (uses a build of ./bench/stratusprof)")
	flag.StringVar(&o.jsonOut, "json", "", "also write the results as JSON to this file")
	flag.BoolVar(&o.keep, "keep", false, "keep the work dir (binaries, data dirs, logs)")
	flag.Parse()
	var err error
	if o.sections, err = benchkit.ParseSections(sections, "warm", "relay", "rie", "cold", "fleet", "coldmatrix"); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	for _, sb := range strings.Split(sandboxes, ",") {
		switch sb = strings.TrimSpace(sb); sb {
		case "runc", "process":
			if !slices.Contains(o.sandboxes, sb) {
				o.sandboxes = append(o.sandboxes, sb)
			}
		case "":
		default:
			fmt.Fprintf(os.Stderr, "bench: unknown sandbox %q (want runc, process)\n", sb)
			return 2
		}
	}
	if len(o.sandboxes) == 0 {
		fmt.Fprintln(os.Stderr, "bench: -sandboxes names none")
		return 2
	}
	if o.concs, err = benchkit.ParseInts(concs, 1, 1024); err != nil {
		fmt.Fprintln(os.Stderr, "bench: -conc:", err)
		return 2
	}
	slices.Sort(o.concs)
	if o.rounds < 1 || o.coldRuns < 1 || o.fleetSize < 1 || o.lsRuns < 1 || o.duration <= 0 || o.matrixRuns < 1 || o.matrixBurst < 1 {
		fmt.Fprintln(os.Stderr, "bench: -rounds, -cold-runs, -fleet, -ls-runs, -matrix-runs, -matrix-burst and -duration must be positive")
		return 2
	}

	return benchkit.Main("bench", func(ctx context.Context) error {
		res, err := bench(ctx, o)
		if res != nil {
			res.print(os.Stdout)
			if o.jsonOut != "" {
				err = errors.Join(err, benchkit.WriteJSON(o.jsonOut, res))
			}
		}
		return err
	})
}

// work is the run's scratch folder and the binaries it built.
type work struct {
	dir        string
	root       string // module root
	stratus    string
	tiny       string // bench/tinyserver, static
	relay      string // bench/relayfloor
	bootstrap  string // e2e/testdata/gonoop, static
	zip        []byte // the bootstrap's folder zipped as the CLI does
	logZip     []byte // bench/lognoop (logs one line per call), zipped
	profBinary bool   // stratus is the pprof variant
}

func bench(ctx context.Context, o options) (*results, error) {
	start := time.Now()
	res := &results{Env: benchkit.Environment(), Options: optionsView(o)}
	defer func() {
		res.Elapsed = time.Since(start)
		res.Env["loadavg at end"] = fmt.Sprintf("%.1f", benchkit.LoadAvg())
	}()
	sbs, notes := pickSandboxes(o.sandboxes)
	res.SandboxNotes = notes
	for _, n := range notes {
		benchkit.Logf("note: %s", n)
	}
	root, err := benchkit.ModuleRoot(ctx)
	if err != nil {
		return nil, err
	}
	res.Env["tree"] = benchkit.TreeDigest(root)
	dir, cleanup, err := benchkit.WorkDir("stratus-bench-", o.keep)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	w := &work{dir: dir, root: root}
	if err := w.build(ctx, o); err != nil {
		return nil, err
	}

	if o.sections["warm"] || o.sections["relay"] || o.sections["rie"] {
		if err := warm(ctx, o, w, res, sbs); err != nil {
			return res, err
		}
	}
	if o.sections["cold"] {
		if err := cold(ctx, o, w, res, sbs); err != nil {
			return res, err
		}
	}
	if o.sections["coldmatrix"] {
		if err := coldMatrix(ctx, o, w, res); err != nil {
			return res, fmt.Errorf("coldmatrix: %w", err)
		}
	}
	if o.sections["fleet"] {
		benchkit.Logf("fleet: deploying %d functions to a fresh server", o.fleetSize)
		fr, err := fleet(ctx, w.stratus, filepath.Join(dir, "fleet"), w.zip, o.fleetSize, o.lsRuns)
		if err != nil {
			return res, fmt.Errorf("fleet: %w", err)
		}
		res.Fleet = &fr
	}
	return res, nil
}

func (w *work) build(ctx context.Context, o options) error {
	benchkit.Logf("building tinyserver, relayfloor, the no-op functions and stratus")
	w.tiny = filepath.Join(w.dir, "tinyserver")
	if err := benchkit.GoBuild(ctx, w.root, "./bench/tinyserver", w.tiny); err != nil {
		return err
	}
	w.relay = filepath.Join(w.dir, "relayfloor")
	if err := benchkit.GoBuild(ctx, w.root, "./bench/relayfloor", w.relay); err != nil {
		return err
	}
	w.bootstrap = filepath.Join(w.dir, "noop", "bootstrap")
	if err := benchkit.GoBuild(ctx, w.root, "./e2e/testdata/gonoop", w.bootstrap); err != nil {
		return err
	}
	switch {
	case o.profileDir != "":
		w.stratus = filepath.Join(w.dir, "stratusprof")
		w.profBinary = true
		if err := benchkit.GoBuild(ctx, w.root, "./bench/stratusprof", w.stratus); err != nil {
			return err
		}
	case o.stratusBin != "":
		w.stratus = o.stratusBin
	default:
		w.stratus = filepath.Join(w.dir, "stratus")
		if err := benchkit.GoBuild(ctx, w.root, "./cmd/stratus", w.stratus); err != nil {
			return err
		}
	}
	zip, err := benchkit.CodeZip(filepath.Dir(w.bootstrap))
	if err != nil {
		return err
	}
	w.zip = zip
	logBootstrap := filepath.Join(w.dir, "lognoop", "bootstrap")
	if err := benchkit.GoBuild(ctx, w.root, "./bench/lognoop", logBootstrap); err != nil {
		return err
	}
	if w.logZip, err = benchkit.CodeZip(filepath.Dir(logBootstrap)); err != nil {
		return err
	}
	return nil
}

// warmFunctions are the functions the warm section deploys in each
// sandbox, at the default memory (128 MB), and the routes it drives each
// through: the no-op through /v1 invoke and /fn, and the no-op that logs
// one line per call through /v1 invoke.
var warmFunctions = []struct {
	name  string
	paths []string
}{
	{"noop", []string{"/v1", "/fn"}},
	{"lognoop", []string{"/v1"}},
}

// warm measures the floors, Stratus's warm invoke in each sandbox and the
// emulator, interleaved: every round runs each concurrency level on every
// target back to back, so that the ratios compare figures taken seconds
// apart.
func warm(ctx context.Context, o options, w *work, res *results, sbs []sandboxChoice) error {
	directAddr, err := benchkit.FreeAddr()
	if err != nil {
		return err
	}
	direct, err := benchkit.StartProc([]string{w.tiny, "-listen", directAddr}, nil, "", filepath.Join(w.dir, "direct.log"))
	if err != nil {
		return err
	}
	defer direct.Stop(time.Second)
	proxyAddr, err := benchkit.FreeAddr()
	if err != nil {
		return err
	}
	proxy, err := benchkit.StartProc([]string{w.tiny, "-listen", proxyAddr, "-proxy", "http://" + directAddr}, nil, "", filepath.Join(w.dir, "proxy.log"))
	if err != nil {
		return err
	}
	defer proxy.Stop(time.Second)
	targets := []*target{
		{Target: benchkit.Target{Name: "direct (net/http)", URL: "http://" + directAddr + "/", Body: event}, kind: kindDirect, pids: func() []int { return []int{direct.PID()} }},
		{Target: benchkit.Target{Name: "bare proxy (httputil)", URL: "http://" + proxyAddr + "/", Body: event}, kind: kindProxy, pids: func() []int { return []int{proxy.PID(), direct.PID()} }},
	}
	for _, t := range targets {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := benchkit.WaitOK(wctx, &t.Target)
		cancel()
		if err != nil {
			return err
		}
	}
	top := o.concs[len(o.concs)-1]

	var profiled *stratusServer
	var warmed []*stratusServer // the server of each res.WarmInstances
	if o.sections["warm"] {
		measured := map[string]bool{}
		for i := range sbs {
			sb := &sbs[i]
			if measured[sb.Name] {
				continue
			}
			pprofAddr := ""
			if w.profBinary && profiled == nil {
				if pprofAddr, err = benchkit.FreeAddr(); err != nil {
					return err
				}
			}
			data := filepath.Join(w.dir, fmt.Sprintf("warm-%d-data", i))
			benchkit.Logf("warm: starting a server, sandbox %s", sb.Name)
			s, note, err := startStratus(ctx, w.stratus, data, filepath.Join(w.dir, fmt.Sprintf("warm-%d-server.log", i)), pprofAddr, sb)
			if err != nil {
				return err
			}
			defer s.stop()
			if note != "" {
				benchkit.Logf("note: %s", note)
				res.SandboxNotes = append(res.SandboxNotes, "warm: "+note)
			}
			if measured[sb.Name] {
				continue
			}
			measured[sb.Name] = true
			res.addSandbox(sb.Name)
			if pprofAddr != "" {
				profiled = s
			}
			for _, f := range warmFunctions {
				zip := w.zip
				if f.name == "lognoop" {
					zip = w.logZip
				}
				cfg := stratus.FunctionConfig{Runtime: stratus.RuntimeProvided, Auth: stratus.AuthNone, IdleTimeout: stratus.Duration(30 * time.Minute)}
				if err := s.deploy(ctx, f.name, zip, cfg); err != nil {
					return err
				}
				benchkit.Logf("warm: %s, %s: starting instances at concurrency %d", sb.Name, f.name, top)
				in, err := warmUp(ctx, s, f.name, top)
				if err != nil {
					return err
				}
				benchkit.Logf("warm: %s, %s: %d live instances (%d idle)", sb.Name, f.name, in.Live, in.Idle)
				res.WarmInstances = append(res.WarmInstances, warmInstances{Sandbox: sb.Name, Function: f.name, Live: in.Live, Idle: in.Idle})
				warmed = append(warmed, s)
				for _, path := range f.paths {
					t := s.invokeTarget(f.name)
					if path == "/fn" {
						t = s.urlTarget(f.name)
					}
					t.kind, t.sandbox, t.path, t.function = kindStratus, sb.Name, path, f.name
					t.Name = fmt.Sprintf("stratus %s %s %s", sb.Name, path, f.name)
					targets = append(targets, t)
				}
			}
		}
	}

	if o.sections["relay"] {
		argv := []string{w.relay, "-listen", "127.0.0.1:0", "-n", strconv.Itoa(top), "-bootstrap", w.bootstrap}
		rctx, cancel := context.WithTimeout(ctx, 40*time.Second)
		p, addr, err := benchkit.StartProcLine(rctx, argv, nil, "", filepath.Join(w.dir, "relayfloor.log"), "ready ")
		cancel()
		if err != nil {
			return fmt.Errorf("relayfloor: %w", err)
		}
		defer p.Stop(2 * time.Second)
		targets = append(targets, &target{
			Target: benchkit.Target{Name: "runtime API floor (relayfloor)", URL: "http://" + strings.TrimSpace(addr) + "/", Body: event},
			kind:   kindRelay,
			pids:   func() []int { return []int{p.PID()} },
		})
	}

	if o.sections["rie"] {
		gobin := filepath.Join(w.dir, "gobin")
		bin, err := findRIE(ctx, o.rieBin, gobin)
		if err != nil {
			return err
		}
		res.RIEBinary = bin
		r, err := startRIE(ctx, bin, w.bootstrap, filepath.Join(w.dir, "rie.log"))
		if err != nil {
			return err
		}
		defer r.p.Stop(2 * time.Second)
		t := r.target()
		t.kind = kindRIE
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
			benchkit.Logf("round %d  c=%-3d %-36s %8.0f req/s  p50 %-9s p99 %-9s cold %d errors %d", round+1, c, t.Name, r.RPS, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Cold, r.Errs)
		}
		return r, err
	})
	if err != nil {
		return err
	}
	for i, s := range warmed {
		in := &res.WarmInstances[i]
		if x, err := s.instances(ctx, in.Function); err == nil {
			in.LiveAfter, in.IdleAfter = x.Live, x.Idle
		}
	}
	for i, t := range targets {
		tr := targetResult{Name: t.Name, Kind: t.kind, Sandbox: t.sandbox, Path: t.path, Function: t.function, MaxConc: t.MaxConc}
		for _, c := range o.concs {
			if rs := runs[i][c]; len(rs) > 0 {
				tr.Runs = append(tr.Runs, medianRun(rs))
			}
		}
		res.Warm = append(res.Warm, tr)
	}

	if profiled != nil && o.profileDir != "" {
		if err := profile(ctx, o, w, profiled, res); err != nil {
			return err
		}
	}
	return nil
}

// warmUp drives function name through /v1 invoke at concurrency conc, a
// second at a time, until conc of its instances are up and idle once the
// load stops (at least twice, at most fifteen times: in runc a sandbox
// started under load takes a while, and an instance still starting is
// live but not idle), and reports its instances.
func warmUp(ctx context.Context, s *stratusServer, name string, conc int) (v1.Instances, error) {
	tr := benchkit.NewTransport()
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	t := s.invokeTarget(name)
	var in v1.Instances
	for i := range 15 {
		if _, err := benchkit.Drive(ctx, c, &t.Target, conc, time.Second); err != nil {
			return in, err
		}
		// A runc instance held back by its CPU quota asks for its next
		// invocation up to a quota period (100 ms) after it answered.
		time.Sleep(200 * time.Millisecond)
		var err error
		if in, err = s.instances(ctx, name); err != nil {
			return in, err
		}
		if i >= 1 && in.Idle >= conc {
			break
		}
	}
	return in, nil
}

// cold measures the process-start floors, then scale from zero in each
// sandbox.
func cold(ctx context.Context, o options, w *work, res *results, sbs []sandboxChoice) error {
	benchkit.Logf("cold: %d process starts per floor variant", o.coldRuns)
	poll, err := processStart(ctx, w.tiny, o.coldRuns, false)
	if err != nil {
		return err
	}
	inh, err := processStart(ctx, w.tiny, o.coldRuns, true)
	if err != nil {
		return err
	}
	res.ProcessPoll, res.ProcessInherit = &poll, &inh
	rt, err := runtimeStart(ctx, w.bootstrap, o.coldRuns)
	if err != nil {
		return err
	}
	res.RuntimeStart = &rt

	measured := map[string]bool{}
	for i := range sbs {
		sb := &sbs[i]
		if measured[sb.Name] {
			continue
		}
		data := filepath.Join(w.dir, fmt.Sprintf("cold-%d-data", i))
		s, note, err := startStratus(ctx, w.stratus, data, filepath.Join(w.dir, fmt.Sprintf("cold-%d-server.log", i)), "", sb)
		if err != nil {
			return err
		}
		if note != "" {
			benchkit.Logf("note: %s", note)
			res.SandboxNotes = append(res.SandboxNotes, "cold: "+note)
		}
		if measured[sb.Name] {
			s.stop()
			continue
		}
		measured[sb.Name] = true
		res.addSandbox(sb.Name)
		benchkit.Logf("cold: %s: %d scale-from-zero invokes, one fresh function each", sb.Name, o.coldRuns)
		cr, err := stratusCold(ctx, s, sb.Name, data, w.zip, o.coldRuns)
		s.stop()
		if err != nil {
			return fmt.Errorf("cold, %s: %w", sb.Name, err)
		}
		res.Cold = append(res.Cold, cr)
	}
	return nil
}
