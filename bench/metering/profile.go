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

// pprofTarget is a Stratus target whose server serves net/http/pprof on
// addr (the stratusprof variant).
type pprofTarget struct {
	t    *target
	addr string
}

// profileResult is one CPU profile of a server under load.
type profileResult struct {
	Target      string
	Conc        int
	File        string
	Invocations int           // answered while the profile was taken
	CPU         time.Duration // the samples' total
	Top         string        // go tool pprof -top -cum, condensed
}

// profile takes CPU profiles of each Stratus server while the load
// generator drives it at the lowest and at the highest concurrency.
func profile(ctx context.Context, o options, w *work, res *results) error {
	if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
		return err
	}
	concs := []int{o.concs[0]}
	if hi := o.concs[len(o.concs)-1]; hi != concs[0] {
		concs = append(concs, hi)
	}
	for _, c := range concs {
		for _, pt := range res.pprof {
			if err := profileOne(ctx, o, w, res, pt, c); err != nil {
				return err
			}
		}
	}
	return nil
}

// profileOne takes a CPU profile of pt's server while the load generator
// drives it at concurrency conc.
func profileOne(ctx context.Context, o options, w *work, res *results, pt pprofTarget, conc int) error {
	path, err := filepath.Abs(filepath.Join(o.profileDir, fmt.Sprintf("cpu-%s-c%d.pprof", pt.t.kind, conc)))
	if err != nil {
		return err
	}
	benchkit.Logf("profiling %s for %ds at c=%d", pt.t.Name, o.profileSecs, conc)
	type loaded struct {
		p   point
		err error
	}
	load := make(chan loaded, 1)
	go func() {
		p, err := measure(ctx, pt.t, conc, 0, time.Duration(o.profileSecs)*time.Second+time.Second)
		load <- loaded{p, err}
	}()
	perr := benchkit.FetchProfile(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", pt.addr, o.profileSecs), path)
	l := <-load
	if perr != nil {
		return perr
	}
	if l.err != nil {
		return l.err
	}
	bin := w.current
	if pt.t.kind == kindBaseline {
		bin = w.baseline
	}
	out, err := benchkit.PprofTop(ctx, bin, path, 800)
	if err != nil {
		return err
	}
	listing, total := benchkit.Condense(out, 40, interesting)
	// The load ran a second longer than the profile: scale its count.
	inv := int(float64(l.p.OK) * float64(o.profileSecs) / (float64(o.profileSecs) + 1))
	res.Profiles = append(res.Profiles, profileResult{Target: pt.t.Name, Conc: conc, File: path, Invocations: inv, CPU: total, Top: listing})
	return nil
}

// interesting are the frames that show where the server's CPU goes: its
// own packages, the OpenTelemetry SDK and exporter, protobuf, Prometheus,
// the HTTP server's halves, SQLite, the Go runtime's GC and scheduler.
var interesting = regexp.MustCompile(`stratus-run/stratus/internal/|go\.opentelemetry\.io/|google\.golang\.org/protobuf/proto\.|prometheus/client_golang|` +
	`net/http\.\(\*conn\)\.serve$|net/http\.\(\*persistConn\)\.(readLoop|writeLoop)$|modernc\.org/sqlite\.\(\*conn\)\.step$|runtime\.(gcBgMarkWorker|mallocgc|schedule|findRunnable)$|syscall\.Syscall6?$|internal/runtime/syscall\.Syscall6$`)
