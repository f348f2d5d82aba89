package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/services"
)

// rawRequest sends head (a request line and headers, without the blank
// line) and body on a new connection to srv and reads the answer. It may
// run on any goroutine: it reports errors rather than failing the test.
func rawRequest(t *testing.T, srv *httptest.Server, head, body string) (*http.Response, net.Conn, error) {
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		return nil, nil, err
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, head+"\r\n\r\n"+body); err != nil {
		return nil, nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("read answer: %w", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(strings.NewReader(string(b)))
	return resp, c, nil
}

// newBoundServer serves h behind BoundBodies as the server does: with
// timeout as the http.Server's ReadTimeout.
func newBoundServer(t *testing.T, h http.Handler, timeout time.Duration) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(BoundBodies(h, timeout, NewToken("tok"), nil))
	srv.Config.ReadTimeout = timeout
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// readingHandler reads the body as the function routes do and answers 200
// with its length, after holding for hold.
func readingHandler(hold time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			v1.Responder{}.Error(w, r, fmt.Errorf("read: %w", err))
			return
		}
		select {
		case <-time.After(hold):
		case <-r.Context().Done():
			v1.Responder{}.Error(w, r, fmt.Errorf("context ended while holding: %w", stratus.ErrUnavailable))
			return
		}
		fmt.Fprintf(w, "%d", len(b))
	}
}

func TestBoundBodiesSlowBodyGets408(t *testing.T) {
	const timeout = 300 * time.Millisecond
	srv := newBoundServer(t, readingHandler(0), timeout)
	start := time.Now()
	resp, c, err := rawRequest(t, srv, "POST /fn/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100", "only some")
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if resp.StatusCode != http.StatusRequestTimeout || took < timeout || took > timeout+2*time.Second {
		t.Errorf("slow body: %d after %s, want 408 after %s", resp.StatusCode, took, timeout)
	}
	if !resp.Close {
		t.Errorf("408 without Connection: close: %v", resp.Header)
	}
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), CodeRequestTimeout) {
		t.Errorf("408 body %s", b)
	}
	// The server closes the connection after the 408.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("connection still open after the 408 (read %d bytes)", n)
	}
}

func TestBoundBodiesLiftedAtBodyEnd(t *testing.T) {
	// A handler that holds past the timeout once it has its body (a
	// long invocation, a streamed answer) keeps its request alive: the
	// deadline is lifted at the body's end.
	const timeout = 200 * time.Millisecond
	srv := newBoundServer(t, readingHandler(4*timeout), timeout)
	for _, tc := range []struct{ name, head, body, want string }{
		{"with a length", "POST /fn/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5", "hello", "5"},
		{"chunked", "POST /fn/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked", "5\r\nhello\r\n0\r\n\r\n", "5"},
		{"without a body", "GET /fn/x HTTP/1.1\r\nHost: x", "", "0"},
	} {
		resp, _, err := rawRequest(t, srv, tc.head, tc.body)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != tc.want {
			t.Errorf("%s: %d %s, want 200 %s", tc.name, resp.StatusCode, b, tc.want)
		}
	}
}

func TestBoundBodiesUploads(t *testing.T) {
	for _, tc := range []struct {
		method, path, auth string
		upload             bool
	}{
		{"PUT", "/v1/functions/f", "Bearer tok", true},
		{"POST", "/v1/images/import", "Bearer tok", true},
		{"PUT", "/v1/functions/f", "", false},
		{"PUT", "/v1/functions/f", "Bearer nope", false},
		{"POST", "/v1/functions/f/invoke", "Bearer tok", false},
		{"PUT", "/v1/functions/", "Bearer tok", false},
		{"POST", "/fn/f", "Bearer tok", false},
		{"PUT", "/svc/web/v1/functions/f", "Bearer tok", false},
	} {
		r := httptest.NewRequest(tc.method, tc.path, strings.NewReader("x"))
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		var got time.Duration
		h := BoundBodies(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got = r.Body.(*boundBody).limit
		}), time.Second, NewToken("tok"), nil)
		h.ServeHTTP(httptest.NewRecorder(), r)
		want := time.Second
		if tc.upload {
			want = UploadTimeout
		}
		if got != want {
			t.Errorf("%s %s (auth %q): bound %s, want %s", tc.method, tc.path, tc.auth, got, want)
		}
	}
}

// slotCounter is a service with one replica of concurrency 1 that counts
// the slots taken; Acquire waits for the slot as the manager does.
type slotCounter struct {
	t        services.Target
	slot     chan struct{} // buffered 1: full while the slot is taken
	acquired atomic.Int32
}

func (o *slotCounter) Acquire(ctx context.Context, name string) (*services.Target, func(), error) {
	select {
	case o.slot <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	o.acquired.Add(1)
	var once sync.Once
	return &o.t, func() { once.Do(func() { <-o.slot }) }, nil
}

// waitFree waits until the slot is free: a handler gives it back as it
// returns, just after its answer.
func (o *slotCounter) waitFree(t *testing.T) {
	t.Helper()
	eventually.True(t, 5*time.Second, "the slot to be free", func() bool { return len(o.slot) == 0 })
}

func (o *slotCounter) Auth(name string) (string, bool) { return stratus.AuthNone, name == "web" }

// newProxyServer serves /svc/ through a ServiceProxy in front of replica,
// with read timeout and body bound maxBody, the replica taking one
// request at a time.
func newProxyServer(t *testing.T, replica http.Handler, timeout time.Duration, maxBody int64) (*httptest.Server, *slotCounter) {
	t.Helper()
	back := httptest.NewServer(replica)
	t.Cleanup(back.Close)
	u, _ := url.Parse(back.URL)
	o := &slotCounter{t: services.Target{URL: u, Transport: back.Client().Transport}, slot: make(chan struct{}, 1)}
	p := NewServiceProxy(ProxyConfig{Services: o, Token: NewToken("tok"), Domain: "localhost", MaxBody: maxBody})
	mux := http.NewServeMux()
	mux.HandleFunc("/svc/{name}/{path...}", p.ServeSvcPath)
	return newBoundServer(t, mux, timeout), o
}

// echoLen answers the length of the body it read.
var echoLen = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "%d", len(b))
})

func TestServiceSlowBodyHoldsNoSlot(t *testing.T) {
	const timeout = 400 * time.Millisecond
	front, o := newProxyServer(t, echoLen, timeout, 1<<20)
	// Two clients trickle their bodies; meanwhile the one slot serves
	// others.
	slow := make(chan int, 2)
	for range 2 {
		go func() {
			resp, _, err := rawRequest(t, front, "POST /svc/web/x HTTP/1.1\r\nHost: x\r\nContent-Length: 10", "abc")
			if err != nil {
				t.Error(err)
				slow <- 0
				return
			}
			slow <- resp.StatusCode
		}()
	}
	for i := range 5 {
		resp, err := http.Post(front.URL+"/svc/web/x", "text/plain", strings.NewReader("hello"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "5" {
			t.Errorf("request %d while others trickle: %d %s", i, resp.StatusCode, b)
		}
	}
	for range 2 {
		if code := <-slow; code != http.StatusRequestTimeout {
			t.Errorf("trickling client: %d, want 408", code)
		}
	}
	if n := o.acquired.Load(); n != 5 {
		t.Errorf("%d slots taken, want 5: a trickling client took one", n)
	}

}

func TestServiceBodies(t *testing.T) {
	const max = 200 << 10
	front, o := newProxyServer(t, echoLen, 2*time.Second, max)
	big := strings.Repeat("x", max+1)
	for _, tc := range []struct {
		name    string
		body    io.Reader
		length  int64
		code    int
		want    string
		acquire bool
	}{
		{"small", strings.NewReader("hello"), 5, 200, "5", true},
		{"over the prefetch", strings.NewReader(big[:max]), max, 200, fmt.Sprint(max), true},
		{"chunked, complete in the prefetch", io.MultiReader(strings.NewReader("hel"), strings.NewReader("lo")), -1, 200, "5", true},
		{"chunked, streamed", io.MultiReader(strings.NewReader(big[:max/2]), strings.NewReader(big[:max/2])), -1, 200, fmt.Sprint(max), true},
		{"length over the bound", strings.NewReader(big), max + 1, 413, "", false},
		{"chunked over the bound", io.MultiReader(strings.NewReader(big[:prefetch]), strings.NewReader(big)), -1, 413, "", true},
	} {
		before := o.acquired.Load()
		req, _ := http.NewRequest("POST", front.URL+"/svc/web/x", tc.body)
		req.ContentLength = tc.length
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || tc.want != "" && string(b) != tc.want {
			t.Errorf("%s: %d %s, want %d %s", tc.name, resp.StatusCode, b, tc.code, tc.want)
		}
		if took := o.acquired.Load() > before; took != tc.acquire {
			t.Errorf("%s: took a slot %v, want %v", tc.name, took, tc.acquire)
		}
	}
	o.waitFree(t)

	// A body over the bound within the prefetch takes no slot.
	front, o = newProxyServer(t, echoLen, 2*time.Second, 1000)
	req, _ := http.NewRequest("POST", front.URL+"/svc/web/x", io.MultiReader(strings.NewReader("x"), strings.NewReader(big[:2000])))
	req.ContentLength = -1
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 || o.acquired.Load() != 0 {
		t.Errorf("chunked body over a bound below the prefetch: %d, %d slots taken; want 413, none", resp.StatusCode, o.acquired.Load())
	}
}

func TestBoundBodiesUploadGetsLonger(t *testing.T) {
	const timeout = 200 * time.Millisecond
	srv := newBoundServer(t, readingHandler(0), timeout)
	for _, tc := range []struct {
		auth string
		code int
	}{{"Bearer tok", 200}, {"", 408}} {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		head := "PUT /v1/functions/f HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
		if tc.auth != "" {
			head += "Authorization: " + tc.auth + "\r\n"
		}
		if _, err := io.WriteString(c, head+"\r\nhe"); err != nil {
			t.Fatal(err)
		}
		// A slow link: the rest comes after the read timeout.
		time.Sleep(3 * timeout)
		_, _ = io.WriteString(c, "llo")
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("auth %q: %v", tc.auth, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("upload with auth %q sent over %s: %d, want %d", tc.auth, 3*timeout, resp.StatusCode, tc.code)
		}
	}
}

func TestServiceSlowStreamedBody(t *testing.T) {
	// A body past the prefetch is streamed to the replica, holding a
	// slot; it too must come within the read timeout, and the slot is
	// given back when it does not.
	const timeout = 500 * time.Millisecond
	front, o := newProxyServer(t, echoLen, timeout, 1<<20)
	start := time.Now()
	resp, _, err := rawRequest(t, front, "POST /svc/web/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000", strings.Repeat("x", prefetch+100))
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if resp.StatusCode != http.StatusRequestTimeout || took > timeout+2*time.Second {
		b, _ := io.ReadAll(resp.Body)
		t.Errorf("streamed body that stops: %d %s after %s, want 408 after %s", resp.StatusCode, b, took, timeout)
	}
	if n := o.acquired.Load(); n != 1 {
		t.Errorf("%d slots taken, want 1 (the body passed the prefetch)", n)
	}
	o.waitFree(t)
}

func TestErrBodyTimeoutKind(t *testing.T) {
	err := fmt.Errorf("service %q: %w", "web", fmt.Errorf("read timeout 2s: %w", ErrBodyTimeout))
	if !errors.Is(err, ErrBodyTimeout) || !errors.Is(err, stratus.ErrInvalid) || errors.Is(err, stratus.ErrTimeout) {
		t.Errorf("%v: want ErrBodyTimeout of kind ErrInvalid", err)
	}
	w := httptest.NewRecorder()
	v1.Responder{}.Error(w, httptest.NewRequest("POST", "/svc/web", nil), err)
	if w.Code != http.StatusRequestTimeout || w.Header().Get("Connection") != "close" || !strings.Contains(w.Body.String(), CodeRequestTimeout) {
		t.Errorf("Responder.Error: %d %v %s", w.Code, w.Header(), w.Body)
	}
}
