package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

// profileResult is one CPU profile of the server under load.
type profileResult struct {
	Target      string
	Conc        int
	File        string
	Invocations int           // answered while the profile was taken
	CPU         time.Duration // the samples' total
	Top         string        // go tool pprof -top -cum, condensed
	// PerInvocation is the cumulative CPU of each of frames per
	// invocation, by the frames' labels.
	PerInvocation map[string]time.Duration
}

// frames are the functions whose cumulative CPU per invocation the report
// compares between the targets: the HTTP server, each path's handler, the
// SigV4 check and the invoke they share.
var frames = []struct{ label, name string }{
	{"HTTP server (net/http conn.serve)", "net/http.(*conn).serve"},
	{"native handler (gateway.ServeInvoke)", "github.com/stratus-run/stratus/internal/gateway.(*Gateway).ServeInvoke"},
	{"Lambda API handler (lambdaapi.ServeHTTP)", "github.com/stratus-run/stratus/internal/lambdaapi.(*API).ServeHTTP"},
	{"  its body read (lambdaapi.readBody)", "github.com/stratus-run/stratus/internal/lambdaapi.(*API).readBody"},
	{"  its authentication (lambdaapi.authenticate)", "github.com/stratus-run/stratus/internal/lambdaapi.(*API).authenticate"},
	{"  SigV4 verification (sigv4.Verifier.Verify)", "github.com/stratus-run/stratus/internal/sigv4.(*Verifier).Verify"},
	{"the invoke (functions.Service.Invoke)", "github.com/stratus-run/stratus/internal/functions.(*Service).Invoke"},
	{"GC background marking", "runtime.gcBgMarkWorker"},
}

// cumOf is the cumulative time of the function name in a `pprof -top
// -cum` listing (lines "flat flat% sum% cum cum% name"), 0 if it is not
// listed.
func cumOf(top, name string) time.Duration {
	for _, l := range strings.Split(top, "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || strings.Join(f[5:], " ") != name && strings.Join(f[5:], " ") != name+" (inline)" {
			continue
		}
		d, err := time.ParseDuration(f[3])
		if err != nil {
			return 0
		}
		return d
	}
	return 0
}

// profile takes CPU profiles of the server while the load generator
// drives each of targets at the lowest and at the highest concurrency.
func profile(ctx context.Context, o options, w *work, res *results, targets []*target) error {
	if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
		return err
	}
	concs := []int{o.concs[0]}
	if hi := o.concs[len(o.concs)-1]; hi != concs[0] {
		concs = append(concs, hi)
	}
	for _, c := range concs {
		for _, t := range targets {
			if err := profileOne(ctx, o, w, res, t, c); err != nil {
				return err
			}
		}
	}
	return nil
}

// profileOne takes a CPU profile of the server while the load generator
// drives t at concurrency conc.
func profileOne(ctx context.Context, o options, w *work, res *results, t *target, conc int) error {
	path, err := filepath.Abs(filepath.Join(o.profileDir, fmt.Sprintf("cpu-%s-c%d.pprof", t.kind, conc)))
	if err != nil {
		return err
	}
	benchkit.Logf("profiling the server under %s for %ds at c=%d", t.Name, o.profileSecs, conc)
	type loaded struct {
		p   point
		err error
	}
	load := make(chan loaded, 1)
	go func() {
		p, err := measure(ctx, t, conc, 0, time.Duration(o.profileSecs)*time.Second+time.Second)
		load <- loaded{p, err}
	}()
	perr := benchkit.FetchProfile(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", res.pprofAddr, o.profileSecs), path)
	l := <-load
	if perr != nil {
		return perr
	}
	if l.err != nil {
		return l.err
	}
	out, err := benchkit.PprofTop(ctx, w.server, path, 800)
	if err != nil {
		return err
	}
	listing, total := benchkit.Condense(out, 45, interesting)
	// The load ran a second longer than the profile: scale its count.
	inv := int(float64(l.p.OK) * float64(o.profileSecs) / (float64(o.profileSecs) + 1))
	pr := profileResult{Target: t.Name, Conc: conc, File: path, Invocations: inv, CPU: total, Top: listing, PerInvocation: map[string]time.Duration{}}
	if inv > 0 {
		for _, f := range frames {
			pr.PerInvocation[f.label] = cumOf(out, f.name) / time.Duration(inv)
		}
	}
	res.Profiles = append(res.Profiles, pr)
	return nil
}

// interesting are the frames that show where the server's CPU goes: its
// own packages (the Lambda API, SigV4, the native API, the pools), the
// HTTP server's halves, SQLite, crypto, the Go runtime's GC and scheduler.
var interesting = regexp.MustCompile(`stratus-run/stratus/internal/|crypto/(sha256|hmac)\.|` +
	`net/http\.\(\*conn\)\.serve$|net/http\.\(\*persistConn\)\.(readLoop|writeLoop)$|modernc\.org/sqlite\.\(\*conn\)\.step$|runtime\.(gcBgMarkWorker|mallocgc|schedule|findRunnable)$|syscall\.Syscall6?$|internal/runtime/syscall\.Syscall6$`)
