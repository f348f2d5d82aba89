package server

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/client"
	"github.com/stratus-run/stratus/internal/archive"
	"github.com/stratus-run/stratus/internal/config"
)

// waitFor bounds the waits of these tests: generous, since they assert
// outcomes, not timings.
const waitFor = time.Minute

// runServer runs the server over a fresh data dir with the process
// sandbox until the returned stop is called; stop checks that Run
// returned cleanly.
func runServer(t *testing.T) (cfg config.Config, addr string, stop func()) {
	t.Helper()
	cfg = config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.Sandbox = "process"
	ctx, cancel := context.WithCancel(t.Context())
	addrs := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, slog.New(slog.DiscardHandler), func(a string) { addrs <- a }) }()
	select {
	case addr = <-addrs:
	case err := <-done:
		cancel()
		t.Fatalf("Run returned before it was ready: %v", err)
	case <-time.After(waitFor):
		cancel()
		t.Fatalf("not ready within %s", waitFor)
	}
	stopped := false
	stop = func() {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitFor):
			t.Fatalf("Run did not return within %s of its ctx's end", waitFor)
		}
	}
	t.Cleanup(stop)
	return cfg, addr, stop
}

// The server serves once ready calls back, with the token it saved in
// the data dir, and frees its port when its ctx ends.
func TestRunServesAndStops(t *testing.T) {
	cfg, addr, stop := runServer(t)

	tokenFile := filepath.Join(cfg.DataDir, TokenFile)
	b, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(tokenFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file: %v, %v; want mode 0600", fi.Mode(), err)
	}
	c := client.New("http://"+addr, strings.TrimSpace(string(b)))
	info, err := c.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != stratus.ServerVersion() || info.Region != cfg.Region || info.Sandbox.Driver != "process" || info.Sandbox.Isolated {
		t.Errorf("GET /v1/info: %+v", info)
	}
	var apiErr *client.APIError
	if _, err := client.New("http://"+addr, "wrong").Info(t.Context()); !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnauthorized {
		t.Errorf("GET /v1/info with a wrong token: %v, want 401", err)
	}

	stop()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the port is still held after Run returned: %v", err)
	}
	ln.Close()
}

// Functions and services meet in one registry of names through the
// server: a function's name is refused to a service (409) until the
// function is removed.
func TestRunSharesNames(t *testing.T) {
	cfg, addr, _ := runServer(t)
	b, err := os.ReadFile(filepath.Join(cfg.DataDir, TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	c := client.New("http://"+addr, strings.TrimSpace(string(b)))

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bootstrap"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var code bytes.Buffer
	if err := archive.ZipDir(dir, &code); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Deploy(t.Context(), "web", stratus.FunctionConfig{Runtime: stratus.RuntimeProvided}, &code); err != nil {
		t.Fatal(err)
	}
	var apiErr *client.APIError
	_, err = c.DeployService(t.Context(), "web", stratus.ServiceConfig{Image: "app"})
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusConflict || !strings.Contains(apiErr.Message, "a function has that name") {
		t.Errorf("deploy a service under a function's name: %v, want 409 saying a function has that name", err)
	}
	if err := c.Remove(t.Context(), "web"); err != nil {
		t.Fatal(err)
	}
	// Free now: the service's deploy gets as far as its missing image.
	_, err = c.DeployService(t.Context(), "web", stratus.ServiceConfig{Image: "app"})
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
		t.Errorf("deploy a service under a freed name, image missing: %v, want 404", err)
	}
}
