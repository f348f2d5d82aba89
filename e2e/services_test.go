package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	ggcr "github.com/google/go-containerregistry/pkg/v1"

	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/eventually"
)

// fastServices are server flags that make the services' timings short
// enough for tests.
var fastServices = []string{
	"--service-ready-timeout", "5s", "--service-probe-interval", "200ms",
	"--autoscale-tick", "200ms", "--stable-window", "3s", "--panic-window", "1s",
	"--scale-to-zero-grace", "0s", "--service-stop-grace", "2s",
}

// startServicesServer starts a server with fast service timings and the
// gosvc image imported as gosvc:v1.
func startServicesServer(t *testing.T, args ...string) *server {
	t.Helper()
	needTool(t, "runc")
	s := startServer(t, append(append([]string{}, fastServices...), args...)...)
	s.mustCLI("image", "import", serviceImageTar(t, "gosvc:v1", ggcr.Config{}))
	return s
}

func (s *server) service(name string) v1.Service {
	s.t.Helper()
	return decode[v1.Service](s.t, []byte(s.mustCLI("service", "get", name, "-o", "json")))
}

// get sends GET path with the token and returns status and body.
func (s *server) get(path string, hdr ...string) (int, string) {
	s.t.Helper()
	resp, b := s.do("GET", path, nil, true, hdr...)
	return resp.StatusCode, string(b)
}

// hostGet sends GET path with the token and Host: host.
func (s *server) hostGet(host, path string) (int, string) {
	s.t.Helper()
	req, err := http.NewRequest("GET", s.URL+path, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Host = host
	req.Header.Set("Authorization", "Bearer "+s.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("GET %s (Host %s): %v", path, host, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServiceDeployRouteAndRemove(t *testing.T) {
	s := startServicesServer(t)
	out := s.mustCLI("service", "deploy", "web", "--image", "gosvc:v1", "--env", "REV=one", "--min", "1")
	if !strings.Contains(out, "web-00001") || !strings.Contains(out, "/svc/web") {
		t.Errorf("deploy printed %q", out)
	}
	svc := s.service("web")
	if svc.Status != "Ready" || svc.Replicas.Ready != 1 || svc.Replicas.Desired != 1 || svc.Revision != 1 {
		t.Errorf("service after deploy: %+v", svc)
	}
	if ls := s.mustCLI("service", "ls"); !strings.Contains(ls, "web") || !strings.Contains(ls, "Ready") {
		t.Errorf("service ls:\n%s", ls)
	}

	// The path route: the container sees /PATH, query and all.
	code, body := s.get("/svc/web/path/a%2Fb/c?x=1&y=2")
	if code != 200 {
		t.Fatalf("GET /svc/web/path: %d %s\n%s", code, body, s.Stderr())
	}
	echo := decode[struct {
		Path    string              `json:"path"`
		Query   string              `json:"query"`
		Host    string              `json:"host"`
		Headers map[string][]string `json:"headers"`
	}](t, []byte(body))
	if echo.Path != "/path/a/b/c" && echo.Path != "/path/a%2Fb/c" {
		t.Errorf("container saw path %q", echo.Path)
	}
	if echo.Query != "x=1&y=2" {
		t.Errorf("container saw query %q", echo.Query)
	}
	if _, ok := echo.Headers["Authorization"]; ok {
		t.Errorf("the server's token reached the container: %v", echo.Headers)
	}
	if code, body := s.get("/svc/web"); code != 200 || !strings.Contains(body, "rev=one") {
		t.Errorf("GET /svc/web: %d %q", code, body)
	}
	// The token is needed.
	if resp, _ := s.do("GET", "/svc/web/", nil, false); resp.StatusCode != 401 {
		t.Errorf("without token: %d, want 401", resp.StatusCode)
	}
	// The host route: the container sees the path as sent.
	code, body = s.hostGet("web.localhost", "/path/x?q=1")
	if code != 200 || !strings.Contains(body, `"path":"/path/x"`) || !strings.Contains(body, `"host":"web.localhost"`) {
		t.Errorf("host route: %d %s", code, body)
	}
	// The platform's environment.
	code, body = s.get("/svc/web/env")
	env := decode[map[string]string](t, []byte(body))
	if code != 200 || env["K_SERVICE"] != "web" || env["K_REVISION"] != "web-00001" || env["PORT"] == "" || env["REV"] != "one" {
		t.Errorf("env: %d %v", code, env)
	}

	// A streamed response arrives line by line.
	req, _ := http.NewRequest("GET", s.URL+"/svc/web/stream?n=3&ms=300", nil)
	req.Header.Set("Authorization", "Bearer "+s.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	first := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		first <- line
	}()
	select {
	case line := <-first:
		if line == "" {
			t.Error("stream: no first line")
		}
	case <-time.After(500 * time.Millisecond):
		t.Error("stream: the first line did not arrive before the response ended")
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	// WebSockets pass through.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, strings.Replace(s.URL, "http", "ws", 1)+"/svc/web/ws",
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + s.Token}}})
	if err != nil {
		t.Fatalf("websocket: %v", err)
	}
	if err := ws.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := ws.Read(ctx); err != nil || string(msg) != "ping" {
		t.Errorf("websocket echo: %q %v", msg, err)
	}
	ws.Close(websocket.StatusNormalClosure, "")

	// Logs: the replica's output.
	eventually.True(t, 5*time.Second, "the replica's start line in service logs", func() bool {
		return strings.Contains(s.mustCLI("service", "logs", "web"), "gosvc listening")
	})

	// An --auth none service needs no token.
	s.mustCLI("service", "deploy", "open", "--image", "gosvc:v1", "--auth", "none")
	if resp, body := s.do("GET", "/svc/open/", nil, false); resp.StatusCode != 200 {
		t.Errorf("--auth none without token: %d %s", resp.StatusCode, body)
	}

	// The image cannot be removed while services run it.
	if r := s.cli("image", "rm", "gosvc:v1"); r.Code == 0 || !strings.Contains(r.Stderr, "in use") {
		t.Errorf("image rm of an image in use: exit %d %s", r.Code, r.Stderr)
	}

	s.mustCLI("service", "rm", "web")
	s.mustCLI("service", "rm", "open")
	if code, _ := s.get("/svc/web/"); code != 404 {
		t.Errorf("GET after rm: %d, want 404", code)
	}
	eventually.True(t, 10*time.Second, "no replica left", func() bool { return len(processesUnder(s.Data)) == 0 })
	s.mustCLI("image", "rm", "gosvc:v1")
}

func TestServiceBalancesAndLimitsConcurrency(t *testing.T) {
	s := startServicesServer(t)
	s.mustCLI("service", "deploy", "web", "--image", "gosvc:v1", "--min", "2", "--max", "2", "--concurrency", "1")
	// Four requests at once on two replicas of concurrency 1: each
	// replica has one at a time, the others wait in the queue.
	var wg sync.WaitGroup
	ids := make(chan string, 8)
	var failed atomic.Int32
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body := s.get("/svc/web/sleep?ms=200")
			if code != 200 {
				failed.Add(1)
				t.Errorf("sleep: %d %s", code, body)
			}
			ids <- body
		}()
	}
	wg.Wait()
	close(ids)
	peak := 0
	for b := range ids {
		// gosvc answers "slept N ms (inflight K)", K counting itself.
		var ms, k int
		if _, err := fmt.Sscanf(b, "slept %d ms (inflight %d)", &ms, &k); err != nil {
			t.Errorf("sleep answered %q", b)
		}
		peak = max(peak, k)
	}
	if peak > 1 {
		t.Errorf("a replica had %d requests at once, want at most 1", peak)
	}
	// Both replicas took traffic.
	seen := map[string]bool{}
	for range 20 {
		_, id := s.get("/svc/web/id")
		seen[id] = true
	}
	if len(seen) != 2 {
		t.Errorf("requests reached %d replicas, want 2", len(seen))
	}
}

func TestServiceRollingUpdateUnderLoad(t *testing.T) {
	s := startServicesServer(t)
	s.mustCLI("service", "deploy", "web", "--image", "gosvc:v1", "--env", "REV=1", "--min", "2")

	stop := make(chan struct{})
	var okN, bad atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 10 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", s.URL+"/svc/web/", nil)
				req.Header.Set("Authorization", "Bearer "+s.Token)
				resp, err := client.Do(req)
				if err != nil {
					bad.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					bad.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %s", resp.StatusCode, b))
					continue
				}
				okN.Add(1)
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	eventually.True(t, 5*time.Second, "load running", func() bool { return okN.Load() > 50 })

	// A good revision: traffic moves to it, nothing fails.
	s.mustCLI("service", "deploy", "web", "--image", "gosvc:v1", "--env", "REV=2", "--min", "2")
	if _, body := s.get("/svc/web/"); !strings.Contains(body, "rev=2") {
		t.Errorf("after the update: %q", body)
	}
	// A revision whose container exits at start fails the deploy with the
	// reason; the previous revision keeps serving.
	r := s.cli("service", "deploy", "web", "--image", "gosvc:v1", "--env", "EXIT_AT_START=3")
	if r.Code == 0 || !strings.Contains(r.Stderr, "exit status 3") {
		t.Errorf("crashing revision: exit %d, stderr %s", r.Code, r.Stderr)
	}
	// One whose port never opens fails after the ready timeout.
	r = s.cli("service", "deploy", "web", "--image", "gosvc:v1", "--env", "NO_LISTEN=1")
	if r.Code == 0 || !strings.Contains(r.Stderr, "not ready within") || !strings.Contains(r.Stderr, "8080") {
		t.Errorf("revision that never listens: exit %d, stderr %s", r.Code, r.Stderr)
	}
	n := okN.Load()
	eventually.True(t, 5*time.Second, "more load", func() bool { return okN.Load() > n+50 })
	if _, body := s.get("/svc/web/"); !strings.Contains(body, "rev=2") {
		t.Errorf("after failed deploys: %q", body)
	}
	svc := s.service("web")
	if svc.Revision != 2 || svc.Status != "Ready" {
		t.Errorf("after failed deploys: revision %d status %s", svc.Revision, svc.Status)
	}
	if !strings.Contains(svc.LastError, "web-00003") && !strings.Contains(svc.LastError, "web-00004") {
		t.Errorf("last error %q does not name the failed revision", svc.LastError)
	}
	if b := bad.Load(); b != 0 {
		t.Errorf("%d of %d requests failed during the updates; first: %v", b, b+okN.Load(), firstErr.Load())
	}
	t.Logf("%d requests, none failed", okN.Load())
}

func TestServiceScaleToZeroAndBack(t *testing.T) {
	s := startServicesServer(t)
	s.mustCLI("service", "deploy", "web", "--image", "gosvc:v1", "--min", "0")
	eventually.True(t, 20*time.Second, "scale to zero", func() bool {
		svc := s.service("web")
		return svc.Status == "ScaledToZero" && svc.Replicas.Ready == 0
	})
	// At zero replicas no program runs; one sandbox is kept prepared
	// (its init waits) so that the next start is fast.
	// A stopped replica's sandbox goes a moment after its program.
	eventually.True(t, 10*time.Second, "no replica's program left, at most the prepared sandbox", func() bool {
		for _, p := range processesUnder(s.Data) {
			// The init's command line names the program it will start.
			if strings.Contains(p, "gosvc") && !strings.Contains(p, ".stratus-init") {
				return false
			}
		}
		return instancesUnder(s.Data) <= 1
	})
	// The first request waits while a replica starts.
	if code, body := s.get("/svc/web/"); code != 200 || !strings.Contains(body, "hello from gosvc") {
		t.Errorf("request from zero: %d %q", code, body)
	}
	if svc := s.service("web"); svc.Replicas.Ready != 1 {
		t.Errorf("after a request from zero: %+v", svc.Replicas)
	}
}

func TestServiceAutoscalesOnConcurrency(t *testing.T) {
	s := startServicesServer(t)
	s.mustCLI("service", "deploy", "web", "--image", "gosvc:v1", "--min", "1", "--max", "4", "--concurrency", "2")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				s.get("/svc/web/sleep?ms=100")
			}
		}()
	}
	eventually.True(t, 20*time.Second, "scale up to 4 replicas", func() bool { return s.service("web").Replicas.Ready == 4 })
	close(stop)
	wg.Wait()
	eventually.True(t, 30*time.Second, "scale back down to --min", func() bool {
		svc := s.service("web")
		return svc.Replicas.Ready == 1 && svc.Replicas.Desired == 1
	})
}

func TestServiceRestartsAndReports(t *testing.T) {
	s := startServicesServer(t)
	s.mustCLI("service", "deploy", "web", "--image", "gosvc:v1", "--min", "1", "--health", "/healthz", "--memory", "64")
	// An exit restarts the replica.
	s.get("/svc/web/crash")
	eventually.True(t, 15*time.Second, "a restart after the crash", func() bool {
		svc := s.service("web")
		return svc.Restarts >= 1 && svc.Replicas.Ready == 1
	})
	if svc := s.service("web"); !strings.Contains(svc.LastError, "exit status 3") {
		t.Errorf("last error after the crash: %q", svc.LastError)
	}
	// A failing liveness probe restarts it too.
	s.get("/svc/web/sick")
	eventually.True(t, 15*time.Second, "a restart after the liveness probe failed", func() bool {
		svc := s.service("web")
		return svc.Restarts >= 2 && svc.Replicas.Ready == 1 && strings.Contains(svc.LastError, "liveness")
	})
	// Exceeding the memory limit kills it, and says OOM.
	s.get("/svc/web/alloc?mb=200")
	eventually.True(t, 15*time.Second, "an OOM kill in status", func() bool {
		return strings.Contains(s.service("web").LastError, "OOM")
	})
	eventually.True(t, 5*time.Second, "the OOM kill in the logs", func() bool {
		return strings.Contains(s.mustCLI("service", "logs", "web"), "OOM")
	})
	eventually.True(t, 15*time.Second, "serving again", func() bool {
		code, _ := s.get("/svc/web/")
		return code == 200
	})
}

func TestServiceCrashLoop(t *testing.T) {
	s := startServicesServer(t)
	s.mustCLI("service", "deploy", "web", "--image", "gosvc:v1", "--min", "1", "--health", "/healthz", "--env", "UNHEALTHY_AFTER_SEC=1")
	eventually.True(t, 60*time.Second, "CrashLoopBackOff", func() bool {
		return s.service("web").Status == "CrashLoopBackOff"
	})
	if svc := s.service("web"); svc.Restarts < 3 {
		t.Errorf("restarts %d in a crash loop", svc.Restarts)
	}
}

func TestServiceIsolation(t *testing.T) {
	s := startServicesServer(t)
	s.mustCLI("service", "deploy", "web", "--image", "gosvc:v1", "--min", "1")
	if code, body := s.get("/svc/web/write?path=/app/new"); code == 200 {
		t.Errorf("writing into the image's root worked: %s", body)
	}
	if code, body := s.get("/svc/web/write?path=/tmp/new"); code != 200 {
		t.Errorf("writing /tmp: %d %s", code, body)
	}
	// Its own network namespace: it listens on the port it asked for,
	// whatever other replicas do.
	if _, body := s.get("/svc/web/env"); !strings.Contains(body, `"PORT":"8080"`) {
		t.Errorf("PORT in a replica of its own network: %s", body)
	}
}

func TestServiceSurvivesRestart(t *testing.T) {
	s := startServicesServer(t)
	s.mustCLI("service", "deploy", "web", "--image", "gosvc:v1", "--min", "1", "--env", "REV=kept")
	// Stopped first: two servers on one data dir would stop each other's
	// replicas.
	s.Stop()
	s.Restart()
	eventually.True(t, 10*time.Second, "the service back after a restart", func() bool {
		code, body := s.get("/svc/web/")
		return code == 200 && strings.Contains(body, "rev=kept")
	})
}

func TestServiceBadInput(t *testing.T) {
	s := startServicesServer(t)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--image", "nope:v1"}, "not found"},
		{[]string{"--image", "gosvc:v1", "--memory", "8"}, "memory 8 MB"},
		{[]string{"--image", "gosvc:v1", "--port", "70000"}, "port 70000"},
		{[]string{"--image", "gosvc:v1", "--min", "3", "--max", "2"}, "max 2"},
		{[]string{"--image", "gosvc:v1", "--concurrency", "-1"}, "concurrency"},
		{[]string{"--image", "gosvc:v1", "--auth", "maybe"}, "auth"},
		{[]string{"--image", "gosvc:v1", "--health", "healthz"}, "health path"},
		{[]string{"--image", "gosvc:v1", "--env", "PORT=1"}, "reserved"},
		{[]string{}, "--image is required"},
	}
	for _, c := range cases {
		r := s.cli(append([]string{"service", "deploy", "bad"}, c.args...)...)
		if r.Code == 0 || !strings.Contains(r.Stderr, c.want) {
			t.Errorf("deploy %v: exit %d, stderr %q, want %q", c.args, r.Code, r.Stderr, c.want)
		}
	}
	// An image with no entrypoint.
	s.mustCLI("image", "import", writeImageTar(t, testImage(t, ggcr.Config{}), "noentry:v1"))
	if r := s.cli("service", "deploy", "bad", "--image", "noentry:v1"); r.Code == 0 || !strings.Contains(r.Stderr, "no entrypoint") {
		t.Errorf("image without entrypoint: exit %d %s", r.Code, r.Stderr)
	}
	// Nothing half-created.
	if ls := s.mustCLI("service", "ls", "-o", "json"); strings.TrimSpace(ls) != "[]" && strings.TrimSpace(ls) != "null" {
		t.Errorf("services after failed deploys: %s", ls)
	}
	// Names are shared with functions.
	s.mustCLI("deploy", "taken", fixture("goecho"), "--runtime", "provided.al2023")
	if r := s.cli("service", "deploy", "taken", "--image", "gosvc:v1"); r.Code == 0 || !strings.Contains(r.Stderr, "function has that name") {
		t.Errorf("service named as a function: exit %d %s", r.Code, r.Stderr)
	}
	s.mustCLI("service", "deploy", "svc1", "--image", "gosvc:v1")
	if r := s.cli("deploy", "svc1", fixture("goecho"), "--runtime", "provided.al2023"); r.Code == 0 || !strings.Contains(r.Stderr, "service has that name") {
		t.Errorf("function named as a service: exit %d %s", r.Code, r.Stderr)
	}
	if code, _ := s.get("/svc/nope/"); code != 404 {
		t.Errorf("unknown service: %d", code)
	}
	if r := s.cli("service", "get", "nope"); r.Code == 0 {
		t.Errorf("get of an unknown service: exit 0")
	}
}

func TestServiceQueueBounds(t *testing.T) {
	s := startServicesServer(t, "--service-queue-size", "2", "--service-ready-timeout", "2s")
	s.mustCLI("service", "deploy", "web", "--image", "gosvc:v1", "--min", "1", "--max", "1", "--concurrency", "1")
	busy := make(chan int, 1)
	go func() {
		code, _ := s.get("/svc/web/sleep?ms=4000")
		busy <- code
	}()
	eventually.True(t, 5*time.Second, "the replica busy", func() bool {
		return s.service("web").Detail[0].Inflight == 1
	})
	// Two wait in the queue (and give up after the ready timeout with a
	// 503); the next one finds the queue full: 429.
	waited := make(chan int, 2)
	for range 2 {
		go func() {
			code, _ := s.get("/svc/web/")
			waited <- code
		}()
	}
	eventually.True(t, 5*time.Second, "two requests waiting", func() bool { return s.service("web").Replicas.Waiting == 2 })
	if code, body := s.get("/svc/web/"); code != 429 {
		t.Errorf("with the queue full: %d %s, want 429", code, body)
	}
	for range 2 {
		if code := <-waited; code != 503 {
			t.Errorf("a request that waited past the timeout: %d, want 503", code)
		}
	}
	if code := <-busy; code != 200 {
		t.Errorf("the long request: %d", code)
	}
}
