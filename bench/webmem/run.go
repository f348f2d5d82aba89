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
	"strconv"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/bench/internal/benchkit"
	"github.com/stratus-run/stratus/client"
	"github.com/stratus-run/stratus/internal/clustertest"
)

// appDir is the app, relative to the module root.
const appDir = "e2e/testdata/compat/node"

// Memory sizes and CPU modes of the cells.
var (
	memories = []int{128, 1769}
	cpuModes = []string{"weight", "quota"}
)

func bench(ctx context.Context, o options) (*results, error) {
	start := time.Now()
	res := &results{Env: benchkit.Environment(), Options: map[string]any{"functions": o.functions, "warm": o.warm}}
	defer func() {
		res.Elapsed = time.Since(start)
		res.Env["loadavg at end"] = fmt.Sprintf("%.1f", benchkit.LoadAvg())
	}()
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("the runc sandbox needs root")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		return nil, fmt.Errorf("runc is not on PATH: %w", err)
	}
	b, err := exec.CommandContext(ctx, "node", "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("node --version: %w", err)
	}
	res.Node = strings.TrimSpace(string(b))
	root, err := benchkit.ModuleRoot(ctx)
	if err != nil {
		return nil, err
	}
	res.Env["tree"] = benchkit.TreeDigest(root)
	dir, cleanup, err := benchkit.WorkDir("stratus-webmem-", o.keep)
	if err != nil {
		return nil, err
	}
	defer cleanup()

	benchkit.Logf("node_modules")
	app := filepath.Join(root, appDir)
	// The e2e tests' install of the same files (e2e/npm_test.go: the
	// name "compat-node") serves.
	modules, err := clustertest.NPMModules(ctx, app, "compat-node")
	if err != nil {
		return nil, err
	}
	code := filepath.Join(dir, "code")
	if err := os.MkdirAll(code, 0o755); err != nil {
		return nil, err
	}
	for _, f := range []string{"app.js", "sls.js", "server.js", "package.json"} {
		if err := copyFile(filepath.Join(app, f), filepath.Join(code, f)); err != nil {
			return nil, err
		}
	}
	if err := os.CopyFS(filepath.Join(code, "node_modules"), os.DirFS(modules)); err != nil {
		return nil, fmt.Errorf("copy node_modules: %w", err)
	}
	zip, err := benchkit.CodeZip(code)
	if err != nil {
		return nil, err
	}
	body := eventBody()
	res.Body = len(body)

	server := o.stratusBin
	if server == "" {
		benchkit.Logf("building the server")
		server = filepath.Join(dir, "stratus")
		if err := benchkit.GoBuild(ctx, root, "./cmd/stratus", server); err != nil {
			return nil, err
		}
	}
	res.Binary = server

	// The floor first, on a quiet machine: no server runs yet.
	benchkit.Logf("floor: node server.js, %d cold starts, %d warm requests", o.functions, o.warm)
	if err := measureFloor(ctx, o, code, dir, body, &res.Floor); err != nil {
		return res, err
	}

	for _, mode := range cpuModes {
		benchkit.Logf("starting the server (--function-cpu %s)", mode)
		s, err := benchkit.StartServer(ctx, server, filepath.Join(dir, "data-"+mode), filepath.Join(dir, "server-"+mode+".log"),
			[]string{"--function-cpu", mode})
		if err != nil {
			return res, err
		}
		defer s.Stop(15 * time.Second)
		info, err := s.Client.Info(ctx)
		if err != nil {
			return res, fmt.Errorf("server info: %w", err)
		}
		if info.Sandbox.Driver != "runc" {
			return res, fmt.Errorf("the server chose the %s sandbox, not runc (%s)", info.Sandbox.Driver, info.Sandbox.Why)
		}
		for _, mb := range memories {
			res.Cells = append(res.Cells, &cell{CPU: mode, MemoryMB: mb, server: s})
		}
	}

	for i := range o.functions {
		for _, c := range res.Cells {
			name := fmt.Sprintf("web-%s-%d-%d", c.CPU, c.MemoryMB, i)
			r, err := measureFunction(ctx, c.server, name, c.MemoryMB, zip, body, o.warm)
			if err != nil {
				return res, fmt.Errorf("%s: %w", name, err)
			}
			benchkit.Logf("%-20s first request %s (init %.0f ms, duration %.1f ms), warm duration p50 %.1f ms",
				name, benchkit.FmtDur(r.Cold), r.InitMs, r.FirstMs, benchkit.Median(r.WarmMs))
			c.Runs = append(c.Runs, r)
		}
	}
	return res, nil
}

// eventBody is the request body: a JSON object of about 10 KB.
func eventBody() []byte {
	type item struct {
		ID    int      `json:"id"`
		Name  string   `json:"name"`
		Price float64  `json:"price"`
		Tags  []string `json:"tags"`
		Note  string   `json:"note"`
	}
	items := make([]item, 106)
	for i := range items {
		items[i] = item{ID: i, Name: "item-" + strconv.Itoa(i), Price: float64(i) * 1.25,
			Tags: []string{"a", "b", "c"}, Note: "the quick brown fox jumps"}
	}
	b, _ := json.Marshal(map[string]any{"order": "o-1", "items": items})
	return b
}

// post sends the body to url and checks the app's answer: 201 and the
// body's two top-level keys.
func post(ctx context.Context, c *http.Client, url string, body []byte) (http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var got struct {
		Keys int `json:"keys"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &got) != nil || got.Keys != 2 {
		return nil, fmt.Errorf("POST %s: %s %.200q", url, resp.Status, b)
	}
	return resp.Header, nil
}

func newClient() *http.Client {
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
}

// measureFloor runs the app directly with node: N cold starts (exec to
// the first answer), then M warm requests on one process.
func measureFloor(ctx context.Context, o options, code, dir string, body []byte, f *floor) error {
	one := func(keep bool) (*benchkit.Proc, string, time.Duration, error) {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		t0 := time.Now()
		p, rest, err := benchkit.StartProcLine(sctx, []string{"node", "server.js"}, append(os.Environ(), "NODE_ENV=production"),
			code, filepath.Join(dir, "floor.log"), "listening on ")
		if err != nil {
			return nil, "", 0, err
		}
		url := "http://127.0.0.1:" + strings.TrimSpace(rest) + "/json"
		c := newClient()
		if _, err := post(sctx, c, url, body); err != nil {
			p.Stop(time.Second)
			return nil, "", 0, err
		}
		d := time.Since(t0)
		if !keep {
			c.CloseIdleConnections()
			p.Stop(5 * time.Second)
			return nil, "", d, nil
		}
		return p, url, d, nil
	}
	for range o.functions {
		_, _, d, err := one(false)
		if err != nil {
			return fmt.Errorf("floor: %w", err)
		}
		f.Cold = append(f.Cold, d)
	}
	p, url, _, err := one(true)
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	defer p.Stop(5 * time.Second)
	c := newClient()
	defer c.CloseIdleConnections()
	for i := range o.warm + 5 {
		t0 := time.Now()
		if _, err := post(ctx, c, url, body); err != nil {
			return fmt.Errorf("floor: %w", err)
		}
		if i >= 5 { // the first five are unmeasured
			f.Warm = append(f.Warm, time.Since(t0))
		}
	}
	return nil
}

// measureFunction deploys a fresh function, sends its first request at
// once and then warm ones, reads the invocations' records, removes it and
// waits until its sandboxes are gone.
func measureFunction(ctx context.Context, s *benchkit.Server, name string, mb int, zip, body []byte, warm int) (*fnRun, error) {
	before := len(benchkit.Descendants(s.PID()))
	cfg := stratus.FunctionConfig{Runtime: stratus.RuntimeNodejs, Handler: "sls.handler", MemoryMB: mb, Auth: stratus.AuthNone,
		Env: map[string]string{"NODE_ENV": "production"}}
	if _, err := s.Client.Deploy(ctx, name, cfg, bytes.NewReader(zip)); err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	r := &fnRun{Name: name}
	url := s.URL + "/fn/" + name + "/json"
	c := newClient()
	defer c.CloseIdleConnections()
	t0 := time.Now()
	h, err := post(ctx, c, url, body)
	if err != nil {
		return nil, err
	}
	r.Cold = time.Since(t0)
	if h.Get("X-Stratus-Cold-Start") == "false" {
		return nil, fmt.Errorf("the first request was not a cold start")
	}
	for range warm {
		t0 := time.Now()
		if _, err := post(ctx, c, url, body); err != nil {
			return nil, err
		}
		r.WarmClient = append(r.WarmClient, time.Since(t0))
	}
	recs, err := records(ctx, s, name, warm+1)
	if err != nil {
		return nil, err
	}
	// Oldest first; the first is the cold start.
	for i := len(recs) - 1; i >= 0; i-- {
		rec := recs[i]
		if rec.Outcome != "success" {
			return nil, fmt.Errorf("invocation %s: %s %s", rec.RequestID, rec.Outcome, rec.ErrorType)
		}
		if i == len(recs)-1 {
			if !rec.Cold {
				return nil, fmt.Errorf("the first invocation's record is not a cold start")
			}
			r.InitMs, r.FirstMs = rec.InitDurationMs, rec.DurationMs
			continue
		}
		if rec.Cold {
			return nil, fmt.Errorf("a warm request started an instance (%s)", rec.RequestID)
		}
		r.WarmMs = append(r.WarmMs, rec.DurationMs)
		r.WarmCPUMs = append(r.WarmCPUMs, rec.CPUMs)
	}
	if err := s.Client.Remove(ctx, name); err != nil {
		return nil, fmt.Errorf("remove: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(benchkit.Descendants(s.PID())) > before {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("its sandboxes are still up 30 s after its removal")
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return r, nil
}

// records waits, up to 10 s, until the server has stored n invocation
// records of name, and returns them, newest first.
func records(ctx context.Context, s *benchkit.Server, name string, n int) ([]stratusRecord, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := s.Client.Invocations(ctx, name, client.InvocationQuery{Limit: n + 10})
		if err != nil {
			return nil, fmt.Errorf("invocations: %w", err)
		}
		if len(l) > n {
			return nil, fmt.Errorf("invocations: %d records, want %d", len(l), n)
		}
		if len(l) == n {
			out := make([]stratusRecord, len(l))
			for i := range l {
				out[i] = l[i].Invocation
			}
			return out, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("invocations: %d records after 10 s, want %d", len(l), n)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

type stratusRecord = stratus.Invocation

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}
