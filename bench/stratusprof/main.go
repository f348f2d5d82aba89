// Command stratusprof is the stratus command with net/http/pprof served on
// a side address, for the bench's -profile mode. It changes nothing else:
// the server it runs is cli.Main's, as in cmd/stratus.
//
//	STRATUS_BENCH_PPROF=127.0.0.1:PORT stratusprof server ...
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof on http.DefaultServeMux
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/stratus-run/stratus/internal/cli"
)

func main() { os.Exit(run()) }

func run() int {
	if addr := os.Getenv("STRATUS_BENCH_PPROF"); addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "pprof listener:", err)
			return 1
		}
		srv := &http.Server{Handler: http.DefaultServeMux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Environ())
}
