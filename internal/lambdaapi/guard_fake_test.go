package lambdaapi

import (
	"context"
	"fmt"
	"io"

	"github.com/stratus-run/stratus"
)

var _ guardedFunctions = (*fakeFunctions)(nil)

// The fake's guarded deploys and publishes check and change in two steps:
// the tests that race them use the real functions service.

func (f *fakeFunctions) DeployNew(ctx context.Context, name string, cfg stratus.FunctionConfig, code io.Reader) (*stratus.Function, error) {
	fn, _, err := f.DeployIf(ctx, name, cfg, code, func(head *stratus.Version) error {
		if head != nil {
			return fmt.Errorf("create function %q: it exists: %w", name, stratus.ErrConflict)
		}
		return nil
	})
	return fn, err
}

func (f *fakeFunctions) DeployIf(ctx context.Context, name string, cfg stratus.FunctionConfig, code io.Reader, cond func(*stratus.Version) error) (*stratus.Function, bool, error) {
	head, _ := f.Head(name)
	if err := cond(head); err != nil {
		return nil, false, err
	}
	return f.Deploy(ctx, name, cfg, code)
}

func (f *fakeFunctions) PublishIf(ctx context.Context, name, description string, cond func(*stratus.Version) error) (*stratus.Version, error) {
	head, ok := f.Head(name)
	if !ok {
		return nil, fmt.Errorf("function %q: %w", name, stratus.ErrNotFound)
	}
	if err := cond(head); err != nil {
		return nil, err
	}
	return f.Publish(ctx, name, description)
}
