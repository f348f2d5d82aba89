package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

// fleetResult is the 1,000-functions measurement.
type fleetResult struct {
	Functions     int
	DeployElapsed time.Duration
	RSSBefore     int64 // VmRSS of the idle server before any deploy
	RSSAfter      int64 // VmRSS of the idle server once every function is deployed
	RSSAfterLs    int64 // VmRSS after the ls runs
	HWM           int64 // VmHWM (peak) at the end
	LsTable       time.Duration
	LsTableMin    time.Duration
	LsJSON        time.Duration
	LsJSONMin     time.Duration
	LsRuns        int
	// ListAPI is GET /v1/functions through the Go client (no CLI process).
	ListAPI       time.Duration
	LiveInstances int // sum of instances.live over `ls -o json`
	ChildProcs    int // child processes of the server
}

// fleet deploys n functions (same code, through the API, in parallel) to a
// fresh server and measures its idle memory and `stratus ls`. The server
// runs the process driver: no instance runs here, and with runc the
// sandboxes create-ahead prepares (up to --max-prepared, 20) would count
// in its memory and child processes.
func fleet(ctx context.Context, bin, dir string, zip []byte, n, lsRuns int) (fleetResult, error) {
	var r fleetResult
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return r, err
	}
	sb := sandboxProcess
	s, _, err := startStratus(ctx, bin, dir+"/data", dir+"/server.log", "", &sb)
	if err != nil {
		return r, err
	}
	defer s.stop()
	time.Sleep(time.Second)
	m, err := benchkit.ProcMem(s.PID())
	if err != nil {
		return r, err
	}
	r.RSSBefore = m.RSS

	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("fn-%04d", i)
	}
	cfg := stratus.FunctionConfig{Runtime: "provided"}
	start := time.Now()
	err = benchkit.Parallel(ctx, names, 8, func(name string) error { return s.deploy(ctx, name, zip, cfg) })
	if err != nil {
		return r, err
	}
	r.DeployElapsed = time.Since(start)
	r.Functions = n
	benchkit.Logf("deployed %d functions in %s", n, r.DeployElapsed.Round(time.Millisecond))
	// Let the server settle (log writer ticks, GC of the upload buffers).
	time.Sleep(3 * time.Second)
	if m, err = benchkit.ProcMem(s.PID()); err != nil {
		return r, err
	}
	r.RSSAfter = m.RSS

	var table, js []time.Duration
	for i := range lsRuns {
		d, out, err := timeCLI(ctx, s, "ls")
		if err != nil {
			return r, err
		}
		if got := strings.Count(strings.TrimSpace(string(out)), "\n") + 1; got != n+1 {
			return r, fmt.Errorf("stratus ls printed %d lines, want %d", got, n+1)
		}
		table = append(table, d)

		d, out, err = timeCLI(ctx, s, "ls", "-o", "json")
		if err != nil {
			return r, err
		}
		var fns []v1.Function
		if err := json.Unmarshal(out, &fns); err != nil {
			return r, fmt.Errorf("stratus ls -o json: %w", err)
		}
		if len(fns) != n {
			return r, fmt.Errorf("stratus ls -o json listed %d functions, want %d", len(fns), n)
		}
		if i == 0 {
			for _, f := range fns {
				r.LiveInstances += f.Instances.Live
			}
		}
		js = append(js, d)
	}
	var api []time.Duration
	for range lsRuns {
		start := time.Now()
		fns, err := s.Client.List(ctx)
		if err != nil {
			return r, err
		}
		if len(fns) != n {
			return r, fmt.Errorf("GET /v1/functions listed %d functions, want %d", len(fns), n)
		}
		api = append(api, time.Since(start))
	}
	r.ListAPI = benchkit.Median(api)
	r.LsRuns = lsRuns
	r.LsTable, r.LsTableMin = benchkit.Median(table), slices.Min(table)
	r.LsJSON, r.LsJSONMin = benchkit.Median(js), slices.Min(js)
	r.ChildProcs = len(benchkit.Children(s.PID()))
	m, err = benchkit.ProcMem(s.PID())
	r.RSSAfterLs, r.HWM = m.RSS, m.HWM
	return r, err
}

// timeCLI runs the stratus CLI against s and times it.
func timeCLI(ctx context.Context, s *stratusServer, args ...string) (time.Duration, []byte, error) {
	start := time.Now()
	out, err := s.CLI(ctx, args...)
	return time.Since(start), out, err
}
