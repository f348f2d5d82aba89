package functions

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
)

// An invocation forwarded to this server (InvokeLocal) of a function,
// version or alias another server has just made, which this one has not
// heard of yet, reloads the function from the store and runs; a name the
// store does not have either still fails as not found.
func TestInvokeLocalReadsWhatItMisses(t *testing.T) {
	ts := newTwoServers(t)
	ctx := t.Context()
	deploy(t, ts.a, "fn", codeZip(t, "one"))
	local := func(name string) (*stratus.Response, error) {
		return ts.b.InvokeLocal(ctx, name, stratus.Request{RequestID: "r", Event: []byte(`{}`)})
	}
	resp, err := local("fn")
	if err != nil || resp.Record.Function != "fn" || resp.Record.Version != 1 {
		t.Fatalf("InvokeLocal of a function b has not heard of: %+v, %v; want a run of version 1", resp, err)
	}
	if _, err := ts.a.Publish(ctx, "fn", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.a.PutAlias(ctx, stratus.Alias{Function: "fn", Name: "live", Version: "1"}, true, ""); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"fn:1", "fn:live"} {
		resp, err := local(name)
		if err != nil || resp.Record.Qualifier != "1" {
			t.Errorf("InvokeLocal of %s, new on a: %+v, %v; want a run of version 1", name, resp, err)
		}
	}
	for _, name := range []string{"nope", "fn:7", "fn:gone"} {
		if _, err := local(name); !errors.Is(err, stratus.ErrNotFound) {
			t.Errorf("InvokeLocal of %s: %v, want ErrNotFound", name, err)
		}
	}
	if _, err := local("fn:"); !errors.Is(err, stratus.ErrInvalid) {
		t.Errorf("InvokeLocal of a malformed name: %v, want ErrInvalid", err)
	}
}

// A code fetch shared by several callers goes on when the caller that
// started it gives up: the others get the code, and meanwhile the
// version's invocations fail as unavailable, not for good.
func TestCodeFetchOutlivesItsCaller(t *testing.T) {
	ts := newTwoServers(t)
	f := deploy(t, ts.a, "fn", codeZip(t, "one"))
	ts.blobs.gate = make(chan struct{})
	first, quit := context.WithCancel(t.Context())
	reloaded := make(chan error, 1)
	go func() { reloaded <- ts.b.Reload(first, "fn") }()
	eventually.True(t, 10*time.Second, "the reload fetches the code", func() bool { return ts.blobs.gets.Load() == 1 })
	second := make(chan error, 1)
	go func() { second <- ts.b.ensureCode(t.Context(), f.CodeSHA) }()
	quit()
	select {
	case err := <-reloaded:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("the reload that gave up: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		close(ts.blobs.gate)
		t.Fatal("the reload did not stop waiting once its ctx ended")
	}
	_, err := ts.b.Invoke(t.Context(), "fn", stratus.Request{})
	if !errors.Is(err, stratus.ErrUnavailable) || !strings.Contains(err.Error(), "in progress") {
		t.Errorf("invoke while the fetch goes on: %v, want ErrUnavailable saying it is in progress", err)
	}
	close(ts.blobs.gate)
	if err := <-second; err != nil {
		t.Fatalf("the caller that waited: %v", err)
	}
	invokeOK(t, ts.b, "fn")
	if n := ts.blobs.gets.Load(); n != 1 {
		t.Errorf("%d gets of the blob, want 1", n)
	}
}
