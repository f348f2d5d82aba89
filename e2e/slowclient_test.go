package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/eventually"
)

// Bounds the slow-client flood is held to (README, "### Bounds"): with
// 200 clients trickling bodies, requests to another function and to the
// service answer with a p99 under floodP99, and the server stays under
// floodRSS resident.
const (
	floodP99 = 1500 * time.Millisecond
	floodRSS = 200 << 20
)

// TestSlowClientFlood: 200 clients that trickle request bodies (100 to a
// public function, 100 to a public service of concurrency 2) get 408 at
// the read timeout and hold nothing meanwhile: other requests to another
// function and to that service keep being answered, the server's memory
// stays bounded, and the service serves at full concurrency afterwards.
func TestSlowClientFlood(t *testing.T) {
	const (
		readTimeout = 2 * time.Second
		slack       = 2 * time.Second
		clients     = 200
		flood       = 7 * time.Second
	)
	s := startServicesServer(t, "--read-timeout", readTimeout.String())
	s.mustCLI("deploy", "open", fixture("goecho"), "--runtime", "provided.al2023", "--auth", "none")
	s.mustCLI("deploy", "other", fixture("goecho"), "--runtime", "provided.al2023")
	s.mustCLI("service", "deploy", "web", "--image", "gosvc:v1", "--auth", "none",
		"--min", "1", "--max", "1", "--concurrency", "2")
	if resp, body := s.invoke("other", `{}`); resp.StatusCode != 200 {
		t.Fatalf("invoke other: %d %s", resp.StatusCode, body)
	}
	if code, body := s.get("/svc/web/"); code != 200 {
		t.Fatalf("GET /svc/web/: %d %s", code, body)
	}
	pid := s.cmd.Process.Pid
	rssBefore := vmRSS(t, pid)
	addr := strings.TrimPrefix(s.URL, "http://")

	// The flood: each client sends a header with a Content-Length and
	// then a byte every 250 ms, again and again until the flood ends.
	end := time.Now().Add(flood)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		statuses = map[string]int{} // "path status" → count
		slowest  time.Duration
		sent     atomic.Int64
	)
	for i := range clients {
		path := "/fn/open"
		if i%2 == 1 {
			path = "/svc/web/path"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				code, took, err := slowBody(addr, "POST", path, 250*time.Millisecond, &sent)
				mu.Lock()
				if err != nil {
					statuses[path+" "+err.Error()]++
				} else {
					statuses[path+" "+strconv.Itoa(code)]++
				}
				slowest = max(slowest, took)
				mu.Unlock()
			}
		}()
	}
	eventually.True(t, 10*time.Second, "every slow client sending", func() bool { return sent.Load() >= clients })

	// Meanwhile: requests to another function and to the service.
	var (
		lat   = map[string][]time.Duration{}
		fails []string
	)
	var mwg sync.WaitGroup
	measure := func(name string, do func(c *http.Client) (int, string, error)) {
		defer mwg.Done()
		c := &http.Client{Timeout: 30 * time.Second}
		for time.Now().Before(end) {
			t0 := time.Now()
			code, body, err := do(c)
			took := time.Since(t0)
			mu.Lock()
			lat[name] = append(lat[name], took)
			if err != nil || code != 200 {
				fails = append(fails, fmt.Sprintf("%s: %d %s %v", name, code, body, err))
			}
			mu.Unlock()
		}
	}
	for range 2 {
		mwg.Add(2)
		go measure("function", func(c *http.Client) (int, string, error) {
			req, _ := http.NewRequest("POST", s.URL+"/v1/functions/other/invoke", strings.NewReader(`{"echo":1}`))
			req.Header.Set("Authorization", "Bearer "+s.Token)
			return send(c, req)
		})
		go measure("service", func(c *http.Client) (int, string, error) {
			req, _ := http.NewRequest("POST", s.URL+"/svc/web/path", strings.NewReader(`hello`))
			return send(c, req)
		})
	}
	// The server's resident memory, sampled through the flood.
	rssMax := rssBefore
	for time.Now().Before(end) {
		rssMax = max(rssMax, vmRSS(t, pid))
		time.Sleep(100 * time.Millisecond)
	}
	mwg.Wait()
	wg.Wait()

	t.Logf("slow clients: %v; slowest answer %s", statuses, slowest)
	for k, n := range statuses {
		if !strings.HasSuffix(k, " 408") {
			t.Errorf("%d slow clients got %s, want 408", n, k)
		}
	}
	if slowest > readTimeout+slack {
		t.Errorf("a slow client was answered after %s, want within %s", slowest, readTimeout+slack)
	}
	if len(fails) > 0 {
		t.Errorf("%d requests failed during the flood; first: %s", len(fails), fails[0])
	}
	for _, name := range []string{"function", "service"} {
		l := lat[name]
		if len(l) < 20 {
			t.Errorf("%s: only %d requests answered during the flood", name, len(l))
			continue
		}
		p50, p99 := percentile(l, 50), percentile(l, 99)
		t.Logf("%s during the flood: %d requests, p50 %s, p99 %s, max %s", name, len(l), p50, p99, slices.Max(l))
		if p99 > floodP99 {
			t.Errorf("%s: p99 %s during the flood, want under %s", name, p99, floodP99)
		}
	}
	t.Logf("server RSS: %d MiB before, %d MiB at most during the flood", rssBefore>>20, rssMax>>20)
	if rssMax > floodRSS {
		t.Errorf("server RSS reached %d MiB, want under %d MiB", rssMax>>20, floodRSS>>20)
	}

	// No slot leaked: two requests that each hold a while run at once.
	eventually.True(t, 5*time.Second, "no request in flight on the service", func() bool {
		d := s.service("web").Detail
		return len(d) == 1 && d[0].Inflight == 0
	})
	answers := make(chan string, 2)
	for range 2 {
		go func() {
			_, body := s.get("/svc/web/sleep?ms=1500")
			answers <- body
		}()
	}
	peak := 0
	for range 2 {
		var ms, k int
		b := <-answers
		if _, err := fmt.Sscanf(b, "slept %d ms (inflight %d)", &ms, &k); err != nil {
			t.Errorf("sleep answered %q", b)
		}
		peak = max(peak, k)
	}
	if peak != 2 {
		t.Errorf("after the flood two requests ran %d at once, want 2 (a slot leaked)", peak)
	}
}

// TestSlowClientLimits: a header over --max-header-bytes gets 431, a body
// to a service over --max-request-bytes 413, an invocation beyond
// --function-queue-size 429 at once, and a slow body to the control API
// is ended at the read timeout.
func TestSlowClientLimits(t *testing.T) {
	s := startServicesServer(t, "--read-timeout", "2s", "--max-header-bytes", "16384",
		"--max-request-bytes", "1048576", "--function-queue-size", "3", "--throttle-wait", "30s")
	s.mustCLI("service", "deploy", "web", "--image", "gosvc:v1", "--auth", "none", "--min", "1")
	s.mustCLI("deploy", "one", fixture("goecho"), "--runtime", "provided.al2023", "--max-concurrency", "1")

	// A header over the bound (net/http allows 4 KiB beyond it).
	resp, _ := s.do("GET", "/svc/web/", nil, false, "X-Big", strings.Repeat("a", 32<<10))
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("a 32 KiB header: %d, want 431", resp.StatusCode)
	}
	if resp, body := s.do("GET", "/svc/web/", nil, false, "X-Fine", strings.Repeat("a", 8<<10)); resp.StatusCode != 200 {
		t.Errorf("an 8 KiB header: %d %s", resp.StatusCode, body)
	}

	// A body to a service over the bound (a chunked one too: see the
	// gateway's unit tests).
	resp, body := s.do("POST", "/svc/web/path", make([]byte, 2<<20), false)
	wantAPIError(t, resp, body, 413, "RequestTooLargeException", "1048576 byte limit")
	if resp, body := s.do("POST", "/svc/web/path", make([]byte, 1<<20), false); resp.StatusCode != 200 {
		t.Errorf("a body at the bound: %d %s", resp.StatusCode, body)
	}

	// Invocations beyond the function's queue: one runs, three wait,
	// the next are refused at once.
	busy := make(chan int, 1)
	go func() {
		resp, _ := s.invoke("one", `{"sleep": 3000}`)
		busy <- resp.StatusCode
	}()
	eventually.True(t, 10*time.Second, "the instance busy", func() bool {
		f := decode[v1.Function](t, []byte(s.mustCLI("get", "one", "-o", "json")))
		return f.Instances.Busy == 1
	})
	type res struct {
		code int
		took time.Duration
	}
	results := make(chan res, 6)
	for range 6 {
		go func() {
			t0 := time.Now()
			resp, _ := s.invoke("one", `{}`)
			results <- res{resp.StatusCode, time.Since(t0)}
		}()
	}
	var ok, refused int
	for range 6 {
		r := <-results
		switch {
		case r.code == 200:
			ok++
		case r.code == 429 && r.took < 2*time.Second:
			refused++
		default:
			t.Errorf("an invocation beyond the cap: %d after %s", r.code, r.took)
		}
	}
	if ok != 3 || refused != 3 {
		t.Errorf("with 1 running and a queue of 3: %d answered, %d refused at once; want 3 and 3", ok, refused)
	}
	if code := <-busy; code != 200 {
		t.Errorf("the long invocation: %d", code)
	}

	// A slow body to the control API, with the token or without: the
	// read timeout ends it (only a code or image upload with the token
	// gets longer).
	addr := strings.TrimPrefix(s.URL, "http://")
	code, took, err := slowBody(addr, "POST", "/v1/functions/one/invoke", 250*time.Millisecond, nil, "Authorization: Bearer "+s.Token)
	if err != nil || code != 408 || took > 4*time.Second {
		t.Errorf("slow invoke body with the token: %d %v after %s, want 408 within 4s", code, err, took)
	}
	code, took, err = slowBody(addr, "PUT", "/v1/functions/one", 250*time.Millisecond, nil)
	if err != nil || code != 401 || took > 4*time.Second {
		t.Errorf("slow deploy body without the token: %d %v after %s, want 401 within 4s", code, err, took)
	}
}

// TestSlowClientConnectionLimit: beyond --max-connections open
// connections, a new one waits to be accepted until one closes.
func TestSlowClientConnectionLimit(t *testing.T) {
	s := startServer(t, "--max-connections", "4")
	addr := strings.TrimPrefix(s.URL, "http://")
	var conns []net.Conn
	for range 4 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Served, then kept open (keep-alive).
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("connection %d: %v %v", len(conns), resp, err)
		}
		resp.Body.Close()
		conns = append(conns, c)
	}
	// A fifth is not served while four are open...
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	answered := make(chan error, 1)
	go func() {
		resp, err := c.Get(s.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		answered <- err
	}()
	select {
	case err := <-answered:
		t.Fatalf("a fifth connection was served while four were open (%v)", err)
	case <-time.After(time.Second):
	}
	// ...and is once one of them closes.
	conns[0].Close()
	select {
	case err := <-answered:
		if err != nil {
			t.Errorf("the waiting connection after one closed: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the waiting connection was not served after one closed")
	}
}

// slowBody sends method path (with the header lines hdr) on a new
// connection to addr with a Content-Length of 1000 and then one byte every
// every, until an answer comes; it returns the answer's status and how
// long it took from the connect. sent, if not nil, counts connections that
// sent their header.
func slowBody(addr, method, path string, every time.Duration, sent *atomic.Int64, hdr ...string) (int, time.Duration, error) {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	head := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n", method, path, addr)
	for _, h := range hdr {
		head += h + "\r\n"
	}
	if _, err := io.WriteString(c, head+"\r\n{"); err != nil {
		return 0, time.Since(start), err
	}
	if sent != nil {
		sent.Add(1)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if _, err := c.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	defer func() { close(done); wg.Wait() }()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	took := time.Since(start)
	if err != nil {
		return 0, took, fmt.Errorf("no answer: %w", err)
	}
	resp.Body.Close()
	return resp.StatusCode, took, nil
}

// send does req with c and reads the whole answer.
func send(c *http.Client, req *http.Request) (int, string, error) {
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// vmRSS is the resident memory of process pid, in bytes.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// percentile is the p-th percentile of d (nearest rank).
func percentile(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(i-1, 0)]
}
