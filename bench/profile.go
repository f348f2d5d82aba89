package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

// profileResult is one CPU profile of the server under load.
type profileResult struct {
	What string
	File string
	Top  string // go tool pprof -top, first lines
}

// profile takes CPU profiles of the stratusprof server while the load
// generator drives the warm function: at the highest concurrency through
// /v1 invoke, and on one connection through /fn.
func profile(ctx context.Context, o options, w *work, s *stratusServer, res *results) error {
	if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
		return err
	}
	top := o.concs[len(o.concs)-1]
	secs := max(5, int(2*o.duration.Seconds()))
	cases := []struct {
		file string
		t    *target
		conc int
	}{
		{fmt.Sprintf("cpu-v1-invoke-c%d.pprof", top), s.invokeTarget("noop"), top},
		{"cpu-fn-c1.pprof", s.urlTarget("noop"), 1},
	}
	for _, c := range cases {
		path, err := filepath.Abs(filepath.Join(o.profileDir, c.file))
		if err != nil {
			return err
		}
		benchkit.Logf("profiling the server for %ds: %s at c=%d", secs, c.t.Name, c.conc)
		load := make(chan error, 1)
		go func() {
			_, err := measure(ctx, c.t, c.conc, 0, time.Duration(secs)*time.Second+time.Second)
			load <- err
		}()
		time.Sleep(500 * time.Millisecond)
		perr := benchkit.FetchProfile(ctx, "http://"+s.pprof+fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), path)
		lerr := <-load
		if perr != nil {
			return perr
		}
		if lerr != nil {
			return lerr
		}
		out, err := benchkit.PprofTop(ctx, w.stratus, path, 500)
		if err != nil {
			return err
		}
		res.Profiles = append(res.Profiles, profileResult{
			What: fmt.Sprintf("%s at c=%d", c.t.Name, c.conc), File: path, Top: condensed(out),
		})
	}
	return nil
}

// interesting are the frames that show where the server's CPU goes: its
// own packages, the HTTP server's halves, SQLite, the Go runtime's GC and
// scheduler.
var interesting = regexp.MustCompile(`stratus-run/stratus/internal/|net/http\.\(\*conn\)\.(serve|readRequest)$|` +
	`net/http\.\(\*response\)\.finishRequest$|modernc\.org/sqlite\.\(\*conn\)\.step$|runtime\.(gcBgMarkWorker|mallocgc|schedule|findRunnable)$`)

// condensed is the header of a `pprof -top -cum` listing and its first 32
// interesting lines.
func condensed(top string) string {
	s, _ := benchkit.Condense(top, 32, interesting)
	return s
}
