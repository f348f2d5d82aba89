package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

const benchToken = "bench-events-token-0123456789"

// server is a running `stratus server` started by the bench.
type server struct {
	cmd  *exec.Cmd
	bin  string
	addr string // host:port
	base string // http://host:port
	hc   *http.Client
	exit chan error
}

// startServer starts bin as a server on a free loopback port, with the
// extra flags, its stdout and stderr in logPath.
func startServer(ctx context.Context, bin, data, logPath string, extra ...string) (*server, error) {
	argv := append([]string{bin, "server", "--listen", "127.0.0.1:0", "--data", data, "--token", benchToken,
		"--retain-invocations", "100000", "--log-level", "warn"}, extra...)
	s, err := startProc(ctx, logPath, argv...)
	if err != nil {
		return nil, err
	}
	s.bin = bin
	return s, nil
}

// startProc starts argv in its own process group, its output in logPath,
// and waits for its first stdout line to name its address ("... listening
// on http://ADDR ...").
func startProc(ctx context.Context, logPath string, argv ...string) (*server, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "STRATUS_TOKEN=", "STRATUS_SERVER=")
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	// Its own process group, so that a forced stop also ends the instances.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	s := &server{cmd: cmd, exit: make(chan error, 1)}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		first := true
		for sc.Scan() {
			if first {
				lines <- sc.Text()
				first = false
			}
			fmt.Fprintln(logf, sc.Text())
		}
		close(lines)
	}()
	go func() { s.exit <- cmd.Wait(); logf.Close() }()
	select {
	case l, ok := <-lines:
		const marker = "listening on http://"
		i := strings.Index(l, marker)
		if !ok || i < 0 {
			s.stop()
			return nil, fmt.Errorf("start %s: unexpected first line %q (log %s)", argv[0], l, logPath)
		}
		s.addr = strings.Fields(l[i+len(marker):])[0]
	case <-time.After(30 * time.Second):
		s.stop()
		return nil, fmt.Errorf("start %s: no address after 30s (log %s)", argv[0], logPath)
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
	s.base = "http://" + s.addr
	s.hc = &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     time.Minute,
		},
	}
	return s, nil
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// stop ends the server with SIGTERM (it stops its instances), waits up to
// 20 s, then kills its process group.
func (s *server) stop() {
	if s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exit:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exit
	}
}

// cli runs the stratus CLI against the server.
func (s *server) cli(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, s.bin, args...)
	cmd.Env = append(os.Environ(), "STRATUS_SERVER="+s.base, "STRATUS_TOKEN="+benchToken)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("stratus %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return nil
}

// deploy deploys the folder dir as function name (runtime provided) with
// the extra deploy flags.
func (s *server) deploy(ctx context.Context, name, dir string, flags ...string) error {
	args := append([]string{"deploy", name, "--runtime", "provided"}, flags...)
	return s.cli(ctx, append(args, dir)...)
}

// do sends one request with the token and returns the status and body.
func (s *server) do(ctx context.Context, method, path string, hdr http.Header, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+benchToken)
	resp, err := s.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// doJSON sends in as JSON (nil: no body) and decodes a 2xx answer into out.
func (s *server) doJSON(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	hdr := http.Header{}
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = b
		hdr.Set("Content-Type", "application/json")
	}
	code, b, err := s.do(ctx, method, path, hdr, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if code/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, path, code, bytes.TrimSpace(b))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

var eventHeader = http.Header{
	v1.HeaderInvocationType: {v1.InvocationEvent},
	"Content-Type":          {"application/json"},
}

// invokeAsync queues event for fn and returns its request ID.
func (s *server) invokeAsync(ctx context.Context, fn string, event []byte) (string, error) {
	code, b, err := s.do(ctx, http.MethodPost, "/v1/functions/"+fn+"/invoke", eventHeader, event)
	if err != nil {
		return "", err
	}
	if code != http.StatusAccepted {
		return "", fmt.Errorf("async invoke %s: %d %s", fn, code, bytes.TrimSpace(b))
	}
	var a v1.Accepted
	if err := json.Unmarshal(b, &a); err != nil {
		return "", err
	}
	return a.RequestID, nil
}

// invokeSync invokes fn and waits for its answer.
func (s *server) invokeSync(ctx context.Context, fn string, event []byte) error {
	code, b, err := s.do(ctx, http.MethodPost, "/v1/functions/"+fn+"/invoke", http.Header{"Content-Type": {"application/json"}}, event)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("invoke %s: %d %s", fn, code, bytes.TrimSpace(b))
	}
	return nil
}

// records returns up to limit of fn's newest invocation records (all of
// request's when request is not empty).
func (s *server) records(ctx context.Context, fn string, limit int, request string) ([]stratus.Invocation, error) {
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if request != "" {
		q.Set("request", request)
	}
	var l v1.InvocationList
	if err := s.doJSON(ctx, http.MethodGet, "/v1/functions/"+fn+"/invocations?"+q.Encode(), nil, &l); err != nil {
		return nil, err
	}
	return l.Invocations, nil
}

// status returns the state of an async invocation; State is "" while the
// server has not stored its first state yet (404: states are written in
// batches).
func (s *server) status(ctx context.Context, id string) (stratus.AsyncStatus, error) {
	var st stratus.AsyncStatus
	code, b, err := s.do(ctx, http.MethodGet, "/v1/invocations/"+id, nil, nil)
	if err != nil {
		return st, err
	}
	switch code {
	case http.StatusOK:
		return st, json.Unmarshal(b, &st)
	case http.StatusNotFound:
		return st, nil
	}
	return st, fmt.Errorf("GET /v1/invocations/%s: %d %s", id, code, bytes.TrimSpace(b))
}

// procCPU is utime + stime of pid (all its threads), 0 if it is gone.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	st := string(b)
	i := strings.LastIndexByte(st, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(st[i+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * 10 * time.Millisecond // USER_HZ is 100
}

// treeCPU is the CPU time of pid and its descendants still alive.
func treeCPU(pid int) time.Duration {
	d := procCPU(pid)
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, c := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(c); err == nil {
				d += treeCPU(n)
			}
		}
	}
	return d
}

// memory returns VmRSS and VmHWM of pid in bytes.
func memory(pid int) (rss, hwm int64) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = n << 10
		case "VmHWM":
			hwm = n << 10
		}
	}
	return rss, hwm
}

// goBuild builds pkg (relative to the module root) into out, statically.
func goBuild(ctx context.Context, root, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// moduleRoot is the folder of the module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	b, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(b))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("run the bench from inside the stratus module (go run ./bench/events)")
	}
	return filepath.Dir(mod), nil
}

// procCPUAll is procCPU plus the CPU of pid's reaped children.
func procCPUAll(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	st := string(b)
	i := strings.LastIndexByte(st, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(st[i+1:])
	if len(f) < 15 {
		return 0
	}
	var sum int64
	for _, x := range f[11:15] { // utime, stime, cutime, cstime
		n, _ := strconv.ParseInt(x, 10, 64)
		sum += n
	}
	return time.Duration(sum) * 10 * time.Millisecond
}

// machineBusy is the CPU time all cores have spent not idle since boot.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, x := range f[1:9] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseInt(x, 10, 64)
		busy += n
	}
	return time.Duration(busy) * 10 * time.Millisecond
}
