package gateway

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/services"
)

func TestStripH2CUpgrade(t *testing.T) {
	for _, tc := range []struct {
		upgrade  []string
		want     []string // Upgrade after; nil: removed
		settings bool     // HTTP2-Settings kept
	}{
		{[]string{"h2c"}, nil, false},
		{[]string{"H2C"}, nil, false},
		{[]string{"websocket"}, []string{"websocket"}, true},
		{[]string{"h2c, websocket"}, []string{"websocket"}, false},
		{[]string{"websocket", " h2c "}, []string{"websocket"}, false},
		{[]string{"h2c/1, foo"}, []string{"h2c/1, foo"}, true},
		{[]string{"foo,,h2c,bar"}, []string{"foo, bar"}, false},
	} {
		h := http.Header{"Upgrade": tc.upgrade, "Http2-Settings": {"AAMAAABkAAQAAP__"}}
		stripH2CUpgrade(h, h.Values("Upgrade"))
		if got := h.Values("Upgrade"); fmt.Sprint(got) != fmt.Sprint(tc.want) || (got == nil) != (tc.want == nil) {
			t.Errorf("Upgrade %q: left %q, want %q", tc.upgrade, got, tc.want)
		}
		if got := h.Get("HTTP2-Settings") != ""; got != tc.settings {
			t.Errorf("Upgrade %q: HTTP2-Settings kept %v, want %v", tc.upgrade, got, tc.settings)
		}
	}
}

func TestStreamsBody(t *testing.T) {
	for _, tc := range []struct {
		major int
		ct    string
		want  bool
	}{
		{2, "application/grpc", true},
		{2, "application/grpc+proto", true},
		{2, "Application/GRPC+json; charset=utf-8", true},
		{2, "application/grpc-web", false},
		{2, "application/json", false},
		{2, "", false},
		{2, "application/grpc; =bad", false},
		{1, "application/grpc", false},
	} {
		r := httptest.NewRequest("POST", "/", strings.NewReader("x"))
		r.ProtoMajor = tc.major
		if tc.ct != "" {
			r.Header.Set("Content-Type", tc.ct)
		}
		if got := streamsBody(r); got != tc.want {
			t.Errorf("streamsBody(HTTP/%d, %q) = %v, want %v", tc.major, tc.ct, got, tc.want)
		}
	}
}

// h2cServer serves h as the server does: Protocols, HTTP2Config and
// IgnoreH2CUpgrade.
func h2cServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(IgnoreH2CUpgrade(h))
	srv.Config.Protocols = Protocols()
	srv.Config.HTTP2 = HTTP2Config()
	srv.Config.ReadHeaderTimeout = 5 * time.Second
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

func h2cTransport() *http.Transport {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Transport{Protocols: &p}
}

// TestGatewayProtocols: one port answers HTTP/1.1 and h2c by prior
// knowledge; an Upgrade to h2c is answered in HTTP/1.1 and the handler
// does not see it, a WebSocket upgrade it does.
func TestGatewayProtocols(t *testing.T) {
	base := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s upgrade=%q settings=%q", r.Proto, r.Header.Get("Upgrade"), r.Header.Get("HTTP2-Settings"))
	}))
	get := func(tr http.RoundTripper, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", base+"/", nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	h1 := &http.Transport{}
	defer h1.CloseIdleConnections()
	h2 := h2cTransport()
	defer h2.CloseIdleConnections()

	if resp, body := get(h2); resp.ProtoMajor != 2 || !strings.HasPrefix(body, "HTTP/2.0 ") {
		t.Errorf("h2c with prior knowledge: %s %q", resp.Proto, body)
	}
	if resp, body := get(h1); resp.ProtoMajor != 1 || !strings.HasPrefix(body, "HTTP/1.1 ") {
		t.Errorf("HTTP/1.1: %s %q", resp.Proto, body)
	}
	resp, body := get(h1, "Connection", "Upgrade, HTTP2-Settings", "Upgrade", "h2c", "HTTP2-Settings", "AAMAAABkAAQAAP__")
	if resp.StatusCode != 200 || body != `HTTP/1.1 upgrade="" settings=""` {
		t.Errorf("Upgrade: h2c: %d %q, want 200 in HTTP/1.1, the upgrade unseen", resp.StatusCode, body)
	}
	if _, body := get(h1, "Connection", "Upgrade", "Upgrade", "websocket"); body != `HTTP/1.1 upgrade="websocket" settings=""` {
		t.Errorf("Upgrade: websocket: %q, want it seen", body)
	}
}

// TestGatewayHTTP2Settings reads the SETTINGS the server sends an h2c
// client: the stream and window bounds of HTTP2Config.
func TestGatewayHTTP2Settings(t *testing.T) {
	base := h2cServer(t, http.NotFoundHandler())
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	// The preface and an empty SETTINGS frame.
	if _, err := io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var hdr [9]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		t.Fatalf("no frame from the server: %v", err)
	}
	n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
	if hdr[3] != 0x4 || n%6 != 0 {
		t.Fatalf("first frame: type %d length %d, want SETTINGS", hdr[3], n)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(br, payload); err != nil {
		t.Fatal(err)
	}
	got := map[uint16]uint32{}
	for i := 0; i < n; i += 6 {
		got[binary.BigEndian.Uint16(payload[i:])] = binary.BigEndian.Uint32(payload[i+2:])
	}
	const maxConcurrentStreams, initialWindowSize = 0x3, 0x4
	if got[maxConcurrentStreams] != maxStreams || got[initialWindowSize] != streamWindow {
		t.Errorf("SETTINGS %v: want MAX_CONCURRENT_STREAMS %d and INITIAL_WINDOW_SIZE %d", got, maxStreams, streamWindow)
	}
}

// TestServiceProxyDuplexStream: a gRPC request over HTTP/2 reaches an
// h2c replica at once, before its body has ended or filled the prefetch,
// so that a full-duplex call whose client waits for each answer before
// its next message makes progress.
func TestServiceProxyDuplexStream(t *testing.T) {
	replica := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		w.WriteHeader(200)
		rc := http.NewResponseController(w)
		_ = rc.EnableFullDuplex()
		br := bufio.NewReader(r.Body)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				break
			}
			fmt.Fprintf(w, "%s %s", r.Proto, line)
			_ = rc.Flush()
		}
		w.Header().Set("Grpc-Status", "0")
	}))
	u, _ := url.Parse(replica)
	tr := h2cTransport()
	defer tr.CloseIdleConnections()
	p := NewServiceProxy(ProxyConfig{Services: oneReplica{
		auth:   map[string]string{"grpc": stratus.AuthNone},
		target: &services.Target{URL: u, Transport: tr},
		h2c:    true,
	}, Domain: "apps.test"})
	gw := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.ServeHost(w, r, "grpc") }))

	pr, pw := io.Pipe()
	defer pw.Close() // before the servers' Close, which waits for their handlers
	req, _ := http.NewRequest("POST", gw+"/pkg.Svc/Call", pr)
	req.Host = "grpc.apps.test"
	req.Header.Set("Content-Type", "application/grpc")
	client := h2cTransport()
	defer client.CloseIdleConnections()
	type result struct {
		resp *http.Response
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := client.RoundTrip(req)
		got <- result{resp, err}
	}()
	if _, err := io.WriteString(pw, "ping 0\n"); err != nil {
		t.Fatal(err)
	}
	var res result
	select {
	case res = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("no answer to a stream's first message within 5s: the proxy waits for more of the body")
	}
	if res.err != nil {
		t.Fatal(res.err)
	}
	defer res.resp.Body.Close()
	br := bufio.NewReader(res.resp.Body)
	for i := range 5 {
		if i > 0 {
			fmt.Fprintf(pw, "ping %d\n", i)
		}
		line, err := br.ReadString('\n')
		if want := fmt.Sprintf("HTTP/2.0 ping %d\n", i); err != nil || line != want {
			t.Fatalf("answer %d: %q %v, want %q", i, line, err, want)
		}
	}
	pw.Close()
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Errorf("after the body's end: %q %v", rest, err)
	}
	if s := res.resp.Trailer.Get("Grpc-Status"); s != "0" {
		t.Errorf("trailer Grpc-Status %q, want 0 (trailer: %v)", s, res.resp.Trailer)
	}
}

// echoLines is an h2c replica that answers each line of a request's body
// as it comes, flushed, prefixed with the body's Content-Length as the
// replica saw it (-1: streamed).
func echoLines(t *testing.T) *services.Target {
	t.Helper()
	replica := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/grpc")
		w.WriteHeader(200)
		rc := http.NewResponseController(w)
		_ = rc.EnableFullDuplex()
		br := bufio.NewReader(r.Body)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			fmt.Fprintf(w, "%d %s", r.ContentLength, line)
			_ = rc.Flush()
		}
	}))
	u, _ := url.Parse(replica)
	tr := h2cTransport()
	t.Cleanup(tr.CloseIdleConnections)
	return &services.Target{URL: u, Transport: tr}
}

// grpcCall starts a gRPC-like call to base with the body pr and returns
// the answer.
func grpcCall(t *testing.T, base string, pr io.Reader) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/pkg.Svc/Call", pr)
	req.Header.Set("Content-Type", "application/grpc")
	client := h2cTransport()
	t.Cleanup(client.CloseIdleConnections)
	resp, err := client.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestServiceProxyGRPCOnlyToH2C: a gRPC request skips the prefetch only
// to a service deployed --h2c; to any other its body is read first, as
// every request's is (a complete one reaches the replica with its
// length), so that a client cannot take the slots of a service that
// never speaks gRPC without sending a body.
func TestServiceProxyGRPCOnlyToH2C(t *testing.T) {
	target := echoLines(t)
	for _, tc := range []struct {
		h2c  bool
		want string
	}{{true, "-1 ping\n"}, {false, "5 ping\n"}} {
		p := NewServiceProxy(ProxyConfig{Services: oneReplica{auth: map[string]string{"grpc": stratus.AuthNone}, target: target, h2c: tc.h2c}})
		gw := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.ServeHost(w, r, "grpc") }))
		pr, pw := io.Pipe() // a body of unknown length
		go func() {
			_, _ = io.WriteString(pw, "ping\n")
			pw.Close()
		}()
		resp := grpcCall(t, gw, pr)
		b, err := io.ReadAll(resp.Body)
		if err != nil || string(b) != tc.want {
			t.Errorf("h2c %v: %q %v, want %q", tc.h2c, b, err, tc.want)
		}
	}
}

// TestServiceProxyStreamOutlivesReadTimeout: a client-streaming call to
// an h2c service whose client pauses longer than the server's read
// timeout between messages goes on, bounded by the service's timeout,
// not the read timeout.
func TestServiceProxyStreamOutlivesReadTimeout(t *testing.T) {
	const readTimeout = 200 * time.Millisecond
	target := echoLines(t)
	target.Timeout = 30 * time.Second
	p := NewServiceProxy(ProxyConfig{Services: oneReplica{auth: map[string]string{"grpc": stratus.AuthNone}, target: target, h2c: true}})
	srv := httptest.NewUnstartedServer(BoundBodies(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.ServeHost(w, r, "grpc") }), readTimeout, NewToken(""), nil))
	srv.Config.Protocols = Protocols()
	srv.Config.HTTP2 = HTTP2Config()
	srv.Config.ReadHeaderTimeout = 5 * time.Second
	srv.Config.ReadTimeout = readTimeout
	srv.Start()
	t.Cleanup(srv.Close)

	pr, pw := io.Pipe()
	defer pw.Close()
	go func() { _, _ = io.WriteString(pw, "ping 0\n") }()
	resp := grpcCall(t, srv.URL, pr)
	br := bufio.NewReader(resp.Body)
	for i := range 3 {
		if i > 0 {
			// The pause the read timeout would not survive.
			time.Sleep(2 * readTimeout)
			if _, err := fmt.Fprintf(pw, "ping %d\n", i); err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
		}
		line, err := br.ReadString('\n')
		if want := fmt.Sprintf("-1 ping %d\n", i); err != nil || line != want {
			t.Fatalf("answer %d: %q %v, want %q", i, line, err, want)
		}
	}
}
