package lambdaapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/stratus-run/stratus"
)

// fakeFunctions is an in-memory Functions: deploys keep the code's
// digest, invocations answer what invoke returns.
type fakeFunctions struct {
	mu        sync.Mutex
	now       time.Time
	fns       map[string]*stratus.Function
	published map[string][]stratus.Version
	aliases   map[string]map[string]*stratus.Alias
	rev       int
	// invoke answers invocations; nil echoes the event.
	invoke func(ref stratus.FunctionRef, v *stratus.Version, req stratus.Request) (*stratus.Response, error)
	calls  []string // names invoked
}

var _ Functions = (*fakeFunctions)(nil)

func newFake() *fakeFunctions {
	return &fakeFunctions{
		now: time.Date(2026, 3, 4, 5, 6, 7, 891_000_000, time.UTC),
		fns: map[string]*stratus.Function{}, published: map[string][]stratus.Version{},
		aliases: map[string]map[string]*stratus.Alias{},
	}
}

func (f *fakeFunctions) Deploy(_ context.Context, name string, cfg stratus.FunctionConfig, code io.Reader) (*stratus.Function, bool, error) {
	cfg.Defaults()
	if err := cfg.Validate(stratus.Limits{MaxConcurrency: 100}); err != nil {
		return nil, false, err
	}
	sha := "sha256:" + hex.EncodeToString(make([]byte, 32))
	size := int64(0)
	if code != nil {
		b, _ := io.ReadAll(code)
		if len(b) > 1000 {
			return nil, false, fmt.Errorf("code archive too big: %w", stratus.ErrTooLarge)
		}
		s := sha256.Sum256(b)
		sha, size = hex.EncodeToString(s[:]), int64(len(b))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(time.Second)
	old, ok := f.fns[name]
	n := &stratus.Function{Name: name, Version: 1, Config: cfg, CodeSHA: sha, CodeSize: size, CreatedAt: f.now, UpdatedAt: f.now}
	if ok {
		n.Version, n.CreatedAt, n.Published = old.Version+1, old.CreatedAt, old.Published
	}
	f.fns[name] = n
	c := *n
	return &c, !ok, nil
}

func (f *fakeFunctions) Get(_ context.Context, name string) (*stratus.Function, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn, ok := f.fns[name]
	if !ok {
		return nil, fmt.Errorf("function %q: %w", name, stratus.ErrNotFound)
	}
	c := *fn
	return &c, nil
}

func (f *fakeFunctions) List(context.Context) ([]stratus.Function, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []stratus.Function
	for _, k := range slices.Sorted(maps.Keys(f.fns)) {
		out = append(out, *f.fns[k])
	}
	return out, nil
}

func (f *fakeFunctions) Remove(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.fns[name]; !ok {
		return fmt.Errorf("function %q: %w", name, stratus.ErrNotFound)
	}
	delete(f.fns, name)
	delete(f.published, name)
	delete(f.aliases, name)
	return nil
}

func (f *fakeFunctions) Head(name string) (*stratus.Version, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn, ok := f.fns[name]
	if !ok {
		return nil, false
	}
	return headVersion(fn), true
}

func (f *fakeFunctions) Configure(ctx context.Context, name string, change func(*stratus.FunctionConfig) error) (*stratus.Function, error) {
	fn, err := f.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	cfg := fn.Config
	cfg.Env = maps.Clone(cfg.Env)
	if err := change(&cfg); err != nil {
		return nil, err
	}
	cfg.Defaults()
	if err := cfg.Validate(stratus.Limits{MaxConcurrency: 100}); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(time.Second)
	fn.Version++
	fn.Config, fn.UpdatedAt = cfg, f.now
	f.fns[name] = fn
	c := *fn
	return &c, nil
}

func (f *fakeFunctions) Publish(_ context.Context, name, description string) (*stratus.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn, ok := f.fns[name]
	if !ok {
		return nil, fmt.Errorf("function %q: %w", name, stratus.ErrNotFound)
	}
	pub := f.published[name]
	if len(pub) > 0 && pub[len(pub)-1].Version == fn.Version {
		v := pub[len(pub)-1]
		return &v, nil
	}
	fn.Published++
	v := *headVersion(fn)
	v.Number, v.Qualifier, v.Description = fn.Published, strconv.Itoa(fn.Published), description
	f.published[name] = append(pub, v)
	return &v, nil
}

func (f *fakeFunctions) PublishedVersions(_ context.Context, name string) ([]stratus.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.fns[name]; !ok {
		return nil, fmt.Errorf("function %q: %w", name, stratus.ErrNotFound)
	}
	return slices.Clone(f.published[name]), nil
}

func (f *fakeFunctions) PublishedVersion(_ context.Context, name string, n int) (*stratus.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.publishedLocked(name, n)
}

func (f *fakeFunctions) publishedLocked(name string, n int) (*stratus.Version, error) {
	for _, v := range f.published[name] {
		if v.Number == n {
			return &v, nil
		}
	}
	return nil, fmt.Errorf("function %q has no version %d: %w", name, n, stratus.ErrNotFound)
}

func (f *fakeFunctions) DeleteVersion(_ context.Context, name string, n int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.publishedLocked(name, n); err != nil {
		return err
	}
	for _, a := range f.aliases[name] {
		if _, w := a.Weights[strconv.Itoa(n)]; a.Version == strconv.Itoa(n) || w {
			return fmt.Errorf("version %d: alias %q uses it: %w", n, a.Name, stratus.ErrConflict)
		}
	}
	f.published[name] = slices.DeleteFunc(f.published[name], func(v stratus.Version) bool { return v.Number == n })
	return nil
}

func (f *fakeFunctions) PutAlias(_ context.Context, a stratus.Alias, create bool, revisionID string) (*stratus.Alias, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.fns[a.Function]; !ok {
		return nil, fmt.Errorf("function %q: %w", a.Function, stratus.ErrNotFound)
	}
	for _, v := range append([]string{a.Version}, slices.Collect(maps.Keys(a.Weights))...) {
		if n, ok := (stratus.FunctionRef{Qualifier: v}).Version(); ok {
			if _, err := f.publishedLocked(a.Function, n); err != nil {
				return nil, err
			}
		}
	}
	old := f.aliases[a.Function][a.Name]
	switch {
	case create && old != nil:
		return nil, fmt.Errorf("alias %q exists: %w", a.Name, stratus.ErrConflict)
	case !create && old == nil:
		return nil, fmt.Errorf("alias %q: %w", a.Name, stratus.ErrNotFound)
	case !create && revisionID != "" && old.RevisionID != revisionID:
		return nil, fmt.Errorf("alias %q: revision: %w", a.Name, stratus.ErrConflict)
	}
	f.rev++
	a.RevisionID = fmt.Sprintf("rev-%d", f.rev)
	if f.aliases[a.Function] == nil {
		f.aliases[a.Function] = map[string]*stratus.Alias{}
	}
	c := a
	f.aliases[a.Function][a.Name] = &c
	return &a, nil
}

func (f *fakeFunctions) Alias(_ context.Context, name, alias string) (*stratus.Alias, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.aliases[name][alias]
	if a == nil {
		return nil, fmt.Errorf("function %q has no alias %q: %w", name, alias, stratus.ErrNotFound)
	}
	c := *a
	return &c, nil
}

func (f *fakeFunctions) Aliases(_ context.Context, name string) ([]stratus.Alias, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []stratus.Alias
	for _, k := range slices.Sorted(maps.Keys(f.aliases[name])) {
		out = append(out, *f.aliases[name][k])
	}
	return out, nil
}

func (f *fakeFunctions) DeleteAlias(_ context.Context, name, alias string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.aliases[name][alias] == nil {
		return fmt.Errorf("function %q has no alias %q: %w", name, alias, stratus.ErrNotFound)
	}
	delete(f.aliases[name], alias)
	return nil
}

func (f *fakeFunctions) HeadOf(ref stratus.FunctionRef) (*stratus.Version, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn, ok := f.fns[ref.Name]
	if !ok {
		return nil, false
	}
	q := ref.Qualifier
	if al, ok := ref.Alias(); ok {
		a := f.aliases[ref.Name][al]
		if a == nil {
			return nil, false
		}
		q = a.Version
	}
	r := stratus.FunctionRef{Qualifier: q}
	if r.Latest() {
		return headVersion(fn), true
	}
	n, _ := r.Version()
	v, err := f.publishedLocked(ref.Name, n)
	return v, err == nil
}

func (f *fakeFunctions) Invoke(_ context.Context, name string, req stratus.Request) (*stratus.Response, error) {
	ref, err := stratus.ParseFunctionRef(name)
	if err != nil {
		return nil, err
	}
	v, ok := f.HeadOf(ref)
	if !ok {
		return nil, fmt.Errorf("function %q: %w", name, stratus.ErrNotFound)
	}
	f.mu.Lock()
	f.calls = append(f.calls, name)
	inv := f.invoke
	f.mu.Unlock()
	if inv != nil {
		return inv(ref, v, req)
	}
	return &stratus.Response{Body: req.Event, Record: stratus.Invocation{RequestID: req.RequestID, Qualifier: v.RunsAs()}}, nil
}

// fakeQueue records asynchronous invocations.
type fakeQueue struct {
	mu     sync.Mutex
	events []string
	err    error
}

func (q *fakeQueue) Enqueue(_ context.Context, fn string, event []byte) (string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return "", q.err
	}
	q.events = append(q.events, fn+" "+string(event))
	return "async-" + strconv.Itoa(len(q.events)), nil
}
