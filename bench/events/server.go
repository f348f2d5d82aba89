package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

// server is a running `stratus server` started by the bench, with a
// client of its own for the bench's requests.
type server struct {
	*benchkit.Server
	hc *http.Client
}

// startServer starts bin as a server on a free loopback port, keeping
// 100,000 invocation records per function and logging warnings only, with
// the extra flags; its output goes to logPath.
func startServer(ctx context.Context, bin, data, logPath string, extra ...string) (*server, error) {
	args := append([]string{"--retain-invocations", "100000", "--log-level", "warn"}, extra...)
	s, err := benchkit.StartServer(ctx, bin, data, logPath, args)
	if err != nil {
		return nil, err
	}
	return &server{Server: s, hc: &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     time.Minute,
		},
	}}, nil
}

// stop ends the server with SIGTERM (it stops its instances), waits up to
// 20 s, then kills its process group.
func (s *server) stop() { s.Stop(20 * time.Second) }

// deploy deploys the folder dir as function name (runtime provided) with
// the extra deploy flags, through the CLI.
func (s *server) deploy(ctx context.Context, name, dir string, flags ...string) error {
	args := append([]string{"deploy", name, "--runtime", "provided"}, flags...)
	_, err := s.CLI(ctx, append(args, dir)...)
	return err
}

// do sends one request with the token and returns the status and body.
func (s *server) do(ctx context.Context, method, path string, hdr http.Header, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+benchkit.Token)
	resp, err := s.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// doJSON sends in as JSON (nil: no body) and decodes a 2xx answer into out.
func (s *server) doJSON(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	hdr := http.Header{}
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = b
		hdr.Set("Content-Type", "application/json")
	}
	code, b, err := s.do(ctx, method, path, hdr, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if code/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, path, code, bytes.TrimSpace(b))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

var eventHeader = http.Header{
	v1.HeaderInvocationType: {v1.InvocationEvent},
	"Content-Type":          {"application/json"},
}

// invokeAsync queues event for fn and returns its request ID.
func (s *server) invokeAsync(ctx context.Context, fn string, event []byte) (string, error) {
	code, b, err := s.do(ctx, http.MethodPost, "/v1/functions/"+fn+"/invoke", eventHeader, event)
	if err != nil {
		return "", err
	}
	if code != http.StatusAccepted {
		return "", fmt.Errorf("async invoke %s: %d %s", fn, code, bytes.TrimSpace(b))
	}
	var a v1.Accepted
	if err := json.Unmarshal(b, &a); err != nil {
		return "", err
	}
	return a.RequestID, nil
}

// invokeSync invokes fn and waits for its answer.
func (s *server) invokeSync(ctx context.Context, fn string, event []byte) error {
	code, b, err := s.do(ctx, http.MethodPost, "/v1/functions/"+fn+"/invoke", http.Header{"Content-Type": {"application/json"}}, event)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("invoke %s: %d %s", fn, code, bytes.TrimSpace(b))
	}
	return nil
}

// records returns up to limit of fn's newest invocation records (all of
// request's when request is not empty).
func (s *server) records(ctx context.Context, fn string, limit int, request string) ([]stratus.Invocation, error) {
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if request != "" {
		q.Set("request", request)
	}
	var l v1.InvocationList
	if err := s.doJSON(ctx, http.MethodGet, "/v1/functions/"+fn+"/invocations?"+q.Encode(), nil, &l); err != nil {
		return nil, err
	}
	recs := make([]stratus.Invocation, len(l.Invocations))
	for i, r := range l.Invocations {
		recs[i] = r.Invocation
	}
	return recs, nil
}

// status returns the state of an async invocation; State is "" while the
// server has not stored its first state yet (404: states are written in
// batches).
func (s *server) status(ctx context.Context, id string) (stratus.AsyncStatus, error) {
	var st stratus.AsyncStatus
	code, b, err := s.do(ctx, http.MethodGet, "/v1/invocations/"+id, nil, nil)
	if err != nil {
		return st, err
	}
	switch code {
	case http.StatusOK:
		return st, json.Unmarshal(b, &st)
	case http.StatusNotFound:
		return st, nil
	}
	return st, fmt.Errorf("GET /v1/invocations/%s: %d %s", id, code, bytes.TrimSpace(b))
}
