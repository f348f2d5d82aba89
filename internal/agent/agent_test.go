package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// testModeEnv makes the test binary act, instead of running tests, as the
// agent ("agent") or as a program the agent runs ("runtime-client").
const testModeEnv = "_STRATUS_AGENT_TEST_MODE"

func TestMain(m *testing.M) {
	switch os.Getenv(testModeEnv) {
	case "agent":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := Run(ctx, os.Environ(), slog.New(slog.NewTextHandler(os.Stderr, nil)))
		stop()
		os.Exit(code)
	case "runtime-client":
		os.Exit(runtimeClient())
	}
	os.Exit(m.Run())
}

// runtimeClient is a program the agent runs: it prints what it sees of
// its environment, takes one event from the Runtime API and answers it,
// and exits 3.
func runtimeClient() int {
	api := os.Getenv("AWS_LAMBDA_RUNTIME_API")
	wd, _ := os.Getwd()
	fmt.Printf("FOO=%s\npwd=%s\napi=%s\n", os.Getenv("FOO"), wd, api)
	resp, err := http.Get("http://" + api + "/2018-06-01/runtime/invocation/next")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	id := resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
	fmt.Printf("event=%s id=%s\n", body, id)
	req, _ := http.NewRequest(http.MethodPost, "http://"+api+"/2018-06-01/runtime/invocation/"+id+"/response", strings.NewReader("ok:"+string(body)))
	req.Header.Set("X-Probe", "kept")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	resp.Body.Close()
	fmt.Printf("posted=%d\n", resp.StatusCode)
	fmt.Fprintln(os.Stderr, "to stderr")
	return 3
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// testAgent is an agent process serving one sandbox of a Host.
type testAgent struct {
	c        *Client
	cmd      *exec.Cmd
	exited   chan struct{}
	code     int // once exited is closed
	termLog  string
	logs     *syncBuffer
	hostURL  string
	hostGate chan struct{} // closed: the Host answers

	mu       sync.Mutex
	requests []string // the paths the Host was asked for
}

// asked returns the paths the Host was asked for.
func (ta *testAgent) asked() []string {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	return append([]string(nil), ta.requests...)
}

type agentOpts struct {
	gate bool                    // hold the Host's answers until hostGate is closed
	env  func([]string) []string // edits the agent's environment
}

// startAgent registers sb with a Host on an httptest server and starts
// the test binary as its agent, on a listener of its own.
func startAgent(t *testing.T, sb Sandbox, o agentOpts) *testAgent {
	t.Helper()
	h := NewHost(slog.New(slog.NewTextHandler(io.Discard, nil)))
	token := h.Add(sb)
	ta := &testAgent{exited: make(chan struct{}), logs: &syncBuffer{}, hostGate: make(chan struct{})}
	if !o.gate {
		close(ta.hostGate)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ta.mu.Lock()
		ta.requests = append(ta.requests, r.URL.Path)
		ta.mu.Unlock()
		select {
		case <-ta.hostGate:
		case <-r.Context().Done():
			return
		}
		h.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	ta.hostURL = srv.URL

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lf, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close() // lf still listens

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ta.termLog = filepath.Join(t.TempDir(), "termination-log")
	if err := os.WriteFile(ta.termLog, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(),
		testModeEnv+"=agent",
		EnvServer+"="+srv.URL,
		EnvSandbox+"="+sb.ID,
		EnvToken+"="+token,
		envListenFD+"=3",
		envRuntimeListen+"=127.0.0.1:0",
		envTerminationLog+"="+ta.termLog,
	)
	if o.env != nil {
		env = o.env(env)
	}
	ta.cmd = exec.Command(exe)
	ta.cmd.Env = env
	ta.cmd.ExtraFiles = []*os.File{lf}
	ta.cmd.Stdout = ta.logs
	ta.cmd.Stderr = ta.logs
	if err := ta.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lf.Close()
	go func() {
		ta.cmd.Wait()
		ta.code = ta.cmd.ProcessState.ExitCode()
		close(ta.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-ta.exited:
		default:
			ta.cmd.Process.Kill()
			<-ta.exited
		}
		if t.Failed() {
			t.Logf("agent's log:\n%s", ta.logs.String())
		}
	})
	ta.c = &Client{Addr: addr, Token: token}
	return ta
}

func (ta *testAgent) ready(t *testing.T) {
	t.Helper()
	eventually.Nil(t, 10*time.Second, "agent ready", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return ta.c.Ready(ctx)
	})
}

// waitExit waits for the agent process to exit and returns its code.
func (ta *testAgent) waitExit(t *testing.T) int {
	t.Helper()
	select {
	case <-ta.exited:
		return ta.code
	case <-time.After(20 * time.Second):
		t.Fatal("the agent process did not exit")
		return 0
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func shell(script string) []string { return []string{"/bin/sh", "-c", script} }

var shellEnv = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}

// TestRun runs a program through the whole protocol: Ready before and
// after setup, Start with its Env and Dir, the Runtime API relay holding a
// long poll, output through Follow, Wait, a second Start, the agent's exit
// code and termination log. The agent neither fetches nor writes the
// mounts (Stage does).
func TestRun(t *testing.T) {
	t.Parallel()
	code := t.TempDir()
	mustWrite(t, filepath.Join(code, "hello.txt"), "hello\n", 0o644)
	mustWrite(t, filepath.Join(code, "lib", "run.sh"), "#!/bin/sh\n", 0o755)
	if err := os.Symlink("hello.txt", filepath.Join(code, "link")); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "task") // nothing creates it
	dir := t.TempDir()

	// The server's Runtime API: it holds the long poll 2 s.
	var mu sync.Mutex
	var gotBody, gotProbe string
	rapi := http.NewServeMux()
	rapi.HandleFunc("GET /2018-06-01/runtime/invocation/next", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second): // the long poll under test, not a wait for something
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Lambda-Runtime-Aws-Request-Id", "req-1")
		io.WriteString(w, `{"n":1}`)
	})
	rapi.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		gotBody, gotProbe = r.PathValue("id")+" "+string(b), r.Header.Get("X-Probe")
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})
	backend := httptest.NewServer(rapi)
	t.Cleanup(backend.Close)

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sb := Sandbox{
		ID:         "fn-1",
		Argv:       []string{exe},
		Env:        []string{testModeEnv + "=runtime-client", "FOO=bar", "AWS_LAMBDA_RUNTIME_API=127.0.0.1:1"},
		Dir:        dir,
		Mounts:     []sandbox.Mount{{Source: code, Target: target}},
		RuntimeAPI: strings.TrimPrefix(backend.URL, "http://"),
	}
	ta := startAgent(t, sb, agentOpts{gate: true})
	ctx := ctxT(t)

	// Before setup: unavailable, not failed; Start is refused.
	if err := ta.c.Ready(ctx); !errors.Is(err, stratus.ErrUnavailable) || errors.Is(err, ErrSetup) {
		t.Fatalf("Ready before setup = %v, want ErrUnavailable without ErrSetup", err)
	}
	if err := ta.c.Start(ctx); !errors.Is(err, stratus.ErrUnavailable) {
		t.Fatalf("Start before setup = %v, want ErrUnavailable", err)
	}
	close(ta.hostGate)
	ta.ready(t)

	// The mount is the stager's: the agent neither asks for it nor
	// writes its target.
	if _, err := os.Lstat(target); err == nil {
		t.Errorf("the agent wrote the mount's target %s", target)
	}
	for _, p := range ta.asked() {
		if strings.Contains(p, "/mounts/") {
			t.Errorf("the agent asked the Host for %s; want the Sandbox only", p)
		}
	}

	var stdout, stderr syncBuffer
	f := ta.c.Follow(ctx, &stdout, &stderr)
	type waited struct {
		exit sandbox.Exit
		err  error
	}
	wait2 := make(chan waited, 1)
	go func() {
		exit, err := ta.c.Wait(ctx)
		wait2 <- waited{exit, err}
	}()
	if err := ta.c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ta.c.Start(ctx); !errors.Is(err, stratus.ErrConflict) {
		t.Errorf("second Start = %v, want ErrConflict", err)
	}
	exit, err := ta.c.Wait(ctx)
	if err != nil || exit != (sandbox.Exit{Code: 3}) {
		t.Fatalf("Wait = %+v, %v; want code 3", exit, err)
	}
	select {
	case <-f.Done():
	case <-ctx.Done():
		t.Fatal("Follow did not end")
	}
	out := stdout.String()
	for _, want := range []string{"FOO=bar\n", "pwd=" + dir + "\n", `event={"n":1} id=req-1`, "posted=202\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "api=127.0.0.1:1\n") || !strings.Contains(out, "api=127.0.0.1:") {
		t.Errorf("AWS_LAMBDA_RUNTIME_API not the relay's:\n%s", out)
	}
	if got := stderr.String(); got != "to stderr\n" {
		t.Errorf("stderr = %q", got)
	}
	mu.Lock()
	if gotBody != `req-1 ok:{"n":1}` || gotProbe != "kept" {
		t.Errorf("the Runtime API got %q with X-Probe %q", gotBody, gotProbe)
	}
	mu.Unlock()
	if e := <-wait2; e.err != nil || e.exit.Code != 3 {
		t.Errorf("concurrent Wait = %+v, %v", e.exit, e.err)
	}
	if code := ta.waitExit(t); code != 3 {
		t.Errorf("agent exit code %d, want 3", code)
	}
	if b, err := os.ReadFile(ta.termLog); err != nil || string(b) != `{"code":3}`+"\n" {
		t.Errorf("termination log %q, %v", b, err)
	}
}

func mustWrite(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// fifo makes a named pipe and opens it read-write, so that neither end's
// opens block.
func fifo(t *testing.T, p string) *os.File {
	t.Helper()
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestSync: what the program wrote before a Sync has reached the writers
// when Sync returns, round after round, also past the agent's buffer.
func TestSync(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd, ack := fifo(t, filepath.Join(dir, "cmd")), fifo(t, filepath.Join(dir, "ack"))
	script := `for i in 1 2 3 4 5; do
		read n < cmd
		if [ "$n" = big ]; then head -c 5000000 /dev/zero | tr '\0' x; echo; fi
		echo "out $n"; echo "err $n" >&2
		echo "$n" > ack
	done`
	ta := startAgent(t, Sandbox{ID: "sync", Argv: shell(script), Env: shellEnv, Dir: dir}, agentOpts{})
	ctx := ctxT(t)
	ta.ready(t)
	var stdout, stderr syncBuffer
	f := ta.c.Follow(ctx, &stdout, &stderr)
	if err := f.Sync(ctx); err != nil { // before Start: nothing to wait for
		t.Fatal(err)
	}
	if err := ta.c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	acks := bufio.NewReader(ack)
	for _, n := range []string{"1", "2", "big", "4", "5"} {
		if _, err := io.WriteString(cmd, n+"\n"); err != nil {
			t.Fatal(err)
		}
		ack.SetReadDeadline(time.Now().Add(15 * time.Second))
		if line, err := acks.ReadString('\n'); err != nil || line != n+"\n" {
			t.Fatalf("ack %q, %v", line, err)
		}
		if err := f.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if out := stdout.String(); !strings.HasSuffix(out, "out "+n+"\n") {
			t.Fatalf("round %s: stdout after Sync ends %q", n, out[max(0, len(out)-40):])
		}
		if got := stderr.String(); !strings.HasSuffix(got, "err "+n+"\n") {
			t.Fatalf("round %s: stderr after Sync is %q", n, got)
		}
	}
	if exit, err := ta.c.Wait(ctx); err != nil || exit.Code != 0 {
		t.Fatalf("Wait = %+v, %v", exit, err)
	}
	<-f.Done()
	if err := f.Sync(ctx); err != nil {
		t.Errorf("Sync after the end = %v", err)
	}
	if n := strings.Count(stdout.String(), "x"); n != 5000000 {
		t.Errorf("stdout has %d x, want 5000000", n)
	}
	if code := ta.waitExit(t); code != 0 {
		t.Errorf("agent exit code %d", code)
	}
}

// TestSignals: a program killed by a signal is reported so, and the agent
// exits 128+signal; SIGTERM to the agent reaches the program.
func TestSignals(t *testing.T) {
	t.Parallel()
	t.Run("killed", func(t *testing.T) {
		t.Parallel()
		ta := startAgent(t, Sandbox{ID: "kill", Argv: shell("kill -KILL $$"), Env: shellEnv}, agentOpts{})
		ctx := ctxT(t)
		ta.ready(t)
		f := ta.c.Follow(ctx, nil, nil)
		if err := ta.c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		exit, err := ta.c.Wait(ctx)
		if err != nil || exit != (sandbox.Exit{Code: -1, Signal: "killed"}) {
			t.Fatalf("Wait = %+v, %v", exit, err)
		}
		<-f.Done()
		if code := ta.waitExit(t); code != 137 {
			t.Errorf("agent exit code %d, want 137", code)
		}
		if b, _ := os.ReadFile(ta.termLog); string(b) != `{"code":-1,"signal":"killed"}`+"\n" {
			t.Errorf("termination log %q", b)
		}
	})
	t.Run("terminated", func(t *testing.T) {
		t.Parallel()
		script := `trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 1; done`
		ta := startAgent(t, Sandbox{ID: "term", Argv: shell(script), Env: shellEnv}, agentOpts{})
		ctx := ctxT(t)
		ta.ready(t)
		var stdout syncBuffer
		f := ta.c.Follow(ctx, &stdout, nil)
		if err := ta.c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		eventually.True(t, 10*time.Second, "the program ready", func() bool { return stdout.String() == "ready\n" })
		if err := ta.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		exit, err := ta.c.Wait(ctx)
		if err != nil || exit.Code != 7 {
			t.Fatalf("Wait = %+v, %v", exit, err)
		}
		<-f.Done()
		if got := stdout.String(); got != "ready\ngot-term\n" {
			t.Errorf("stdout %q", got)
		}
		if code := ta.waitExit(t); code != 7 {
			t.Errorf("agent exit code %d, want 7", code)
		}
	})
	t.Run("terminated before start", func(t *testing.T) {
		t.Parallel()
		ta := startAgent(t, Sandbox{ID: "idle", Argv: shell("exit 0"), Env: shellEnv}, agentOpts{})
		ta.ready(t)
		if err := ta.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := ta.waitExit(t); code != 143 {
			t.Errorf("agent exit code %d, want 143", code)
		}
	})
}

// TestStartFails: a program that cannot be started fails Start with an
// error naming it; Wait then reports 127.
func TestStartFails(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		sb   Sandbox
		want string
	}{
		{"missing file", Sandbox{ID: "a", Argv: []string{"/nonexistent/bootstrap"}}, "/nonexistent/bootstrap: no such file or directory"},
		{"not in PATH", Sandbox{ID: "b", Argv: []string{"no-such-program"}, Env: shellEnv}, `no-such-program: not found in PATH "/usr/local/bin:/usr/bin:/bin"`},
		{"missing dir", Sandbox{ID: "c", Argv: []string{"/bin/true"}, Dir: "/nonexistent/dir"}, "working directory /nonexistent/dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ta := startAgent(t, tc.sb, agentOpts{})
			ctx := ctxT(t)
			ta.ready(t)
			f := ta.c.Follow(ctx, nil, nil)
			err := ta.c.Start(ctx)
			if !errors.Is(err, stratus.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Start = %v, want ErrInvalid with %q", err, tc.want)
			}
			if exit, err := ta.c.Wait(ctx); err != nil || exit.Code != 127 {
				t.Errorf("Wait = %+v, %v", exit, err)
			}
			<-f.Done()
			if code := ta.waitExit(t); code != 127 {
				t.Errorf("agent exit code %d", code)
			}
		})
	}
}

// TestSetupFails: an agent the Host refuses (wrong token, unknown
// sandbox: the same 401) or that has no program reports why through
// Ready and exits 1 right after.
func TestSetupFails(t *testing.T) {
	t.Parallel()
	setEnv := func(k, v string) func([]string) []string {
		return func(env []string) []string { return append(env, k+"="+v) }
	}
	for _, tc := range []struct {
		name string
		env  func([]string) []string
		want string
	}{
		{"wrong token", setEnv(EnvToken, "nope"), "401"},
		{"unknown sandbox", setEnv(EnvSandbox, "other"), "401"},
		{"no program", nil, "no program"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sb := Sandbox{ID: "s", Argv: shell("exit 0")}
			if tc.env == nil {
				sb.Argv = nil
			}
			ta := startAgent(t, sb, agentOpts{env: tc.env})
			if tc.name == "wrong token" {
				ta.c.Token = "nope" // the agent's
			}
			ctx := ctxT(t)
			var err error
			eventually.True(t, 10*time.Second, "setup failed", func() bool {
				err = ta.c.Ready(ctx)
				return errors.Is(err, ErrSetup)
			})
			if !errors.Is(err, stratus.ErrUnavailable) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Ready = %v, want ErrUnavailable with %q", err, tc.want)
			}
			if code := ta.waitExit(t); code != 1 {
				t.Errorf("agent exit code %d, want 1", code)
			}
		})
	}
}

// TestAuth: the agent and the Host refuse a wrong or missing token
// (401), the Host whether or not the sandbox exists (an unknown sandbox
// is a wrong token, so that nobody learns which sandboxes exist), and an
// unknown mount (404), without host paths.
func TestAuth(t *testing.T) {
	t.Parallel()
	ta := startAgent(t, Sandbox{ID: "auth", Argv: shell("exit 0")}, agentOpts{})
	ctx := ctxT(t)
	ta.ready(t)
	bad := &Client{Addr: ta.c.Addr, Token: "wrong"}
	for name, call := range map[string]func() error{
		"Ready": func() error { return bad.Ready(ctx) },
		"Start": func() error { return bad.Start(ctx) },
		"Wait":  func() error { _, err := bad.Wait(ctx); return err },
		"Stats": func() error { _, err := bad.Stats(ctx); return err },
	} {
		if err := call(); !errors.Is(err, stratus.ErrInvalid) || !strings.Contains(err.Error(), "401") {
			t.Errorf("%s with a wrong token = %v, want 401", name, err)
		}
	}

	src := t.TempDir()
	h := NewHost(slog.New(slog.NewTextHandler(io.Discard, nil)))
	token := h.Add(Sandbox{ID: "x", Argv: []string{"/b"}, Mounts: []sandbox.Mount{{Source: src, Target: "/var/task"}}})
	h.Add(Sandbox{ID: "y"})
	srv := httptest.NewServer(h.Handler())
	defer srv.Close()
	get := func(path, tok string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		path, tok string
		want      int
	}{
		{"/v1/agent/sandboxes/x", token, 200},
		{"/v1/agent/sandboxes/x/mounts/0", token, 200},
		{"/v1/agent/sandboxes/x", "", 401},
		{"/v1/agent/sandboxes/x", "wrong", 401},
		{"/v1/agent/sandboxes/y", token, 401}, // another sandbox's token
		{"/v1/agent/sandboxes/z", token, 401}, // no such sandbox
		{"/v1/agent/sandboxes/z", "", 401},
		{"/v1/agent/sandboxes/z/mounts/0", token, 401},
		{"/v1/agent/sandboxes/x/mounts/1", token, 404},
		{"/v1/agent/sandboxes/x/mounts/-1", token, 404},
	} {
		code, body := get(tc.path, tc.tok)
		if code != tc.want {
			t.Errorf("GET %s: %d %s, want %d", tc.path, code, body, tc.want)
		}
		if strings.Contains(body, src) {
			t.Errorf("GET %s shows a host path: %s", tc.path, body)
		}
	}
	_, unknown := get("/v1/agent/sandboxes/z", token)
	_, wrong := get("/v1/agent/sandboxes/x", "wrong")
	if unknown != wrong {
		t.Errorf("an unknown sandbox is answered %q, a wrong token %q; want the same", unknown, wrong)
	}
	_, body := get("/v1/agent/sandboxes/x", token)
	var w wireSandbox
	if err := json.Unmarshal([]byte(body), &w); err != nil || len(w.Mounts) != 1 || w.Mounts[0].Target != "/var/task" || w.Argv[0] != "/b" {
		t.Errorf("sandbox JSON %s (%v)", body, err)
	}
	h.Remove("x")
	for _, p := range []string{"/v1/agent/sandboxes/x", "/v1/agent/sandboxes/x/mounts/0"} {
		if code, body := get(p, token); code != 401 || strings.Contains(body, `"x"`) {
			t.Errorf("GET %s after Remove: %d %s, want 401 not naming the sandbox", p, code, body)
		}
	}
}

// TestStats: after the program burnt CPU, Stats reports CPU time and peak
// memory of the agent's cgroup.
func TestStats(t *testing.T) {
	t.Parallel()
	script := `i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo burnt; while :; do sleep 1; done`
	ta := startAgent(t, Sandbox{ID: "stats", Argv: shell(script), Env: shellEnv}, agentOpts{})
	ctx := ctxT(t)
	ta.ready(t)
	var stdout syncBuffer
	f := ta.c.Follow(ctx, &stdout, nil)
	if err := ta.c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 10*time.Second, "CPU burnt", func() bool { return stdout.String() == "burnt\n" })
	st, err := ta.c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.CPUNanos <= 0 || st.MaxRSSBytes <= 0 {
		t.Errorf("Stats = %+v, want both > 0", st)
	}
	t.Logf("stats of the agent's cgroup: %+v", st)
	ta.cmd.Process.Signal(syscall.SIGTERM)
	if exit, err := ta.c.Wait(ctx); err != nil || exit.Signal != "terminated" {
		t.Errorf("Wait = %+v, %v", exit, err)
	}
	<-f.Done()
	if code := ta.waitExit(t); code != 143 {
		t.Errorf("agent exit code %d, want 143", code)
	}
}

func TestCgroupPaths(t *testing.T) {
	all := func(string) bool { return true }
	const hostV1 = `30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	const podV1 = `1 0 0:1 / / rw - overlay overlay rw
31 30 0:28 /kubepods/pod1/c1 /sys/fs/cgroup/cpu,cpuacct ro,relatime - cgroup cgroup rw,cpu,cpuacct
34 30 0:31 /kubepods/pod1/c1 /sys/fs/cgroup/memory ro,relatime - cgroup cgroup rw,memory
`
	const podV2 = `1 0 0:1 / / rw - overlay overlay rw
35 30 0:30 / /sys/fs/cgroup ro,relatime - cgroup2 cgroup rw
`
	for _, tc := range []struct {
		name, cgroup, mounts string
		exists               func(string) bool
		want                 cgroupFiles
	}{
		{"host v1", "4:memory:/a/b\n2:cpu,cpuacct:/c\n0::/\n", hostV1, all, cgroupFiles{
			memPeak: "/sys/fs/cgroup/memory/a/b/memory.max_usage_in_bytes", oom: "/sys/fs/cgroup/memory/a/b/memory.oom_control",
			cpu: "/sys/fs/cgroup/cpu,cpuacct/c/cpuacct.usage"}},
		{"pod v1", "4:memory:/kubepods/pod1/c1\n2:cpu,cpuacct:/kubepods/pod1/c1\n", podV1, all, cgroupFiles{
			memPeak: "/sys/fs/cgroup/memory/memory.max_usage_in_bytes", oom: "/sys/fs/cgroup/memory/memory.oom_control",
			cpu: "/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage"}},
		{"pod v2", "0::/\n", podV2, all, cgroupFiles{
			memPeak: "/sys/fs/cgroup/memory.peak", memNow: "/sys/fs/cgroup/memory.current", oom: "/sys/fs/cgroup/memory.events",
			cpu: "/sys/fs/cgroup/cpu.stat", cpuV2: true}},
		{"v1 empty, v2 used", "4:memory:/a\n0::/x\n", hostV1, func(p string) bool { return !strings.Contains(p, "memory/") }, cgroupFiles{
			memPeak: "/sys/fs/cgroup/unified/x/memory.peak", memNow: "/sys/fs/cgroup/unified/x/memory.current", oom: "/sys/fs/cgroup/unified/x/memory.events",
			cpu: "/sys/fs/cgroup/unified/x/cpu.stat", cpuV2: true}},
	} {
		if got := cgroupPaths([]byte(tc.cgroup), []byte(tc.mounts), tc.exists); got != tc.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
}

// TestNotAnAgent: an answer from something other than an agent at the
// pod's address (a network's proxy, another pod that has the address) is
// "no agent there yet", whatever its status, not the agent's refusal.
func TestNotAnAgent(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not here", http.StatusNotFound)
	}))
	defer srv.Close()
	c := &Client{Addr: netip.MustParseAddrPort(srv.Listener.Addr().String()), Token: "t"}
	ctx := ctxT(t)
	err := c.Ready(ctx)
	if !errors.Is(err, stratus.ErrUnavailable) || errors.Is(err, stratus.ErrNotFound) || !strings.Contains(err.Error(), "not a Stratus agent") {
		t.Errorf("Ready from a 404 without the agent's header = %v, want ErrUnavailable saying it is not an agent", err)
	}
	if _, err := c.Wait(ctx); !errors.Is(err, stratus.ErrUnavailable) {
		t.Errorf("Wait = %v, want ErrUnavailable", err)
	}
}
