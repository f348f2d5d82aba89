// Command webmem measures what a function's memory size costs a Node.js
// web app in the runc sandbox, where --memory sets the CPU share too
// (README.md, "--memory sets CPU too"): an invocation gets MB ÷ 1,769 of a
// core, the init a full core.
//
// The app is the Express 5 app of the compatibility suite
// (e2e/testdata/compat/node: app.js behind serverless-http, sls.js), its
// node_modules installed once with `npm ci --ignore-scripts
// --no-bin-links` into the user's cache. Two `stratus server`s on
// 127.0.0.1 with the default sandbox (runc; the bench fails if the server
// chooses another), one with --function-cpu weight (the default), one
// with --function-cpu quota. Four cells: 128 and 1,769 MB on each.
//
// Per cell, N fresh functions (--auth none, handler sls.handler), each:
// deployed, then at once its first request, POST /fn/NAME/json with a
// ~10 KB JSON body the app parses and sends back (the client's wall time,
// the cold start), then M warm requests on the same keep-alive
// connection; the invocations' Duration and the first one's Init Duration
// come from the server's records (GET /v1/functions/NAME/invocations).
// The function is then removed and the bench waits until its sandboxes
// are gone. Rounds are interleaved: round i deploys one function of
// every cell, in turn.
//
// The floor, in the same run: the same app run directly with node
// (server.js, app.listen), its warm POST timed from the client (M
// requests, after a few unmeasured), and its cold start: from exec'ing
// `node server.js` to the first answer of the same POST (N times).
//
// Run it from the module root: go run ./bench/webmem [flags]. Everything
// listens on 127.0.0.1; every loop is bounded. Figures are recorded in
// bench/webmem/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

type options struct {
	functions  int
	warm       int
	stratusBin string
	jsonOut    string
	keep       bool
}

func main() { os.Exit(run()) }

func run() int {
	var o options
	flag.IntVar(&o.functions, "functions", 5, "fresh functions per cell (and cold starts of the floor)")
	flag.IntVar(&o.warm, "warm", 30, "warm requests per function (and of the floor)")
	flag.StringVar(&o.stratusBin, "stratus", "", "stratus binary to use (default: build ./cmd/stratus of this tree)")
	flag.StringVar(&o.jsonOut, "json", "", "also write the results (every request) as JSON to this file")
	flag.BoolVar(&o.keep, "keep", false, "keep the work dir (code, data dirs, logs)")
	flag.Parse()
	if o.functions < 1 || o.functions > 100 || o.warm < 1 || o.warm > 10000 {
		fmt.Fprintln(os.Stderr, "webmem: -functions must be 1–100 and -warm 1–10000")
		return 2
	}
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "webmem: unexpected arguments:", flag.Args())
		return 2
	}
	return benchkit.Main("webmem", func(ctx context.Context) error {
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

// results is what a run measured; its JSON is -json's output.
type results struct {
	Env     map[string]string `json:"env"`
	Options map[string]any    `json:"options"`
	Binary  string            `json:"binary"`
	Node    string            `json:"node"`
	Body    int               `json:"bodyBytes"`
	Floor   floor             `json:"floor"`
	Cells   []*cell           `json:"cells"`
	Notes   []string          `json:"notes,omitempty"`
	Elapsed time.Duration     `json:"elapsedNs"`
}

// floor is the app run directly with node.
type floor struct {
	Cold []time.Duration `json:"coldNs"` // exec to the first answer
	Warm []time.Duration `json:"warmNs"` // client wall time of each warm request
}

// cell is one memory size under one --function-cpu mode.
type cell struct {
	CPU      string   `json:"functionCPU"`
	MemoryMB int      `json:"memoryMB"`
	Runs     []*fnRun `json:"runs"`
	server   *benchkit.Server
}

// fnRun is one fresh function's figures.
type fnRun struct {
	Name       string          `json:"name"`
	Cold       time.Duration   `json:"coldNs"`         // the first request's client wall time
	InitMs     float64         `json:"initDurationMs"` // its Init Duration
	FirstMs    float64         `json:"firstDurationMs"`
	WarmMs     []float64       `json:"warmDurationMs"`
	WarmCPUMs  []float64       `json:"warmCpuMs"` // the instance's CPU time per warm invocation
	WarmClient []time.Duration `json:"warmClientNs"`
}
