package runtimeapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/runtimeapi"
)

// TestAWSLambdaGo runs an unmodified aws-lambda-go binary against the
// server: the library's own Runtime API client must work unchanged.
func TestAWSLambdaGo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds an aws-lambda-go binary")
	}
	bin := filepath.Join(t.TempDir(), "bootstrap")
	build := exec.Command("go", "build", "-o", bin, "./testdata/lambdafn")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	h := newHarness(t)
	var stderr bytes.Buffer
	fn := exec.Command(bin)
	fn.Env = []string{
		"AWS_LAMBDA_RUNTIME_API=" + h.srv.Addr(),
		"AWS_LAMBDA_FUNCTION_NAME=fn",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256",
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
	}
	fn.Stderr = &stderr
	if err := fn.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- fn.Wait() }()
	t.Cleanup(func() {
		_ = fn.Process.Kill()
		<-exited
	})

	invoke := func(i *runtimeapi.Invocation) runtimeapi.Result {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		ch, err := h.srv.Invoke(ctx, i)
		if err != nil {
			t.Fatalf("Invoke %s: %v (function stderr: %s)", i.RequestID, err, stderr.String())
		}
		select {
		case r := <-ch:
			return r
		case err := <-exited:
			t.Fatalf("function exited during %s: %v\n%s", i.RequestID, err, stderr.String())
		case <-ctx.Done():
			t.Fatalf("no result for %s", i.RequestID)
		}
		return runtimeapi.Result{}
	}

	t.Run("echo", func(t *testing.T) {
		i := inv("go-1", `{"msg":"hi"}`)
		i.Deadline = time.Now().Add(time.Minute).Truncate(time.Millisecond)
		i.ClientContext = `{"custom":{"k":"v"}}`
		i.CognitoIdentity = `{"cognitoIdentityId":"id-7","cognitoIdentityPoolId":"pool"}`
		r := invoke(i)
		if r.ErrorType != "" {
			t.Fatalf("error %s: %s", r.ErrorType, r.Body)
		}
		var got map[string]any
		if err := json.Unmarshal(r.Body, &got); err != nil {
			t.Fatalf("body %s: %v", r.Body, err)
		}
		want := map[string]any{
			"requestId":         "go-1",
			"functionArn":       i.FunctionARN,
			"deadlineMs":        float64(i.Deadline.UnixMilli()),
			"traceId":           i.TraceID,
			"clientCustom":      map[string]any{"k": "v"},
			"cognitoIdentityId": "id-7",
			"msg":               "hi",
			"functionName":      "fn",
			"memoryLimitMB":     float64(256),
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("what aws-lambda-go saw (-want +got):\n%s", diff)
		}
	})
	t.Run("error", func(t *testing.T) {
		r := invoke(inv("go-2", `{"op":"error","msg":"it failed"}`))
		if r.ErrorType != "errorString" {
			t.Errorf("ErrorType = %q, want errorString (body %s)", r.ErrorType, r.Body)
		}
		var e runtimeapi.ErrorObject
		if err := json.Unmarshal(r.Body, &e); err != nil || e.ErrorMessage != "it failed" {
			t.Errorf("body %s, want errorMessage %q", r.Body, "it failed")
		}
	})
	t.Run("stream", func(t *testing.T) {
		r := invoke(inv("go-3", `{"op":"stream","msg":"raw bytes, not JSON"}`))
		if r.ErrorType != "" || string(r.Body) != "raw bytes, not JSON" {
			t.Errorf("result %q %s, want the streamed bytes", r.ErrorType, r.Body)
		}
	})
	t.Run("broken stream", func(t *testing.T) {
		// aws-lambda-go reports a response that fails midway in the
		// Lambda-Runtime-Function-Error-* trailers; it is an error.
		r := invoke(inv("go-4", `{"op":"broken-stream","msg":"partial"}`))
		if r.ErrorType != "errorString" {
			t.Errorf("ErrorType = %q (body %q), want errorString from the trailers", r.ErrorType, r.Body)
		}
		var e runtimeapi.ErrorObject
		if err := json.Unmarshal(r.Body, &e); err != nil || e.ErrorMessage != "stream broke" {
			t.Errorf("body %s, want errorMessage %q", r.Body, "stream broke")
		}
	})
	t.Run("warm again", func(t *testing.T) {
		if r := invoke(inv("go-5", `{"msg":"again"}`)); r.ErrorType != "" || !bytes.Contains(r.Body, []byte(`"requestId":"go-5"`)) {
			t.Errorf("result %q %s", r.ErrorType, r.Body)
		}
	})
	t.Run("panic", func(t *testing.T) {
		r := invoke(inv("go-6", `{"op":"panic","msg":"boom"}`))
		var e struct {
			ErrorMessage string `json:"errorMessage"`
			StackTrace   []any  `json:"stackTrace"`
		}
		if err := json.Unmarshal(r.Body, &e); err != nil || r.ErrorType == "" || e.ErrorMessage != "boom" || len(e.StackTrace) == 0 {
			t.Errorf("result %q %s, want a panic error with a stack trace", r.ErrorType, r.Body)
		}
		// aws-lambda-go exits after reporting a panic.
		select {
		case err := <-exited:
			exited <- err
		case <-time.After(20 * time.Second):
			t.Error("aws-lambda-go did not exit after a panic")
		}
	})
}

// TestListenAddress: the server listens on the address its instance's
// sandbox reaches the host at, else on the loopback.
func TestListenAddress(t *testing.T) {
	for _, tc := range []struct {
		ip   netip.Addr
		want string
	}{
		{netip.Addr{}, "127.0.0.1"},
		{netip.MustParseAddr("127.0.0.2"), "127.0.0.2"},
	} {
		srv, err := runtimeapi.New(runtimeapi.Config{HostIP: tc.ip})
		if err != nil {
			t.Fatalf("New(%v): %v", tc.ip, err)
		}
		ap, err := netip.ParseAddrPort(srv.Addr())
		if err != nil || ap.Addr().String() != tc.want || ap.Port() == 0 {
			t.Errorf("New(%v).Addr() = %q, want %s:PORT", tc.ip, srv.Addr(), tc.want)
		}
		_ = srv.Close()
	}
}

// anyone is an owner check that lets every connection in.

// TestOnlyItsOwner: the server answers only connections its owner check
// accepts (here: those from 127.0.0.4, as a sandbox network would have
// it). A request that comes before the check is known waits for it; a
// connection is checked once, however many requests it carries; a
// refused one gets 403 and is closed.
func TestOnlyItsOwner(t *testing.T) {
	srv, err := runtimeapi.New(runtimeapi.Config{HostIP: netip.MustParseAddr("127.0.0.2")})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	from := func(src string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
	}
	type answer struct {
		status int
		closed bool // the server closes the connection
		err    error
	}
	get := func(c *http.Client) answer {
		resp, err := c.Get("http://" + srv.Addr() + "/nowhere")
		if err != nil {
			return answer{err: err}
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return answer{status: resp.StatusCode, closed: resp.Close}
	}
	early := make(chan answer, 1)
	go func() { early <- get(from("127.0.0.3")) }()
	eventually.True(t, 5*time.Second, "the early request to wait for the owner check", func() bool {
		return runtimeapi.WaitedForOwner(srv) == 1
	})
	select {
	case a := <-early:
		t.Fatalf("a request before SetOwner was answered: %+v", a)
	default:
	}
	var mu sync.Mutex
	var asked []string
	srv.SetOwner(func(ctx context.Context, local, remote netip.AddrPort) bool {
		mu.Lock()
		defer mu.Unlock()
		if local.String() != srv.Addr() {
			t.Errorf("owner check: local end %s, want %s", local, srv.Addr())
		}
		asked = append(asked, remote.Addr().String())
		return remote.Addr() == netip.MustParseAddr("127.0.0.4")
	})
	if a := <-early; a.err != nil || a.status != http.StatusForbidden || !a.closed {
		t.Errorf("the early request of another address: %+v, want 403 and the connection closed", a)
	}
	owner := from("127.0.0.4")
	for range 3 {
		if a := get(owner); a.err != nil || a.status != http.StatusNotFound || a.closed {
			t.Errorf("request of the owner: %+v, want it passed on (404 for an unknown path) on a kept connection", a)
		}
	}
	if a := get(from("127.0.0.5")); a.err != nil || a.status != http.StatusForbidden || !a.closed {
		t.Errorf("request of another address: %+v, want 403 and the connection closed", a)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"127.0.0.3", "127.0.0.4", "127.0.0.5"}; !cmp.Equal(asked, want) {
		t.Errorf("owner check asked for %v, want once per connection: %v", asked, want)
	}
}
