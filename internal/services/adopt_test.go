package services

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// gatedImages is fakeImages whose Resolve waits for open (or its ctx to
// end) and counts its calls.
type gatedImages struct {
	open  chan struct{}
	calls atomic.Int32
}

func (g *gatedImages) Resolve(ctx context.Context, ref string) (*Image, error) {
	g.calls.Add(1)
	select {
	case <-g.open:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return fakeImages{}.Resolve(ctx, ref)
}

// A request for a service known as remote, on the server that has just
// come to own it (before any tick or Reload saw it), is served there:
// the request starts the service and waits for it; a request that gives
// up meanwhile leaves the start to the others, which share it.
func TestRequestStartsServiceComeToBeOwned(t *testing.T) {
	t.Parallel()
	st := newFakeStore()
	own := &owners{of: map[string]string{"web": "a"}}
	a := startHarness(t, sandbox.Capabilities{}, func(c *Config) {
		c.Store, c.Owns, c.Owner = st, own.owns("a"), own.owner
	})
	images := &gatedImages{open: make(chan struct{})}
	b := startHarness(t, sandbox.Capabilities{}, func(c *Config) {
		c.Store, c.Owns, c.Owner, c.Images = st, own.owns("b"), own.owner, images
		c.Tick = time.Hour // no tick follows the owners: only the requests do
		c.ReadyTimeout = waitFor
	})
	ctx := t.Context()
	a.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 1, MaxScale: 2})
	if err := b.m.Reload(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.m.Acquire(ctx, "web"); !errors.Is(err, stratus.ErrUnavailable) {
		t.Fatalf("acquire on b before it owns web: %v, want ErrUnavailable", err)
	}
	if n := images.calls.Load(); n != 0 {
		t.Fatalf("b resolved images %d times for a service it does not own", n)
	}

	own.set("web", "b")
	quitter, quit := context.WithCancel(ctx)
	first := b.acquireAsync(quitter, "web")
	eventually.True(t, waitFor, "the request starts web on b", func() bool { return images.calls.Load() == 1 })
	second := b.acquireAsync(ctx, "web")
	quit()
	if got := receive(t, first); !errors.Is(got.err, context.Canceled) {
		t.Fatalf("the request that gave up: %v, want context.Canceled", got.err)
	}
	close(images.open)
	got := receive(t, second)
	if got.err != nil {
		t.Fatalf("the request that waited: %v", got.err)
	}
	body, err := fetch(got.tg, "/")
	got.release()
	if err != nil {
		t.Fatal(err)
	}
	if rev, _, _ := strings.Cut(body, " "); rev != "web-00001" {
		t.Errorf("answered from %s, want web-00001", rev)
	}
	if st := b.status("web"); st.State == StateRemote || st.Node != "b" {
		t.Errorf("b's status once it serves web: %+v", st)
	}
	if rev, _ := b.hello("web"); rev != "web-00001" {
		t.Errorf("b answered from %s, want web-00001", rev)
	}
	if n := images.calls.Load(); n != 1 {
		t.Errorf("b resolved the image %d times, want once", n)
	}
	eventually.True(t, waitFor, "a stops its replicas", func() bool { return len(a.d.live()) == 0 })
}

// Run's end cuts short the start of a service that a request began, and
// the request fails as unavailable.
func TestAdoptionEndsWithRun(t *testing.T) {
	t.Parallel()
	st := newFakeStore()
	own := &owners{of: map[string]string{"web": "a"}}
	a := startHarness(t, sandbox.Capabilities{}, func(c *Config) {
		c.Store, c.Owns, c.Owner = st, own.owns("a"), own.owner
	})
	images := &gatedImages{open: make(chan struct{})}
	b := startHarness(t, sandbox.Capabilities{}, func(c *Config) {
		c.Store, c.Owns, c.Owner, c.Images = st, own.owns("b"), own.owner, images
		c.Tick = time.Hour
		c.ReadyTimeout = waitFor
	})
	a.deploy("web", stratus.ServiceConfig{Image: "app", MinScale: 1, MaxScale: 2})
	if err := b.m.Reload(t.Context(), "web"); err != nil {
		t.Fatal(err)
	}
	own.set("web", "b")
	waiting := b.acquireAsync(t.Context(), "web")
	eventually.True(t, waitFor, "the request starts web on b", func() bool { return images.calls.Load() == 1 })
	b.stop() // the start's Resolve never returns by itself
	if got := receive(t, waiting); !errors.Is(got.err, stratus.ErrUnavailable) {
		t.Errorf("a request waiting for the start when Run ends: %v, want ErrUnavailable", got.err)
	}
}
