package runtimeapi_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/runtimeapi"
)

// rawRuntime is a runtime's connection spoken to byte by byte.
type rawRuntime struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, srv *runtimeapi.Server) *rawRuntime {
	t.Helper()
	c, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawRuntime{t: t, c: c, br: bufio.NewReader(c)}
}

// send writes each part with its own write, as a runtime's HTTP client
// may (aws-lambda-go sends a response's header, its chunk and its end in
// three).
func (r *rawRuntime) send(parts ...string) {
	r.t.Helper()
	for _, p := range parts {
		if _, err := io.WriteString(r.c, p); err != nil {
			r.t.Fatal(err)
		}
	}
}

func (r *rawRuntime) answer(method string) (*http.Response, string) {
	r.t.Helper()
	resp, err := http.ReadResponse(r.br, &http.Request{Method: method})
	if err != nil {
		r.t.Fatalf("read answer: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatalf("read answer body: %v", err)
	}
	return resp, string(b)
}

const nextReq = "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: rapi\r\nUser-Agent: aws-lambda-go\r\n\r\n"

// TestOneConnectionSizedAnswers: a runtime that keeps its connection (as
// aws-lambda-go does) runs every invocation on it, checked once; answers
// carry Content-Length, never chunks; a response sent in chunks over
// several writes, with trailers, is read whole.
func TestOneConnectionSizedAnswers(t *testing.T) {
	srv, err := runtimeapi.New(runtimeapi.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var checks atomic.Int32
	srv.SetOwner(func(context.Context, netip.AddrPort, netip.AddrPort) bool { checks.Add(1); return true })
	rt := dialRaw(t, srv)
	for i, id := range []string{"a1", "a2", "a3", "a4", "a5"} {
		rt.send(nextReq)
		if i%2 == 0 { // the next call waits first; else either may come first
			eventually.True(t, 5*time.Second, "the next call to wait", func() bool { return runtimeapi.WaitingNext(srv) == 1 })
		}
		ch, err := srv.Invoke(context.Background(), inv(id, `{"i":`+id[1:]+`}`))
		if err != nil {
			t.Fatal(err)
		}
		resp, body := rt.answer("GET")
		if resp.StatusCode != 200 || body != `{"i":`+id[1:]+`}` || resp.Header.Get("Lambda-Runtime-Aws-Request-Id") != id {
			t.Fatalf("next: %d %q %v", resp.StatusCode, body, resp.Header)
		}
		if resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) != 0 || resp.Close {
			t.Errorf("next answer: length %d, transfer encoding %v, close %v; want a sized answer on a kept connection", resp.ContentLength, resp.TransferEncoding, resp.Close)
		}
		rt.send("POST /2018-06-01/runtime/invocation/"+id+"/response HTTP/1.1\r\nHost: rapi\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\nTrailer: Lambda-Runtime-Function-Error-Body,Lambda-Runtime-Function-Error-Type\r\n\r\n",
			"b\r\n{\"ok\":true}\r\n", "0\r\n\r\n")
		resp, body = rt.answer("POST")
		if resp.StatusCode != 202 || body != `{"status":"OK"}` || resp.ContentLength != int64(len(body)) || resp.Close {
			t.Fatalf("response: %d %q length %d close %v", resp.StatusCode, body, resp.ContentLength, resp.Close)
		}
		if r := <-ch; r.ErrorType != "" || string(r.Body) != `{"ok":true}` {
			t.Fatalf("result %q %s", r.ErrorType, r.Body)
		}
	}
	if n := checks.Load(); n != 1 {
		t.Errorf("owner checked %d times, want once for the one connection", n)
	}
}

// TestPipelinedAfterNext: a request sent behind a waiting next call is
// answered after it, in order.
func TestPipelinedAfterNext(t *testing.T) {
	srv, err := runtimeapi.New(runtimeapi.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.SetOwner(anyone)
	rt := dialRaw(t, srv)
	rt.send(nextReq + "GET /nowhere HTTP/1.1\r\nHost: rapi\r\n\r\n")
	eventually.True(t, 5*time.Second, "the next call to wait", func() bool { return runtimeapi.WaitingNext(srv) == 1 })
	if _, err := srv.Invoke(context.Background(), inv("p1", `"e"`)); err != nil {
		t.Fatal(err)
	}
	if resp, body := rt.answer("GET"); resp.StatusCode != 200 || body != `"e"` {
		t.Fatalf("first answer %d %q, want the next call's", resp.StatusCode, body)
	}
	if resp, _ := rt.answer("GET"); resp.StatusCode != 404 {
		t.Fatalf("second answer %d, want 404", resp.StatusCode)
	}
}

// TestRequestForms: Expect: 100-continue, HTTP/1.0, Connection: close,
// an oversize header, a HEAD.
func TestRequestForms(t *testing.T) {
	h := newHarness(t)
	t.Run("expect continue", func(t *testing.T) {
		h.offer(inv("e1", `{}`))
		rt := dialRaw(t, h.srv)
		rt.send(nextReq)
		rt.answer("GET")
		rt.send("POST /2018-06-01/runtime/invocation/e1/response HTTP/1.1\r\nHost: rapi\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
		line, err := rt.br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
			t.Fatalf("first line %q, %v; want 100 Continue", line, err)
		}
		if blank, _ := rt.br.ReadString('\n'); blank != "\r\n" {
			t.Fatalf("after 100 Continue: %q", blank)
		}
		rt.send(`"ok"`)
		if resp, _ := rt.answer("POST"); resp.StatusCode != 202 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if r := h.result("e1"); string(r.Body) != `"ok"` {
			t.Fatalf("result %s", r.Body)
		}
	})
	for _, tc := range []struct{ name, req string }{
		{"HTTP/1.0", "GET /nowhere HTTP/1.0\r\n\r\n"},
		{"close", "GET /nowhere HTTP/1.1\r\nHost: rapi\r\nConnection: close\r\n\r\n"},
		{"HEAD", "HEAD /nowhere HTTP/1.1\r\nHost: rapi\r\nConnection: close\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := dialRaw(t, h.srv)
			rt.send(tc.req)
			method, _, _ := strings.Cut(tc.req, " ")
			resp, body := rt.answer(method)
			if resp.StatusCode != 404 || !resp.Close {
				t.Errorf("status %d close %v, want 404 and Connection: close", resp.StatusCode, resp.Close)
			}
			if method == "HEAD" && body != "" {
				t.Errorf("HEAD answered with a body %q", body)
			}
			if _, err := rt.br.ReadByte(); err != io.EOF {
				t.Errorf("after the answer: %v, want the connection closed", err)
			}
		})
	}
	t.Run("header too large", func(t *testing.T) {
		rt := dialRaw(t, h.srv)
		sent := make(chan struct{})
		go func() {
			defer close(sent)
			// The server stops reading past its bound: the write may fail.
			_, _ = io.WriteString(rt.c, "GET /nowhere HTTP/1.1\r\nX-Big: "+strings.Repeat("x", 2<<20)+"\r\n\r\n")
		}()
		defer func() { rt.c.Close(); <-sent }()
		if resp, _ := rt.answer("GET"); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("status %d, want 431", resp.StatusCode)
		}
	})
}
