package functions

import (
	"context"
	"fmt"
	"io"

	"github.com/stratus-run/stratus"
)

// Deploys with a precondition, checked under deployMu where the change
// is made, so that no other deploy, publish or remove lands between the
// check and the change (PublishIf is in versions.go).

// DeployNew is Deploy that only creates: when function name exists it
// returns an error wrapping stratus.ErrConflict and changes nothing. The
// check and the deploy are one step, so of two creates of one name only
// one succeeds.
func (s *Service) DeployNew(ctx context.Context, name string, cfg stratus.FunctionConfig, code io.Reader) (*stratus.Function, error) {
	f, _, err := s.deploy(ctx, name, cfg, code, func(head *stratus.Version) error {
		if head != nil {
			return fmt.Errorf("create function %q: it exists: %w", name, stratus.ErrConflict)
		}
		return nil
	})
	return f, err
}

// DeployIf is Deploy with a precondition: cond, when set, is called with
// the head of function name (nil when there is none) while no other
// deploy, publish or remove runs, after the upload is read and before
// its code is kept; an error of cond is returned as it is and changes
// nothing. cond must be quick and must not call the Service.
func (s *Service) DeployIf(ctx context.Context, name string, cfg stratus.FunctionConfig, code io.Reader, cond func(head *stratus.Version) error) (*stratus.Function, bool, error) {
	return s.deploy(ctx, name, cfg, code, cond)
}

// checkCond calls cond, if set, with the head of function name (nil for
// none). The caller holds deployMu, so the head cannot change meanwhile.
func (s *Service) checkCond(name string, cond func(*stratus.Version) error) error {
	if cond == nil {
		return nil
	}
	s.mu.RLock()
	head := s.heads[name]
	s.mu.RUnlock()
	return cond(head)
}
