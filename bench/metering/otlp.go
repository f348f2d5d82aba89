package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// maxExport bounds the body of one export the receiver reads.
const maxExport = 64 << 20

// receiver is the OTLP/HTTP trace receiver the exporter-on servers export
// to: it accepts POST /{target}/v1/traces with a protobuf body (gzip or
// not), decodes it with the official OTLP types, counts its spans under
// target, and answers 200 with an empty ExportTraceServiceResponse. Each
// server gets its own target in its --otlp-endpoint, so that the counts
// say which server exported what.
type receiver struct {
	srv *http.Server
	url string // http://127.0.0.1:PORT
	ln  net.Listener

	mu     sync.Mutex
	counts map[string]*spanCount
}

// spanCount is what one target exported.
type spanCount struct {
	Exports int            // accepted export requests
	Bytes   int64          // their bodies, as sent
	Spans   int            // spans in them
	ByName  map[string]int // spans by name
	Bad     int            // requests that were not a valid export
}

// startReceiver listens on a loopback port and serves until stop.
func startReceiver() (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("otlp receiver: %w", err)
	}
	r := &receiver{ln: ln, url: "http://" + ln.Addr().String(), counts: map[string]*spanCount{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /{target}/v1/traces", r.export)
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	return r, nil
}

// serve runs the receiver's HTTP server until stop; it returns nil then.
func (r *receiver) serve() error {
	if err := r.srv.Serve(r.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// stop closes the listener and every connection.
func (r *receiver) stop() { r.srv.Close() }

// endpoint is the --otlp-endpoint of the server target.
func (r *receiver) endpoint(target string) string { return r.url + "/" + target + "/v1/traces" }

// count is a copy of what target exported so far.
func (r *receiver) count(target string) spanCount {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.counts[target]
	if c == nil {
		return spanCount{}
	}
	out := *c
	out.ByName = make(map[string]int, len(c.ByName))
	for k, v := range c.ByName {
		out.ByName[k] = v
	}
	return out
}

func (r *receiver) export(w http.ResponseWriter, req *http.Request) {
	target := req.PathValue("target")
	body, err := io.ReadAll(io.LimitReader(req.Body, maxExport+1))
	if err == nil && len(body) > maxExport {
		err = fmt.Errorf("export larger than %d bytes", maxExport)
	}
	var names map[string]int
	var n int
	if err == nil {
		n, names, err = countSpans(body, req.Header.Get("Content-Type"), req.Header.Get("Content-Encoding"))
	}
	r.mu.Lock()
	c := r.counts[target]
	if c == nil {
		c = &spanCount{ByName: map[string]int{}}
		r.counts[target] = c
	}
	if err != nil {
		c.Bad++
	} else {
		c.Exports++
		c.Bytes += int64(len(body))
		c.Spans += n
		for k, v := range names {
			c.ByName[k] += v
		}
	}
	r.mu.Unlock()
	if err != nil {
		http.Error(w, "metering bench receiver: "+err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	b, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	_, _ = w.Write(b)
}

// countSpans decodes an OTLP/HTTP trace export (an
// ExportTraceServiceRequest in protobuf, gzip-compressed when encoding
// says so) and counts its spans, in all and by name.
func countSpans(body []byte, contentType, encoding string) (int, map[string]int, error) {
	if contentType != "" && contentType != "application/x-protobuf" {
		return 0, nil, fmt.Errorf("content type %q: want application/x-protobuf", contentType)
	}
	switch encoding {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return 0, nil, fmt.Errorf("gzip body: %w", err)
		}
		if body, err = io.ReadAll(io.LimitReader(zr, maxExport+1)); err != nil {
			return 0, nil, fmt.Errorf("gzip body: %w", err)
		}
		if len(body) > maxExport {
			return 0, nil, fmt.Errorf("export larger than %d bytes", maxExport)
		}
	default:
		return 0, nil, fmt.Errorf("content encoding %q: want gzip or none", encoding)
	}
	var ex coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &ex); err != nil {
		return 0, nil, fmt.Errorf("decode export: %w", err)
	}
	n, names := 0, map[string]int{}
	for _, rs := range ex.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				n++
				names[s.GetName()]++
			}
		}
	}
	return n, names, nil
}

// settle waits until target's span count has not changed for quiet (the
// exporter's batches leave at most a second after their spans end), or
// until ctx ends or limit passes, and returns the count.
func (r *receiver) settle(ctx context.Context, target string, quiet, limit time.Duration) spanCount {
	deadline := time.Now().Add(limit)
	last, since := r.count(target).Spans, time.Now()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return r.count(target)
		case <-t.C:
		}
		if n := r.count(target).Spans; n != last {
			last, since = n, time.Now()
		} else if time.Since(since) >= quiet {
			break
		}
	}
	return r.count(target)
}
