// Command tinyserver is the floor the benchmarks compare Stratus with: a
// plain net/http handler answering a tiny JSON body ({"ok":true}, what the
// no-op function answers). The bench builds it static (CGO_ENABLED=0) and
// runs it three ways:
//
//	tinyserver -listen 127.0.0.1:PORT            the direct floor; also the process-start floor, polled
//	tinyserver -fd 3                             serves the listening socket it inherited as fd 3
//	tinyserver -listen ADDR -proxy http://UP     a bare httputil.ReverseProxy in front of UP
//
// The proxy's Transport keeps -idle idle connections per host (default
// 1024, above any concurrency the bench uses), so it pays no connection
// churn.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"time"
)

var body = []byte(`{"ok":true}`)

func main() {
	listen := flag.String("listen", "", "address to listen on")
	fd := flag.Int("fd", 0, "serve the listening socket inherited as this file descriptor")
	proxy := flag.String("proxy", "", "reverse-proxy to this upstream URL instead of answering")
	idle := flag.Int("idle", 1024, "idle upstream connections per host kept by the proxy")
	flag.Parse()

	var ln net.Listener
	var err error
	switch {
	case *fd > 0:
		ln, err = net.FileListener(os.NewFile(uintptr(*fd), "listener"))
	case *listen != "":
		ln, err = net.Listen("tcp", *listen)
	default:
		err = fmt.Errorf("give -listen or -fd")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tinyserver:", err)
		os.Exit(2)
	}

	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = []string{"application/json"}
		_, _ = w.Write(body)
	})
	if *proxy != "" {
		up, err := url.Parse(*proxy)
		if err != nil {
			fmt.Fprintln(os.Stderr, "tinyserver: -proxy:", err)
			os.Exit(2)
		}
		h = &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(up) },
			Transport: &http.Transport{
				MaxIdleConns:        *idle,
				MaxIdleConnsPerHost: *idle,
				IdleConnTimeout:     90 * time.Second,
				DisableCompression:  true,
			},
		}
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, "tinyserver:", err)
		os.Exit(1)
	}
}
