package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stratus-run/stratus/client"
)

// TestQualifiedNamesAreEscaped: a qualified name goes in one path
// segment with its ':' as %3A, and the server's mux reads it back whole.
func TestQualifiedNamesAreEscaped(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []string
	)
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/functions/{name}/{op...}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.EscapedPath()+" "+r.PathValue("name"))
		mu.Unlock()
		w.Header().Set("X-Amz-Executed-Version", "3")
		switch r.Method {
		case http.MethodPost:
			if r.Header.Get("X-Invocation-Type") == "Event" {
				w.WriteHeader(http.StatusAccepted)
				_, _ = w.Write([]byte(`{"requestId":"req-1"}`))
				return
			}
			_, _ = w.Write([]byte(`{}`))
		case http.MethodGet:
			_, _ = w.Write([]byte(`{"function":"fn","name":"a:b"}`))
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c := client.New(srv.URL, "tok")
	ctx := context.Background()
	res, err := c.Invoke(ctx, "fn:live", []byte(`{}`))
	if err != nil || res.Version != "3" {
		t.Fatalf("Invoke: %+v, %v", res, err)
	}
	if _, err := c.InvokeAsync(ctx, "fn:2", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Alias(ctx, "fn", "a/b"); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"POST /v1/functions/fn%3Alive/invoke fn:live",
		"POST /v1/functions/fn%3A2/invoke fn:2",
		"GET /v1/functions/fn/aliases/a%2Fb fn",
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != len(want) {
		t.Fatalf("server saw %q, want %q", seen, want)
	}
	for i := range want {
		if seen[i] != want[i] {
			t.Errorf("request %d: %q, want %q", i, seen[i], want[i])
		}
	}
}
