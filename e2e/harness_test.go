// Package e2e drives the real stratus binary and CLI with real functions:
// aws-lambda-go binaries built here, bash, Python and Node handlers.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	bin      string // the stratus binary
	fixtures string // built Go functions: fixtures/NAME/bootstrap
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "stratus-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		bin = filepath.Join(dir, "stratus")
		if out, err := exec.Command("go", "build", "-o", bin, "../cmd/stratus").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build stratus: %v\n%s", err, out)
			return 1
		}
		fixtures = filepath.Join(dir, "fixtures")
		for _, fn := range []string{"goecho", "goapigw", "gonoop"} {
			if _, err := buildStatic(fn, filepath.Join(fixtures, fn, "bootstrap")); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		return m.Run()
	}()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needTool fails (in CI) or skips the test when a tool is missing.
func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed; scripts/test installs it", name)
		}
		t.Skipf("%s is not installed", name)
	}
}

const testToken = "e2e-token-0123456789"

// buildStatic builds ./testdata/PKG as a static executable (no cgo, as
// Lambda's provided runtimes and the test images want) at out.
func buildStatic(pkg, out string) (string, error) {
	cmd := exec.Command("go", "build", "-ldflags=-s -w", "-o", out, "./testdata/"+pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", pkg, err, b)
	}
	return out, nil
}

// server is a running stratus server process.
type server struct {
	t     *testing.T
	cmd   *exec.Cmd
	Data  string
	URL   string
	Token string
	args  []string
	// ownToken: the server is started without --token and makes or reads
	// its own token file in Data; Token is read from it.
	ownToken bool
	// exe and as, when set, run another copy of the binary and as another
	// user (see startServerAs).
	exe string
	as  *syscall.Credential

	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan struct{}
}

// startServer starts stratus server on a free port with a fresh data dir
// (or data, when given in opts via startServerIn).
func startServer(t *testing.T, args ...string) *server {
	t.Helper()
	return startServerIn(t, t.TempDir(), args...)
}

func startServerIn(t *testing.T, data string, args ...string) *server {
	t.Helper()
	s := &server{t: t, Data: data, Token: testToken, args: args}
	s.start()
	t.Cleanup(func() { s.Stop() })
	return s
}

func (s *server) start() {
	t := s.t
	t.Helper()
	argv := []string{"server", "--listen", "127.0.0.1:0", "--data", s.Data}
	if !s.ownToken {
		argv = append(argv, "--token", s.Token)
	}
	argv = append(argv, s.args...)
	exe := bin
	if s.exe != "" {
		exe = s.exe
	}
	cmd := exec.Command(exe, argv...)
	cmd.Env = append(os.Environ(), "STRATUS_TOKEN=")
	if s.as != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.as}
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &lockedWriter{mu: &s.mu, w: &s.stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.cmd = cmd
	s.done = make(chan struct{})
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if i := strings.Index(line, "listening on "); i >= 0 {
				f := strings.Fields(line[i+len("listening on "):])
				urlc <- f[0]
			}
		}
	}()
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()
	select {
	case s.URL = <-urlc:
	case <-s.done:
		t.Fatalf("server exited at start:\n%s", s.Stderr())
	case <-time.After(30 * time.Second):
		t.Fatalf("server did not start within 30s:\n%s", s.Stderr())
	}
	if s.ownToken {
		b, err := os.ReadFile(filepath.Join(s.Data, "token"))
		if err != nil {
			t.Fatalf("the server started without --token kept no token file: %v", err)
		}
		s.Token = strings.TrimSpace(string(b))
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Stderr is the server's log so far.
func (s *server) Stderr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// Stop sends SIGTERM and waits for the server to exit; it fails the test
// if the server takes longer than a minute or leaves a process behind.
func (s *server) Stop() {
	t := s.t
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		_ = s.cmd.Process.Kill()
		t.Errorf("server did not stop within 60s of SIGTERM:\n%s", s.Stderr())
		<-s.done
	}
	if st := s.cmd.ProcessState; st != nil && !st.Success() {
		t.Errorf("server exited with %v:\n%s", st, s.Stderr())
	}
	// A process the kernel is still tearing down (its memory freed, its
	// cgroup kept) is listed for a moment after its end: wait, bounded.
	var left []string
	deadline := time.Now().Add(10 * time.Second)
	for left = processesUnder(s.Data); len(left) > 0 && time.Now().Before(deadline); left = processesUnder(s.Data) {
		time.Sleep(20 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Errorf("processes outlived the server: %v", left)
	}
}

// Kill ends the server with SIGKILL.
func (s *server) Kill() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Restart starts a new server process on the same data dir.
func (s *server) Restart() {
	s.start()
}

// processesUnder lists the processes of the instances of a server with
// data dir dir: those whose working directory or executable lies under
// dir (the process driver runs instances in their code folder) and those
// in a cgroup of the runc driver whose state is in dir (runc's
// cgroupsPath is /stratus/ and a hash of that state dir).
func processesUnder(dir string) []string {
	var out []string
	for _, p := range instanceProcesses(dir) {
		out = append(out, p.desc)
	}
	return out
}

// instancesUnder counts the instances whose processes processesUnder
// lists: a runc container's (its init, its program, `runc run`) count once.
func instancesUnder(dir string) int {
	seen := map[string]bool{}
	for _, p := range instanceProcesses(dir) {
		seen[p.instance] = true
	}
	return len(seen)
}

// startedUnder counts the instances instancesUnder counts whose program
// was started: a prepared runc container (its init waits to start the
// program, or the python3 or nodejs client waits for its start; see
// --max-prepared), or one runc is still making (its processes, and
// those of them exiting, with no command line left), does not count.
func startedUnder(dir string) int {
	seen := map[string]bool{}
	for _, p := range instanceProcesses(dir) {
		if !p.init && p.argv0 != "" && filepath.Base(p.argv0) != "runc" && !parkedOnStart(p.pid) {
			seen[p.instance] = true
		}
	}
	return len(seen)
}

// parkedOnStart reports whether process pid is a runtime client started
// ahead in a prepared sandbox, waiting in read(2) on its start
// descriptor (3).
func parkedOnStart(pid string) bool {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "syscall"))
	return err == nil && strings.HasPrefix(string(b), "0 0x3 ") // x86-64 read, fd 3
}

// functionProcessesUnder lists the processes processesUnder lists that
// belong to function fn's instances, prepared ones included (their
// environment names the function).
func functionProcessesUnder(dir, fn string) []string {
	var out []string
	for _, p := range instanceProcesses(dir) {
		env, _ := os.ReadFile(filepath.Join("/proc", p.pid, "environ"))
		for kv := range strings.SplitSeq(string(env), "\x00") {
			if kv == "AWS_LAMBDA_FUNCTION_NAME="+fn {
				out = append(out, p.desc)
				break
			}
		}
	}
	return out
}

type instanceProcess struct {
	desc     string // "PID:cmdline"
	pid      string
	argv0    string
	init     bool   // a runc container's init (run directly or by the loader bound beside it)
	instance string // the runc container's ID, else the PID
}

func instanceProcesses(dir string) []instanceProcess {
	sum := sha256.Sum256([]byte(filepath.Join(dir, "run", "runc")))
	cgroup := "/stratus/" + hex.EncodeToString(sum[:4]) + "-"
	// The runc driver's bundles live outside the data dir (see
	// internal/sandbox/runc/stage.go).
	bundles := filepath.Join("/run/stratus", hex.EncodeToString(sum[:6]), "bundles") + "/"
	var out []instanceProcess
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid := e.Name()
		if pid[0] < '0' || pid[0] > '9' {
			continue
		}
		instance := ""
		for _, link := range []string{"cwd", "exe"} {
			p, err := os.Readlink(filepath.Join("/proc", pid, link))
			if err == nil && (strings.HasPrefix(p, dir+"/") || strings.HasPrefix(p, bundles)) {
				instance = pid
				if rest, ok := strings.CutPrefix(p, bundles); ok {
					instance, _, _ = strings.Cut(rest, "/") // `runc run` works in the bundle
				}
			}
		}
		if cg, err := os.ReadFile(filepath.Join("/proc", pid, "cgroup")); err == nil {
			if _, rest, ok := strings.Cut(string(cg), cgroup); ok {
				instance, _, _ = strings.Cut(rest, "\n")
				// A zombie whose cgroup is gone: still that instance's.
				instance = strings.TrimSuffix(instance, " (deleted)")
			}
		}
		if instance != "" {
			cmdline, _ := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
			args := strings.Split(string(cmdline), "\x00")
			init := args[0] == "/dev/.stratus-init" ||
				strings.HasPrefix(args[0], "/dev/.stratus-lib/") && slices.Contains(args, "/dev/.stratus-init")
			desc := pid + ":" + strings.ReplaceAll(string(cmdline), "\x00", " ")
			if len(cmdline) == 0 {
				// Exiting or a zombie: say which, and whose child.
				stat, _ := os.ReadFile(filepath.Join("/proc", pid, "stat"))
				if i := strings.LastIndexByte(string(stat), ')'); i > 0 {
					if f := strings.Fields(string(stat[i+1:])); len(f) >= 2 {
						desc += " (state " + f[0] + ", parent " + f[1] + ")"
					}
				}
			}
			out = append(out, instanceProcess{desc, pid, args[0], init, instance})
		}
	}
	return out
}

// result is what one CLI run printed.
type result struct {
	Stdout, Stderr string
	Code           int
}

// cli runs the stratus CLI against s.
func (s *server) cli(args ...string) result {
	s.t.Helper()
	return s.cliEnv(nil, args...)
}

func (s *server) cliEnv(env []string, args ...string) result {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "STRATUS_SERVER="+s.URL, "STRATUS_TOKEN="+s.Token)
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatalf("run stratus %v: %v", args, err)
	}
	return result{stdout.String(), stderr.String(), code}
}

// mustCLI runs the CLI and fails the test unless it exits 0.
func (s *server) mustCLI(args ...string) string {
	s.t.Helper()
	r := s.cli(args...)
	if r.Code != 0 {
		s.t.Fatalf("stratus %s: exit %d\nstdout: %s\nstderr: %s\nserver log:\n%s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr, s.Stderr())
	}
	return r.Stdout
}

// do sends an HTTP request to the server; token adds the bearer token.
func (s *server) do(method, path string, body []byte, token bool, hdr ...string) (*http.Response, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.URL+path, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if token {
		req.Header.Set("Authorization", "Bearer "+s.Token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	return s.roundTrip(req)
}

// roundTrip sends req and reads the whole answer.
func (s *server) roundTrip(req *http.Request) (*http.Response, []byte) {
	s.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp, b
}

// invoke calls POST /v1/functions/NAME/invoke.
func (s *server) invoke(name, event string) (*http.Response, []byte) {
	s.t.Helper()
	return s.do("POST", "/v1/functions/"+name+"/invoke", []byte(event), true)
}

// fixture returns the folder of a built Go function.
func fixture(name string) string { return filepath.Join(fixtures, name) }

// writeFiles writes files (name → content) into a new temp folder.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if filepath.Base(name) == "bootstrap" {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// decode unmarshals JSON or fails the test.
func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}
