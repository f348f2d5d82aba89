package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/stratus-run/stratus/internal/eventually"
)

// gosvcBuild builds testdata/gosvc, a static HTTP service, once per test
// binary, into the fixtures folder.
var gosvcBuild = sync.OnceValues(func() (string, error) {
	return buildStatic("gosvc", filepath.Join(fixtures, "gosvc", "gosvc"))
})

// gosvcBinary is the path of the built gosvc.
func gosvcBinary(t *testing.T) string {
	t.Helper()
	p, err := gosvcBuild()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// gosvcLayer is the layer of every service image, made once: gosvc at
// /app/gosvc, a minimal /etc/passwd and /etc/group, a world-writable /tmp.
var gosvcLayer = sync.OnceValues(func() (ggcr.Layer, error) {
	p, err := gosvcBuild()
	if err != nil {
		return nil, err
	}
	bin, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	return layerOf([]layerFile{
		{Name: "app/", Mode: 0o755},
		{Name: "app/gosvc", Mode: 0o755, Body: bin},
		{Name: "etc/", Mode: 0o755},
		{Name: "etc/passwd", Mode: 0o644, Body: []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n")},
		{Name: "etc/group", Mode: 0o644, Body: []byte("root:x:0:\nnogroup:x:65534:\n")},
		{Name: "tmp/", Mode: 0o1777},
	})
})

// serviceImageTar writes a `docker save` tarball, tagged tag, of an image
// of one layer holding gosvc at /app/gosvc, a minimal /etc/passwd and
// /etc/group and a world-writable /tmp, and returns its path for `stratus
// image import PATH`. All such images share that layer. cfg is the image
// config, with defaults where it is empty: Entrypoint ["/app/gosvc"],
// ExposedPorts 8080/tcp, and PATH=/app:/bin before cfg.Env unless cfg.Env
// sets PATH.
func serviceImageTar(t *testing.T, tag string, cfg ggcr.Config) string {
	t.Helper()
	layer, err := gosvcLayer()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Entrypoint) == 0 {
		cfg.Entrypoint = []string{"/app/gosvc"}
	}
	if cfg.ExposedPorts == nil {
		cfg.ExposedPorts = map[string]struct{}{"8080/tcp": {}}
	}
	if !slices.ContainsFunc(cfg.Env, func(kv string) bool { return strings.HasPrefix(kv, "PATH=") }) {
		cfg.Env = append([]string{"PATH=/app:/bin"}, cfg.Env...)
	}
	return writeImageTar(t, imageOf(t, cfg, layer), tag)
}

// gosvcProc is gosvc running on the host, outside any container.
type gosvcProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	URL  string // set by waitListening
	done chan struct{}

	mu     sync.Mutex
	stdout bytes.Buffer
	stderr bytes.Buffer
}

// runGosvc starts gosvc with env (and PATH) as its whole environment and
// args as its flags; it is killed at the end of the test if still running.
func runGosvc(t *testing.T, env []string, args ...string) *gosvcProc {
	t.Helper()
	p := &gosvcProc{t: t, done: make(chan struct{})}
	p.cmd = exec.Command(gosvcBinary(t), args...)
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	p.cmd.Stdout = &lockedWriter{mu: &p.mu, w: &p.stdout}
	p.cmd.Stderr = &lockedWriter{mu: &p.mu, w: &p.stderr}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// startGosvc runs gosvc on a port of its choosing and waits until it listens.
func startGosvc(t *testing.T, env ...string) *gosvcProc {
	t.Helper()
	p := runGosvc(t, append([]string{"PORT=0"}, env...))
	p.waitListening()
	return p
}

var listeningRE = regexp.MustCompile(`(?m)^gosvc listening on :(\d+)$`)

func (p *gosvcProc) waitListening() {
	p.t.Helper()
	eventually.True(p.t, 10*time.Second, "gosvc to listen", func() bool {
		select {
		case <-p.done:
			p.t.Fatalf("gosvc exited with %v\nstdout:\n%s\nstderr:\n%s", p.cmd.ProcessState, p.Stdout(), p.Stderr())
		default:
		}
		m := listeningRE.FindStringSubmatch(p.Stdout())
		if m != nil {
			p.URL = "http://127.0.0.1:" + m[1]
		}
		return m != nil
	})
}

func (p *gosvcProc) Stdout() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stdout.String()
}

func (p *gosvcProc) Stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// wait waits for gosvc to exit and returns its exit code.
func (p *gosvcProc) wait() int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.t.Fatalf("gosvc did not exit within 10s\nstdout:\n%s", p.Stdout())
	}
	return p.cmd.ProcessState.ExitCode()
}

// get sends GET path and returns the status and body.
func (p *gosvcProc) get(path string, hdr ...string) (int, string) {
	p.t.Helper()
	req, err := http.NewRequest("GET", p.URL+path, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
		} else {
			req.Header.Add(hdr[i], hdr[i+1])
		}
	}
	resp, err := gosvcClient.Do(req)
	if err != nil {
		p.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// mustGet sends GET path and fails the test unless the answer is code and
// its body, less surrounding space, matches body (a regexp).
func (p *gosvcProc) mustGet(path string, code int, body string) string {
	p.t.Helper()
	c, b := p.get(path)
	if c != code || !regexp.MustCompile(`^(?s:`+body+`)$`).MatchString(strings.TrimSpace(b)) {
		p.t.Fatalf("GET %s: %d %q, want %d %q", path, c, b, code, body)
	}
	return b
}

var gosvcClient = &http.Client{Timeout: 10 * time.Second}

func TestServiceImageRunsDirectly(t *testing.T) {
	bin := gosvcBinary(t)

	t.Run("image", func(t *testing.T) {
		t.Parallel()
		p := serviceImageTar(t, "example.com/gosvc:v1", ggcr.Config{Env: []string{"REV=v1"}})
		tag, err := name.NewTag("example.com/gosvc:v1")
		if err != nil {
			t.Fatal(err)
		}
		img, err := tarball.ImageFromPath(p, &tag)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if c := cf.Config; !slices.Equal(c.Entrypoint, []string{"/app/gosvc"}) || len(c.ExposedPorts) != 1 ||
			c.ExposedPorts["8080/tcp"] != struct{}{} || !slices.Equal(c.Env, []string{"PATH=/app:/bin", "REV=v1"}) || cf.OS != "linux" {
			t.Fatalf("config: %+v", cf)
		}
		// Its one layer is gosvcLayer; read that uncompressed, in memory.
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		layer, err := gosvcLayer()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := layers[0].Digest()
		want, _ := layer.Digest()
		if len(layers) != 1 || got != want {
			t.Fatalf("image layers %v, want [%v]", layers, want)
		}
		st, err := os.Stat(bin)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := layer.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		modes := map[string]int64{}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			modes[h.Name] = h.Mode
			if h.Name == "app/gosvc" && h.Size != st.Size() {
				t.Errorf("app/gosvc is %d bytes, the binary %d", h.Size, st.Size())
			}
		}
		if modes["app/gosvc"] != 0o755 || modes["etc/passwd"] != 0o644 || modes["tmp/"] != 0o1777 {
			t.Fatalf("layer entries and modes: %v", modes)
		}
	})

	t.Run("hello health env path write alloc", func(t *testing.T) {
		t.Parallel()
		unhealthy := filepath.Join(t.TempDir(), "unhealthy")
		p := startGosvc(t, "REV=r1", "HOSTNAME=test-host", "UNHEALTHY_FILE="+unhealthy)
		p.mustGet("/", 200, fmt.Sprintf("hello from gosvc rev=r1 host=test-host pid=%d", p.cmd.Process.Pid))
		p.mustGet("/id", 200, "[0-9a-f]{16}")
		p.mustGet("/healthz", 200, "ok")
		p.mustGet("/sick", 200, "ok")
		if _, err := os.Stat(unhealthy); err != nil {
			t.Fatalf("GET /sick made no file: %v", err)
		}
		p.mustGet("/healthz", 500, "unhealthy: .*")
		p.mustGet("/nope", 404, ".*")

		_, b := p.get("/env")
		if env := decode[map[string]string](t, []byte(b)); env["REV"] != "r1" || env["PORT"] != "0" || env["PATH"] == "" {
			t.Fatalf("GET /env: %s", b)
		}

		_, b = p.get("/path/a%2Fb/c?x=1&y=two", "Host", "example.test", "X-Test", "yes")
		e := decode[struct {
			Method, Path, Query, Host string
			RawPath                   string `json:"raw_path"`
			Headers                   http.Header
		}](t, []byte(b))
		if e.Method != "GET" || e.Path != "/path/a/b/c" || e.RawPath != "/path/a%2Fb/c" || e.Query != "x=1&y=two" ||
			e.Host != "example.test" || e.Headers.Get("X-Test") != "yes" {
			t.Fatalf("GET /path/...: %s", b)
		}

		dir := t.TempDir()
		p.mustGet("/write?path="+filepath.Join(dir, "f"), 200, "ok")
		if _, err := os.Stat(filepath.Join(dir, "f")); err != nil {
			t.Fatal(err)
		}
		p.mustGet("/write?path="+filepath.Join(dir, "no", "f"), 500, ".*no such file or directory")
		p.mustGet("/write", 400, ".*")
		p.mustGet("/alloc?mb=8", 200, "allocated 8 MB")
		p.mustGet("/alloc?mb=x", 400, ".*")

		for _, line := range []string{"GET /", "GET /healthz", "GET /path/a/b/c", "GET /nope"} {
			if !strings.Contains(p.Stdout(), "\n"+line+"\n") {
				t.Errorf("stdout lacks %q:\n%s", line, p.Stdout())
			}
		}
	})

	t.Run("unhealthy after", func(t *testing.T) {
		t.Parallel()
		p := runGosvc(t, []string{"PORT=0", "UNHEALTHY_AFTER_SEC=1", "UNHEALTHY_FILE=" + filepath.Join(t.TempDir(), "u")})
		started := time.Now()
		p.waitListening()
		// Up for less than the test has waited: surely healthy.
		if c, _ := p.get("/healthz"); time.Since(started) < time.Second && c != 200 {
			t.Fatalf("GET /healthz within a second of the start: %d", c)
		}
		eventually.True(t, 5*time.Second, "/healthz to fail", func() bool {
			c, _ := p.get("/healthz")
			return c == 500
		})
	})

	t.Run("sleep inflight", func(t *testing.T) {
		t.Parallel()
		p := startGosvc(t)
		p.mustGet("/sleep?ms=20", 200, `slept 20 ms \(inflight 1\)`)
		p.mustGet("/sleep?ms=-1", 400, ".*")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		errs := make(chan error, 3)
		for range 3 {
			go func() {
				req, _ := http.NewRequestWithContext(ctx, "GET", p.URL+"/sleep?ms=60000", nil)
				resp, err := http.DefaultClient.Do(req)
				if err == nil {
					resp.Body.Close()
				}
				errs <- err
			}()
		}
		inflight := func(n string) func() bool {
			return func() bool { _, b := p.get("/inflight"); return strings.TrimSpace(b) == n }
		}
		eventually.True(t, 5*time.Second, "3 in flight", inflight("3"))
		cancel()
		for range 3 {
			if err := <-errs; !errors.Is(err, context.Canceled) {
				t.Errorf("a cancelled /sleep: %v", err)
			}
		}
		eventually.True(t, 5*time.Second, "none in flight", inflight("0"))
	})

	t.Run("stream", func(t *testing.T) {
		t.Parallel()
		p := startGosvc(t)
		p.mustGet("/stream?n=3&ms=1", 200, "line 1\nline 2\nline 3")
		// The first line arrives while the server waits a minute for the
		// second: each line is flushed.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", p.URL+"/stream?n=2&ms=60000", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil || line != "line 1\n" {
			t.Fatalf("first line %q, %v", line, err)
		}
	})

	t.Run("websocket", func(t *testing.T) {
		t.Parallel()
		p := startGosvc(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(p.URL, "http")+"/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		for _, m := range []struct {
			typ  websocket.MessageType
			data string
		}{{websocket.MessageText, "hello"}, {websocket.MessageBinary, "\x00\x01\x02"}, {websocket.MessageText, strings.Repeat("x", 100_000)}} {
			if err := c.Write(ctx, m.typ, []byte(m.data)); err != nil {
				t.Fatal(err)
			}
			typ, got, err := c.Read(ctx)
			if err != nil || typ != m.typ || string(got) != m.data {
				t.Fatalf("echo of %v %.20q: %v %.20q %v", m.typ, m.data, typ, got, err)
			}
		}
		if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("crash", func(t *testing.T) {
		t.Parallel()
		p := startGosvc(t)
		p.mustGet("/crash", 200, "crashing with exit code 3")
		if code := p.wait(); code != 3 {
			t.Fatalf("exit code %d after /crash, want 3", code)
		}
	})

	t.Run("sigterm drains", func(t *testing.T) {
		t.Parallel()
		p := startGosvc(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(p.URL, "http")+"/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		type answer struct {
			code int
			body string
		}
		slept := make(chan answer, 1)
		go func() {
			// Its own client: the test's goroutine may not call t.Fatal.
			resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(p.URL + "/sleep?ms=300")
			if err != nil {
				slept <- answer{0, err.Error()}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			slept <- answer{resp.StatusCode, string(b)}
		}()
		eventually.True(t, 5*time.Second, "the sleep in flight", func() bool { _, b := p.get("/inflight"); return strings.TrimSpace(b) == "1" })
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if _, _, err := ws.Read(ctx); websocket.CloseStatus(err) != websocket.StatusGoingAway {
			t.Errorf("websocket read at shutdown: %v, want going away", err)
		}
		if a := <-slept; a.code != 200 || !strings.HasPrefix(a.body, "slept 300 ms") {
			t.Errorf("the sleep in flight at SIGTERM: %d %q", a.code, a.body)
		}
		if code := p.wait(); code != 0 {
			t.Fatalf("exit code %d after SIGTERM, want 0\nstderr:\n%s", code, p.Stderr())
		}
		if !strings.HasSuffix(p.Stdout(), "gosvc shutting down\n") {
			t.Fatalf("stdout:\n%s", p.Stdout())
		}
	})

	t.Run("start modes", func(t *testing.T) {
		t.Parallel()
		if code := runGosvc(t, []string{"EXIT_AT_START=7"}).wait(); code != 7 {
			t.Errorf("EXIT_AT_START=7: exit code %d", code)
		}
		if code := runGosvc(t, []string{"EXIT_AT_START=7"}, "-exit-at-start=5").wait(); code != 5 {
			t.Errorf("-exit-at-start=5 over EXIT_AT_START=7: exit code %d", code)
		}
		if code := runGosvc(t, []string{"PORT=x"}).wait(); code != 2 {
			t.Errorf("PORT=x: exit code %d", code)
		}

		p := runGosvc(t, []string{"PORT=0", "REV=env"}, "-rev=flag", "-ready-delay-ms=300")
		started := time.Now()
		p.waitListening()
		if d := time.Since(started); d < 300*time.Millisecond {
			t.Errorf("READY_DELAY_MS=300: listening after %s", d)
		}
		p.mustGet("/", 200, "hello from gosvc rev=flag .*")

		// A port that was free, so that a refused dial means gosvc is not on it.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
		p = runGosvc(t, []string{"PORT=" + port, "NO_LISTEN=1"})
		eventually.True(t, 5*time.Second, "gosvc to start", func() bool { return strings.Contains(p.Stdout(), "gosvc not listening") })
		if c, err := net.Dial("tcp", "127.0.0.1:"+port); err == nil {
			c.Close()
			t.Errorf("NO_LISTEN=1: port %s is open", port)
		}
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := p.wait(); code != 0 {
			t.Errorf("NO_LISTEN=1: exit code %d after SIGTERM", code)
		}
	})
}

// TestServiceImageUserOwnsItsFiles: a service runs as its image's USER
// and finds its files owned as the image says: here gosvc is 0700 and
// belongs to that user alone, so the service answers only if the
// sandbox maps the owner the image gave it. A /etc/passwd names the user.
func TestServiceImageUserOwnsItsFiles(t *testing.T) {
	needRunc(t)
	p, err := gosvcBuild()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	layer, err := layerOf([]layerFile{
		{Name: "app/", Mode: 0o700, UID: 1000},
		{Name: "app/gosvc", Mode: 0o700, Body: bin, UID: 1000},
		{Name: "etc/", Mode: 0o755},
		{Name: "etc/passwd", Mode: 0o644, Body: []byte("root:x:0:0::/root:/sbin/nologin\napp:x:1000:1000::/app:/sbin/nologin\n")},
		{Name: "etc/group", Mode: 0o644, Body: []byte("root:x:0:\napp:x:1000:\n")},
		{Name: "tmp/", Mode: 0o1777},
	})
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, fastServices...)
	cfg := ggcr.Config{Entrypoint: []string{"/app/gosvc"}, User: "app", Env: []string{"PATH=/app:/bin"},
		ExposedPorts: map[string]struct{}{"8080/tcp": {}}}
	s.mustCLI("image", "import", writeImageTar(t, imageOf(t, cfg, layer), "owned:v1"))
	s.mustCLI("service", "deploy", "owned", "--image", "owned:v1", "--auth", "none")
	if code, body := s.get("/svc/owned/"); code != 200 {
		t.Fatalf("GET /svc/owned/: %d %s", code, body)
	}
	// Seen from the host, the replica runs as the image's uid 1000 shifted
	// into the sandboxes' range, never as root.
	found := false
	for _, p := range instanceProcesses(s.Data) {
		if p.init || !strings.Contains(p.desc, "/app/gosvc") {
			continue
		}
		found = true
		if uid := procUID(t, p.pid); uid != "1000001000" {
			t.Errorf("gosvc runs as host uid %s, want 1000001000", uid)
		}
	}
	if !found {
		t.Errorf("no gosvc process found: %v", processesUnder(s.Data))
	}
}

// procUID is the real uid of process pid as the host sees it.
func procUID(t *testing.T, pid string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				return f[0]
			}
		}
	}
	return ""
}
