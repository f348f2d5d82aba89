package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

// stratusServer is a running `stratus server`.
type stratusServer struct {
	*benchkit.Server
	pprof string // host:port of pprof, when built with it
}

// sandboxChoice is a sandbox the warm and cold sections measure: the
// default one (the server started without --sandbox: runc as root), or
// the process driver (--sandbox process).
type sandboxChoice struct {
	// Name labels the figures: the driver the server reported.
	Name string
	// Flags are the server's extra flags: none for the default sandbox.
	Flags []string
}

// sandboxProcess is the process driver, asked for by flag.
var sandboxProcess = sandboxChoice{Name: "process", Flags: []string{"--sandbox", "process"}}

// pickSandboxes turns the -sandboxes list (runc, process) into what the
// bench starts, in order. runc is the default sandbox: the server
// started without --sandbox; where it is not usable here (not root, no
// runc on PATH) the process driver stands in for it, and notes says so.
func pickSandboxes(want []string) (out []sandboxChoice, notes []string) {
	has := func(name string) bool {
		return slices.ContainsFunc(out, func(c sandboxChoice) bool { return c.Name == name })
	}
	for _, name := range want {
		c := sandboxProcess
		if name == "runc" {
			why := ""
			if os.Geteuid() != 0 {
				why = "the bench does not run as root"
			} else if _, err := exec.LookPath("runc"); err != nil {
				why = "runc is not on PATH"
			}
			if why == "" {
				c = sandboxChoice{Name: "runc"}
			} else {
				notes = append(notes, "runc is not usable here ("+why+"): the process driver (--sandbox process) stands in for the default sandbox")
			}
		}
		if !has(c.Name) {
			out = append(out, c)
		}
	}
	return out, notes
}

// startStratus starts bin as a server with data dir data, in the sandbox
// sb. pprofAddr, when not empty, is passed to the stratusprof variant.
// When the default sandbox turns out not to be runc (the server says
// which driver it chose and why), sb.Name becomes that driver's and the
// returned note says so.
func startStratus(ctx context.Context, bin, data, logPath, pprofAddr string, sb *sandboxChoice) (*stratusServer, string, error) {
	s, err := startServer(ctx, bin, data, logPath, pprofAddr, sb.Flags)
	if err != nil {
		return nil, "", err
	}
	info, err := s.Client.Info(ctx)
	if err != nil {
		s.stop()
		return nil, "", fmt.Errorf("server info (log %s): %w", logPath, err)
	}
	if got := info.Sandbox.Driver; got != sb.Name {
		note := fmt.Sprintf("asked for the %s sandbox, the server chose %s (%s)", sb.Name, got, info.Sandbox.Why)
		sb.Name = got
		return s, note, nil
	}
	return s, "", nil
}

// startServer starts bin as a server with data dir data and the extra
// flags extra (none: the sandbox driver the server picks itself).
func startServer(ctx context.Context, bin, data, logPath, pprofAddr string, extra []string) (*stratusServer, error) {
	var env []string
	if pprofAddr != "" {
		env = append(env, "STRATUS_BENCH_PPROF="+pprofAddr)
	}
	s, err := benchkit.StartServer(ctx, bin, data, logPath, extra, env...)
	if err != nil {
		return nil, err
	}
	return &stratusServer{Server: s, pprof: pprofAddr}, nil
}

// stop ends the server with SIGTERM (it stops its instances) and waits.
func (s *stratusServer) stop() { s.Stop(15 * time.Second) }

// deploy deploys name from zip with the given config.
func (s *stratusServer) deploy(ctx context.Context, name string, zip []byte, cfg stratus.FunctionConfig) error {
	_, err := s.Client.Deploy(ctx, name, cfg, bytes.NewReader(zip))
	if err != nil {
		return fmt.Errorf("deploy %s: %w", name, err)
	}
	return nil
}

// instances reports the live instances of name.
func (s *stratusServer) instances(ctx context.Context, name string) (v1.Instances, error) {
	f, err := s.Client.Get(ctx, name)
	if err != nil {
		return v1.Instances{}, err
	}
	return f.Instances, nil
}

// invokeTarget is POST /v1/functions/NAME/invoke.
func (s *stratusServer) invokeTarget(name string) *target {
	return &target{
		Target: benchkit.Target{
			Name:   "stratus /v1/functions/" + name + "/invoke",
			URL:    s.URL + "/v1/functions/" + name + "/invoke",
			Header: http.Header{"Authorization": {"Bearer " + benchkit.Token}},
			Body:   event,
		},
		pids: func() []int { return []int{s.PID()} },
	}
}

// urlTarget is ANY /fn/NAME of a function deployed with --auth none.
func (s *stratusServer) urlTarget(name string) *target {
	return &target{
		Target: benchkit.Target{Name: "stratus /fn/" + name, URL: s.URL + "/fn/" + name, Body: event},
		pids:   func() []int { return []int{s.PID()} },
	}
}
