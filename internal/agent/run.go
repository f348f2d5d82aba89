package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// Bounds of the agent's waits.
const (
	// setupGiveUp bounds the retries of requests to the Host that fail
	// for a reason that may pass (no connection, a 5xx answer).
	setupGiveUp = 60 * time.Second
	// failedLinger is how long an agent whose setup failed waits for a
	// Ready call to report it before it exits 1.
	failedLinger = 60 * time.Second
	// exitLinger bounds how long the agent stays after the program's exit
	// for its output to be read and Wait to be answered.
	exitLinger = 30 * time.Second
	// shutdownGrace bounds the end of the agent's HTTP servers.
	shutdownGrace = 2 * time.Second
)

// Exit codes of the agent itself, besides the program's.
const (
	exitUsage     = 2   // its environment is incomplete
	exitNotFound  = 127 // the program could not be started
	exitTerminate = 128 + int(syscall.SIGTERM)
)

type agentConfig struct {
	server, id, token string
	listenFD          int // -1: listen on 0.0.0.0:Port
	runtimeListen     string
	terminationLog    string
}

func parseEnv(environ []string) (agentConfig, error) {
	vars := make(map[string]string)
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	cfg := agentConfig{
		server:         strings.TrimRight(vars[EnvServer], "/"),
		id:             vars[EnvSandbox],
		token:          vars[EnvToken],
		listenFD:       -1,
		runtimeListen:  net.JoinHostPort("127.0.0.1", strconv.Itoa(RuntimePort)),
		terminationLog: "/dev/termination-log",
	}
	var missing []string
	for k, v := range map[string]string{EnvServer: cfg.server, EnvSandbox: cfg.id, EnvToken: cfg.token} {
		if v == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return cfg, fmt.Errorf("agent environment: set %s: %w", strings.Join(missing, ", "), stratus.ErrInvalid)
	}
	if u, err := url.Parse(cfg.server); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return cfg, fmt.Errorf("agent environment: %s=%q: want a URL like http://10.0.0.5:41234: %w", EnvServer, cfg.server, stratus.ErrInvalid)
	}
	if v := vars[envListenFD]; v != "" {
		fd, err := strconv.Atoi(v)
		if err != nil || fd < 3 {
			return cfg, fmt.Errorf("agent environment: %s=%q: want a descriptor number of 3 or more: %w", envListenFD, v, stratus.ErrInvalid)
		}
		cfg.listenFD = fd
	}
	if v := vars[envRuntimeListen]; v != "" {
		cfg.runtimeListen = v
	}
	if v := vars[envTerminationLog]; v != "" {
		cfg.terminationLog = v
	}
	return cfg, nil
}

// agent is one run of `stratus agent`.
type agent struct {
	cfg    agentConfig
	log    *slog.Logger
	host   *hostClient
	cgroup cgroupFiles
	wg     sync.WaitGroup // every goroutine it starts

	stdout, stderr *stream
	outW, errW     *os.File // the pipes' write ends, until Start

	setupDone    chan struct{} // closed when setup has ended (sb or setupErr set)
	failureRead  chan struct{} // closed once Ready has answered a setup failure
	failureOnce  sync.Once
	exited       chan struct{} // closed when the program has exited (exit, code set)
	waitAnswered chan struct{} // closed once Wait has answered the exit
	waitOnce     sync.Once
	quit         chan struct{} // closed when the agent ends: handlers give up
	poke         chan struct{} // a follower delivered a stream or Wait was answered

	mu        sync.Mutex
	sb        Sandbox
	setupErr  error
	relayAddr string
	relay     *http.Server
	started   bool
	stopping  bool // SIGTERM came: no Start any more
	pid       int  // the program's, 0 before Start
	hasExited bool
	exit      sandbox.Exit
	code      int
	oomBefore int64
}

// Run is `stratus agent`: reads its Env*, fetches the Sandbox (its mounts
// are in the pod already: Stage unpacked them), serves Port and the
// relay, runs the program on Start, and returns the exit code the process
// should exit with. ctx ending is taken as SIGTERM: it is forwarded to
// the program's process group, and the agent returns when the program
// has exited (or at once, 143, when no program was started).
func Run(ctx context.Context, environ []string, log *slog.Logger) int {
	log = log.With("component", "agent")
	cfg, err := parseEnv(environ)
	if err != nil {
		log.Error("agent", "err", err)
		return exitUsage
	}
	log = log.With("instance", cfg.id)
	a := &agent{
		cfg:          cfg,
		log:          log,
		host:         newHostClient(cfg, log),
		setupDone:    make(chan struct{}),
		failureRead:  make(chan struct{}),
		exited:       make(chan struct{}),
		waitAnswered: make(chan struct{}),
		quit:         make(chan struct{}),
		poke:         make(chan struct{}, 1),
	}
	if a.cgroup, err = ownCgroup(); err != nil {
		a.log.Warn("agent cgroup: stats will fail", "err", err)
	}
	if a.stdout, a.outW, err = newStream("stdout"); err == nil {
		a.stderr, a.errW, err = newStream("stderr")
	}
	if err != nil {
		a.log.Error("agent output pipes", "err", err)
		return 1
	}
	return a.run(ctx)
}

func (a *agent) run(ctx context.Context) int {
	defer a.host.http.CloseIdleConnections()
	ln, err := a.listen()
	if err != nil {
		a.log.Error("agent listen", "err", err)
		a.closeOutput()
		return 1
	}
	srv := &http.Server{
		Handler:           a.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       90 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	a.wg.Go(func() { srv.Serve(ln) })
	a.wg.Go(a.stdout.readLoop)
	a.wg.Go(a.stderr.readLoop)
	setupCtx, cancelSetup := context.WithCancel(ctx)
	a.wg.Go(func() { a.setup(setupCtx) })

	code := a.loop(ctx)

	cancelSetup()
	close(a.quit)
	a.closeOutput()
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	if srv.Shutdown(sctx) != nil {
		srv.Close()
	}
	<-a.setupDone
	a.mu.Lock()
	relay := a.relay
	a.mu.Unlock()
	if relay != nil && relay.Shutdown(sctx) != nil {
		relay.Close()
	}
	cancel()
	a.wg.Wait()
	return code
}

// closeOutput closes both pipes (the write ends if Start did not take
// them).
func (a *agent) closeOutput() {
	a.mu.Lock()
	if !a.started {
		a.outW.Close()
		a.errW.Close()
	}
	a.mu.Unlock()
	a.stdout.close()
	a.stderr.close()
}

// listen opens the agent's listener: the inherited one of envListenFD,
// else 0.0.0.0:Port.
func (a *agent) listen() (net.Listener, error) {
	if a.cfg.listenFD < 0 {
		return net.Listen("tcp", net.JoinHostPort("0.0.0.0", strconv.Itoa(Port)))
	}
	f := os.NewFile(uintptr(a.cfg.listenFD), "listener")
	defer f.Close()
	return net.FileListener(f)
}

// loop waits for the agent's end and returns its exit code.
func (a *agent) loop(ctx context.Context) int {
	term, setupDone, exited := ctx.Done(), a.setupDone, a.exited
	var failTimer, exitTimer <-chan time.Time
	for {
		select {
		case <-term:
			term = nil
			a.mu.Lock()
			a.stopping = true
			started, running, pid := a.started, a.pid > 0 && !a.hasExited, a.pid
			if running {
				unix.Kill(-pid, unix.SIGTERM)
			}
			a.mu.Unlock()
			a.log.Info("agent terminated", "forwarded", running)
			if !started {
				return exitTerminate
			}
		case <-setupDone:
			setupDone = nil
			a.mu.Lock()
			err := a.setupErr
			a.mu.Unlock()
			if err != nil {
				t := time.NewTimer(failedLinger)
				defer t.Stop()
				failTimer = t.C
			}
		case <-failTimer:
			a.log.Error("agent setup failed and no Ready call came to report it")
			return 1
		case <-a.failureRead:
			return 1
		case <-exited:
			exited = nil
			t := time.NewTimer(exitLinger)
			defer t.Stop()
			exitTimer = t.C
			if a.finished() {
				return a.exitCode()
			}
		case <-a.poke:
			if exited == nil && a.finished() {
				return a.exitCode()
			}
		case <-exitTimer:
			a.log.Warn("agent: program output not read or Wait not answered in time", "wait", exitLinger)
			return a.exitCode()
		}
	}
}

func (a *agent) kick() {
	select {
	case a.poke <- struct{}{}:
	default:
	}
}

// finished reports whether, the program having exited, both streams were
// read to their end and Wait was answered.
func (a *agent) finished() bool {
	select {
	case <-a.waitAnswered:
	default:
		return false
	}
	return a.stdout.isDelivered() && a.stderr.isDelivered()
}

func (a *agent) exitCode() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.code
}

// setup fetches the Sandbox and opens the relay.
func (a *agent) setup(ctx context.Context) {
	sb, err := a.fetchSetup(ctx)
	a.mu.Lock()
	a.sb, a.setupErr = sb, err
	a.mu.Unlock()
	close(a.setupDone)
	if err != nil {
		a.log.Error("agent setup", "err", err)
		return
	}
	a.log.Info("agent ready", "relay", sb.RuntimeAPI != "")
}

func (a *agent) fetchSetup(ctx context.Context) (Sandbox, error) {
	sb, err := a.host.sandbox(ctx)
	if err != nil {
		return Sandbox{}, err
	}
	if len(sb.Argv) == 0 || sb.Argv[0] == "" {
		return Sandbox{}, fmt.Errorf("sandbox %q: no program (empty argv): %w", a.cfg.id, stratus.ErrInvalid)
	}
	if sb.RuntimeAPI != "" {
		if err := a.startRelay(sb.RuntimeAPI); err != nil {
			return Sandbox{}, err
		}
	}
	return sb, nil
}

// hostClient is an agent's side of the Host: the requests of one
// sandbox, with its token.
type hostClient struct {
	id    string
	base  string // the sandbox's URL at the Host
	token string
	http  *http.Client
	log   *slog.Logger
}

func newHostClient(cfg agentConfig, log *slog.Logger) *hostClient {
	return &hostClient{
		id:    cfg.id,
		base:  cfg.server + "/v1/agent/sandboxes/" + url.PathEscape(cfg.id),
		token: cfg.token,
		http: &http.Client{Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ResponseHeaderTimeout: 30 * time.Second,
			IdleConnTimeout:       30 * time.Second,
		}},
		log: log,
	}
}

// sandbox fetches the Sandbox.
func (h *hostClient) sandbox(ctx context.Context) (Sandbox, error) {
	var w wireSandbox
	err := h.get(ctx, "", func(body io.Reader) error {
		return json.NewDecoder(io.LimitReader(body, 16<<20)).Decode(&w)
	})
	if err != nil {
		return Sandbox{}, fmt.Errorf("get sandbox %q: %w", h.id, err)
	}
	return w.sandbox(), nil
}

// get GETs path (under the sandbox's URL) from the Host and hands the
// body of a 200 answer to read. It retries, up to setupGiveUp, what may
// pass: no connection, a 5xx answer.
func (h *hostClient) get(ctx context.Context, path string, read func(io.Reader) error) error {
	deadline := time.Now().Add(setupGiveUp)
	for pause := 50 * time.Millisecond; ; pause = min(2*pause, 2*time.Second) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.base+path, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+h.token)
		resp, err := h.http.Do(req)
		if err == nil {
			if resp.StatusCode == http.StatusOK {
				err = read(resp.Body)
				resp.Body.Close()
				return err
			}
			err = statusError("host "+req.URL.Host, resp)
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return err
			}
		}
		if ctx.Err() != nil || time.Now().Add(pause).After(deadline) {
			return err
		}
		h.log.Warn("agent: host request failed, retrying", "err", err)
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// startRelay serves the Runtime API relay to target ("host:port").
func (a *agent) startRelay(target string) error {
	tu, err := url.Parse("http://" + target)
	if err != nil || tu.Host == "" || tu.Path != "" {
		return fmt.Errorf("runtime API address %q: want host:port: %w", target, stratus.ErrInvalid)
	}
	ln, err := net.Listen("tcp", a.cfg.runtimeListen)
	if err != nil {
		return fmt.Errorf("runtime API relay: %w", err)
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(tu)
			pr.Out.Host = pr.In.Host // headers unchanged
		},
		// Streamed both ways; no timeout: /runtime/invocation/next is
		// held as long as the server holds it.
		FlushInterval: -1,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			IdleConnTimeout:     90 * time.Second,
			MaxIdleConnsPerHost: 4,
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			a.log.Warn("agent relay", "path", r.URL.Path, "err", err)
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	srv := &http.Server{
		Handler:           proxy,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       90 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	a.mu.Lock()
	a.relay, a.relayAddr = srv, ln.Addr().String()
	a.mu.Unlock()
	a.wg.Go(func() { srv.Serve(ln) })
	return nil
}

// start starts the program, once.
func (a *agent) start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	select {
	case <-a.setupDone:
	default:
		return fmt.Errorf("start: the agent is still setting up: %w", stratus.ErrUnavailable)
	}
	switch {
	case a.setupErr != nil:
		return fmt.Errorf("start: setup failed: %v: %w", a.setupErr, stratus.ErrUnavailable)
	case a.started:
		return fmt.Errorf("start: the program was started already: %w", stratus.ErrConflict)
	case a.stopping:
		return fmt.Errorf("start: the agent is terminating: %w", stratus.ErrUnavailable)
	}
	a.started = true
	a.oomBefore = a.cgroup.oomKills()
	pid, err := a.spawn()
	a.outW.Close()
	a.errW.Close()
	if err != nil {
		a.log.Error("agent start", "err", err)
		a.setExit(sandbox.Exit{Code: exitNotFound}, exitNotFound)
		return err
	}
	a.pid = pid
	a.log.Info("agent started program", "pid", pid)
	a.wg.Go(func() { a.reap(pid) })
	return nil
}

// spawn starts the program in its own process group; a.mu is held.
func (a *agent) spawn() (int, error) {
	sb := a.sb
	env := sb.Env
	if a.relayAddr != "" {
		env = make([]string, 0, len(sb.Env)+1)
		for _, kv := range sb.Env {
			if !strings.HasPrefix(kv, "AWS_LAMBDA_RUNTIME_API=") {
				env = append(env, kv)
			}
		}
		env = append(env, "AWS_LAMBDA_RUNTIME_API="+a.relayAddr)
	}
	prog := sb.Argv[0]
	if !strings.Contains(prog, "/") {
		p, err := lookPath(prog, env)
		if err != nil {
			return 0, err
		}
		prog = p
	}
	if sb.Dir != "" {
		fi, err := os.Stat(sb.Dir)
		if err != nil {
			return 0, fmt.Errorf("working directory %s: %w", sb.Dir, errors.Join(err, stratus.ErrInvalid))
		}
		if !fi.IsDir() {
			return 0, fmt.Errorf("working directory %s: not a folder: %w", sb.Dir, stratus.ErrInvalid)
		}
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		return 0, err
	}
	defer null.Close()
	pid, err := syscall.ForkExec(prog, sb.Argv, &syscall.ProcAttr{
		Dir:   sb.Dir,
		Env:   env,
		Files: []uintptr{null.Fd(), a.outW.Fd(), a.errW.Fd()},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
	})
	if err != nil {
		return 0, fmt.Errorf("start program %s: %v: %w", prog, err, stratus.ErrInvalid)
	}
	return pid, nil
}

// lookPath finds an executable named name in the PATH of env.
func lookPath(name string, env []string) (string, error) {
	pathVar := "/usr/local/bin:/usr/bin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathVar = v
		}
	}
	for _, dir := range filepath.SplitList(pathVar) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("start program %s: not found in PATH %q: %w", name, pathVar, stratus.ErrInvalid)
}

// reap waits for the program (and, the agent being PID 1 in its pod, for
// orphans that became its children) and records the program's exit.
func (a *agent) reap(pid int) {
	for {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			a.log.Error("agent wait", "err", err)
			a.mu.Lock()
			a.setExit(sandbox.Exit{Code: -1, Signal: "lost"}, 1)
			a.mu.Unlock()
			return
		}
		if wpid != pid {
			continue
		}
		var e sandbox.Exit
		code := 0
		if ws.Signaled() {
			sig := ws.Signal()
			e = sandbox.Exit{Code: -1, Signal: sig.String()}
			code = 128 + int(sig)
			e.OOM = sig == unix.SIGKILL && a.cgroup.oomKills() > a.oomBefore
		} else {
			e.Code = ws.ExitStatus()
			code = e.Code
		}
		// What the program left in its group goes with it.
		unix.Kill(-pid, unix.SIGKILL)
		a.mu.Lock()
		a.setExit(e, code)
		a.mu.Unlock()
		a.log.Info("agent program exited", "exit", e.String(), "oom", e.OOM)
		return
	}
}

// setExit records the program's end; a.mu is held.
func (a *agent) setExit(e sandbox.Exit, code int) {
	a.exit, a.code, a.hasExited = e, code, true
	close(a.exited)
	b, _ := json.Marshal(wireExit(e))
	writeTerminationLog(a.cfg.terminationLog, append(b, '\n'))
}

// writeTerminationLog replaces the content of the termination log at
// path, when that exists and is writable, with b.
func writeTerminationLog(path string, b []byte) {
	if f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0); err == nil {
		f.Write(b)
		f.Close()
	}
}

// handler serves the agent's routes to the driver holding its token.
func (a *agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ready", a.serveReady)
	mux.HandleFunc("POST /v1/start", a.serveStart)
	mux.HandleFunc("GET /v1/output/{stream}", a.serveOutput)
	mux.HandleFunc("POST /v1/sync", a.serveSync)
	mux.HandleFunc("GET /v1/wait", a.serveWait)
	mux.HandleFunc("GET /v1/stats", a.serveStats)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(agentHeader, "1")
		if !bearer(r, a.cfg.token) {
			writeError(w, http.StatusUnauthorized, "wrong or missing token")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (a *agent) serveReady(w http.ResponseWriter, r *http.Request) {
	select {
	case <-a.setupDone:
	default:
		writeError(w, http.StatusServiceUnavailable, "the agent is still setting up")
		return
	}
	a.mu.Lock()
	err := a.setupErr
	a.mu.Unlock()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		http.NewResponseController(w).Flush()
		a.failureOnce.Do(func() { close(a.failureRead) })
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *agent) serveStart(w http.ResponseWriter, r *http.Request) {
	err := a.start()
	switch {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, stratus.ErrConflict):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, stratus.ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		writeError(w, http.StatusServiceUnavailable, err.Error())
	}
}

func (a *agent) serveOutput(w http.ResponseWriter, r *http.Request) {
	var s *stream
	switch r.PathValue("stream") {
	case "stdout":
		s = a.stdout
	case "stderr":
		s = a.stderr
	default:
		writeError(w, http.StatusNotFound, fmt.Sprintf("output stream %q: want stdout or stderr", r.PathValue("stream")))
		return
	}
	start, err := s.follow()
	if err != nil {
		writeError(w, http.StatusConflict, fmt.Sprintf("%s: %v", s.name, err))
		return
	}
	delivered := false
	defer func() {
		s.release(delivered)
		if delivered {
			a.kick()
		}
	}()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-a.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set(offsetHeader, strconv.FormatInt(start, 10))
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if rc.Flush() != nil {
		return
	}
	for {
		b, ended, err := s.next(ctx, 64<<10)
		if err != nil {
			// Not a clean end: the follower must not take it for one.
			panic(http.ErrAbortHandler)
		}
		if ended {
			delivered = true
			return
		}
		if _, err := w.Write(b); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
		s.consume(len(b))
	}
}

func (a *agent) serveSync(w http.ResponseWriter, r *http.Request) {
	out, err := a.stdout.drained(r.Context())
	if err != nil {
		return
	}
	errOff, err := a.stderr.drained(r.Context())
	if err != nil {
		return
	}
	writeJSON(w, wireOffsets{Stdout: out, Stderr: errOff})
}

func (a *agent) serveWait(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	rc.Flush()
	select {
	case <-a.exited:
	case <-a.quit:
		panic(http.ErrAbortHandler)
	case <-r.Context().Done():
		return
	}
	a.mu.Lock()
	e := a.exit
	a.mu.Unlock()
	if json.NewEncoder(w).Encode(wireExit(e)) != nil || rc.Flush() != nil {
		return
	}
	a.waitOnce.Do(func() { close(a.waitAnswered) })
	a.kick()
}

func (a *agent) serveStats(w http.ResponseWriter, r *http.Request) {
	st, err := a.cgroup.stats()
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(w, wireStats(st))
}
