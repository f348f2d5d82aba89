package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// grpcsvcImageTar writes a `docker save` tarball, tagged tag, of an image
// whose entrypoint is testdata/grpcsvc, a real gRPC server (grpc-go) built
// static, and returns its path.
func grpcsvcImageTar(t *testing.T, tag string) string {
	t.Helper()
	p, err := buildStatic("grpcsvc", filepath.Join(fixtures, "grpcsvc", "grpcsvc"))
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	layer, err := layerOf([]layerFile{
		{Name: "app/", Mode: 0o755},
		{Name: "app/grpcsvc", Mode: 0o755, Body: bin},
		{Name: "tmp/", Mode: 0o1777},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := ggcr.Config{Entrypoint: []string{"/app/grpcsvc"}, Env: []string{"PATH=/app"}}
	return writeImageTar(t, imageOf(t, cfg, layer), tag)
}

// h2cClient speaks HTTP/2 without TLS by prior knowledge, and nothing
// else, as `curl --http2-prior-knowledge` does.
func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Protocols: &p}}
}

// h2cDo sends a request over h2c with prior knowledge and returns the
// answer with its body read.
func h2cDo(t *testing.T, c *http.Client, method, url string, body io.Reader, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "Host") {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s over h2c: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s over h2c: reading the body: %v", method, url, err)
	}
	return resp, string(b)
}

// grpcConn is a gRPC client connection to the gateway at url whose calls
// carry authority as their :authority (the host route NAME.localhost).
func grpcConn(t *testing.T, url, authority string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+strings.TrimPrefix(url, "http://"),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority(authority))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// TestH2CGRPCService: a real gRPC server (grpc-go, which speaks only h2c
// on a plain port), deployed with --h2c, answers a real gRPC client
// through the gateway's host route: unary calls with headers, trailers
// and status codes, a 3 MiB answer, server streaming, client streaming,
// a full-duplex call whose every message waits for the previous answer,
// the health service, and 64 calls at once on one connection. The
// server's token is checked and kept from the container, and a call
// without it is refused as gRPC says (Unauthenticated).
func TestH2CGRPCService(t *testing.T) {
	s := startServicesServer(t)
	s.mustCLI("image", "import", grpcsvcImageTar(t, "grpcsvc:v1"))
	s.mustCLI("service", "deploy", "echo", "--image", "grpcsvc:v1", "--h2c", "--min", "1", "--concurrency", "8")

	// The port name is written back, in both outputs.
	if out := s.mustCLI("service", "get", "echo"); !strings.Contains(out, "8080 (h2c)") {
		t.Errorf("service get: no \"8080 (h2c)\" in\n%s", out)
	}
	if out := s.mustCLI("service", "get", "echo", "-o", "yaml"); !strings.Contains(out, "- name: h2c\n") || !strings.Contains(out, "containerPort: 8080") {
		t.Errorf("service get -o yaml: no port named h2c in\n%s", out)
	}
	if svc := s.service("echo"); !svc.Config.H2C {
		t.Errorf("service get -o json: h2c not set in %+v", svc.Config)
	}

	cc := grpcConn(t, s.URL, "echo.localhost")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	authed := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+s.Token)
	tc := testgrpc.NewTestServiceClient(cc)

	// Unary, with the answer's header and trailer metadata.
	var hdr, trl metadata.MD
	res, err := tc.UnaryCall(authed, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("hello over h2c")}},
		grpc.Header(&hdr), grpc.Trailer(&trl))
	if err != nil {
		t.Fatalf("UnaryCall: %v\nserver log:\n%s", err, s.Stderr())
	}
	if got := string(res.GetPayload().GetBody()); got != "hello over h2c" {
		t.Errorf("UnaryCall echoed %q", got)
	}
	if got := hdr.Get("x-authority"); len(got) != 1 || got[0] != "echo.localhost" {
		t.Errorf("the container saw :authority %q, want echo.localhost", got)
	}
	if got := hdr.Get("x-authorization"); len(got) != 1 || got[0] != "" {
		t.Errorf("the container saw authorization %q: the server's token must not reach it", got)
	}
	if got := trl.Get("x-trailer"); len(got) != 1 || got[0] != "done" {
		t.Errorf("UnaryCall's trailer x-trailer %q, want done (trailers: %v)", got, trl)
	}

	// A status code and message, from the trailers.
	_, err = tc.UnaryCall(authed, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.NotFound), Message: "no such thing"}})
	if st, _ := status.FromError(err); st.Code() != codes.NotFound || st.Message() != "no such thing" {
		t.Errorf("UnaryCall with a status: %v, want NotFound \"no such thing\"", err)
	}

	// A large answer, through the flow control of both connections.
	res, err = tc.UnaryCall(authed, &testgrpc.SimpleRequest{ResponseSize: 3 << 20})
	if err != nil || len(res.GetPayload().GetBody()) != 3<<20 || res.GetPayload().GetBody()[3<<20-1] != 0xff {
		t.Errorf("UnaryCall of a 3 MiB answer: %d bytes, %v", len(res.GetPayload().GetBody()), err)
	}

	// Without the token: refused before the container, as gRPC says it.
	_, err = tc.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	if st, _ := status.FromError(err); st.Code() != codes.Unauthenticated {
		t.Errorf("UnaryCall without the token: %v, want Unauthenticated", err)
	}

	// The health service.
	hres, err := healthpb.NewHealthClient(cc).Check(authed, &healthpb.HealthCheckRequest{Service: "grpc.testing.TestService"})
	if err != nil || hres.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health Check: %v %v", hres, err)
	}

	// Server streaming: five messages 100 ms apart, each passed on as it
	// comes (the first long before the last is sent).
	var params []*testgrpc.ResponseParameters
	for i := range 5 {
		params = append(params, &testgrpc.ResponseParameters{Size: int32(10 * (i + 1)), IntervalUs: 100_000})
	}
	start := time.Now()
	out, err := tc.StreamingOutputCall(authed, &testgrpc.StreamingOutputCallRequest{ResponseParameters: params})
	if err != nil {
		t.Fatalf("StreamingOutputCall: %v", err)
	}
	var sizes []int
	var first time.Duration
	for {
		m, err := out.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("StreamingOutputCall: after %v: %v", sizes, err)
		}
		if first == 0 {
			first = time.Since(start)
		}
		sizes = append(sizes, len(m.GetPayload().GetBody()))
	}
	if fmt.Sprint(sizes) != "[10 20 30 40 50]" {
		t.Errorf("StreamingOutputCall got sizes %v", sizes)
	}
	if total := time.Since(start); first > total-250*time.Millisecond {
		t.Errorf("StreamingOutputCall: first message after %s of %s: the proxy held the stream back", first, total)
	}
	if got := out.Trailer().Get("x-trailer"); len(got) != 1 || got[0] != "done" {
		t.Errorf("StreamingOutputCall's trailer: %v", out.Trailer())
	}

	// Client streaming.
	in, err := tc.StreamingInputCall(authed)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 1000, 100_000} {
		if err := in.Send(&testgrpc.StreamingInputCallRequest{Payload: &testgrpc.Payload{Body: make([]byte, n)}}); err != nil {
			t.Fatalf("StreamingInputCall send: %v", err)
		}
	}
	if r, err := in.CloseAndRecv(); err != nil || r.GetAggregatedPayloadSize() != 101_001 {
		t.Errorf("StreamingInputCall: %v %v, want 101001 bytes", r, err)
	}

	// Full duplex: each message is sent only after the previous one's
	// answer, so a proxy that waits for more of the body (or its end)
	// before passing the request on stalls here.
	dctx, dcancel := context.WithTimeout(authed, 10*time.Second)
	defer dcancel()
	duplex, err := tc.FullDuplexCall(dctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		msg := fmt.Sprintf("ping %d", i)
		if err := duplex.Send(&testgrpc.StreamingOutputCallRequest{
			Payload:            &testgrpc.Payload{Body: []byte(msg)},
			ResponseParameters: []*testgrpc.ResponseParameters{{Size: 0}},
		}); err != nil {
			t.Fatalf("FullDuplexCall send %d: %v", i, err)
		}
		m, err := duplex.Recv()
		if err != nil {
			t.Fatalf("FullDuplexCall: no answer to %q: %v", msg, err)
		}
		if got := string(m.GetPayload().GetBody()); got != msg {
			t.Fatalf("FullDuplexCall: %q answered %q", msg, got)
		}
	}
	if err := duplex.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := duplex.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("FullDuplexCall after CloseSend: %v, want EOF", err)
	}

	// 64 calls at once on the one connection, beyond the concurrency of
	// 8 per replica: they wait for slots or replicas, and all succeed.
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Go(func() {
			body := []byte(fmt.Sprintf("call %d", i))
			r, err := tc.UnaryCall(authed, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: body}})
			if err == nil && !bytes.Equal(r.GetPayload().GetBody(), body) {
				err = fmt.Errorf("call %d echoed %q", i, r.GetPayload().GetBody())
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent UnaryCall: %v", err)
		}
	}
}

// TestH2CGateway: the gateway speaks HTTP/2 by prior knowledge to any
// client, on every route, and HTTP/1.1 or h2c to each container as its
// service asks: a function URL, the control API and an HTTP/1.1-only
// service answer h2c clients; a service declared h2c in a Knative
// manifest (its port named h2c) is probed and served over h2c, though
// its server refuses HTTP/1.1; an HTTP/1.1 Upgrade to h2c is ignored
// (answered in HTTP/1.1, not passed on); and the body bounds hold on
// HTTP/2 streams (413, and 408 for a trickled body).
func TestH2CGateway(t *testing.T) {
	s := startServicesServer(t, "--read-timeout", "3s", "--max-request-bytes", "1048576")
	s.mustCLI("image", "import", grpcsvcImageTar(t, "grpcsvc:v1"))
	s.mustCLI("deploy", "one", fixture("goecho"), "--runtime", "provided.al2023")
	s.mustCLI("service", "deploy", "plain", "--image", "grpcsvc:v1", "--min", "1", "--health", "/healthz",
		"--arg", "-mode", "--arg", "http", "--arg", "-proto", "--arg", "http1")
	s.mustCLI("service", "deploy", "web", "--image", "gosvc:v1", "--min", "1")
	manifest := `apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: h2only
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/min-scale: "1"
    spec:
      containers:
        - image: grpcsvc:v1
          args: [-mode, http, -proto, h2c]
          ports:
            - name: h2c
              containerPort: 8080
          readinessProbe:
            httpGet:
              path: /healthz
              port: h2c
`
	if r := s.applyFile(manifest); r.Code != 0 {
		t.Fatalf("apply of an h2c service: exit %d\n%s%s\nserver log:\n%s", r.Code, r.Stdout, r.Stderr, s.Stderr())
	}
	if svc := s.service("h2only"); svc.Status != "Ready" || !svc.Config.H2C {
		t.Fatalf("the h2c service (its server refuses HTTP/1.1, so only an h2c probe makes it ready): %s, h2c %v\nserver log:\n%s",
			svc.Status, svc.Config.H2C, s.Stderr())
	}

	h2 := h2cClient()
	bearer := "Bearer " + s.Token
	check := func(what string, resp *http.Response, body string, status int, want string) {
		t.Helper()
		if resp.ProtoMajor != 2 {
			t.Errorf("%s: answered in %s, want HTTP/2.0", what, resp.Proto)
		}
		if resp.StatusCode != status || !strings.Contains(body, want) {
			t.Errorf("%s: %d %q, want %d with %q", what, resp.StatusCode, body, status, want)
		}
	}

	// Every route answers an h2c client.
	resp, body := h2cDo(t, h2, "GET", s.URL+"/v1/functions", nil, "Authorization", bearer)
	check("GET /v1/functions", resp, body, 200, `"one"`)
	resp, body = h2cDo(t, h2, "POST", s.URL+"/fn/one/anything?x=1", strings.NewReader(`{"a":1}`), "Authorization", bearer)
	check("POST /fn/one", resp, body, 200, `"requestId"`)
	// The HTTP/1.1-only service hears HTTP/1.1, on its path and host routes.
	resp, body = h2cDo(t, h2, "GET", s.URL+"/svc/plain/proto", nil, "Authorization", bearer)
	check("GET /svc/plain/proto", resp, body, 200, "HTTP/1.1\n")
	resp, body = h2cDo(t, h2, "GET", s.URL+"/proto", nil, "Authorization", bearer, "Host", "plain.localhost")
	check("GET plain.localhost/proto", resp, body, 200, "HTTP/1.1\nplain.localhost\n")
	// The h2c service hears HTTP/2, from an HTTP/2 client or an HTTP/1.1 one.
	resp, body = h2cDo(t, h2, "GET", s.URL+"/svc/h2only/proto", nil, "Authorization", bearer)
	check("GET /svc/h2only/proto", resp, body, 200, "HTTP/2.0\n")
	if code, body := s.hostGet("h2only.localhost", "/proto"); code != 200 || body != "HTTP/2.0\nh2only.localhost\n" {
		t.Errorf("GET h2only.localhost/proto over HTTP/1.1: %d %q, want the container to hear HTTP/2.0", code, body)
	}

	// An Upgrade to h2c is answered in HTTP/1.1 and kept from the
	// container (gosvc echoes the headers it got).
	addr := strings.TrimPrefix(s.URL, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /svc/web/path HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n", addr, bearer)
	up, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	upBody, _ := io.ReadAll(up.Body)
	up.Body.Close()
	if up.StatusCode != 200 || up.ProtoMajor != 1 {
		t.Errorf("an Upgrade to h2c: %s %d, want HTTP/1.1 200", up.Proto, up.StatusCode)
	}
	if lower := strings.ToLower(string(upBody)); strings.Contains(lower, "h2c") || strings.Contains(lower, "http2-settings") {
		t.Errorf("the container saw the upgrade to h2c: %s", upBody)
	}

	// The body bounds on HTTP/2 streams: too large, and too slow.
	resp, body = h2cDo(t, h2, "POST", s.URL+"/svc/plain/proto", bytes.NewReader(make([]byte, 2<<20)), "Authorization", bearer)
	check("a 2 MiB body to a service", resp, body, 413, "1048576 byte limit")
	for _, path := range []string{"/svc/plain/proto", "/fn/one"} {
		pr, pw := io.Pipe()
		go func() {
			for {
				if _, err := pw.Write([]byte("x")); err != nil {
					return
				}
				time.Sleep(250 * time.Millisecond)
			}
		}()
		start := time.Now()
		resp, body = h2cDo(t, h2, "POST", s.URL+path, pr, "Authorization", bearer)
		pr.CloseWithError(errors.New("done"))
		check("a trickled body to "+path, resp, body, 408, "")
		if took := time.Since(start); took > 6*time.Second {
			t.Errorf("a trickled body to %s: answered after %s, want about the read timeout, 3s", path, took)
		}
	}

}
