package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The compatibility suite runs real, unchanged third-party Lambda adapters,
// pinned by exact version, with the same web app behind each:
//
//   - Express 5 behind serverless-http and behind
//     @codegenie/serverless-express (testdata/compat/node, package-lock.json);
//   - chi behind aws-lambda-go-api-proxy's V2 chi adapter
//     (chiadapter.NewV2), a provided.al2023 bootstrap
//     (testdata/compat/goproxy, its own go.mod and go.sum);
//   - a standard-library Python app on the 2.0 event (testdata/compat/python).
//
// Each app also runs directly as a plain HTTP server (Express's
// app.listen, net/http, http.server), and every request of compatCases is
// sent to it and to Stratus, at /fn/NAME/... and at the function's host
// route NAME.localhost; the answers must be equal byte for byte (status,
// body, headers) except for what compatAllowed lists.
//
// npm packages are installed once per package-lock.json into the user's
// cache (npmModules); Go modules come from the module proxy into the
// module cache, as any Go build's do. (Powertools for AWS Lambda's Logger,
// another library Lambda functions run unchanged, is lambdaenv_test.go's.)

// compatApp is one app deployed as a function and run directly.
type compatApp struct {
	name   string   // the function's name
	direct string   // base URL of the app run directly
	deploy []string // stratus deploy's arguments after the name

	err        error         // from its deploy or its first request
	deployedAt time.Duration // when its deploy returned
	firstAt    time.Duration // when it answered its first request
}

// compatReq is one request of the table.
type compatReq struct {
	name   string
	method string
	path   string // with the query, percent-encoded as sent
	header []string
	body   []byte
	status int // what every app itself answers (a guard against comparing two failures)
	// follow: follow one redirect and compare where it leads (the app's
	// Location is built from X-Forwarded-Prefix, so a redirect stays under
	// the function's mount).
	follow bool
}

// compatAllowed is every way an answer through Stratus may differ from the
// same app's answer when it runs directly, and why. Anything else is a
// difference the test reports.
var compatAllowed = []struct {
	header string
	kind   allowKind
	why    string
}{
	{"Date", allowIgnore, "written by whichever HTTP server sends the answer: a clock, not the app"},
	{"Connection", allowIgnore, "hop-by-hop (RFC 9110 7.6.1): Node's server says keep-alive, the gateway's own connection handling differs"},
	{"Keep-Alive", allowIgnore, "hop-by-hop (RFC 9112): Node's server announces its idle timeout"},
	{"Transfer-Encoding", allowIgnore, "framing: an app may stream chunked where Lambda's buffered response has a length; the body is compared"},
	{"Content-Length", allowFraming, "framing: absent on the side that streams chunked; when both sides send it, it must be equal"},
	{"Server", allowIgnore, "names the HTTP server (Python's BaseHTTP/0.6); a function's answer is sent by Lambda's (Stratus's) server"},
	{"X-Amzn-Requestid", allowPlatform, "Lambda function URLs add the invocation's request ID to every answer"},
	{"X-Amzn-Trace-Id", allowPlatform, "Lambda function URLs add the X-Ray trace header"},
	{"X-Amz-Executed-Version", allowPlatform, "the version that ran, as Lambda's Invoke answers it"},
	{"X-Stratus-*", allowPlatform, "Stratus's own figures of the invocation (cold start, init and run durations, snapshot), as the /v1 invoke sends them"},
	{"*", allowFold, "a repeated header other than Set-Cookie arrives as one line, its values joined by a comma: " +
		"the 2.0 response's headers are a map of strings (only cookies is a list); adapters join with \", \" (serverless-http) or \",\" (aws-lambda-go-api-proxy)"},
}

// compatAdapterBugs are differences an adapter makes on its own, on
// Lambda as on Stratus (each reproduced by calling the adapter's handler
// in node with a 2.0 event, no Stratus involved): app/case → why. Such a
// case logs its differences; once it has none, the test fails so that
// the entry is removed.
var compatAdapterBugs = map[string]string{
	"express-sx/404": "@codegenie/serverless-express 4.17.1 with Express 5: finalhandler 2 calls on-finished on the adapter's " +
		"request, whose socket has no .on (\"TypeError: ee.on is not a function\"), and the adapter answers 500 with an empty body",
}

type allowKind int

const (
	allowIgnore   allowKind = iota // compared on neither side
	allowFraming                   // compared only when both sides send it
	allowPlatform                  // may appear on Stratus's side only
	allowFold                      // repeated values may be folded into one
)

func compatAllowedKind(name string) (allowKind, bool) {
	for _, a := range compatAllowed {
		if prefix, ok := strings.CutSuffix(a.header, "*"); ok && prefix != "" && strings.HasPrefix(http.CanonicalHeaderKey(name), prefix) ||
			http.CanonicalHeaderKey(a.header) == http.CanonicalHeaderKey(name) {
			return a.kind, true
		}
	}
	return 0, false
}

// compatCases is the table of requests sent to every app.
func compatCases() []compatReq {
	r := rand.New(rand.NewPCG(17, 17))
	large := make([]byte, 1<<20) // 1 MiB: about 1.4 MB of base64 in the event
	for i := range large {
		large[i] = byte(r.UintN(256))
	}
	small := make([]byte, 512)
	for i := range small {
		small[i] = byte(i) // every byte value, invalid UTF-8 included
	}
	return []compatReq{
		{name: "repeated query keys", status: 200, method: "GET", path: "/echo?x=1&x=2&y=&z=a%20b+c&x=3"},
		{name: "path params", status: 200, method: "GET", path: "/users/42/items/a%20b"},
		{name: "cookies in and Set-Cookie out", status: 200, method: "GET", path: "/cookies", header: []string{"Cookie", "a=1; b=two; c=3"}},
		{name: "binary body", status: 200, method: "POST", path: "/binary", body: small, header: []string{"Content-Type", "application/octet-stream"}},
		{name: "JSON POST", status: 201, method: "POST", path: "/json", body: []byte(`{"name":"widget","n":[1,2,3],"u":"ünï ✓"}`), header: []string{"Content-Type", "application/json"}},
		{name: "redirect to an absolute path", status: 302, method: "GET", path: "/redirect"},
		{name: "redirect followed under the mount", status: 200, method: "GET", path: "/redirect-prefixed", follow: true},
		{name: "404", status: 404, method: "GET", path: "/missing/thing"},
		{name: "HTTP error from the app", status: 409, method: "GET", path: "/error"},
		{name: "HEAD", status: 200, method: "HEAD", path: "/echo?x=1"},
		{name: "unicode path", status: 200, method: "GET", path: "/echo/%C3%BCn%C3%AF/%E8%B7%AF%E5%BE%84?q=%E2%9C%93"},
		{name: "large binary body", status: 200, method: "POST", path: "/binary", body: large, header: []string{"Content-Type", "application/octet-stream"}},
		{name: "large response", status: 200, method: "GET", path: "/large?n=1500000"},
	}
}

// TestCompatAdapters compares each app's answers run directly and
// through Stratus (/fn/NAME and NAME.localhost), request by request.
func TestCompatAdapters(t *testing.T) {
	needTool(t, "node")
	needTool(t, "npm")
	needTool(t, "python3")

	start := time.Now()
	// Prepare the three apps while the server starts.
	var (
		wg                  sync.WaitGroup
		nodeModules, goBoot string
		nodeErr, goErr      error
	)
	wg.Go(func() { nodeModules, nodeErr = npmModules("compat/node") })
	goDir := t.TempDir()
	wg.Go(func() { goBoot, goErr = compatGoBootstrap(goDir) })
	s := startServer(t, "--console=false")
	wg.Wait()
	if nodeErr != nil {
		t.Fatal(nodeErr)
	}
	if goErr != nil {
		t.Fatal(goErr)
	}

	t.Logf("server started, npm packages and the Go bootstrap ready: %v", time.Since(start).Round(time.Millisecond))
	nodeCode := t.TempDir()
	if err := os.CopyFS(nodeCode, os.DirFS("testdata/compat/node")); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(nodeCode, "node_modules"), os.DirFS(nodeModules)); err != nil {
		t.Fatal(err)
	}
	pyCode := t.TempDir()
	if err := os.CopyFS(pyCode, os.DirFS("testdata/compat/python")); err != nil {
		t.Fatal(err)
	}
	goCode := filepath.Dir(goBoot)

	// 1024 MB: a large share of a CPU, so that Express's cold start takes
	// well under a second (issue 17, item 8).
	common := []string{"--auth", "none", "--memory", "1024", "--timeout", "30"}
	express := compatRun(t, nodeCode, []string{"NODE_ENV=production"}, "node", "server.js")
	chi := compatRun(t, goCode, nil, goBoot, "-listen", "127.0.0.1:0")
	py := compatRun(t, pyCode, nil, "python3", "-B", "server.py")
	apps := []*compatApp{
		{name: "express-sls", direct: express, deploy: []string{"--runtime", "nodejs", "--handler", "sls.handler", "--env", "NODE_ENV=production", nodeCode}},
		{name: "express-sx", direct: express, deploy: []string{"--runtime", "nodejs", "--handler", "sx.handler", "--env", "NODE_ENV=production", nodeCode}},
		{name: "chi", direct: chi, deploy: []string{"--runtime", "provided.al2023", goCode}},
		{name: "py", direct: py, deploy: []string{"--runtime", "python3", "--handler", "lambda_function.handler", pyCode}},
	}

	// Deploy the four functions and send each its first request (its cold
	// start), all at once, before the parallel table.
	var deployed sync.WaitGroup
	for _, a := range apps {
		deployed.Go(func() {
			args := append(append([]string{"deploy", a.name}, common...), a.deploy...)
			if out, err := compatCLI(s, args...); err != nil {
				a.err = fmt.Errorf("stratus %s: %w\n%s", strings.Join(args, " "), err, out)
				return
			}
			a.deployedAt = time.Since(start)
			got, err := compatSend(s.URL+"/fn/"+a.name, "", compatReq{method: "GET", path: "/elsewhere"})
			if err != nil || got.status != 200 || string(got.body) != "elsewhere\n" {
				a.err = fmt.Errorf("GET /fn/%s/elsewhere: %v %v", a.name, err, got)
				return
			}
			a.firstAt = time.Since(start)
		})
	}
	deployed.Wait()
	for _, a := range apps {
		if a.err != nil {
			t.Errorf("%s: %v\nserver log:\n%s", a.name, a.err, s.Stderr())
			continue
		}
		t.Logf("%s deployed %v and answered its first request %v after the start", a.name, a.deployedAt.Round(time.Millisecond), a.firstAt.Round(time.Millisecond))
	}

	t.Run("table", func(t *testing.T) {
		for _, a := range apps {
			if a.err != nil {
				continue // failed above: no answers to compare
			}
			for _, c := range compatCases() {
				for _, mode := range []string{"fn", "host"} {
					t.Run(a.name+"/"+mode+"/"+c.name, func(t *testing.T) {
						t.Parallel()
						want, err := compatSend(a.direct, "", c)
						if err != nil {
							t.Fatalf("direct: %v", err)
						}
						if want.status != c.status || c.path == "/binary" && !bytes.Equal(want.body, c.body) {
							t.Fatalf("%s %s: the app itself answered %v; want %d (and a binary body echoed)", c.method, c.path, want, c.status)
						}
						base, host := s.URL+"/fn/"+a.name, ""
						if mode == "host" {
							base, host = s.URL, a.name+".localhost"
						}
						got, err := compatSend(base, host, c)
						if err != nil {
							t.Fatalf("through Stratus: %v", err)
						}
						diffs := compatDiff(want, got)
						if why, ok := compatAdapterBugs[a.name+"/"+c.name]; ok {
							if len(diffs) == 0 {
								t.Errorf("%s %s answers as the app does: remove its entry in compatAdapterBugs (%s)", c.method, c.path, why)
							}
							for _, d := range diffs {
								t.Logf("%s %s: %s (the adapter's own: %s)", c.method, c.path, d, why)
							}
							return
						}
						for _, d := range diffs {
							t.Errorf("%s %s: %s", c.method, c.path, d)
						}
					})
				}
			}
		}
	})

	// A handler's exception on a public function URL: Lambda answers 502
	// with a generic body; the message stays in the logs (issue 17, item 2).
	t.Run("py/fn/unhandled exception", func(t *testing.T) {
		got, err := compatSend(s.URL+"/fn/py", "", compatReq{method: "GET", path: "/crash"})
		if err != nil {
			t.Fatal(err)
		}
		if got.status != http.StatusBadGateway || bytes.Contains(got.body, []byte("secret detail")) || bytes.Contains(got.body, []byte("ValueError")) {
			t.Errorf("GET /fn/py/crash answered %d %q; want 502 without the exception's type or message", got.status, got.body)
		}
	})
}

// compatAnswer is one HTTP answer, read whole.
type compatAnswer struct {
	status int
	header http.Header
	body   []byte
}

func (a compatAnswer) String() string {
	b := a.body
	if len(b) > 200 {
		b = append(b[:200:200], "..."...)
	}
	return fmt.Sprintf("%d %v %q", a.status, a.header, b)
}

// compatClient follows no redirect and asks for no compression, so that it
// sees the answer as sent.
var compatClient = &http.Client{
	Timeout:       60 * time.Second,
	Transport:     &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// compatSend sends c to base (a URL without a trailing slash), with Host
// host when set; with c.follow it follows one redirect, resolved against
// the request's URL and kept on the same host.
func compatSend(base, host string, c compatReq) (compatAnswer, error) {
	target := base + c.path
	for hop := 0; ; hop++ {
		req, err := http.NewRequest(c.method, target, bytes.NewReader(c.body))
		if err != nil {
			return compatAnswer{}, err
		}
		if host != "" {
			req.Host = host
		}
		for i := 0; i+1 < len(c.header); i += 2 {
			req.Header.Add(c.header[i], c.header[i+1])
		}
		resp, err := compatClient.Do(req)
		if err != nil {
			return compatAnswer{}, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return compatAnswer{}, err
		}
		loc := resp.Header.Get("Location")
		if !c.follow || hop > 0 || resp.StatusCode/100 != 3 || loc == "" {
			return compatAnswer{resp.StatusCode, resp.Header, body}, nil
		}
		u, err := req.URL.Parse(loc)
		if err != nil {
			return compatAnswer{}, fmt.Errorf("Location %q: %w", loc, err)
		}
		target = u.String()
		c.method, c.body = "GET", nil
	}
}

var commaSpace = regexp.MustCompile(`\s*,\s*`)

// compatDiff lists the differences between want (the app run directly)
// and got (through Stratus) that compatAllowed does not allow.
func compatDiff(want, got compatAnswer) []string {
	var out []string
	if want.status != got.status {
		out = append(out, fmt.Sprintf("status %d, the app itself answers %d", got.status, want.status))
	}
	if !bytes.Equal(want.body, got.body) {
		out = append(out, fmt.Sprintf("body differs: %s; the app itself: %s", bodyDesc(got.body), bodyDesc(want.body)))
	}
	names := map[string]bool{}
	for k := range want.header {
		names[k] = true
	}
	for k := range got.header {
		names[k] = true
	}
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range names {
			if !yield(k) {
				return
			}
		}
	}) {
		w, g := want.header.Values(k), got.header.Values(k)
		kind, listed := compatAllowedKind(k)
		switch {
		case listed && kind == allowIgnore:
			continue
		case listed && kind == allowFraming && (len(w) == 0 || len(g) == 0):
			continue
		case listed && kind == allowPlatform && len(w) == 0:
			continue
		}
		if slices.Equal(w, g) {
			continue
		}
		// allowFold: repeated values folded into one line by a comma.
		if len(w) > 1 && len(g) == 1 && !strings.EqualFold(k, "Set-Cookie") &&
			commaSpace.ReplaceAllString(g[0], ",") == commaSpace.ReplaceAllString(strings.Join(w, ","), ",") {
			continue
		}
		out = append(out, fmt.Sprintf("header %s: %q, the app itself sends %q", k, g, w))
	}
	return out
}

func bodyDesc(b []byte) string {
	sum := sha256.Sum256(b)
	s := b
	if len(s) > 120 {
		s = s[:120]
	}
	return fmt.Sprintf("%d bytes sha256 %s… %q", len(b), hex.EncodeToString(sum[:4]), s)
}

// compatCLI runs the stratus CLI against s from any goroutine.
func compatCLI(s *server, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "STRATUS_SERVER="+s.URL, "STRATUS_TOKEN="+s.Token)
	return cmd.CombinedOutput()
}

// compatRun starts an app directly in dir and returns its base URL once it
// prints "listening on PORT"; the process is killed at the end of the test.
func compatRun(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	needTool(t, name)
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &lockedWriter{mu: &sync.Mutex{}, w: &stderr}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	portc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if p, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
				portc <- strings.TrimSpace(p)
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case p := <-portc:
		return "http://127.0.0.1:" + p
	case <-time.After(30 * time.Second):
		t.Fatalf("%s %v did not start listening within 30s", name, args)
	}
	return ""
}

// compatGoBootstrap builds testdata/compat/goproxy (a module of its own,
// its dependencies from the module proxy) as a static bootstrap in dir.
func compatGoBootstrap(dir string) (string, error) {
	out := filepath.Join(dir, "bootstrap")
	abs, err := filepath.Abs(out)
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "build", "-mod=readonly", "-ldflags=-s -w", "-o", abs, ".")
	cmd.Dir = "testdata/compat/goproxy"
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build testdata/compat/goproxy: %w\n%s", err, b)
	}
	return abs, nil
}
