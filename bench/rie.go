package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

// rieModule is AWS's Lambda Runtime Interface Emulator at the version
// PEERS.md names.
const rieModule = "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@v0.0.0-20261030222936-bef5c4ba774d"

// findRIE returns the aws-lambda-rie binary: the given path, else one on
// PATH or in GOBIN / GOPATH/bin, else one it installs into gobin (a
// folder of the run's temporary work dir) with go install.
func findRIE(ctx context.Context, given, gobin string) (string, error) {
	if given != "" {
		return given, nil
	}
	if p, err := exec.LookPath("aws-lambda-rie"); err == nil {
		return p, nil
	}
	for _, v := range []string{"GOBIN", "GOPATH"} {
		b, err := exec.CommandContext(ctx, "go", "env", v).Output()
		if err != nil {
			continue
		}
		for _, d := range filepath.SplitList(strings.TrimSpace(string(b))) {
			if d == "" {
				continue
			}
			if v == "GOPATH" {
				d = filepath.Join(d, "bin")
			}
			p := filepath.Join(d, "aws-lambda-rie")
			if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
				return p, nil
			}
		}
	}
	benchkit.Logf("installing aws-lambda-rie with go install (into %s)", gobin)
	ictx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ictx, "go", "install", rieModule)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOBIN="+gobin)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s: %v\n%s", rieModule, err, b)
	}
	p := filepath.Join(gobin, "aws-lambda-rie")
	if _, err := os.Stat(p); err != nil {
		return "", errors.New("go install did not produce aws-lambda-rie")
	}
	return p, nil
}

// rieServer is a running emulator with the no-op bootstrap.
type rieServer struct {
	p    *benchkit.Proc
	addr string
}

// startRIE runs the emulator in classic mode (one invocation at a time)
// with bootstrap, on free loopback ports, and waits for its first answer
// (which initialises the runtime).
func startRIE(ctx context.Context, bin, bootstrap, logPath string) (*rieServer, error) {
	addr, err := benchkit.FreeAddr()
	if err != nil {
		return nil, err
	}
	rapi, err := benchkit.FreeAddr()
	if err != nil {
		return nil, err
	}
	argv := []string{bin, "--runtime-interface-emulator-address", addr, "--runtime-api-address", rapi, bootstrap}
	var env []string
	for _, kv := range os.Environ() {
		// Classic mode: AWS_LAMBDA_MAX_CONCURRENCY would switch modes.
		if !strings.HasPrefix(kv, "AWS_LAMBDA_MAX_CONCURRENCY=") {
			env = append(env, kv)
		}
	}
	p, err := benchkit.StartProc(argv, env, filepath.Dir(bootstrap), logPath)
	if err != nil {
		return nil, err
	}
	r := &rieServer{p: p, addr: addr}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := benchkit.WaitOK(wctx, &r.target().Target); err != nil {
		p.Stop(time.Second)
		return nil, fmt.Errorf("aws-lambda-rie (log %s): %w", logPath, err)
	}
	return r, nil
}

// target is the emulator's invoke path, one invocation at a time.
func (r *rieServer) target() *target {
	return &target{
		Target: benchkit.Target{Name: "aws-lambda-rie", URL: "http://" + r.addr + "/2015-03-31/functions/function/invocations", Body: event, MaxConc: 1},
		pids:   func() []int { return []int{r.p.PID()} },
	}
}
