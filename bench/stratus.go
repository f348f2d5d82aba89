package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/client"
	"github.com/stratus-run/stratus/internal/archive"
)

const benchToken = "bench-token-0123456789"

// stratusServer is a running `stratus server`.
type stratusServer struct {
	p     *proc
	addr  string // host:port
	data  string
	c     *client.Client
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

// startStratus starts bin as a server on a free port with data dir data,
// in the sandbox sb. pprofAddr, when not empty, is passed to the
// stratusprof variant. When the default sandbox turns out not to be runc
// (the server says which driver it chose and why), sb.Name becomes that
// driver's and the returned note says so.
func startStratus(ctx context.Context, bin, data, logPath, pprofAddr string, sb *sandboxChoice) (*stratusServer, string, error) {
	s, err := startServer(ctx, bin, data, logPath, pprofAddr, sb.Flags)
	if err != nil {
		return nil, "", err
	}
	info, err := s.c.Info(ctx)
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

// startServer starts bin as a server on a free port with data dir data and
// the extra flags extra (none: the sandbox driver the server picks itself).
func startServer(ctx context.Context, bin, data, logPath, pprofAddr string, extra []string) (*stratusServer, error) {
	argv := append([]string{bin, "server", "--listen", "127.0.0.1:0", "--data", data, "--token", benchToken}, extra...)
	env := append(os.Environ(), "STRATUS_TOKEN=")
	if pprofAddr != "" {
		env = append(env, "STRATUS_BENCH_PPROF="+pprofAddr)
	}
	p, out, err := startProc(argv, env, "", logPath, true)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rest, err := firstLine(sctx, p, out, "listening on http://")
	if err != nil {
		p.stop(time.Second)
		return nil, fmt.Errorf("start stratus server (log %s): %w", logPath, err)
	}
	addr := strings.Fields(rest)[0]
	s := &stratusServer{p: p, addr: addr, data: data, c: client.New("http://"+addr, benchToken), pprof: pprofAddr}
	return s, nil
}

// stop ends the server with SIGTERM (it stops its instances) and waits.
func (s *stratusServer) stop() { s.p.stop(15 * time.Second) }

// codeZip zips the folder dir as the CLI does.
func codeZip(dir string) ([]byte, error) {
	var b bytes.Buffer
	if err := archive.ZipDir(dir, &b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// deploy deploys name from zip with the given config.
func (s *stratusServer) deploy(ctx context.Context, name string, zip []byte, cfg stratus.FunctionConfig) error {
	_, err := s.c.Deploy(ctx, name, cfg, bytes.NewReader(zip))
	if err != nil {
		return fmt.Errorf("deploy %s: %w", name, err)
	}
	return nil
}

// deployMany deploys names in parallel with workers workers.
func (s *stratusServer) deployMany(ctx context.Context, names []string, zip []byte, cfg stratus.FunctionConfig, workers int) error {
	ch := make(chan string)
	errc := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range ch {
				if err := s.deploy(ctx, n, zip, cfg); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	var err error
feed:
	for _, n := range names {
		select {
		case ch <- n:
		case err = <-errc:
			break feed
		}
	}
	close(ch)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errc:
		default:
		}
	}
	return err
}

// instances reports the live instances of name.
func (s *stratusServer) instances(ctx context.Context, name string) (v1.Instances, error) {
	f, err := s.c.Get(ctx, name)
	if err != nil {
		return v1.Instances{}, err
	}
	return f.Instances, nil
}

// invokeTarget is POST /v1/functions/NAME/invoke.
func (s *stratusServer) invokeTarget(name string) *target {
	return &target{
		name:   "stratus /v1/functions/" + name + "/invoke",
		url:    "http://" + s.addr + "/v1/functions/" + name + "/invoke",
		header: http.Header{"Authorization": {"Bearer " + benchToken}},
		pids:   func() []int { return []int{s.p.pid()} },
	}
}

// urlTarget is ANY /fn/NAME of a function deployed with --auth none.
func (s *stratusServer) urlTarget(name string) *target {
	return &target{
		name: "stratus /fn/" + name,
		url:  "http://" + s.addr + "/fn/" + name,
		pids: func() []int { return []int{s.p.pid()} },
	}
}

// freeAddr returns a loopback address no one listens on (there is a small
// race until the caller binds it).
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitHTTP polls url until it answers 200 or ctx ends.
func waitHTTP(ctx context.Context, url string, body []byte) error {
	c := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", url, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// goBuild builds pkg (a path relative to the module root) into out,
// statically.
func goBuild(ctx context.Context, root, pkg, out string) error {
	cmd := execCommand(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// moduleRoot is the folder of the module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	b, err := execCommand(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(b))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("run the bench from inside the stratus module (go run ./bench)")
	}
	return filepath.Dir(mod), nil
}
