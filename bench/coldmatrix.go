package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/bench/internal/benchkit"
	"github.com/stratus-run/stratus/runtimes"
)

// The coldmatrix section (issue 10, points 2 and 5): cold starts in the
// sandbox users get by default (the server started without --sandbox: runc
// as root), three runtimes × two memory sizes, with create-ahead (the
// default) and without it (a second server with --max-prepared 0), next to
// each runtime's floor taken in the same run (the same program exec'd on
// the host against the bench's own minimal Runtime API, timed until its
// first GET invocation/next), and a burst of concurrent first calls.

// Memory sizes of the matrix: the default, and the size that gets one
// full vCPU.
var matrixMemories = []int{128, 1769}

// matrixOffMemory is the memory size measured with create-ahead off.
const matrixOffMemory = 128

// matrixSettle is the pause between the moment a fresh function is ready
// (its prepared sandbox seen, or its deploy answered when create-ahead is
// off) and its first invoke: the prepare's last steps (runc exits, the
// pool records the sandbox) and the deploy's log writes settle.
const matrixSettle = 250 * time.Millisecond

// Goals of issue 10 (point 2), p50 of the first invoke after deploy, in
// the default sandbox at 128 MB and 1769 MB alike.
var matrixGoal = map[string]time.Duration{
	stratus.RuntimeProvided: 10 * time.Millisecond,
	stratus.RuntimePython3:  40 * time.Millisecond,
	stratus.RuntimeNodejs:   50 * time.Millisecond,
}

const (
	goalFloorRatio = 1.5 // a cold start's p50 over its runtime's floor
	goalBurstRatio = 3.0 // a burst's p50 over the single cold start
)

// matrixRuntime is one runtime of the matrix: its function's code and
// how the floor runs the same program on the host.
type matrixRuntime struct {
	Runtime string
	Handler string
	short   string
	zip     []byte
	codeDir string   // the function's code, unzipped (the floor's working dir)
	argv    []string // the program as the floor execs it
	rtDir   string   // LAMBDA_RUNTIME_DIR of the floor
	// installed is the program with the host's interpreter as installed,
	// when argv runs the copy in the runtime's root instead.
	installed []string
}

// matrixCell is one cell: a runtime at a memory size, with or without
// create-ahead.
type matrixCell struct {
	Runtime     string
	MemoryMB    int
	CreateAhead bool
	// Total is the client's time from sending the first invoke until the
	// answer's last byte; Init the server's X-Stratus-Init-Duration-Ms.
	Total coldResult
	Init  coldResult
	// Ready is the time from the deploy's answer until the prepared
	// sandbox was seen (create-ahead only).
	Ready coldResult
	// FloorRatio is Total.P50 over the runtime's floor (to invocation/next).
	FloorRatio float64
}

// matrixFloor is a runtime's floor: its program exec'd on the host.
type matrixFloor struct {
	Runtime string
	Program string
	// ToNext: exec until the runtime's first GET invocation/next (the
	// floor the ratios use); ToAnswer: until it posts its first answer.
	ToNext   coldResult
	ToAnswer coldResult
	// Installed is exec → 1st invocation/next of the host's interpreter as
	// installed (python3: with the host's site-packages, which the
	// runtime's root leaves out), when Program is another copy.
	Installed        *coldResult `json:",omitempty"`
	InstalledProgram string      `json:",omitempty"`
}

// matrixBurst is a burst of concurrent first calls to a function with no
// instance.
type matrixBurst struct {
	Runtime    string
	MemoryMB   int
	Calls      int
	Total      coldResult
	ColdStarts int // answers that said X-Stratus-Cold-Start: true
	// SingleP50 is the runtime's single cold start (same memory, with
	// create-ahead); Ratio is Total.P50 over it.
	SingleP50 time.Duration
	Ratio     float64
}

// coldMatrixResult is what the coldmatrix section measured.
type coldMatrixResult struct {
	Sandbox  string // the driver the server chose (it must be runc)
	Why      string
	Runs     int
	Settle   time.Duration
	Versions map[string]string // interpreters' versions
	Floors   []matrixFloor
	Cells    []matrixCell
	Bursts   []matrixBurst
	// Load averages (1 min) at the start, the end, and the lowest and
	// highest seen between runs.
	LoadStart, LoadEnd, LoadMin, LoadMax float64
}

func (r *coldMatrixResult) floor(rt string) *matrixFloor {
	for i := range r.Floors {
		if r.Floors[i].Runtime == rt {
			return &r.Floors[i]
		}
	}
	return nil
}

func (r *coldMatrixResult) cell(rt string, mem int, ahead bool) *matrixCell {
	for i := range r.Cells {
		c := &r.Cells[i]
		if c.Runtime == rt && c.MemoryMB == mem && c.CreateAhead == ahead {
			return c
		}
	}
	return nil
}

// matrixServer is a server of the section, with what it takes to see its
// sandboxes.
type matrixServer struct {
	*stratusServer
	createAhead bool
	runcRoot    string       // runc --root of its driver: one folder per container
	hc          *http.Client // one keep-alive connection for the timed invokes
}

// coldMatrix runs the section.
func coldMatrix(ctx context.Context, o options, w *work, res *results) error {
	if os.Geteuid() != 0 {
		return errors.New("coldmatrix: measures the runc sandbox users get as root; run the bench as root")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		return fmt.Errorf("coldmatrix: runc is not on PATH: %w", err)
	}
	r := &coldMatrixResult{Runs: o.matrixRuns, Settle: matrixSettle, Versions: map[string]string{}, LoadStart: benchkit.LoadAvg()}
	r.LoadMin, r.LoadMax = r.LoadStart, r.LoadStart
	res.ColdMatrix = r
	sample := func() {
		l := benchkit.LoadAvg()
		r.LoadMin, r.LoadMax = min(r.LoadMin, l), max(r.LoadMax, l)
	}

	rts, err := matrixRuntimes(ctx, w, r)
	if err != nil {
		return err
	}

	// Two servers, both without --sandbox (auto: runc as root): the
	// default, and one with create-ahead off.
	var servers []*matrixServer
	defer func() {
		for _, s := range servers {
			s.stop()
		}
	}()
	for _, ahead := range []bool{true, false} {
		name := "matrix"
		var extra []string
		if !ahead {
			name = "matrix-noahead"
			extra = []string{"--max-prepared", "0"}
		}
		data := filepath.Join(w.dir, name+"-data")
		s, err := startServer(ctx, w.stratus, data, filepath.Join(w.dir, name+"-server.log"), "", extra)
		if err != nil {
			return err
		}
		ms := &matrixServer{stratusServer: s, createAhead: ahead, runcRoot: filepath.Join(data, "run", "runc", "runc"),
			hc: &http.Client{Transport: benchkit.NewTransport()}}
		servers = append(servers, ms)
		defer ms.hc.CloseIdleConnections()
		info, err := s.Client.Info(ctx)
		if err != nil {
			return err
		}
		r.Sandbox, r.Why = info.Sandbox.Driver, info.Sandbox.Why
		if info.Sandbox.Driver != "runc" {
			return fmt.Errorf("coldmatrix: the server chose the %s sandbox (%s), not runc", info.Sandbox.Driver, info.Sandbox.Why)
		}
		if err := benchkit.WaitAnswer(ctx, ms.hc, s.URL+"/healthz"); err != nil {
			return err
		}
	}
	on, off := servers[0], servers[1]

	for _, rt := range rts {
		// One unmeasured cold start per runtime and server first: the
		// first sandbox of a runtime builds its minimal root.
		for _, s := range servers {
			benchkit.Logf("coldmatrix: %s: one unmeasured cold start (builds the runtime's root), create-ahead %v", rt.Runtime, s.createAhead)
			if _, _, _, err := s.coldOnce(ctx, "cm-"+rt.short+"-warm", rt, matrixOffMemory); err != nil {
				return err
			}
		}
		if rt.Runtime == stratus.RuntimePython3 {
			// The floor runs the interpreter of the runtime's root (the
			// same binary and standard library the sandbox runs, without
			// the host's site-packages), on the host.
			if err := rt.useRootInterpreter(on.Data); err != nil {
				return err
			}
		}
		type key struct {
			mem   int
			ahead bool
		}
		total, inits, ready := map[key][]time.Duration{}, map[key][]time.Duration{}, map[key][]time.Duration{}
		var toNext, toAnswer, installed []time.Duration
		benchkit.Logf("coldmatrix: %s: %d rounds of: floor, create-ahead at %v MB, create-ahead off at %d MB", rt.Runtime, o.matrixRuns, matrixMemories, matrixOffMemory)
		for i := range o.matrixRuns {
			if err := ctx.Err(); err != nil {
				return err
			}
			next, ans, err := runtimeFloorOnce(rt.argv, rt.codeDir, rt.floorEnv())
			if err != nil {
				return fmt.Errorf("coldmatrix: %s floor: %w", rt.Runtime, err)
			}
			toNext, toAnswer = append(toNext, next), append(toAnswer, ans)
			if rt.installed != nil {
				time.Sleep(50 * time.Millisecond)
				next, _, err := runtimeFloorOnce(rt.installed, rt.codeDir, rt.floorEnv())
				if err != nil {
					return fmt.Errorf("coldmatrix: %s floor (installed interpreter): %w", rt.Runtime, err)
				}
				installed = append(installed, next)
			}
			time.Sleep(50 * time.Millisecond)
			type run struct {
				s   *matrixServer
				mem int
			}
			runs := []run{}
			for _, mem := range matrixMemories {
				runs = append(runs, run{on, mem})
			}
			runs = append(runs, run{off, matrixOffMemory})
			for _, x := range runs {
				name := fmt.Sprintf("cm-%s-%d-%s-%03d", rt.short, x.mem, map[bool]string{true: "on", false: "off"}[x.s.createAhead], i)
				d, initD, rd, err := x.s.coldOnce(ctx, name, rt, x.mem)
				if err != nil {
					return err
				}
				k := key{x.mem, x.s.createAhead}
				total[k] = append(total[k], d)
				inits[k] = append(inits[k], initD)
				if x.s.createAhead {
					ready[k] = append(ready[k], rd)
				}
				sample()
			}
		}
		fl := matrixFloor{Runtime: rt.Runtime, Program: strings.Join(rt.argv, " "), ToNext: summarise(toNext), ToAnswer: summarise(toAnswer)}
		if len(installed) > 0 {
			x := summarise(installed)
			fl.Installed, fl.InstalledProgram = &x, strings.Join(rt.installed, " ")
		}
		r.Floors = append(r.Floors, fl)
		for _, ahead := range []bool{true, false} {
			for _, mem := range matrixMemories {
				k := key{mem, ahead}
				if len(total[k]) == 0 {
					continue
				}
				c := matrixCell{Runtime: rt.Runtime, MemoryMB: mem, CreateAhead: ahead, Total: summarise(total[k]), Init: summarise(inits[k])}
				if len(ready[k]) > 0 {
					c.Ready = summarise(ready[k])
				}
				c.FloorRatio = float64(c.Total.P50) / float64(fl.ToNext.P50)
				benchkit.Logf("coldmatrix: %-8s %4d MB create-ahead %-5v p50 %s p99 %s init p50 %s; floor %s (%.2f×)", rt.Runtime, mem, ahead,
					benchkit.FmtDur(c.Total.P50), benchkit.FmtDur(c.Total.P99), benchkit.FmtDur(c.Init.P50), benchkit.FmtDur(fl.ToNext.P50), c.FloorRatio)
				r.Cells = append(r.Cells, c)
			}
		}

		// The burst: concurrent first calls to a fresh function whose
		// prepared sandbox is ready and that has no instance, at each
		// memory size (a small one's CPU share slows the calls served
		// by the first instances up).
		for _, mem := range matrixMemories {
			b, err := on.burst(ctx, fmt.Sprintf("cm-%s-burst-%d", rt.short, mem), rt, mem, o.matrixBurst)
			if err != nil {
				return err
			}
			if c := r.cell(rt.Runtime, mem, true); c != nil {
				b.SingleP50 = c.Total.P50
				b.Ratio = float64(b.Total.P50) / float64(c.Total.P50)
			}
			benchkit.Logf("coldmatrix: %s %d MB burst of %d: p50 %s p99 %s, %d cold starts (%.2f× the single cold start)", rt.Runtime, mem, b.Calls, benchkit.FmtDur(b.Total.P50), benchkit.FmtDur(b.Total.P99), b.ColdStarts, b.Ratio)
			r.Bursts = append(r.Bursts, b)
			sample()
		}
	}
	r.LoadEnd = benchkit.LoadAvg()
	return nil
}

// matrixRuntimes writes each runtime's function (a handler that logs one
// line and answers {"ok":true}), zips it, and finds the program the floor
// execs: the lognoop bootstrap, and the shipped Python and Node clients
// run by the host's real interpreters (as the runtimes' roots hold them).
func matrixRuntimes(ctx context.Context, w *work, r *coldMatrixResult) ([]*matrixRuntime, error) {
	base := filepath.Join(w.dir, "matrix-code")
	rtDir := filepath.Join(base, "runtime")
	if err := runtimes.Install(rtDir); err != nil {
		return nil, err
	}
	var out []*matrixRuntime

	// provided: the aws-lambda-go no-op that logs one line per call.
	goDir := filepath.Join(base, "provided")
	if err := benchkit.GoBuild(ctx, w.root, "./bench/lognoop", filepath.Join(goDir, "bootstrap")); err != nil {
		return nil, err
	}
	out = append(out, &matrixRuntime{Runtime: stratus.RuntimeProvided, short: "go", codeDir: goDir,
		argv: []string{filepath.Join(goDir, "bootstrap")}, rtDir: rtDir})

	// python3: the host's interpreter itself (not a version manager's shim).
	b, err := exec.CommandContext(ctx, "python3", "-c", "import sys; print(sys.executable); print(sys.version.split()[0])").Output()
	if err != nil {
		return nil, fmt.Errorf("coldmatrix: python3: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return nil, fmt.Errorf("coldmatrix: python3 said %q", b)
	}
	py, err := filepath.EvalSymlinks(f[0])
	if err != nil {
		return nil, err
	}
	r.Versions["python3"] = f[1]
	pyArgv, err := runtimes.Command(stratus.RuntimePython3, rtDir)
	if err != nil {
		return nil, err
	}
	pyArgv[0] = py
	pyDir := filepath.Join(base, "python3")
	if err := writeFile(filepath.Join(pyDir, "app.py"), "def handler(event, context):\n    print(\"invoked\")\n    return {\"ok\": True}\n"); err != nil {
		return nil, err
	}
	out = append(out, &matrixRuntime{Runtime: stratus.RuntimePython3, Handler: "app.handler", short: "py", codeDir: pyDir, argv: pyArgv, rtDir: rtDir})

	// nodejs.
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("coldmatrix: node: %w", err)
	}
	if node, err = filepath.EvalSymlinks(node); err != nil {
		return nil, err
	}
	if b, err := exec.CommandContext(ctx, node, "--version").Output(); err == nil {
		r.Versions["node"] = strings.TrimSpace(string(b))
	}
	nodeArgv, err := runtimes.Command(stratus.RuntimeNodejs, rtDir)
	if err != nil {
		return nil, err
	}
	nodeArgv[0] = node
	nodeDir := filepath.Join(base, "nodejs")
	if err := writeFile(filepath.Join(nodeDir, "index.js"), "exports.handler = async (event) => {\n  console.log('invoked');\n  return { ok: true };\n};\n"); err != nil {
		return nil, err
	}
	out = append(out, &matrixRuntime{Runtime: stratus.RuntimeNodejs, Handler: "index.handler", short: "node", codeDir: nodeDir, argv: nodeArgv, rtDir: rtDir})

	for _, rt := range out {
		if rt.zip, err = benchkit.CodeZip(rt.codeDir); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// useRootInterpreter makes the floor exec the interpreter of the python3
// root the server with data dir data built (DATA/roots/python3-*): the
// host's binary with the standard library the sandbox gets, found by
// Python next to the binary. The host's interpreter as installed stays a
// second, informative floor.
func (rt *matrixRuntime) useRootInterpreter(data string) error {
	if rt.installed != nil {
		return nil
	}
	m, _ := filepath.Glob(filepath.Join(data, "roots", "python3-*", "var", "lang", "bin", "python3*"))
	for _, p := range m {
		// python3.N itself; python3 is a link to it.
		if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() {
			rt.installed = rt.argv
			rt.argv = append([]string{p}, rt.argv[1:]...)
			return nil
		}
	}
	return fmt.Errorf("coldmatrix: no python3 interpreter in a python3 root under %s", filepath.Join(data, "roots"))
}

func writeFile(name, s string) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	return os.WriteFile(name, []byte(s), 0o644)
}

// floorEnv is the environment of the floor's program: Lambda's variables as
// the server sets them (but the host's PATH), and the Runtime API's
// address, which runtimeFloorOnce adds.
func (rt *matrixRuntime) floorEnv() []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"LANG=en_US.UTF-8",
		"TZ=:UTC",
		"AWS_LAMBDA_FUNCTION_NAME=floor",
		"AWS_LAMBDA_FUNCTION_VERSION=" + stratus.LatestVersion,
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128",
		"AWS_REGION=local",
		"AWS_DEFAULT_REGION=local",
		"LAMBDA_TASK_ROOT=" + rt.codeDir,
		"LAMBDA_RUNTIME_DIR=" + rt.rtDir,
		"_HANDLER=" + rt.Handler,
		"AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/floor",
		"AWS_LAMBDA_LOG_STREAM_NAME=floor",
		"AWS_EXECUTION_ENV=AWS_Lambda_" + rt.Runtime,
	}
}

// coldOnce deploys name, waits until it is ready (its prepared sandbox
// seen, with create-ahead), settles, invokes it once and times that
// invoke, then removes it and waits until its sandboxes are gone.
func (s *matrixServer) coldOnce(ctx context.Context, name string, rt *matrixRuntime, mem int) (total, initD, ready time.Duration, err error) {
	cfg := stratus.FunctionConfig{Runtime: rt.Runtime, Handler: rt.Handler, MemoryMB: mem, Auth: stratus.AuthNone}
	if err := s.deploy(ctx, name, rt.zip, cfg); err != nil {
		return 0, 0, 0, err
	}
	defer func() {
		if rerr := s.removeAndWait(context.WithoutCancel(ctx), name); rerr != nil && err == nil {
			err = rerr
		}
	}()
	if s.createAhead {
		start := time.Now()
		if err := s.waitPrepared(ctx, name, time.Minute); err != nil {
			return 0, 0, 0, err
		}
		ready = time.Since(start)
	}
	time.Sleep(matrixSettle)
	in, err := benchkit.Invoke(ctx, s.hc, &s.invokeTarget(name).Target)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("cold invoke: %w", err)
	}
	if !in.Cold {
		return 0, 0, 0, fmt.Errorf("first invoke of %s was not a cold start", name)
	}
	return in.D, in.Init, ready, nil
}

// burst deploys name, waits for its prepared sandbox, then sends calls
// concurrent first invokes (each on a connection of its own, released
// together) and times each.
func (s *matrixServer) burst(ctx context.Context, name string, rt *matrixRuntime, mem, calls int) (b matrixBurst, err error) {
	b = matrixBurst{Runtime: rt.Runtime, MemoryMB: mem, Calls: calls}
	cfg := stratus.FunctionConfig{Runtime: rt.Runtime, Handler: rt.Handler, MemoryMB: mem, Auth: stratus.AuthNone}
	if err := s.deploy(ctx, name, rt.zip, cfg); err != nil {
		return b, err
	}
	defer func() {
		if rerr := s.removeAndWait(context.WithoutCancel(ctx), name); rerr != nil && err == nil {
			err = rerr
		}
	}()
	if s.createAhead {
		if err := s.waitPrepared(ctx, name, time.Minute); err != nil {
			return b, err
		}
	}
	time.Sleep(matrixSettle)
	t := s.invokeTarget(name)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		d     []time.Duration
		first error
	)
	release := make(chan struct{})
	for range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Transport: benchkit.NewTransport()}
			defer c.CloseIdleConnections()
			// Open this call's connection first.
			if err := benchkit.WaitAnswer(ctx, c, s.URL+"/healthz"); err != nil {
				mu.Lock()
				first = firstErr(first, err)
				mu.Unlock()
				return
			}
			<-release
			in, err := benchkit.Invoke(ctx, c, &t.Target)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				first = firstErr(first, fmt.Errorf("cold invoke: %w", err))
				return
			}
			d = append(d, in.D)
			if in.Cold {
				b.ColdStarts++
			}
		}()
	}
	time.Sleep(200 * time.Millisecond) // the connections open
	close(release)
	wg.Wait()
	if first != nil {
		return b, fmt.Errorf("burst on %s: %w", name, first)
	}
	b.Total = summarise(d)
	return b, nil
}

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// waitPrepared waits until the driver holds a prepared sandbox of function
// name: a container in the server's runc root whose bundle runs the
// function (AWS_LAMBDA_FUNCTION_NAME in its process's environment) and
// whose init is up and has not started the program yet (no child).
func (s *matrixServer) waitPrepared(ctx context.Context, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	want := "AWS_LAMBDA_FUNCTION_NAME=" + name
	seen := map[string]string{} // container → its function's env entry
	for {
		ents, _ := os.ReadDir(s.runcRoot)
		for _, e := range ents {
			id := e.Name()
			st, err := readRuncState(filepath.Join(s.runcRoot, id, "state.json"))
			if err != nil || st.Pid <= 0 {
				continue
			}
			fn, ok := seen[id]
			if !ok {
				if fn, err = bundleFunction(st.bundle()); err != nil {
					continue
				}
				seen[id] = fn
			}
			if fn != want {
				continue
			}
			if _, err := os.Stat("/proc/" + strconv.Itoa(st.Pid)); err != nil {
				continue
			}
			if kids := benchkit.Children(st.Pid); len(kids) == 0 || len(kids) == 1 && parkedOnStart(kids[0]) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no prepared sandbox of %s within %s (runc root %s)", name, timeout, s.runcRoot)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// parkedOnStart reports whether process pid, a program started ahead
// (sandbox.Spec.StartAhead: the python3 and nodejs clients), waits in
// read(2) on its start descriptor, 3: its interpreter and client are
// loaded and it waits for the sandbox's start.
func parkedOnStart(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/syscall")
	return err == nil && strings.HasPrefix(string(b), "0 0x3 ") // x86-64 read, fd 3
}

// removeAndWait removes function name and waits until the driver holds no
// container (the section runs one function at a time per server).
func (s *matrixServer) removeAndWait(ctx context.Context, name string) error {
	if err := s.Client.Remove(ctx, name); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	if s.runcRoot == "" {
		return nil // not runc: nothing to watch
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ents, err := os.ReadDir(s.runcRoot)
		if (err == nil && len(ents) == 0) || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the sandboxes of %s still run 30s after its removal (%d in %s)", name, len(ents), s.runcRoot)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runcState is what the section reads of runc's state.json.
type runcState struct {
	Pid    int `json:"init_process_pid"`
	Config struct {
		Labels []string `json:"labels"`
	} `json:"config"`
}

func (st *runcState) bundle() string {
	for _, l := range st.Config.Labels {
		if b, ok := strings.CutPrefix(l, "bundle="); ok {
			return b
		}
	}
	return ""
}

func readRuncState(path string) (*runcState, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var st runcState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// bundleFunction is the AWS_LAMBDA_FUNCTION_NAME entry of a bundle's
// process environment.
func bundleFunction(bundle string) (string, error) {
	if bundle == "" {
		return "", errors.New("no bundle")
	}
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return "", err
	}
	var spec struct {
		Process struct {
			Env []string `json:"env"`
		} `json:"process"`
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		return "", err
	}
	for _, kv := range spec.Process.Env {
		if strings.HasPrefix(kv, "AWS_LAMBDA_FUNCTION_NAME=") {
			return kv, nil
		}
	}
	return "", errors.New("no function name in the bundle")
}

// print writes the section's tables and its goals (issue 10).
func (r *coldMatrixResult) print(w io.Writer) {
	fmt.Fprintf(w, "\nCold-start matrix (issue 10): first invoke after deploy in the default sandbox (%s), %d fresh functions per cell, handlers that log one line; load average %.1f at start, %.1f–%.1f between runs, %.1f at the end\n",
		r.Sandbox, r.Runs, r.LoadStart, r.LoadMin, r.LoadMax, r.LoadEnd)
	fmt.Fprintf(w, "  each: deploy, wait until its prepared sandbox is up (create-ahead on; seen in runc's state), %s more, then one POST /v1/functions/NAME/invoke on a warm keep-alive connection (client time to the last byte)\n", benchkit.FmtDur(r.Settle))
	tw := benchkit.Table(w)
	fmt.Fprintln(tw, "runtime\tmemory\tcreate-ahead\tp50\tp99\tmin\tmax\tInit Duration p50\tInit p99\tfloor p50\tp50 vs floor\tdeploy→prepared p50\t")
	for _, c := range r.Cells {
		fl := r.floor(c.Runtime)
		ready := ""
		if c.CreateAhead {
			ready = benchkit.FmtDur(c.Ready.P50)
		}
		fmt.Fprintf(tw, "%s\t%d MB\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f×\t%s\t\n", c.Runtime, c.MemoryMB, map[bool]string{true: "on", false: "off"}[c.CreateAhead],
			benchkit.FmtDur(c.Total.P50), benchkit.FmtDur(c.Total.P99), benchkit.FmtDur(c.Total.Min), benchkit.FmtDur(c.Total.Max), benchkit.FmtDur(c.Init.P50), benchkit.FmtDur(c.Init.P99), benchkit.FmtDur(fl.ToNext.P50), c.FloorRatio, ready)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nFloors: the same program exec'd on the host (no sandbox) against the bench's own minimal Runtime API, same run")
	tw = benchkit.Table(w)
	fmt.Fprintln(tw, "runtime\texec → 1st invocation/next p50\tp99\tmin\texec → 1st answer posted p50\tp99\t")
	for _, f := range r.Floors {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", f.Runtime, benchkit.FmtDur(f.ToNext.P50), benchkit.FmtDur(f.ToNext.P99), benchkit.FmtDur(f.ToNext.Min), benchkit.FmtDur(f.ToAnswer.P50), benchkit.FmtDur(f.ToAnswer.P99))
	}
	tw.Flush()
	for _, f := range r.Floors {
		fmt.Fprintf(w, "  note: %s floor runs %s\n", f.Runtime, f.Program)
		if f.Installed != nil {
			fmt.Fprintf(w, "  note: %s with the host's interpreter as installed (%s): exec → 1st invocation/next p50 %s, p99 %s\n", f.Runtime, f.InstalledProgram, benchkit.FmtDur(f.Installed.P50), benchkit.FmtDur(f.Installed.P99))
		}
	}

	if len(r.Bursts) > 0 {
		fmt.Fprintln(w, "\nBurst: concurrent first calls to a fresh function (its prepared sandbox up, no instance), each on a connection of its own")
		tw = benchkit.Table(w)
		fmt.Fprintln(tw, "runtime\tmemory\tcalls\tp50\tp99 (= max)\tmin\tcold starts\tsingle cold start p50\tp50 vs single\t")
		for _, b := range r.Bursts {
			fmt.Fprintf(tw, "%s\t%d MB\t%d\t%s\t%s\t%s\t%d\t%s\t%.2f×\t\n", b.Runtime, b.MemoryMB, b.Calls, benchkit.FmtDur(b.Total.P50), benchkit.FmtDur(b.Total.P99), benchkit.FmtDur(b.Total.Min), b.ColdStarts, benchkit.FmtDur(b.SingleP50), b.Ratio)
		}
		tw.Flush()
	}

	var goals []benchkit.Goal
	for _, c := range r.Cells {
		if !c.CreateAhead {
			continue
		}
		g := matrixGoal[c.Runtime]
		goals = append(goals,
			benchkit.Goal{What: fmt.Sprintf("cold start p50, %s %d MB", c.Runtime, c.MemoryMB), Target: "≤ " + benchkit.FmtDur(g), Got: benchkit.FmtDur(c.Total.P50), OK: c.Total.P50 <= g},
			benchkit.Goal{What: fmt.Sprintf("cold start p50 vs floor, %s %d MB", c.Runtime, c.MemoryMB), Target: fmt.Sprintf("≤ %.1f×", goalFloorRatio), Got: fmt.Sprintf("%.2f×", c.FloorRatio), OK: c.FloorRatio <= goalFloorRatio})
	}
	for _, b := range r.Bursts {
		goals = append(goals, benchkit.Goal{What: fmt.Sprintf("burst of %d p50 vs single cold start, %s %d MB", b.Calls, b.Runtime, b.MemoryMB), Target: fmt.Sprintf("≤ %.0f×", goalBurstRatio),
			Got: fmt.Sprintf("%.2f× (%s)", b.Ratio, benchkit.FmtDur(b.Total.P50)), OK: b.Ratio > 0 && b.Ratio <= goalBurstRatio})
	}
	benchkit.PrintGoals(w, "Goals (issue 10: default sandbox, create-ahead on as by default)", goals)
}
