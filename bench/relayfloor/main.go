// Command relayfloor is a diagnostic floor for the warm path: the least a
// Lambda Runtime API server can do. It starts -n copies of a bootstrap
// against one Runtime API listener and relays each HTTP request's body to
// an idle copy (most recently used first, as Stratus does; requests queue
// first come, first served when none is idle) and the copy's answer back.
// No request IDs worth the name, no records, no logs, no timeouts, no
// per-instance listener: what is left is the contract's own cost (two
// loopback HTTP exchanges with the runtime, and the runtime's work).
//
//	relayfloor -listen 127.0.0.1:PORT -n 32 -bootstrap DIR/bootstrap
//
// It prints "ready" once every copy has asked for its first invocation.
// The copies die with it (parent-death signal).
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type call struct {
	id    string
	event []byte
	done  chan result // buffered 1
}

type result struct {
	body   []byte
	failed bool
}

// relay matches invocations with runtimes waiting in invocation/next.
type relay struct {
	mu      sync.Mutex
	idle    []chan *call // waiting next calls, most recent last
	pending []*call      // invocations waiting for a runtime, oldest first
	flight  sync.Map     // request ID → *call
	seq     atomic.Int64
	asked   atomic.Int64 // next calls so far
}

// take waits for an invocation for a runtime's next call.
func (rl *relay) take(r *http.Request) *call {
	rl.asked.Add(1)
	rl.mu.Lock()
	if len(rl.pending) > 0 {
		c := rl.pending[0]
		rl.pending = rl.pending[1:]
		rl.mu.Unlock()
		return c
	}
	ch := make(chan *call, 1)
	rl.idle = append(rl.idle, ch)
	rl.mu.Unlock()
	select {
	case c := <-ch:
		return c
	case <-r.Context().Done():
		rl.mu.Lock()
		defer rl.mu.Unlock()
		for i, x := range rl.idle {
			if x == ch {
				rl.idle = append(rl.idle[:i], rl.idle[i+1:]...)
				return nil
			}
		}
		return <-ch // handed over as the runtime left; lost with it
	}
}

// give hands c to the most recently idle runtime, or queues it.
func (rl *relay) give(c *call) {
	rl.mu.Lock()
	if n := len(rl.idle); n > 0 {
		ch := rl.idle[n-1]
		rl.idle = rl.idle[:n-1]
		rl.mu.Unlock()
		ch <- c
		return
	}
	rl.pending = append(rl.pending, c)
	rl.mu.Unlock()
}

func (rl *relay) next(w http.ResponseWriter, r *http.Request) {
	c := rl.take(r)
	if c == nil {
		return
	}
	rl.flight.Store(c.id, c)
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Lambda-Runtime-Aws-Request-Id"] = []string{c.id}
	h["Lambda-Runtime-Deadline-Ms"] = []string{strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10)}
	h["Lambda-Runtime-Invoked-Function-Arn"] = []string{"arn:aws:lambda:local:000000000000:function:noop"}
	h["Lambda-Runtime-Trace-Id"] = []string{"Root=1-00000000-000000000000000000000000;Sampled=0"}
	_, _ = w.Write(c.event)
}

func (rl *relay) answer(failed bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		v, ok := rl.flight.LoadAndDelete(r.PathValue("id"))
		if !ok {
			http.Error(w, `{"errorType":"InvalidRequestID"}`, http.StatusBadRequest)
			return
		}
		v.(*call).done <- result{body: b, failed: failed}
		w.WriteHeader(http.StatusAccepted)
	}
}

func (rl *relay) invoke(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c := &call{id: strconv.FormatInt(rl.seq.Add(1), 10), event: b, done: make(chan result, 1)}
	rl.give(c)
	res := <-c.done
	w.Header()["Content-Type"] = []string{"application/json"}
	if res.failed {
		w.WriteHeader(http.StatusBadGateway)
	}
	_, _ = w.Write(res.body)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address clients invoke on")
	n := flag.Int("n", 1, "copies of the bootstrap")
	bootstrap := flag.String("bootstrap", "", "the runtime to run")
	flag.Parse()
	if *bootstrap == "" || *n < 1 {
		fmt.Fprintln(os.Stderr, "relayfloor: give -bootstrap and -n ≥ 1")
		os.Exit(2)
	}
	rl := &relay{}
	rapi, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "relayfloor:", err)
		os.Exit(1)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", rl.next)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", rl.answer(false))
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", rl.answer(true))
	go func() { _ = (&http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}).Serve(rapi) }()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "relayfloor:", err)
		os.Exit(1)
	}
	for range *n {
		cmd := exec.Command(*bootstrap)
		cmd.Env = append(os.Environ(), "AWS_LAMBDA_RUNTIME_API="+rapi.Addr().String(),
			"AWS_LAMBDA_FUNCTION_NAME=noop", "AWS_LAMBDA_FUNCTION_VERSION=$LATEST", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "relayfloor:", err)
			os.Exit(1)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); rl.asked.Load() < int64(*n); {
		if time.Now().After(deadline) {
			fmt.Fprintln(os.Stderr, "relayfloor: the runtimes did not all ask for an invocation within 30s")
			os.Exit(1)
		}
		time.Sleep(5 * time.Millisecond)
	}
	fmt.Println("ready", ln.Addr().String())
	srv := &http.Server{Handler: http.HandlerFunc(rl.invoke), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, "relayfloor:", err)
		os.Exit(1)
	}
}
