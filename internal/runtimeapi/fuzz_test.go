package runtimeapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/runtimeapi"
)

// FuzzRuntimeAPI sends a runtime's request sequence to a server that
// always has an invocation to hand out. Each line of the input is
// "METHOD PATH BODY"; "{id}" in a path is the request ID of the
// invocations. Whatever comes, the server must not panic and must keep
// answering: an unknown path still gets 404, and a next call followed by
// a response still completes an invocation.
func FuzzRuntimeAPI(f *testing.F) {
	seeds := []string{
		"GET /2018-06-01/runtime/invocation/next\nPOST /2018-06-01/runtime/invocation/{id}/response {\"ok\":true}",
		"GET /2018-06-01/runtime/invocation/next\nPOST /2018-06-01/runtime/invocation/{id}/error {\"errorMessage\":\"x\",\"errorType\":\"E\"}",
		"GET /2018-06-01/runtime/invocation/next\nPOST /2018-06-01/runtime/invocation/{id}/error not json",
		"POST /2018-06-01/runtime/invocation/{id}/response early",
		"POST /2018-06-01/runtime/init/error {\"errorMessage\":\"init\",\"errorType\":\"Init\"}\nGET /2018-06-01/runtime/invocation/next",
		"GET /2018-06-01/runtime/invocation/next\nPOST /2018-06-01/runtime/init/error late",
		"GET /2018-06-01/runtime/invocation/next\nGET /2018-06-01/runtime/invocation/next\nPOST /2018-06-01/runtime/invocation/{id}/response {}",
		"GET /2018-06-01/runtime/invocation/next\nPOST /2018-06-01/runtime/invocation/other/response {}\nPOST /2018-06-01/runtime/invocation/{id}/response {}\nPOST /2018-06-01/runtime/invocation/{id}/response {}",
		"DELETE /2018-06-01/runtime/invocation/next\nPUT /2018-06-01/runtime/invocation/{id}/response x\nGET /2018-06-01/runtime/init/error",
		"GET /\nGET /2018-06-01\nGET /2018-06-01/runtime/invocation/%2e%2e/next\nGET //2018-06-01/runtime/invocation/next",
		"POST /2018-06-01/runtime/invocation/{id}/../next {}\nPOST /2018-06-01/runtime/invocation//response {}",
		"GET /2018-06-01/runtime/invocation/next\nPOST /2018-06-01/runtime/invocation/{id}/error {\"errorType\":null,\"errorMessage\":7}",
		"GET /2018-06-01/runtime/invocation/next\nPOST /2018-06-01/runtime/invocation/{id}/error {\"errorType\":\"\",\"errorMessage\":\"\"}",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, script string) {
		srv, err := runtimeapi.New(runtimeapi.Config{})
		if err != nil {
			t.Fatal(err)
		}
		srv.SetOwner(anyone)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		defer func() {
			cancel()
			_ = srv.Close()
			wg.Wait()
		}()
		// The platform side: an invocation is always on offer.
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, err := srv.Invoke(ctx, &runtimeapi.Invocation{
					RequestID: "fuzz-req", Event: []byte(`{}`), Deadline: time.Now().Add(time.Minute),
				}); err != nil {
					return
				}
			}
		}()
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		base := "http://" + srv.Addr()

		lines := strings.Split(script, "\n")
		if len(lines) > 16 {
			lines = lines[:16]
		}
		for _, line := range lines {
			method, rest, _ := strings.Cut(line, " ")
			path, body, _ := strings.Cut(rest, " ")
			path = strings.ReplaceAll(path, "{id}", "fuzz-req")
			if !strings.HasPrefix(path, "/") {
				path = "/" + path
			}
			req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
			if err != nil {
				continue // not a request a client can send
			}
			resp, err := client.Do(req)
			if err != nil {
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode >= 400 && resp.StatusCode != 405 && method != "HEAD" {
				var e runtimeapi.ErrorObject
				if json.Unmarshal(b, &e) != nil || e.ErrorType == "" {
					t.Errorf("%s %s: status %d with body %q, want a Lambda error object", method, path, resp.StatusCode, b)
				}
			}
		}

		// The server still answers, and still runs invocations.
		get := func(method, path, body string) (int, http.Header) {
			t.Helper()
			req, _ := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("after the sequence, %s %s: %v", method, path, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp.StatusCode, resp.Header
		}
		if code, _ := get("GET", "/2018-06-01/runtime/no-such-path", ""); code != 404 {
			t.Fatalf("after the sequence, an unknown path got %d, want 404", code)
		}
		code, h := get("GET", "/2018-06-01/runtime/invocation/next", "")
		if code != 200 || h.Get("Lambda-Runtime-Aws-Request-Id") != "fuzz-req" {
			t.Fatalf("after the sequence, next got %d (request ID %q)", code, h.Get("Lambda-Runtime-Aws-Request-Id"))
		}
		if code, _ := get("POST", "/2018-06-01/runtime/invocation/fuzz-req/response", `"ok"`); code != 202 {
			t.Fatalf("after the sequence, a response got %d, want 202", code)
		}
	})
}
