// Command containers measures Stratus's container paths against their
// floors, in one run on one machine:
//
//   - throughput: the gosvc test service (one replica, --min 1 --max 1)
//     through the gateway (GET /svc/NAME/, with --concurrency 0 and 80),
//     next to the same replica hit directly at its address and behind a
//     bare httputil.ReverseProxy running as its own process: requests/s at
//     concurrency 32, p50/p99 on one keep-alive connection;
//   - coldsvc: a service with --min 0 from zero replicas to its first
//     answer;
//   - coldfn: the first invoke of a fresh no-op aws-lambda-go function
//     (provided.al2023) in a runc sandbox;
//   - floors of both, measured in the same run: gosvc exec'd on the host,
//     `runc run` of minimal bundles (gosvc until it answers HTTP; a
//     program that only exits) and `runc create` ahead then `runc start`;
//   - density: one service with 200 replicas: what the server and the
//     processes it keeps per replica cost beyond the containers' own
//     memory, and that removing the service leaves nothing.
//
// Run it as root from the module root: go run ./bench/containers
// [-sections throughput,coldsvc,coldfn,density]. It builds everything it
// runs statically (stratus, gosvc, the no-op function, bareproxy) and the
// service image (a docker-save tarball made with go-containerregistry).
// Everything listens on 127.0.0.1 or on the sandboxes' bridge; every loop
// is bounded. Results are recorded in bench/containers/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

type options struct {
	sections map[string]bool
	concs    []int
	duration time.Duration
	warmup   time.Duration
	rounds   int
	coldRuns int
	svcMem   []int
	fnMem    []int
	tpMemory int
	tpCPU    float64
	replicas int
	// maxPrepared is the main server's --max-prepared; < 0 leaves the
	// server's default.
	maxPrepared int
	stratusBin  string
	jsonOut     string
	keep        bool
}

var allSections = []string{"throughput", "coldsvc", "coldfn", "density"}

func main() { os.Exit(run()) }

func run() int {
	var o options
	var sections, concs, svcMem, fnMem string
	flag.StringVar(&sections, "sections", strings.Join(allSections, ","), "sections to run: throughput, coldsvc, coldfn, density (the cold floors run with coldsvc or coldfn)")
	flag.StringVar(&concs, "conc", "1,32", "concurrency levels of the throughput runs (1 is also the one-connection latency run)")
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "measured time of each throughput run")
	flag.DurationVar(&o.warmup, "warmup", 500*time.Millisecond, "unmeasured load before each throughput run (opens the connections)")
	flag.IntVar(&o.rounds, "rounds", 5, "throughput rounds over every target and concurrency, interleaved; figures are the median of the rounds")
	flag.IntVar(&o.coldRuns, "cold-runs", 30, "runs of each cold start and of each floor")
	flag.StringVar(&svcMem, "svc-memory", "512,1769", "--memory of the coldsvc services, one service each (512 is the default)")
	flag.StringVar(&fnMem, "fn-memory", "128,1769", "--memory of the coldfn functions (128 is the default; 1769 MB gets a whole CPU)")
	flag.IntVar(&o.tpMemory, "tp-memory", 4096, "--memory of the throughput services")
	flag.Float64Var(&o.tpCPU, "tp-cpu", 2, "--cpu of the throughput services (their CPU quota in cores)")
	flag.IntVar(&o.replicas, "replicas", 200, "replicas of the density section's service")
	flag.IntVar(&o.maxPrepared, "max-prepared", -1, "--max-prepared of the server of the throughput and cold sections (0: no create-ahead; coldfn deploys -cold-runs functions per memory size up front, so set it at least that high to measure every cold start on a prepared sandbox); default: the server's")
	flag.StringVar(&o.stratusBin, "stratus", "", "stratus binary to use (default: build ./cmd/stratus)")
	flag.StringVar(&o.jsonOut, "json", "", "also write the results as JSON to this file")
	flag.BoolVar(&o.keep, "keep", false, "keep the work dir (binaries, data dirs, logs)")
	flag.Parse()
	var err error
	if o.sections, err = benchkit.ParseSections(sections, allSections...); err != nil {
		fmt.Fprintln(os.Stderr, "containers:", err)
		return 2
	}
	if o.concs, err = benchkit.ParseInts(concs, 1, 1024); err != nil {
		fmt.Fprintln(os.Stderr, "containers: -conc:", err)
		return 2
	}
	if o.svcMem, err = benchkit.ParseInts(svcMem, 64, 32768); err != nil {
		fmt.Fprintln(os.Stderr, "containers: -svc-memory:", err)
		return 2
	}
	if o.fnMem, err = benchkit.ParseInts(fnMem, 128, 10240); err != nil {
		fmt.Fprintln(os.Stderr, "containers: -fn-memory:", err)
		return 2
	}
	if o.rounds < 1 || o.coldRuns < 1 || o.replicas < 1 || o.replicas > 1000 || o.duration <= 0 {
		fmt.Fprintln(os.Stderr, "containers: -rounds, -cold-runs, -duration must be positive, -replicas between 1 and 1000")
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "containers: run as root: the server's runc driver and the runc floors need it")
		return 2
	}

	return benchkit.Main("containers", func(ctx context.Context) error {
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

// work is the run's scratch folder and what it built.
type work struct {
	dir       string
	root      string // module root
	stratus   string
	gosvc     string // e2e/testdata/gosvc, static
	bareproxy string
	bootstrap string // e2e/testdata/gonoop, static
	zip       []byte // the bootstrap's folder zipped as the CLI does
	image     string // the service image, a docker-save tarball
}

// serverEnd is how a server ended: the time SIGTERM took and what it
// left.
type serverEnd struct {
	Name     string
	StopTime time.Duration
	Left     leftovers
}

// results is everything one run measured.
type results struct {
	Env           map[string]string
	Options       map[string]any
	Throughput    *throughputResult `json:",omitempty"`
	Floors        []series          `json:",omitempty"`
	ColdServices  []series          `json:",omitempty"`
	ColdFunctions []series          `json:",omitempty"`
	Density       *densityResult    `json:",omitempty"`
	Servers       []serverEnd
	Notes         []string `json:",omitempty"`
}

func bench(ctx context.Context, o options) (*results, error) {
	res := &results{Env: benchkit.Environment(), Options: optionsView(o)}
	root, err := benchkit.ModuleRoot(ctx)
	if err != nil {
		return nil, err
	}
	res.Env["tree"] = benchkit.TreeDigest(root)
	dir, cleanup, err := benchkit.WorkDir("stratus-bench-containers-", o.keep)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	w := &work{dir: dir, root: root}
	if err := w.build(ctx, o); err != nil {
		return nil, err
	}

	if o.sections["throughput"] || o.sections["coldsvc"] || o.sections["coldfn"] {
		if err := mainServer(ctx, o, w, res); err != nil {
			return res, err
		}
	}
	if o.sections["density"] {
		d, end, err := density(ctx, o, w)
		res.Density = d
		if end.Name != "" {
			res.Servers = append(res.Servers, end)
		}
		if err != nil {
			return res, fmt.Errorf("density: %w", err)
		}
	}
	for _, e := range res.Servers {
		if !e.Left.none() {
			return res, fmt.Errorf("%s left %s", e.Name, e.Left)
		}
	}
	return res, nil
}

// mainServer runs the throughput and cold sections on one server whose
// autoscaler takes a service back to zero about a second after its last
// request.
func mainServer(ctx context.Context, o options, w *work, res *results) (err error) {
	args := []string{"--stable-window", "1s", "--panic-window", "1s", "--scale-to-zero-grace", "0s", "--autoscale-tick", "100ms"}
	if o.maxPrepared >= 0 {
		args = append(args, "--max-prepared", strconv.Itoa(o.maxPrepared))
	}
	s, err := startStratus(ctx, w.stratus, filepath.Join(w.dir, "data"), filepath.Join(w.dir, "server.log"), args...)
	if err != nil {
		return err
	}
	defer func() {
		end := serverEnd{Name: "server"}
		end.StopTime, end.Left = s.stop()
		res.Servers = append(res.Servers, end)
	}()
	if o.sections["throughput"] || o.sections["coldsvc"] {
		if err := s.importImage(ctx, w.image); err != nil {
			return err
		}
	}
	if o.sections["throughput"] {
		benchkit.Logf("throughput: %d rounds of c=%v, %s each", o.rounds, o.concs, o.duration)
		if res.Throughput, err = throughput(ctx, o, w, s); err != nil {
			return fmt.Errorf("throughput: %w", err)
		}
	}
	if !o.sections["coldsvc"] && !o.sections["coldfn"] {
		return nil
	}
	f, err := newFloors(filepath.Join(w.dir, "floors"), w.gosvc)
	if err != nil {
		return err
	}
	defer f.cleanup()
	var cf *coldFunctions
	if o.sections["coldfn"] {
		if cf, err = newColdFunctions(ctx, s, w.zip, o.fnMem, o.coldRuns); err != nil {
			return fmt.Errorf("coldfn: %w", err)
		}
		defer cf.close(ctx)
	}
	benchkit.Logf("floors%s: %d runs, interleaved", map[bool]string{true: " and coldfn", false: ""}[cf != nil], o.coldRuns)
	for i := range o.coldRuns {
		if err := f.runOnce(ctx); err != nil {
			return err
		}
		if cf != nil {
			if err := cf.run(ctx, i); err != nil {
				return fmt.Errorf("coldfn: %w", err)
			}
		}
		if (i+1)%10 == 0 {
			benchkit.Logf("floors: %d/%d runs", i+1, o.coldRuns)
		}
	}
	res.Floors = f.results()
	if cf != nil {
		res.ColdFunctions = cf.results()
	}
	if o.sections["coldsvc"] {
		benchkit.Logf("coldsvc: %d runs per service", o.coldRuns)
		if res.ColdServices, err = coldServices(ctx, s, o.svcMem, o.coldRuns); err != nil {
			return fmt.Errorf("coldsvc: %w", err)
		}
	}
	return nil
}

func (w *work) build(ctx context.Context, o options) error {
	benchkit.Logf("building stratus, gosvc, the no-op function and bareproxy (static)")
	w.gosvc = filepath.Join(w.dir, "gosvc")
	if err := benchkit.GoBuild(ctx, w.root, "./e2e/testdata/gosvc", w.gosvc, "-ldflags=-s -w"); err != nil {
		return err
	}
	w.bareproxy = filepath.Join(w.dir, "bareproxy")
	if err := benchkit.GoBuild(ctx, w.root, "./bench/containers/bareproxy", w.bareproxy); err != nil {
		return err
	}
	w.bootstrap = filepath.Join(w.dir, "noop", "bootstrap")
	if err := benchkit.GoBuild(ctx, w.root, "./e2e/testdata/gonoop", w.bootstrap); err != nil {
		return err
	}
	if o.stratusBin != "" {
		w.stratus = o.stratusBin
	} else {
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
	w.image = filepath.Join(w.dir, "gosvc-image.tar")
	return writeServiceImage(w.image, w.gosvc)
}

func optionsView(o options) map[string]any {
	var secs []string
	for s := range o.sections {
		secs = append(secs, s)
	}
	slices.Sort(secs)
	return map[string]any{
		"sections": secs, "conc": o.concs, "duration": o.duration.String(), "warmup": o.warmup.String(),
		"rounds": o.rounds, "coldRuns": o.coldRuns, "svcMemory": o.svcMem, "fnMemory": o.fnMem,
		"tpMemory": o.tpMemory, "tpCPU": o.tpCPU, "replicas": o.replicas, "maxPrepared": o.maxPrepared,
	}
}
