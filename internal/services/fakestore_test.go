package services

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stratus-run/stratus"
)

// fakeStore keeps services, their revisions and traffic, and their
// claimed names in memory; a function holds the name "taken".
type fakeStore struct {
	mu      sync.Mutex
	svcs    map[string]stratus.Service
	revs    map[string]map[int]stratus.Revision
	claimed map[string]bool
}

var _ Store = (*fakeStore)(nil)

func newFakeStore() *fakeStore {
	return &fakeStore{svcs: make(map[string]stratus.Service), revs: make(map[string]map[int]stratus.Revision), claimed: make(map[string]bool)}
}

func (s *fakeStore) ClaimServiceName(ctx context.Context, name string) error {
	if name == "taken" {
		return fmt.Errorf("service %q: a function has that name: %w", name, stratus.ErrConflict)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.claimed[name] = true
	return nil
}

func (s *fakeStore) ReleaseServiceName(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.svcs[name]; !ok {
		delete(s.claimed, name)
	}
	return nil
}

// holds reports whether name is claimed for a service.
func (s *fakeStore) holds(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.claimed[name]
}

func (s *fakeStore) NextRevision(ctx context.Context, name string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for r := range s.revs[name] {
		n = max(n, r)
	}
	return n + 1, nil
}

func (s *fakeStore) PutRevision(ctx context.Context, rev *stratus.Revision) (*stratus.Service, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.revs[rev.Service][rev.Number]; ok {
		return nil, fmt.Errorf("put service %q: revision %d exists: %w", rev.Service, rev.Number, stratus.ErrConflict)
	}
	now := time.Now()
	c := rev.Config
	c.Env = maps.Clone(c.Env)
	svc := stratus.Service{Name: rev.Service, Revision: rev.Number, Config: c, Digest: rev.Digest, CreatedAt: now, UpdatedAt: now}
	if old, ok := s.svcs[rev.Service]; ok {
		svc.CreatedAt, svc.Traffic = old.CreatedAt, old.Traffic
	}
	s.svcs[rev.Service] = svc
	if s.revs[rev.Service] == nil {
		s.revs[rev.Service] = make(map[int]stratus.Revision)
	}
	stored := *rev
	stored.Config = c
	s.revs[rev.Service][rev.Number] = stored
	s.claimed[rev.Service] = true
	return &svc, nil
}

func (s *fakeStore) GetRevision(ctx context.Context, name string, number int) (*stratus.Revision, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rev, ok := s.revs[name][number]
	if !ok {
		return nil, fmt.Errorf("service %q has no revision %d: %w", name, number, stratus.ErrNotFound)
	}
	return &rev, nil
}

func (s *fakeStore) SetTraffic(ctx context.Context, name string, t []stratus.TrafficTarget) (*stratus.Service, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	svc, ok := s.svcs[name]
	if !ok {
		return nil, fmt.Errorf("service %q: %w", name, stratus.ErrNotFound)
	}
	svc.Traffic = slices.Clone(t)
	svc.UpdatedAt = time.Now()
	s.svcs[name] = svc
	return &svc, nil
}

// traffic returns the traffic stored for service name.
func (s *fakeStore) traffic(name string) []stratus.TrafficTarget {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.svcs[name].Traffic
}

func (s *fakeStore) ListServices(ctx context.Context) ([]stratus.Service, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := slices.Collect(maps.Values(s.svcs))
	slices.SortFunc(list, func(a, b stratus.Service) int { return strings.Compare(a.Name, b.Name) })
	return list, nil
}

func (s *fakeStore) DeleteService(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.svcs[name]; !ok {
		return fmt.Errorf("service %q: %w", name, stratus.ErrNotFound)
	}
	delete(s.svcs, name)
	delete(s.revs, name)
	delete(s.claimed, name)
	return nil
}

func (s *fakeStore) names() []string {
	list, _ := s.ListServices(context.Background())
	var names []string
	for _, svc := range list {
		names = append(names, svc.Name)
	}
	return names
}

func (s *fakeStore) GetService(ctx context.Context, name string) (*stratus.Service, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	svc, ok := s.svcs[name]
	if !ok {
		return nil, fmt.Errorf("service %q: %w", name, stratus.ErrNotFound)
	}
	svc.Traffic = slices.Clone(svc.Traffic)
	return &svc, nil
}
