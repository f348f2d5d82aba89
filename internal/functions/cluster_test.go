package functions

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/store"
)

// memBlobs is a blob store in memory; gate, when set, holds every Get
// until it is closed.
type memBlobs struct {
	mu   sync.Mutex
	m    map[string][]byte
	gets atomic.Int32
	gate chan struct{}
}

func newMemBlobs() *memBlobs { return &memBlobs{m: make(map[string][]byte)} }

func (b *memBlobs) Put(ctx context.Context, name string, r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.m[name]; !ok {
		b.m[name] = data
	}
	return nil
}

func (b *memBlobs) Get(ctx context.Context, name string, w io.Writer) error {
	b.gets.Add(1)
	if b.gate != nil {
		<-b.gate
	}
	b.mu.Lock()
	data, ok := b.m[name]
	b.mu.Unlock()
	if !ok {
		return fmt.Errorf("blob %q: %w", name, stratus.ErrNotFound)
	}
	_, err := w.Write(data)
	return err
}

func (b *memBlobs) set(name string, data []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m[name] = data
}

func (b *memBlobs) names() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for n := range b.m {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// twoServers is two Services on one store file, each with its own data
// dir and pools, and one blob store.
type twoServers struct {
	a, b       *Service
	pa, pb     *pools
	dataB      string
	blobs      *memBlobs
	removedB   []string
	removedBMu sync.Mutex
}

func newTwoServers(t *testing.T, tune ...func(a, b *Config)) *twoServers {
	t.Helper()
	e := newEnv(t)
	ts := &twoServers{blobs: newMemBlobs(), pa: &pools{}, pb: &pools{}}
	e.cfg.Blobs, e.cfg.Pools = ts.blobs, ts.pa
	ts.dataB = t.TempDir()
	st, err := store.Open(t.Context(), filepath.Join(e.data, "stratus.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cb := e.cfg
	cb.Store, cb.DataDir, cb.Pools = st, ts.dataB, ts.pb
	cb.Removed = func(name string) {
		ts.removedBMu.Lock()
		ts.removedB = append(ts.removedB, name)
		ts.removedBMu.Unlock()
	}
	for _, f := range tune {
		f(&e.cfg, &cb)
	}
	ts.a = e.open(t)
	if ts.b, err = Open(t.Context(), cb); err != nil {
		t.Fatal(err)
	}
	return ts
}

func invokeOK(t *testing.T, s *Service, name string) *stratus.Response {
	t.Helper()
	resp, err := s.Invoke(t.Context(), name, stratus.Request{RequestID: "r", Event: []byte(`{}`)})
	if err != nil {
		t.Fatalf("invoke %s: %v", name, err)
	}
	return resp
}

// Invoke resolves the name here, then forwards to the Remote that Route
// gives, with the name as the caller wrote it; InvokeLocal runs here.
func TestRouteForwards(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	var routed, forwarded []string
	remote := true
	e.cfg.Route = func(ctx context.Context, fn string) (Remote, error) {
		mu.Lock()
		defer mu.Unlock()
		routed = append(routed, fn)
		if !remote {
			return nil, nil
		}
		return func(ctx context.Context, name string, req stratus.Request) (*stratus.Response, error) {
			mu.Lock()
			forwarded = append(forwarded, name)
			mu.Unlock()
			return &stratus.Response{Body: []byte("remote")}, nil
		}, nil
	}
	s := e.open(t)
	deploy(t, s, "fn", codeZip(t, "one"))
	if _, err := s.Publish(t.Context(), "fn", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutAlias(t.Context(), stratus.Alias{Function: "fn", Name: "live", Version: "1"}, true, ""); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"fn", "fn:live", "fn:1"} {
		if resp := invokeOK(t, s, name); string(resp.Body) != "remote" {
			t.Errorf("invoke %s answered %q, want the remote's answer", name, resp.Body)
		}
	}
	// Unknown names fail here, without asking where they run.
	for _, name := range []string{"nope", "fn:nope", "fn:7"} {
		if _, err := s.Invoke(t.Context(), name, stratus.Request{}); !errors.Is(err, stratus.ErrNotFound) {
			t.Errorf("invoke %s: %v, want ErrNotFound", name, err)
		}
	}
	resp, err := s.InvokeLocal(t.Context(), "fn:live", stratus.Request{RequestID: "l"})
	if err != nil || resp.Record.Function != "fn" || resp.Record.Qualifier != "1" {
		t.Errorf("InvokeLocal: %+v, %v; want a local run of version 1", resp, err)
	}
	mu.Lock()
	remote = false
	mu.Unlock()
	if resp := invokeOK(t, s, "fn"); resp.Record.Function != "fn" {
		t.Errorf("invoke with a nil Remote: %+v, want a local run", resp)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"fn", "fn", "fn", "fn"}; !slices.Equal(routed, want) {
		t.Errorf("Route called with %q, want %q", routed, want)
	}
	if want := []string{"fn", "fn:live", "fn:1"}; !slices.Equal(forwarded, want) {
		t.Errorf("Remote called with %q, want %q", forwarded, want)
	}
}

// A second server learns of a function deployed on the first through
// Reload: it fetches the code once from the blob store, extracts it and
// invokes; a Reload that finds nothing new changes nothing; published
// versions, aliases and the removal follow.
func TestReloadFollowsAnotherServer(t *testing.T) {
	ts := newTwoServers(t)
	ctx := t.Context()
	code := codeZip(t, "one")
	f := deploy(t, ts.a, "fn", code)
	if got, want := ts.blobs.names(), []string{"code/" + f.CodeSHA}; !slices.Equal(got, want) {
		t.Fatalf("blobs after the deploy: %v, want %v", got, want)
	}
	if _, ok := ts.b.Head("fn"); ok {
		t.Fatal("b knows fn before a reload")
	}
	if _, err := ts.b.Invoke(ctx, "fn", stratus.Request{}); !errors.Is(err, stratus.ErrNotFound) {
		t.Fatalf("invoke on b before a reload: %v, want ErrNotFound", err)
	}
	if err := ts.b.Reload(ctx, "fn"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(ts.b.CodeDir(f.CodeSHA), "bootstrap")); err != nil {
		t.Fatalf("b has no code: %v", err)
	}
	if resp := invokeOK(t, ts.b, "fn"); resp.Record.Version != 1 {
		t.Errorf("b ran %+v, want version 1", resp.Record)
	}
	// Nothing new: nothing fetched, nothing handed to the pools.
	deployedB, _ := ts.pb.calls()
	if err := ts.b.Reload(ctx, "fn"); err != nil {
		t.Fatal(err)
	}
	if err := ts.b.ReloadAll(ctx); err != nil {
		t.Fatal(err)
	}
	if again, _ := ts.pb.calls(); !slices.Equal(again, deployedB) {
		t.Errorf("b's pools after reloads of nothing new: %v, want %v", again, deployedB)
	}
	if n := ts.blobs.gets.Load(); n != 1 {
		t.Errorf("%d gets of the blob, want 1", n)
	}
	// A reload on the server that deployed changes nothing either.
	deployedA, removedA := ts.pa.calls()
	if err := ts.a.Reload(ctx, "fn"); err != nil {
		t.Fatal(err)
	}
	if err := ts.a.ReloadAll(ctx); err != nil {
		t.Fatal(err)
	}
	if d, r := ts.pa.calls(); !slices.Equal(d, deployedA) || !slices.Equal(r, removedA) {
		t.Errorf("a's pools after its own reload: %v %v, want %v %v", d, r, deployedA, removedA)
	}

	// A new head, a published version and an alias.
	code2 := codeZip(t, "two")
	f2 := deploy(t, ts.a, "fn", code2)
	if _, err := ts.a.Publish(ctx, "fn", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.a.PutAlias(ctx, stratus.Alias{Function: "fn", Name: "live", Version: "1"}, true, ""); err != nil {
		t.Fatal(err)
	}
	if err := ts.b.ReloadAll(ctx); err != nil {
		t.Fatal(err)
	}
	if resp := invokeOK(t, ts.b, "fn:live"); resp.Record.Version != 2 || resp.Record.Qualifier != "1" {
		t.Errorf("b ran %+v for fn:live, want snapshot 2 as version 1", resp.Record)
	}
	if _, err := os.Stat(ts.b.CodeDir(f2.CodeSHA)); err != nil {
		t.Errorf("b has no code of the new head: %v", err)
	}
	// The alias and the version deleted on a: b's pool of version 1 goes.
	if err := ts.a.DeleteAlias(ctx, "fn", "live"); err != nil {
		t.Fatal(err)
	}
	if err := ts.a.DeleteVersion(ctx, "fn", 1); err != nil {
		t.Fatal(err)
	}
	if err := ts.b.Reload(ctx, "fn"); err != nil {
		t.Fatal(err)
	}
	if _, removed := ts.pb.calls(); !slices.Contains(removed, "fn:1") {
		t.Errorf("b's pools removed %v, want fn:1 among them", removed)
	}
	if _, err := ts.b.Invoke(ctx, "fn:live", stratus.Request{}); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("invoke of a deleted alias on b: %v, want ErrNotFound", err)
	}

	// Removed on a: b forgets it, its pools and its code.
	if err := ts.a.Remove(ctx, "fn"); err != nil {
		t.Fatal(err)
	}
	if err := ts.b.Reload(ctx, "fn"); err != nil {
		t.Fatal(err)
	}
	if _, ok := ts.b.Head("fn"); ok {
		t.Error("b still knows fn after its removal")
	}
	if _, removed := ts.pb.calls(); !slices.Contains(removed, "fn") {
		t.Errorf("b's pools removed %v, want fn among them", removed)
	}
	ts.removedBMu.Lock()
	if !slices.Equal(ts.removedB, []string{"fn"}) {
		t.Errorf("b's Removed called with %v, want [fn]", ts.removedB)
	}
	ts.removedBMu.Unlock()
	if ents, _ := os.ReadDir(filepath.Join(ts.dataB, "code")); len(ents) != 0 {
		t.Errorf("b's code after the removal: %v", ents)
	}
	// ReloadAll forgets what memory has and the store lost.
	deploy(t, ts.b, "other", code)
	if err := ts.a.ReloadAll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ts.b.Remove(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	if err := ts.a.ReloadAll(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := ts.a.Head("other"); ok {
		t.Error("a still knows other after ReloadAll")
	}
}

// A blob whose SHA-256 is not its name is refused: no code is kept, and
// the function's invocations fail naming the code until a good blob
// comes; a missing blob likewise.
func TestReloadRefusesTamperedCode(t *testing.T) {
	ts := newTwoServers(t)
	ctx := t.Context()
	code := codeZip(t, "one")
	f := deploy(t, ts.a, "fn", code)
	ts.blobs.set("code/"+f.CodeSHA, codeZip(t, "evil"))
	err := ts.b.Reload(ctx, "fn")
	if !errors.Is(err, stratus.ErrInvalid) || !strings.Contains(err.Error(), "SHA-256") || !strings.Contains(err.Error(), f.CodeSHA) {
		t.Fatalf("reload with a tampered blob: %v, want ErrInvalid naming the digest", err)
	}
	if _, err := os.Stat(ts.b.CodeDir(f.CodeSHA)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("tampered code kept: %v", err)
	}
	for _, d := range []string{"code", "tmp"} {
		if ents, _ := os.ReadDir(filepath.Join(ts.dataB, d)); len(ents) != 0 {
			t.Errorf("b's %s after the refusal: %v", d, ents)
		}
	}
	_, err = ts.b.Invoke(ctx, "fn", stratus.Request{})
	if !errors.Is(err, stratus.ErrUnavailable) || !strings.Contains(err.Error(), f.CodeSHA) {
		t.Errorf("invoke without code: %v, want ErrUnavailable naming %s", err, f.CodeSHA)
	}

	// A missing blob.
	ts.blobs.mu.Lock()
	delete(ts.blobs.m, "code/"+f.CodeSHA)
	ts.blobs.mu.Unlock()
	if err := ts.b.Reload(ctx, "fn"); !errors.Is(err, stratus.ErrNotFound) || !strings.Contains(err.Error(), f.CodeSHA) {
		t.Errorf("reload with a missing blob: %v, want ErrNotFound naming the digest", err)
	}
	// The good blob back: the next reload gets it and the function runs.
	ts.blobs.set("code/"+f.CodeSHA, code)
	if err := ts.b.Reload(ctx, "fn"); err != nil {
		t.Fatal(err)
	}
	invokeOK(t, ts.b, "fn")
}

// Concurrent misses of one code fetch it once.
func TestCodeFetchedOnce(t *testing.T) {
	ts := newTwoServers(t)
	f := deploy(t, ts.a, "fn", codeZip(t, "one"))
	ts.blobs.gate = make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() { errs <- ts.b.ensureCode(t.Context(), f.CodeSHA) })
	}
	close(ts.blobs.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := ts.blobs.gets.Load(); n != 1 {
		t.Errorf("%d gets for 8 concurrent misses, want 1", n)
	}
	if _, err := os.Stat(filepath.Join(ts.b.CodeDir(f.CodeSHA), "bootstrap")); err != nil {
		t.Error(err)
	}
}

// A deploy whose code cannot reach the blob store fails and changes
// nothing.
func TestDeployNeedsBlobs(t *testing.T) {
	e := newEnv(t)
	e.cfg.Blobs = failingBlobs{}
	s := e.open(t)
	_, _, err := s.Deploy(t.Context(), "fn", stratus.FunctionConfig{Runtime: stratus.RuntimeProvided}, bytes.NewReader(codeZip(t, "x")))
	if !errors.Is(err, stratus.ErrUnavailable) {
		t.Fatalf("deploy without blob store: %v, want ErrUnavailable", err)
	}
	if _, err := s.Get(t.Context(), "fn"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("the function exists: %v", err)
	}
	if code, tmp := e.codeOnDisk(t); len(code) != 0 || len(tmp) != 0 {
		t.Errorf("left on disk: code %v, tmp %v", code, tmp)
	}
}

type failingBlobs struct{}

func (failingBlobs) Put(context.Context, string, io.Reader) error {
	return fmt.Errorf("blob store: %w", stratus.ErrUnavailable)
}

func (failingBlobs) Get(context.Context, string, io.Writer) error {
	return fmt.Errorf("blob store: %w", stratus.ErrUnavailable)
}

// staticPools answers every invocation with one Response, allocating
// nothing.
type staticPools struct {
	pools
	resp stratus.Response
}

func (p *staticPools) InvokeAs(context.Context, string, string, stratus.Request) (*stratus.Response, error) {
	return &p.resp, nil
}

// Invoking a function that runs here allocates nothing in the Service,
// with no Route and with a Route that says "here", nor does an
// invocation forwarded here (InvokeLocal) of a function known here.
func TestInvokeHereAllocatesNothing(t *testing.T) {
	for _, route := range []func(context.Context, string) (Remote, error){
		nil,
		func(context.Context, string) (Remote, error) { return nil, nil },
	} {
		e := newEnv(t)
		e.cfg.Pools = &staticPools{}
		e.cfg.Route = route
		s := e.open(t)
		deploy(t, s, "fn", codeZip(t, "one"))
		ctx := t.Context()
		req := stratus.Request{RequestID: "r"}
		if n := testing.AllocsPerRun(100, func() {
			if _, err := s.Invoke(ctx, "fn", req); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("Invoke (route set: %v) allocates %.1f times, want 0", route != nil, n)
		}
		if n := testing.AllocsPerRun(100, func() {
			if _, err := s.InvokeLocal(ctx, "fn", req); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("InvokeLocal (route set: %v) allocates %.1f times, want 0", route != nil, n)
		}
	}
}

// Code that instances on this server may still run stays, even when
// another server pruned every version that names it, until those
// instances' window has passed.
func TestCodeStaysForBusyInstances(t *testing.T) {
	now := time.Unix(1e9, 0)
	var busy atomic.Bool
	ts := newTwoServers(t, func(a, b *Config) {
		a.KeepVersions = 1
		b.Now = func() time.Time { return now }
		b.InstanceGrace = 10 * time.Second
		b.HasInstances = func(fn string, _ int) bool { return busy.Load() }
	})
	ctx := t.Context()
	f1 := deploy(t, ts.a, "fn", codeZip(t, "one"))
	if err := ts.b.Reload(ctx, "fn"); err != nil {
		t.Fatal(err)
	}
	busy.Store(true) // b, the owner, runs an invocation of version 1
	f2 := deploy(t, ts.a, "fn", codeZip(t, "two"))
	if vs, err := ts.a.Versions(ctx, "fn"); err != nil || len(vs) != 1 {
		t.Fatalf("a kept %v (%v), want the head alone", vs, err)
	}
	if err := ts.b.Reload(ctx, "fn"); err != nil {
		t.Fatal(err)
	}
	for _, sha := range []string{f1.CodeSHA, f2.CodeSHA} {
		if _, err := os.Stat(ts.b.CodeDir(sha)); err != nil {
			t.Errorf("b's code %s: %v", sha, err)
		}
	}
	// Its timeout (3 s) and the grace later, the next collection frees it.
	busy.Store(false)
	now = now.Add(14 * time.Second)
	deploy(t, ts.a, "fn", codeZip(t, "three"))
	if err := ts.b.Reload(ctx, "fn"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ts.b.CodeDir(f1.CodeSHA)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("b's code of the pruned version once its window passed: %v", err)
	}
}
