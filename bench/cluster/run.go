package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/bench/internal/benchkit"
	"github.com/stratus-run/stratus/internal/clustertest"
)

// function is the warm function every Stratus target invokes.
const function = "lognoop"

// Kinds of targets.
const (
	kindDirect    = "direct"
	kindSingle    = "single"
	kindCluster   = "cluster"   // round-robin over the three servers
	kindOwner     = "owner"     // every call to the function's owner
	kindForwarded = "forwarded" // every call to the two other servers
)

// allKinds is the default -targets.
const allKinds = kindDirect + "," + kindSingle + "," + kindCluster + "," + kindOwner + "," + kindForwarded

// clusterSize is the number of Stratus servers and of NATS nodes.
const clusterSize = 3

var event = []byte(`{}`)

// target is one endpoint (or set of endpoints) the load generator drives,
// and the processes whose CPU it accounts.
type target struct {
	benchkit.Target
	kind string
	side *side
}

// point is the result of one measurement at one concurrency.
type point struct {
	benchkit.Run
	// CPU is the CPU time (user + system) per answered request of each
	// kind of process of the target's side; Servers that of each stratus
	// server on its own, in the side's order.
	CPU     map[string]time.Duration
	Servers []time.Duration `json:",omitempty"`
}

// Total is the CPU time of every process of the side per answer.
func (p point) Total() time.Duration { return total(p.CPU) }

// measure drives t at conc and accounts the CPU time of its side.
func measure(ctx context.Context, t *target, conc int, warmup, dur time.Duration) (point, error) {
	var p point
	around := func() func(benchkit.Run) {
		r0 := t.side.read()
		return func(r benchkit.Run) {
			p.CPU, p.Servers = perInvocation(r0, t.side.read(), r.OK)
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
	server string // stratus
	nats   string // nats-server
}

func (w *work) build(ctx context.Context, o options, cluster bool) error {
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
	if cluster {
		if w.nats, err = natsBinary(ctx, w.root); err != nil {
			return err
		}
	}
	if o.stratusBin != "" {
		w.server = o.stratusBin
		return nil
	}
	w.server = filepath.Join(w.dir, "stratus")
	return benchkit.GoBuild(ctx, w.root, "./cmd/stratus", w.server)
}

// funcConfig is the function's configuration: the defaults (128 MB, the
// token required), with instances kept for the whole run.
var funcConfig = stratus.FunctionConfig{Runtime: stratus.RuntimeProvided, IdleTimeout: stratus.Duration(30 * time.Minute)}

func bench(ctx context.Context, o options) (*results, error) {
	start := time.Now()
	res := &results{Env: benchkit.Environment(), Options: optionsView(o), Sandbox: map[string]string{}, Warm: map[string]v1.Instances{}}
	defer func() {
		res.Elapsed = time.Since(start)
		res.Env["loadavg at end"] = fmt.Sprintf("%.1f", benchkit.LoadAvg())
	}()
	root, err := benchkit.ModuleRoot(ctx)
	if err != nil {
		return nil, err
	}
	res.Env["tree"] = benchkit.TreeDigest(root)
	dir, cleanup, err := benchkit.WorkDir("stratus-cluster-", o.keep)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	wantCluster := o.targets[kindCluster] || o.targets[kindOwner] || o.targets[kindForwarded]
	w := &work{dir: dir, root: root}
	if err := w.build(ctx, o, wantCluster); err != nil {
		return nil, err
	}
	res.Binary, res.NATSServer = w.server, w.nats

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
	floor := &target{Target: benchkit.Target{Name: "direct (net/http)", URL: "http://" + directAddr + "/", Body: event},
		kind: kindDirect, side: &side{name: kindDirect, servers: []int{direct.PID()}}}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = benchkit.WaitOK(wctx, &floor.Target)
	cancel()
	if err != nil {
		return res, err
	}
	targets := []*target{floor}

	sandboxFlags, note := defaultSandbox()
	if note != "" {
		res.note(note)
	}
	bearer := http.Header{"Authorization": {"Bearer " + benchkit.Token}}
	invokeURL := func(s *benchkit.Server) string { return s.URL + "/v1/functions/" + function + "/invoke" }

	// One server with the defaults.
	benchkit.Logf("single: starting a server (SQLite, embedded NATS)")
	single, err := benchkit.StartServer(ctx, w.server, filepath.Join(dir, "single-data"), filepath.Join(dir, "single.log"), sandboxFlags)
	if err != nil {
		return res, fmt.Errorf("single: %w", err)
	}
	defer single.Stop(15 * time.Second)
	if err := res.checkSandbox(ctx, "single", single, sandboxFlags); err != nil {
		return res, err
	}
	if _, err := single.Client.Deploy(ctx, function, funcConfig, bytes.NewReader(w.logZip)); err != nil {
		return res, fmt.Errorf("single: deploy %s: %w", function, err)
	}
	singleT := &target{Target: benchkit.Target{Name: "single server (SQLite, embedded NATS)", URL: invokeURL(single), Header: bearer, Body: event},
		kind: kindSingle, side: &side{name: kindSingle, servers: []int{single.PID()}}}
	targets = append(targets, singleT)

	top := o.concs[len(o.concs)-1]
	benchkit.Logf("single: starting instances at concurrency %d", top)
	if res.Warm["single"], err = warmUp(ctx, &singleT.Target, []*benchkit.Server{single}, top); err != nil {
		return res, fmt.Errorf("single: warm up: %w", err)
	}
	benchkit.Logf("single: %d live instances (%d idle)", res.Warm["single"].Live, res.Warm["single"].Idle)

	var cl *clusterRun
	if wantCluster {
		cl, err = startCluster(ctx, w, res, sandboxFlags)
		if cl != nil {
			defer cl.stop()
		}
		if err != nil {
			return res, err
		}
		var urls []string
		for _, s := range cl.servers {
			urls = append(urls, invokeURL(s))
		}
		rr := &target{Target: benchkit.Target{Name: "cluster of 3, round-robin", URLs: urls, Header: bearer, Body: event}, kind: kindCluster, side: cl.side}
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		err = benchkit.WaitOK(wctx, &rr.Target)
		cancel()
		if err != nil {
			return res, fmt.Errorf("cluster: the function on every server: %w", err)
		}
		benchkit.Logf("cluster: starting instances at concurrency %d (calls round-robin over the servers)", top)
		if res.Warm["cluster"], err = warmUp(ctx, &rr.Target, cl.servers, top); err != nil {
			return res, fmt.Errorf("cluster: warm up: %w", err)
		}
		owner, err := cl.owner()
		if err != nil {
			return res, err
		}
		res.Owner = cl.names[owner]
		benchkit.Logf("cluster: %d live instances (%d idle), all on %s (the owner)", res.Warm["cluster"].Live, res.Warm["cluster"].Idle, res.Owner)
		var others []string
		for i, s := range cl.servers {
			if i != owner {
				others = append(others, invokeURL(s))
			}
		}
		if o.targets[kindCluster] {
			targets = append(targets, rr)
		}
		if o.targets[kindOwner] {
			targets = append(targets, &target{Target: benchkit.Target{Name: "cluster of 3, owner only", URL: invokeURL(cl.servers[owner]), Header: bearer, Body: event},
				kind: kindOwner, side: cl.side})
		}
		if o.targets[kindForwarded] {
			targets = append(targets, &target{Target: benchkit.Target{Name: "cluster of 3, forwarded only", URLs: others, Header: bearer, Body: event},
				kind: kindForwarded, side: cl.side})
		}
	}

	if o.idle > 0 {
		sides := []*side{singleT.side}
		if cl != nil {
			sides = append(sides, cl.side)
		}
		benchkit.Logf("CPU with no load, %s", o.idle)
		res.Idle = idleRates(sides, o.idle)
	}

	bts := make([]*benchkit.Target, len(targets))
	for i, t := range targets {
		bts[i] = &t.Target
	}
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
		benchkit.Logf("round %d  c=%-3d %-38s %7.0f req/s  p50 %-9s p99 %-9s CPU/inv %-8s cold %d errors %d load %.1f", round+1, c, t.Name, r.RPS,
			r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), benchkit.FmtDur(r.Total()), r.Cold, r.Errs, r.LoadAvg)
		by[ti][c] = append(by[ti][c], r)
		return r, nil
	})
	if err != nil {
		return res, err
	}
	for i, t := range targets {
		tr := targetResult{Name: t.Name, Kind: t.kind, URL: t.URL, URLs: t.URLs}
		for _, c := range o.concs {
			if rs := by[i][c]; len(rs) > 0 {
				tr.Runs = append(tr.Runs, medianRun(rs))
				tr.Rounds = append(tr.Rounds, rs)
			}
		}
		res.Targets = append(res.Targets, tr)
	}
	if cl != nil {
		res.ServerNames = cl.names
		if owner, err := cl.owner(); err == nil && cl.names[owner] != res.Owner {
			res.note(fmt.Sprintf("the function's instances moved from %s to %s during the run", res.Owner, cl.names[owner]))
		}
		if nodes, err := cl.servers[0].Client.Nodes(ctx); err == nil {
			res.Nodes = nodes
		}
	}
	return res, nil
}

// clusterRun is PostgreSQL, the NATS cluster and the Stratus servers of
// the cluster side.
type clusterRun struct {
	pg      *clustertest.Postgres
	nats    *natsCluster
	servers []*benchkit.Server
	names   []string
	side    *side
}

// startCluster starts PostgreSQL, the NATS cluster and three servers on
// them, waits until every server lists the three alive and ready, and
// deploys the function on the first. What it started is in the
// clusterRun it returns, even with an error; stop stops it.
func startCluster(ctx context.Context, w *work, res *results, sandboxFlags []string) (*clusterRun, error) {
	cl := &clusterRun{side: &side{name: kindCluster}}
	benchkit.Logf("cluster: starting PostgreSQL")
	before := benchkit.Children(os.Getpid())
	pg, err := clustertest.NewPostgres(ctx)
	if err != nil {
		return nil, fmt.Errorf("start PostgreSQL: %w", err)
	}
	cl.pg = pg
	if cl.side.postgres = newChild(before, "postgres"); cl.side.postgres == 0 {
		return cl, fmt.Errorf("start PostgreSQL: no postgres child process found")
	}
	res.Postgres = version(cl.side.postgres)
	db, err := pg.NewDB(ctx, "")
	if err != nil {
		return cl, err
	}
	store := pg.URL(db)

	benchkit.Logf("cluster: starting %d NATS nodes", clusterSize)
	natsDir := filepath.Join(w.dir, "nats")
	if err := os.MkdirAll(natsDir, 0o755); err != nil {
		return cl, err
	}
	if cl.nats, err = startNATS(ctx, w.nats, natsDir, clusterSize); err != nil {
		return cl, err
	}
	cl.side.nats = cl.nats.pids()
	res.NATSVersion = version(cl.side.nats[0])

	for i := range clusterSize {
		name := fmt.Sprintf("s%d", i+1)
		addr, err := benchkit.FreeAddr()
		if err != nil {
			return cl, err
		}
		args := append(append([]string(nil), sandboxFlags...), "--listen", addr, "--advertise", "http://"+addr,
			"--store", store, "--nats-url", cl.nats.URL(), "--node-name", name)
		benchkit.Logf("cluster: starting server %s", name)
		s, err := benchkit.StartServer(ctx, w.server, filepath.Join(w.dir, name+"-data"), filepath.Join(w.dir, name+".log"), args)
		if err != nil {
			return cl, fmt.Errorf("server %s: %w", name, err)
		}
		cl.servers, cl.names = append(cl.servers, s), append(cl.names, name)
		cl.side.servers = append(cl.side.servers, s.PID())
		if err := res.checkSandbox(ctx, name, s, sandboxFlags); err != nil {
			return cl, err
		}
	}
	if err := cl.waitReady(ctx, time.Minute); err != nil {
		return cl, err
	}
	if _, err := cl.servers[0].Client.Deploy(ctx, function, funcConfig, bytes.NewReader(w.logZip)); err != nil {
		return cl, fmt.Errorf("cluster: deploy %s on %s: %w", function, cl.names[0], err)
	}
	return cl, nil
}

// waitReady waits until every server lists every server alive and ready.
func (cl *clusterRun) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for i, s := range cl.servers {
		for {
			err := nodesReady(ctx, s, cl.names)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("cluster: server %s: %w", cl.names[i], err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// nodesReady checks that s lists exactly names, each alive and ready.
func nodesReady(ctx context.Context, s *benchkit.Server, names []string) error {
	nodes, err := s.Client.Nodes(ctx)
	if err != nil {
		return err
	}
	var got []string
	for _, n := range nodes {
		got = append(got, n.Name)
		if !n.Alive || n.State != "ready" {
			return fmt.Errorf("node %s: alive %v, state %q", n.Name, n.Alive, n.State)
		}
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		return fmt.Errorf("nodes %v, want %v", got, names)
	}
	return nil
}

// owner is the index of the server that runs the function's instances:
// the one with live sandboxes under it (the owner runs every instance).
func (cl *clusterRun) owner() (int, error) {
	owner, most := -1, 0
	for i, s := range cl.servers {
		if n := len(benchkit.Descendants(s.PID())); n > most {
			owner, most = i, n
		}
	}
	if owner < 0 {
		return 0, fmt.Errorf("cluster: no server runs an instance of %s", function)
	}
	return owner, nil
}

// stop stops the servers (SIGTERM to all at once: stopped one by one,
// each would hand its work to the next), then the NATS nodes, then
// PostgreSQL.
func (cl *clusterRun) stop() {
	stopAll(cl.servers)
	if cl.nats != nil {
		cl.nats.stop()
	}
	if cl.pg != nil {
		if err := cl.pg.Close(); err != nil {
			benchkit.Logf("stop PostgreSQL: %v", err)
		}
	}
}

// stopAll stops servers at once and waits for every one.
func stopAll(servers []*benchkit.Server) {
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Go(func() {
			if !s.Stop(30 * time.Second) {
				benchkit.Logf("server %s did not stop within 30s; killed", s.Addr)
			}
		})
	}
	wg.Wait()
}

// version is the first line of `EXE --version` of the executable of pid.
func version(pid int) string {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return ""
	}
	out, err := exec.Command(exe, "--version").Output()
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
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

// checkSandbox records the sandbox server name reports, with a note when
// it is not runc although no --sandbox was given.
func (r *results) checkSandbox(ctx context.Context, name string, s *benchkit.Server, flags []string) error {
	info, err := s.Client.Info(ctx)
	if err != nil {
		return fmt.Errorf("%s: server info: %w", name, err)
	}
	r.Sandbox[name] = info.Sandbox.Driver
	if info.Sandbox.Driver != "runc" && len(flags) == 0 {
		r.note(fmt.Sprintf("%s: the server chose the %s sandbox, not runc (%s)", name, info.Sandbox.Driver, info.Sandbox.Why))
	}
	return nil
}

// warmUp drives t at concurrency conc, a second at a time, until conc of
// the function's instances are up and idle within a second after the
// load stops (at least twice, at most fifteen times: in runc a sandbox
// started under load takes a while), and reports the instances of the
// server that has the most (the owner, in a cluster).
func warmUp(ctx context.Context, t *benchkit.Target, servers []*benchkit.Server, conc int) (v1.Instances, error) {
	tr := benchkit.NewTransport()
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	var in v1.Instances
	for i := range 15 {
		if _, err := benchkit.Drive(ctx, c, t, conc, time.Second); err != nil {
			return in, err
		}
		// An instance answers, then asks for its next invocation: give
		// them up to a second to.
		for range 10 {
			time.Sleep(100 * time.Millisecond)
			var err error
			if in, err = instances(ctx, servers); err != nil {
				return in, err
			}
			if in.Idle >= conc {
				break
			}
		}
		benchkit.Logf("  %d live, %d idle", in.Live, in.Idle)
		if i >= 1 && in.Idle >= conc {
			break
		}
	}
	return in, nil
}

// instances are the function's instances on the server that has the
// most live.
func instances(ctx context.Context, servers []*benchkit.Server) (v1.Instances, error) {
	var in v1.Instances
	for _, s := range servers {
		f, err := s.Client.Get(ctx, function)
		if err != nil {
			return in, err
		}
		if f.Instances.Live > in.Live {
			in = f.Instances
		}
	}
	return in, nil
}
