package functions

import (
	"context"
	"errors"
	"fmt"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/store"
)

// A function URL (the Lambda API's function URL configuration) is the
// function's own route, /fn/NAME/: its configuration says that the URL
// was asked for, when, and with what else (CORS, invoke mode), while its
// auth is the function's auth mode, changed with Configure. A function
// has at most one; it is removed with the function.

// URL returns function name's URL configuration, or an error wrapping
// stratus.ErrNotFound if it has none.
func (s *Service) URL(ctx context.Context, name string) (*store.FunctionURL, error) {
	return s.st.GetFunctionURL(ctx, name)
}

// PutURL stores function u.Function's URL configuration and makes auth
// (stratus.AuthNone, AuthSigned or AuthToken; empty keeps the function's)
// its auth mode: with create a new configuration (an error wrapping
// stratus.ErrConflict if it has one), else it replaces the existing one
// (an error wrapping stratus.ErrNotFound if it has none), keeping its
// creation time. A change of auth makes a new $LATEST with the same code,
// as Configure does. A missing function is an error wrapping
// stratus.ErrNotFound, a bad auth mode one wrapping stratus.ErrInvalid;
// any error changes nothing.
func (s *Service) PutURL(ctx context.Context, u store.FunctionURL, auth string, create bool) (*store.FunctionURL, error) {
	if auth != "" && auth != stratus.AuthNone && auth != stratus.AuthSigned && auth != stratus.AuthToken {
		return nil, fmt.Errorf("function URL of %q: auth %q: %w", u.Function, auth, stratus.ErrInvalid)
	}
	if create {
		// The row claims the URL: of two creates, one gets the conflict.
		out, err := s.st.PutFunctionURL(ctx, u, true)
		if err != nil {
			return nil, err
		}
		if err := s.setAuth(ctx, u.Function, auth); err != nil {
			if derr := s.st.DeleteFunctionURL(context.WithoutCancel(ctx), u.Function); derr != nil && !errors.Is(derr, stratus.ErrNotFound) {
				s.log.Error("function URL made without its auth is left", "fn", u.Function, "err", derr)
			}
			return nil, err
		}
		return out, nil
	}
	if _, err := s.st.GetFunctionURL(ctx, u.Function); err != nil {
		return nil, err
	}
	if err := s.setAuth(ctx, u.Function, auth); err != nil {
		return nil, err
	}
	return s.st.PutFunctionURL(ctx, u, false)
}

// DeleteURL removes function name's URL configuration and gives its
// route back the token auth (a function without a URL is reached with
// the server's token). A function without one is an error wrapping
// stratus.ErrNotFound.
func (s *Service) DeleteURL(ctx context.Context, name string) error {
	if _, err := s.st.GetFunctionURL(ctx, name); err != nil {
		return err
	}
	if err := s.setAuth(ctx, name, stratus.AuthToken); err != nil {
		return err
	}
	return s.st.DeleteFunctionURL(ctx, name)
}

// setAuth makes auth function name's auth mode, with a new $LATEST only
// if it changes; empty auth changes nothing.
func (s *Service) setAuth(ctx context.Context, name, auth string) error {
	if auth == "" {
		return nil
	}
	f, err := s.st.GetFunction(ctx, name)
	if err != nil {
		return err
	}
	if f.Config.Auth == auth {
		return nil
	}
	_, err = s.Configure(ctx, name, func(c *stratus.FunctionConfig) error {
		c.Auth = auth
		return nil
	})
	return err
}
