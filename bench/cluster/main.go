// Command cluster measures what coordination costs per invocation when
// the invokes of one function are spread over three Stratus servers
// sharing one PostgreSQL and a three-node NATS cluster, next to one server
// on its embedded defaults, in one run on one machine (issue 15: "the
// point is the cost of coordination per invocation, reported in µs of
// CPU; on one host it cannot add throughput").
//
// The processes, all on 127.0.0.1:
//
//   - the floor: bench/tinyserver (a plain net/http handler) hit directly;
//   - single: one `stratus server` with the defaults (SQLite in its data
//     dir, embedded NATS, no --sandbox: runc as root; where runc is not
//     usable the process driver stands in and the report says so);
//   - the cluster: PostgreSQL started as internal/clustertest starts it
//     for the tests (initdb into a temporary directory, fsync off), three
//     nats-server processes routed as one cluster with JetStream (built
//     from go.mod's version, cached as the tests cache it), and three
//     `stratus server --store postgres://... --nats-url a,b,c --node-name
//     sN` with the same token, each with its own data dir.
//
// bench/lognoop (one log line per call) is deployed once on each side at
// the default memory (128 MB), and warmed until as many instances as the
// highest concurrency are idle. The targets, invoked with POST {} through
// POST /v1/functions/lognoop/invoke with the bearer token:
//
//   - direct (net/http): the floor;
//   - single: the one server;
//   - cluster, round-robin: each worker sends its requests to the three
//     servers in turn, so that two calls in three land on a server that
//     does not own the function and are forwarded to its owner, which
//     runs every instance;
//   - cluster, owner only: every call to the owner (no forwarding: the
//     store's and the event system's part);
//   - cluster, forwarded only: every call to the two other servers in
//     turn (each one forwarded).
//
// CPU per invocation is user + system time from /proc over each measured
// run, per answer, by kind of process: the stratus server processes
// themselves; their sandboxes (every descendant, and the children they
// reaped); the postgres processes (the postmaster and its backends, the
// ended ones included); the nats-server processes. Every target counts
// every process of its side (all three servers of the cluster, PostgreSQL
// and the three NATS nodes, whichever server a call lands on). The
// coordination cost is a cluster target's CPU per invocation minus the
// single server's, in total and by kind.
//
// Rounds are interleaved (every concurrency on every target back to back,
// the order of the targets turned by one each round); figures are the
// medians of the rounds, and the ratios to the single server are also
// paired round by round.
//
// Run it from the module root: go run ./bench/cluster [flags]. Every loop
// is bounded; every process it starts is stopped before it returns (the
// servers with SIGTERM, all at once, then the NATS nodes, then
// PostgreSQL). Figures are recorded in bench/cluster/README.md.
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
	concs      []int
	duration   time.Duration
	warmup     time.Duration
	rounds     int
	idle       time.Duration
	targets    map[string]bool
	stratusBin string
	jsonOut    string
	keep       bool
}

func main() { os.Exit(run()) }

func run() int {
	var o options
	var concs, targets string
	flag.StringVar(&concs, "conc", "1,32", "concurrency levels (1 is also the one-connection latency run)")
	flag.DurationVar(&o.duration, "duration", 2*time.Second, "measured time of each run")
	flag.DurationVar(&o.warmup, "warmup", 500*time.Millisecond, "unmeasured load before each run (opens the connections)")
	flag.IntVar(&o.rounds, "rounds", 5, "rounds over every target and concurrency, interleaved; figures are the median of the rounds")
	flag.DurationVar(&o.idle, "idle", 3*time.Second, "measure each side's CPU with no load for this long, once warmed (0: not)")
	flag.StringVar(&targets, "targets", allKinds, "which targets to measure, of "+allKinds+" (direct and single always run)")
	flag.StringVar(&o.stratusBin, "stratus", "", "stratus binary to use (default: build ./cmd/stratus of this tree)")
	flag.StringVar(&o.jsonOut, "json", "", "also write the results (every round) as JSON to this file")
	flag.BoolVar(&o.keep, "keep", false, "keep the work dir (binaries, data dirs, logs of every process)")
	flag.Parse()
	var err error
	if o.concs, err = benchkit.ParseInts(concs, 1, 1024); err != nil {
		fmt.Fprintln(os.Stderr, "cluster: -conc:", err)
		return 2
	}
	slices.Sort(o.concs)
	if o.targets, err = benchkit.ParseSections(targets, kindDirect, kindSingle, kindCluster, kindOwner, kindForwarded); err != nil {
		fmt.Fprintln(os.Stderr, "cluster: -targets:", err)
		return 2
	}
	o.targets[kindDirect], o.targets[kindSingle] = true, true
	if o.rounds < 1 || o.duration <= 0 || o.warmup < 0 || o.idle < 0 {
		fmt.Fprintln(os.Stderr, "cluster: -rounds and -duration must be positive, -warmup and -idle not negative")
		return 2
	}
	return benchkit.Main("cluster", func(ctx context.Context) error {
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
