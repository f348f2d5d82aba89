package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

// coldResult summarises cold starts.
type coldResult struct {
	benchkit.Summary
	// InitP50 is the server's own Init Duration (instance start until the
	// runtime asked for its first invocation), Stratus only.
	InitP50 time.Duration
}

func summarise(d []time.Duration) coldResult { return coldResult{Summary: benchkit.Summarise(d)} }

// stratusColdResult is scale from zero in one sandbox.
type stratusColdResult struct {
	Sandbox     string
	CreateAhead bool // a prepared sandbox was waited for before each invoke
	coldResult
	// ReadyP50 is the time from the deploy's answer until the prepared
	// sandbox was seen (create-ahead only).
	ReadyP50 time.Duration `json:",omitempty"`
}

// stratusCold measures scale from zero on server s (data dir data, in the
// sandbox named sandbox): runs times, deploy a fresh function (same code),
// wait until it is ready (in runc, its prepared sandbox is up: create-ahead
// is on by default), settle, invoke it once through POST
// /v1/functions/NAME/invoke on one keep-alive connection, then remove it
// and wait until its sandboxes are gone. Only that first invoke is timed;
// its X-Stratus-Cold-Start header must say true.
func stratusCold(ctx context.Context, s *stratusServer, sandbox, data string, zip []byte, runs int) (stratusColdResult, error) {
	ms := &matrixServer{stratusServer: s, createAhead: sandbox == "runc", hc: &http.Client{Transport: benchkit.NewTransport()}}
	if ms.createAhead {
		ms.runcRoot = filepath.Join(data, "run", "runc", "runc")
	}
	defer ms.hc.CloseIdleConnections()
	// Open the one connection first.
	if err := benchkit.WaitAnswer(ctx, ms.hc, s.URL+"/healthz"); err != nil {
		return stratusColdResult{}, err
	}
	rt := &matrixRuntime{Runtime: stratus.RuntimeProvided, short: "noop", zip: zip}
	var total, inits, ready []time.Duration
	for i := range runs {
		d, initD, rd, err := ms.coldOnce(ctx, fmt.Sprintf("cold-%03d", i), rt, stratus.DefaultMemoryMB)
		if err != nil {
			return stratusColdResult{}, err
		}
		total, inits = append(total, d), append(inits, initD)
		if ms.createAhead {
			ready = append(ready, rd)
		}
	}
	r := stratusColdResult{Sandbox: sandbox, CreateAhead: ms.createAhead, coldResult: summarise(total)}
	r.InitP50, _, _ = benchkit.Percentiles(inits)
	if len(ready) > 0 {
		r.ReadyP50, _, _ = benchkit.Percentiles(ready)
	}
	return r, nil
}

// processStart measures the floor: exec the static tinyserver and get its
// first answer, runs times. inherit passes it an already listening socket
// (fd 3), so the first request waits in the kernel's backlog; otherwise the
// bench polls its port every 100 µs.
func processStart(ctx context.Context, bin string, runs int, inherit bool) (coldResult, error) {
	var d []time.Duration
	for range runs {
		if err := ctx.Err(); err != nil {
			return coldResult{}, err
		}
		var x time.Duration
		var err error
		if inherit {
			x, err = startInherited(bin)
		} else {
			x, err = startPolled(bin)
		}
		if err != nil {
			return coldResult{}, err
		}
		d = append(d, x)
		time.Sleep(10 * time.Millisecond)
	}
	return summarise(d), nil
}

func tinyCmd(bin string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

func kill(cmd *exec.Cmd) {
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

func startPolled(bin string) (time.Duration, error) {
	addr, err := benchkit.FreeAddr()
	if err != nil {
		return 0, err
	}
	cmd := tinyCmd(bin, "-listen", addr)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer kill(cmd)
	conn, err := benchkit.PollDial(addr, start.Add(10*time.Second))
	if err != nil {
		return 0, fmt.Errorf("tinyserver did not listen within 10s: %w", err)
	}
	defer conn.Close()
	if err := benchkit.FirstAnswer(conn); err != nil {
		return 0, fmt.Errorf("tinyserver first answer: %w", err)
	}
	return time.Since(start), nil
}

func startInherited(bin string) (time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		return 0, err
	}
	defer f.Close()
	cmd := tinyCmd(bin, "-fd", "3")
	cmd.ExtraFiles = []*os.File{f}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer kill(cmd)
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if err := benchkit.FirstAnswer(conn); err != nil {
		return 0, fmt.Errorf("tinyserver first answer on an inherited socket: %w", err)
	}
	return time.Since(start), nil
}

// runtimeStart measures the floor of a cold start under the Lambda
// contract: the bench itself serves a minimal Runtime API on a listener
// opened beforehand, execs the bootstrap, hands the event {} to its first
// invocation/next and times until the runtime posts the answer. That is
// what any platform must do to scale from zero, with nothing of its own.
func runtimeStart(ctx context.Context, bootstrap string, runs int) (coldResult, error) {
	var d []time.Duration
	for range runs {
		if err := ctx.Err(); err != nil {
			return coldResult{}, err
		}
		x, err := runtimeStartOnce(bootstrap)
		if err != nil {
			return coldResult{}, err
		}
		d = append(d, x)
		time.Sleep(10 * time.Millisecond)
	}
	return summarise(d), nil
}

func runtimeStartOnce(bootstrap string) (time.Duration, error) {
	env := append(os.Environ(), "AWS_LAMBDA_FUNCTION_NAME=noop", "AWS_LAMBDA_FUNCTION_VERSION=$LATEST", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128")
	_, d, err := runtimeFloorOnce([]string{bootstrap}, "", env)
	return d, err
}

// runtimeFloorOnce execs argv (in dir, with env and AWS_LAMBDA_RUNTIME_API)
// against a minimal Runtime API the bench serves on a listener opened
// beforehand, hands the event {} to the runtime's first invocation/next
// and reports the time from the exec until that first GET
// invocation/next arrived and until the runtime posted its answer.
func runtimeFloorOnce(argv []string, dir string, env []string) (next, answer time.Duration, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, err
	}
	answered := make(chan []byte, 1)
	var nexts atomic.Int32
	nextAt := make(chan time.Time, 1) // when the first next arrived
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", func(w http.ResponseWriter, r *http.Request) {
		if nexts.Add(1) > 1 {
			<-r.Context().Done() // one invocation only; srv.Close ends the wait
			return
		}
		nextAt <- time.Now()
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Lambda-Runtime-Aws-Request-Id"] = []string{"cold-1"}
		h["Lambda-Runtime-Deadline-Ms"] = []string{strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10)}
		h["Lambda-Runtime-Invoked-Function-Arn"] = []string{"arn:aws:lambda:local:000000000000:function:noop"}
		_, _ = w.Write(event)
	})
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		select {
		case answered <- b:
		default:
		}
		w.WriteHeader(http.StatusAccepted)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	cmd := tinyCmd(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(env, "AWS_LAMBDA_RUNTIME_API="+ln.Addr().String())
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	defer kill(cmd)
	select {
	case b := <-answered:
		d := time.Since(start)
		if !bytes.Contains(b, []byte("ok")) {
			return 0, 0, fmt.Errorf("runtime answered %q", b)
		}
		return (<-nextAt).Sub(start), d, nil
	case <-time.After(10 * time.Second):
		return 0, 0, fmt.Errorf("runtime %s did not answer its first invocation within 10s", filepath.Base(argv[0]))
	}
}
