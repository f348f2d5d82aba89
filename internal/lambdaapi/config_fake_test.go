package lambdaapi

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/functions"
	"github.com/stratus-run/stratus/internal/store"
)

// metaFake adds what the configuration operations need to fakeFunctions:
// tags, function URLs and the server's bounds.
type metaFake struct {
	*fakeFunctions
	maxConc int

	mu   sync.Mutex
	tags map[string]map[string]string
	urls map[string]store.FunctionURL
}

var (
	_ tagger        = (*metaFake)(nil)
	_ tagLister     = (*metaFake)(nil)
	_ untagger      = (*metaFake)(nil)
	_ urlKeeper     = (*metaFake)(nil)
	_ serverLimiter = (*metaFake)(nil)
)

// newMetaAPI is newTestAPI over a metaFake whose server cap is maxConc.
func newMetaAPI(t *testing.T, maxConc int) (*testAPI, *metaFake) {
	t.Helper()
	var mf *metaFake
	ta := newTestAPI(t, func(c *Config) {
		mf = &metaFake{fakeFunctions: c.Functions.(*fakeFunctions), maxConc: maxConc,
			tags: map[string]map[string]string{}, urls: map[string]store.FunctionURL{}}
		c.Functions = mf
	})
	return ta, mf
}

func (m *metaFake) ServerLimits() (int, int64, int64) { return m.maxConc, 50 << 20, 250 << 20 }

func (m *metaFake) exists(name string) error {
	if _, ok := m.Head(name); !ok {
		return fmt.Errorf("function %q: %w", name, stratus.ErrNotFound)
	}
	return nil
}

func (m *metaFake) TagFunction(_ context.Context, name string, tags map[string]string) error {
	if err := m.exists(name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	next := maps.Clone(m.tags[name])
	if next == nil {
		next = map[string]string{}
	}
	maps.Copy(next, tags)
	if len(next) > 50 {
		return fmt.Errorf("%d tags: %w", len(next), stratus.ErrInvalid)
	}
	m.tags[name] = next
	return nil
}

func (m *metaFake) UntagFunction(_ context.Context, name string, keys []string) error {
	if err := m.exists(name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		delete(m.tags[name], k)
	}
	return nil
}

func (m *metaFake) FunctionTags(_ context.Context, name string) (map[string]string, error) {
	if err := m.exists(name); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.tags[name]), nil
}

func (m *metaFake) URL(_ context.Context, name string) (*store.FunctionURL, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.urls[name]
	if !ok {
		return nil, fmt.Errorf("function %q has no URL: %w", name, stratus.ErrNotFound)
	}
	return &u, nil
}

func (m *metaFake) PutURL(ctx context.Context, u store.FunctionURL, auth string, create bool) (*store.FunctionURL, error) {
	if err := m.exists(u.Function); err != nil {
		return nil, err
	}
	m.mu.Lock()
	old, ok := m.urls[u.Function]
	m.mu.Unlock()
	switch {
	case create && ok:
		return nil, fmt.Errorf("URL exists: %w", stratus.ErrConflict)
	case !create && !ok:
		return nil, fmt.Errorf("no URL: %w", stratus.ErrNotFound)
	}
	if auth != "" {
		if _, err := m.Configure(ctx, u.Function, func(c *stratus.FunctionConfig) error { c.Auth = auth; return nil }); err != nil {
			return nil, err
		}
	}
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	m.mu.Lock()
	defer m.mu.Unlock()
	u.CreatedAt, u.UpdatedAt = now, now.Add(time.Duration(len(m.urls))*time.Second)
	if ok {
		u.CreatedAt, u.UpdatedAt = old.CreatedAt, old.UpdatedAt.Add(time.Second)
	}
	m.urls[u.Function] = u
	return &u, nil
}

func (m *metaFake) DeleteURL(ctx context.Context, name string) error {
	m.mu.Lock()
	_, ok := m.urls[name]
	m.mu.Unlock()
	if !ok {
		return fmt.Errorf("no URL: %w", stratus.ErrNotFound)
	}
	if _, err := m.Configure(ctx, name, func(c *stratus.FunctionConfig) error { c.Auth = stratus.AuthToken; return nil }); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.urls, name)
	return nil
}

// The functions service keeps what these operations ask of it.
var (
	_ tagger    = (*functions.Service)(nil)
	_ tagLister = (*functions.Service)(nil)
	_ untagger  = (*functions.Service)(nil)
	_ urlKeeper = (*functions.Service)(nil)
)
