package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
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
	perr := fetchProfile(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", pt.addr, o.profileSecs), path)
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
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-cum", "-nodecount=800", bin, path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go tool pprof: %v\n%s", err, out)
	}
	listing, total := condense(string(out), 40)
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

// totalRe reads the samples' total from pprof's header ("Duration: 8s,
// Total samples = 9.87s (123.4%)").
var totalRe = regexp.MustCompile(`Total samples = ([0-9.]+)(ms|s)`)

// condense keeps the header of a `pprof -top -cum` listing and at most n
// of its interesting lines, and reads the samples' total.
func condense(top string, n int) (string, time.Duration) {
	var b strings.Builder
	var total time.Duration
	kept := 0
	header := true
	for _, l := range strings.Split(strings.TrimSpace(top), "\n") {
		if header {
			if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") {
				continue
			}
			if m := totalRe.FindStringSubmatch(l); m != nil {
				total, _ = time.ParseDuration(m[1] + m[2])
			}
			b.WriteString(l + "\n")
			if strings.Contains(l, "flat%") {
				header = false
			}
			continue
		}
		if kept < n && interesting.MatchString(strings.TrimSpace(strings.TrimSuffix(l, " (inline)"))) {
			b.WriteString(l + "\n")
			kept++
		}
	}
	return strings.TrimRight(b.String(), "\n"), total
}

func fetchProfile(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetch cpu profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("fetch cpu profile: %s: %s", resp.Status, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("fetch cpu profile: %w", err)
	}
	return f.Close()
}
