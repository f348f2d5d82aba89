// Command metering measures what metering costs the warm invoke path
// (issue 12): the server as it was before metering (commit 08da95e, built
// from that commit) next to the current one, with the OTLP exporter off
// and on, in one run on one machine, with one load generator (benchkit's:
// net/http client, keep-alive, N goroutines bounded by a duration).
//
// Targets, each a fresh server on 127.0.0.1 in the default sandbox (the
// server started without --sandbox: runc as root; where runc is not
// usable the process driver stands in and the report says so), each with
// a warm bench/lognoop function (logs one line per call) at the default
// memory, invoked through POST /v1/functions/lognoop/invoke:
//
//   - baseline: the server built from -commit (default 08da95e, the last
//     one before metering), or -baseline;
//   - current, exporter off: the module's ./cmd/stratus (or -stratus),
//     no --otlp-endpoint (spans get IDs and go nowhere);
//   - current, exporter on: --otlp-endpoint to an OTLP/HTTP receiver this
//     program runs in-process, which decodes every export with the
//     official protobuf types and counts its spans;
//   - current, exporter on, traceparent: the same, every call carrying a
//     W3C traceparent (spans continued from a caller; -traceparent=false
//     leaves it out);
//
// and the floor: bench/tinyserver (a plain net/http handler) hit
// directly. Rounds are interleaved over the targets; figures are the
// median of the rounds: throughput at each concurrency, p50/p99 at
// concurrency 1, the server's CPU per invocation (and its instances').
// The report gives current/baseline ratios of throughput and server CPU
// per call, the spans the receiver got per invocation, and the goals of
// issue 12: throughput within 5 % of the baseline with the exporter off,
// within 15 % with it on.
//
// With -profile DIR it runs pprof builds of both servers (bench/stratusprof
// of each tree) and saves CPU profiles of each Stratus target under load
// at the highest concurrency.
//
// Run it from the module root: go run ./bench/metering [flags]. Everything
// listens on 127.0.0.1; every loop is bounded. Results are recorded in
// bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

// baselineCommit is the last commit before metering: the server the
// current one is compared with.
const baselineCommit = "08da95e"

type options struct {
	concs       []int
	duration    time.Duration
	warmup      time.Duration
	rounds      int
	commit      string
	baselineBin string
	stratusBin  string
	traceparent bool
	profileDir  string
	profileSecs int
	jsonOut     string
	keep        bool
}

func main() { os.Exit(run()) }

func run() int {
	var o options
	var concs string
	flag.StringVar(&concs, "conc", "1,8,32", "concurrency levels of the throughput runs (1 is also the one-connection latency run)")
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "measured time of each run")
	flag.DurationVar(&o.warmup, "warmup", 500*time.Millisecond, "unmeasured load before each run (opens the connections)")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds over every target and concurrency, interleaved; figures are the median of the rounds")
	flag.StringVar(&o.commit, "commit", baselineCommit, "commit the baseline server is built from (git archive of it, cached by commit under ~/.cache/stratus-bench)")
	flag.StringVar(&o.baselineBin, "baseline", "", "baseline stratus binary to use (default: build ./cmd/stratus of -commit)")
	flag.StringVar(&o.stratusBin, "stratus", "", "current stratus binary to use (default: build ./cmd/stratus of this tree)")
	flag.BoolVar(&o.traceparent, "traceparent", true, "also measure the exporter on with a traceparent header on every call")
	flag.StringVar(&o.profileDir, "profile", "", "run pprof builds of both servers (bench/stratusprof of each tree) and write CPU profiles of each under load to this folder")
	flag.IntVar(&o.profileSecs, "profile-seconds", 8, "length of each CPU profile")
	flag.StringVar(&o.jsonOut, "json", "", "also write the results as JSON to this file")
	flag.BoolVar(&o.keep, "keep", false, "keep the work dir (binaries, data dirs, logs)")
	flag.Parse()
	var err error
	if o.concs, err = benchkit.ParseInts(concs, 1, 1024); err != nil {
		fmt.Fprintln(os.Stderr, "metering: -conc:", err)
		return 2
	}
	slices.Sort(o.concs)
	if o.rounds < 1 || o.duration <= 0 || o.warmup < 0 || o.profileSecs < 1 {
		fmt.Fprintln(os.Stderr, "metering: -rounds, -duration and -profile-seconds must be positive")
		return 2
	}
	if o.profileDir != "" && (o.baselineBin != "" || o.stratusBin != "") {
		fmt.Fprintln(os.Stderr, "metering: -profile builds its own pprof variants of both servers; leave out -baseline and -stratus")
		return 2
	}
	return benchkit.Main("metering", func(ctx context.Context) error {
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
