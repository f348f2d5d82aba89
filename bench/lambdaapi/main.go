// Command lambdaapi measures what the Lambda API's Invoke costs next to the
// native invoke (issue 13: "The Lambda Invoke path and the native one cost
// the same ... goal ≤ 5% apart, SigV4 verification included"), in one run
// on one machine, with one load generator (benchkit's: a net/http client,
// keep-alive, N goroutines bounded by a duration).
//
// One `stratus server` on 127.0.0.1 with the defaults (no --sandbox: runc
// as root; where runc is not usable the process driver stands in and the
// report says so), bench/lognoop (one log line per call) deployed at the
// default memory, an access key made with `stratus keys create`, and four
// targets invoking it with POST {}:
//
//   - direct (net/http): the floor, bench/tinyserver hit directly;
//   - native: POST /v1/functions/lognoop/invoke with the bearer token;
//   - Lambda Invoke, SigV4: POST /2015-03-31/functions/lognoop/invocations
//     signed with the access key by aws-sdk-go-v2's SigV4 signer;
//   - Lambda Invoke, token: the same path with the bearer token, which
//     tells SigV4's cost from the rest of the Lambda API's.
//
// The signed request is signed once per measured run (warm-up included,
// a few seconds, well within SigV4's 15 minutes) and replayed by every
// worker: the server verifies each request in full, while the load
// generator, which shares the machine's two cores with the server, does
// not pay for a signature per request.
//
// Rounds are interleaved (every concurrency on every target, the order of
// the targets turned by one each round); figures are the medians of the
// rounds. The report gives throughput, p50 and p99 per target and
// concurrency, the server's CPU per invocation, each target over the
// floor, and the Lambda targets over the native one — paired round by
// round — with the goal line of issue 13: Lambda Invoke with SigV4 within
// 5 % of the native invoke at every concurrency.
//
// With -profile DIR it runs bench/stratusprof (the server plus pprof on a
// side port) and saves CPU profiles of the server under each Stratus
// target's load at the lowest and the highest concurrency.
//
// Run it from the module root: go run ./bench/lambdaapi [flags].
// Everything listens on 127.0.0.1; every loop is bounded. Figures are
// recorded in bench/lambdaapi/README.md.
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

type options struct {
	concs       []int
	duration    time.Duration
	warmup      time.Duration
	rounds      int
	stratusBin  string
	profileDir  string
	profileSecs int
	jsonOut     string
	keep        bool
}

func main() { os.Exit(run()) }

func run() int {
	var o options
	var concs string
	flag.StringVar(&concs, "conc", "1,32", "concurrency levels (1 is also the one-connection latency run)")
	flag.DurationVar(&o.duration, "duration", 2*time.Second, "measured time of each run")
	flag.DurationVar(&o.warmup, "warmup", 500*time.Millisecond, "unmeasured load before each run (opens the connections)")
	flag.IntVar(&o.rounds, "rounds", 5, "rounds over every target and concurrency, interleaved; figures are the median of the rounds")
	flag.StringVar(&o.stratusBin, "stratus", "", "stratus binary to use (default: build ./cmd/stratus of this tree)")
	flag.StringVar(&o.profileDir, "profile", "", "run a pprof build of the server (bench/stratusprof) and write CPU profiles of it under each target's load to this folder")
	flag.IntVar(&o.profileSecs, "profile-seconds", 8, "length of each CPU profile")
	flag.StringVar(&o.jsonOut, "json", "", "also write the results (every round) as JSON to this file")
	flag.BoolVar(&o.keep, "keep", false, "keep the work dir (binaries, data dir, logs)")
	flag.Parse()
	var err error
	if o.concs, err = benchkit.ParseInts(concs, 1, 1024); err != nil {
		fmt.Fprintln(os.Stderr, "lambdaapi: -conc:", err)
		return 2
	}
	slices.Sort(o.concs)
	if o.rounds < 1 || o.duration <= 0 || o.warmup < 0 || o.profileSecs < 1 {
		fmt.Fprintln(os.Stderr, "lambdaapi: -rounds, -duration and -profile-seconds must be positive, -warmup not negative")
		return 2
	}
	// A signature is good for 15 minutes around its time.
	if o.warmup+o.duration > 10*time.Minute {
		fmt.Fprintln(os.Stderr, "lambdaapi: -warmup plus -duration must stay under 10 minutes (a replayed signature is good for 15)")
		return 2
	}
	if o.profileDir != "" && o.stratusBin != "" {
		fmt.Fprintln(os.Stderr, "lambdaapi: -profile builds its own pprof variant of the server; leave out -stratus")
		return 2
	}
	return benchkit.Main("lambdaapi", func(ctx context.Context) error {
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
