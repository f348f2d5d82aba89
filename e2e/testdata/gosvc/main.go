// Command gosvc is the long-running HTTP service the end-to-end tests put
// in an image. It keeps the Knative/Cloud Run container contract (listen on
// $PORT, stop gracefully on SIGTERM) and misbehaves on request: its
// environment, its flags and its paths say how.
//
// Each setting is a flag whose default comes from the environment:
//
//	-port                PORT                 port to listen on, all addresses (8080; 0 picks one)
//	-rev                 REV                  revision named by GET /
//	-ready-delay-ms      READY_DELAY_MS       wait this long before listening
//	-exit-at-start       EXIT_AT_START        exit at once with this code (-1: don't)
//	-no-listen           NO_LISTEN=1          never listen; wait for SIGTERM
//	-unhealthy-after-sec UNHEALTHY_AFTER_SEC  /healthz fails once up this long (0: never)
//	-unhealthy-file      UNHEALTHY_FILE       /healthz fails while it exists (/tmp/unhealthy)
//
// It prints "gosvc listening on :PORT" once it listens (the real port when
// PORT is 0) and "METHOD /path" for every request, on stdout.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

type config struct {
	port           int
	rev            string
	readyDelay     time.Duration
	exitAtStart    int
	noListen       bool
	unhealthyAfter time.Duration
	unhealthyFile  string
}

func run(args []string) int {
	start := time.Now()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cfg, err := parse(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gosvc:", err)
		return 2
	}
	if cfg.exitAtStart >= 0 {
		fmt.Fprintf(os.Stderr, "gosvc exiting at start with code %d\n", cfg.exitAtStart)
		return cfg.exitAtStart
	}
	stdout := log.New(os.Stdout, "", 0)
	if cfg.noListen {
		stdout.Print("gosvc not listening (NO_LISTEN)")
		<-ctx.Done()
		return 0
	}
	if cfg.readyDelay > 0 {
		t := time.NewTimer(cfg.readyDelay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return 0
		}
	}

	ln, err := net.Listen("tcp", ":"+strconv.Itoa(cfg.port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "gosvc:", err)
		return 1
	}
	stopping, stopWS := context.WithCancel(context.Background())
	defer stopWS()
	s := &service{cfg: cfg, start: start, stopping: stopping, id: newID()}
	srv := &http.Server{
		Handler:           logRequests(stdout, s.routes()),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	stdout.Printf("gosvc listening on :%d", ln.Addr().(*net.TCPAddr).Port)

	select {
	case err := <-served:
		fmt.Fprintln(os.Stderr, "gosvc: serve:", err)
		return 1
	case <-ctx.Done():
	}
	stdout.Print("gosvc shutting down")
	stopWS()
	// Shutdown waits for in-flight requests; the platform bounds it by
	// killing us when its grace period ends.
	err = srv.Shutdown(context.Background())
	<-served
	s.websockets.Wait()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gosvc: shutdown:", err)
		return 1
	}
	return 0
}

func parse(args []string) (config, error) {
	var cfg config
	var readyMS, unhealthySec int
	port, err := envInt("PORT", 8080)
	if err != nil {
		return cfg, err
	}
	if readyMS, err = envInt("READY_DELAY_MS", 0); err != nil {
		return cfg, err
	}
	exitAt, err := envInt("EXIT_AT_START", -1)
	if err != nil {
		return cfg, err
	}
	if unhealthySec, err = envInt("UNHEALTHY_AFTER_SEC", 0); err != nil {
		return cfg, err
	}
	unhealthyFile := os.Getenv("UNHEALTHY_FILE")
	if unhealthyFile == "" {
		unhealthyFile = "/tmp/unhealthy"
	}

	fs := flag.NewFlagSet("gosvc", flag.ContinueOnError)
	fs.IntVar(&cfg.port, "port", port, "port to listen on, on all addresses (env PORT)")
	fs.StringVar(&cfg.rev, "rev", os.Getenv("REV"), "revision named by GET / (env REV)")
	fs.IntVar(&readyMS, "ready-delay-ms", readyMS, "wait this long before listening (env READY_DELAY_MS)")
	fs.IntVar(&cfg.exitAtStart, "exit-at-start", exitAt, "exit at once with this code; -1: don't (env EXIT_AT_START)")
	fs.BoolVar(&cfg.noListen, "no-listen", os.Getenv("NO_LISTEN") == "1", "never listen (env NO_LISTEN=1)")
	fs.IntVar(&unhealthySec, "unhealthy-after-sec", unhealthySec, "/healthz fails once up this long; 0: never (env UNHEALTHY_AFTER_SEC)")
	fs.StringVar(&cfg.unhealthyFile, "unhealthy-file", unhealthyFile, "/healthz fails while this file exists (env UNHEALTHY_FILE)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	cfg.readyDelay = time.Duration(readyMS) * time.Millisecond
	cfg.unhealthyAfter = time.Duration(unhealthySec) * time.Second
	return cfg, nil
}

func envInt(name string, def int) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("env %s: %w", name, err)
	}
	return n, nil
}

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

type service struct {
	cfg   config
	start time.Time
	id    string // random, one per process
	// stopping is cancelled at shutdown; open websockets then close.
	stopping   context.Context
	websockets sync.WaitGroup
	inflight   atomic.Int64 // GET /sleep requests not yet answered
}

func (s *service) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.hello)
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /sick", s.sick)
	mux.HandleFunc("GET /sleep", s.sleep)
	mux.HandleFunc("GET /inflight", s.inflightCount)
	mux.HandleFunc("GET /id", func(w http.ResponseWriter, r *http.Request) { text(w, http.StatusOK, s.id) })
	mux.HandleFunc("GET /env", s.env)
	mux.HandleFunc("/path", s.echoPath)
	mux.HandleFunc("/path/", s.echoPath)
	mux.HandleFunc("GET /crash", s.crash)
	mux.HandleFunc("GET /alloc", s.alloc)
	mux.HandleFunc("GET /stream", s.stream)
	mux.HandleFunc("GET /ws", s.websocket)
	mux.HandleFunc("GET /write", s.write)
	return mux
}

func logRequests(l *log.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.Printf("%s %s", r.Method, r.URL.Path)
		next.ServeHTTP(w, r)
	})
}

// text answers body and a newline as text/plain.
func text(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body+"\n")
}

// intParam reads query parameter name, def when absent; it answers 400
// and reports false when the value is no integer >= 0.
func intParam(w http.ResponseWriter, r *http.Request, name string, def int) (int, bool) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		text(w, http.StatusBadRequest, fmt.Sprintf("%s: want an integer >= 0, got %q", name, v))
		return 0, false
	}
	return n, true
}

func (s *service) hello(w http.ResponseWriter, r *http.Request) {
	host := os.Getenv("HOSTNAME")
	if host == "" {
		host, _ = os.Hostname()
	}
	text(w, http.StatusOK, fmt.Sprintf("hello from gosvc rev=%s host=%s pid=%d", s.cfg.rev, host, os.Getpid()))
}

func (s *service) healthz(w http.ResponseWriter, r *http.Request) {
	if up := time.Since(s.start); s.cfg.unhealthyAfter > 0 && up >= s.cfg.unhealthyAfter {
		text(w, http.StatusInternalServerError, fmt.Sprintf("unhealthy: up for more than %s", s.cfg.unhealthyAfter))
		return
	}
	if _, err := os.Stat(s.cfg.unhealthyFile); err == nil {
		text(w, http.StatusInternalServerError, fmt.Sprintf("unhealthy: %s exists", s.cfg.unhealthyFile))
		return
	}
	text(w, http.StatusOK, "ok")
}

func (s *service) sick(w http.ResponseWriter, r *http.Request) {
	if err := os.WriteFile(s.cfg.unhealthyFile, nil, 0o644); err != nil {
		text(w, http.StatusInternalServerError, err.Error())
		return
	}
	text(w, http.StatusOK, "ok")
}

func (s *service) sleep(w http.ResponseWriter, r *http.Request) {
	ms, ok := intParam(w, r, "ms", 0)
	if !ok {
		return
	}
	n := s.inflight.Add(1)
	defer s.inflight.Add(-1)
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		// n counts this request: the sleeps in flight when it began.
		text(w, http.StatusOK, fmt.Sprintf("slept %d ms (inflight %d)", ms, n))
	case <-r.Context().Done(): // the client went away
	}
}

func (s *service) inflightCount(w http.ResponseWriter, r *http.Request) {
	text(w, http.StatusOK, strconv.FormatInt(s.inflight.Load(), 10))
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (s *service) env(w http.ResponseWriter, r *http.Request) {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	writeJSON(w, env)
}

// echo is what /path/... answers.
type echo struct {
	Method  string      `json:"method"`
	Path    string      `json:"path"`     // decoded
	RawPath string      `json:"raw_path"` // as sent, escaped
	Query   string      `json:"query"`    // raw
	Host    string      `json:"host"`
	Headers http.Header `json:"headers"`
}

func (s *service) echoPath(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, echo{
		Method:  r.Method,
		Path:    r.URL.Path,
		RawPath: r.URL.EscapedPath(),
		Query:   r.URL.RawQuery,
		Host:    r.Host,
		Headers: r.Header,
	})
}

// crash answers in full, with a length and no keep-alive, then exits 3.
func (s *service) crash(w http.ResponseWriter, r *http.Request) {
	const body = "crashing with exit code 3\n"
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("Connection", "close")
	_, _ = io.WriteString(w, body)
	_ = http.NewResponseController(w).Flush()
	os.Exit(3)
}

func (s *service) alloc(w http.ResponseWriter, r *http.Request) {
	mb, ok := intParam(w, r, "mb", 0)
	if !ok {
		return
	}
	b := make([]byte, mb<<20)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	runtime.KeepAlive(b)
	text(w, http.StatusOK, fmt.Sprintf("allocated %d MB", mb))
}

func (s *service) stream(w http.ResponseWriter, r *http.Request) {
	n, ok := intParam(w, r, "n", 10)
	if !ok {
		return
	}
	ms, ok := intParam(w, r, "ms", 100)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	rc := http.NewResponseController(w)
	t := time.NewTimer(0)
	defer t.Stop()
	for i := 1; i <= n; i++ {
		if i > 1 {
			t.Reset(time.Duration(ms) * time.Millisecond)
			select {
			case <-t.C:
			case <-r.Context().Done():
				return
			}
		}
		if _, err := fmt.Fprintf(w, "line %d\n", i); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

func (s *service) websocket(w http.ResponseWriter, r *http.Request) {
	s.websockets.Add(1)
	defer s.websockets.Done()
	// Tests reach us through proxies that may rewrite Host; no origin check.
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return // Accept has answered
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	closed := make(chan struct{})
	stop := context.AfterFunc(s.stopping, func() {
		defer close(closed)
		_ = c.Close(websocket.StatusGoingAway, "shutting down")
	})
	defer func() {
		if !stop() {
			<-closed
		}
	}()
	for {
		typ, msg, err := c.Read(context.Background())
		if err != nil {
			return
		}
		if err := c.Write(context.Background(), typ, msg); err != nil {
			return
		}
	}
}

func (s *service) write(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Query().Get("path")
	if p == "" {
		text(w, http.StatusBadRequest, "path: missing")
		return
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err == nil {
		_, err = io.WriteString(f, "written by gosvc\n")
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		text(w, http.StatusInternalServerError, err.Error())
		return
	}
	text(w, http.StatusOK, "ok")
}
