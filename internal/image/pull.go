package image

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/stratus-run/stratus"
)

// PullOptions configures Pull.
type PullOptions struct {
	Username, Password string                  // basic auth; anonymous when both are empty
	Insecure           bool                    // plain http (and https without verification is not offered)
	Progress           func(done, total int64) // compressed layer bytes; called from Pull's goroutine
}

// Pull fetches ref from its registry and stores it. For an image index it
// takes the linux image of this machine's architecture. An unknown
// repository or tag is ErrNotFound, refused credentials ErrInvalid, an
// unreachable registry ErrUnavailable; the store is unchanged on error.
func (s *Store) Pull(ctx context.Context, ref string, opt PullOptions) (*Image, error) {
	img, err := s.pull(ctx, ref, opt)
	if err != nil {
		return nil, fmt.Errorf("pull image %q: %w", ref, err)
	}
	return img, nil
}

func (s *Store) pull(ctx context.Context, ref string, opt PullOptions) (*Image, error) {
	var nopts []name.Option
	if opt.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return nil, invalid("bad reference: %v", err)
	}
	var auth authn.Authenticator = authn.Anonymous
	if opt.Username != "" || opt.Password != "" {
		auth = &authn.Basic{Username: opt.Username, Password: opt.Password}
	}
	ropts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuth(auth),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}),
		remote.WithRetryBackoff(remote.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 3}),
	}
	img, err := remote.Image(r, ropts...)
	if err != nil {
		return nil, registryError(err)
	}
	src := source{img: img, compressed: true, progress: opt.Progress}
	if d, ok := r.(name.Digest); ok {
		src.wantDigest = d.DigestStr()
	}
	out, err := s.add(ctx, r.Name(), src)
	if err != nil {
		return nil, registryError(err)
	}
	return out, nil
}

// registryError gives an error from go-containerregistry its stratus kind.
func registryError(err error) error {
	if errors.Is(err, stratus.ErrInvalid) || errors.Is(err, stratus.ErrNotFound) ||
		errors.Is(err, stratus.ErrUnavailable) || errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, stratus.ErrTooLarge) ||
		errors.Is(err, stratus.ErrNoSpace) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return err
	}
	var te *transport.Error
	if errors.As(err, &te) {
		switch {
		case te.StatusCode == http.StatusNotFound:
			return fmt.Errorf("%v: %w", err, stratus.ErrNotFound)
		case te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden:
			return fmt.Errorf("registry refused the credentials: %v: %w", err, stratus.ErrInvalid)
		case te.StatusCode >= 500 || te.StatusCode == http.StatusTooManyRequests:
			return fmt.Errorf("%v: %w", err, stratus.ErrUnavailable)
		}
		for _, d := range te.Errors {
			switch d.Code {
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode:
				return fmt.Errorf("%v: %w", err, stratus.ErrNotFound)
			case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
				return fmt.Errorf("registry refused the credentials: %v: %w", err, stratus.ErrInvalid)
			}
		}
		return fmt.Errorf("%v: %w", err, stratus.ErrInvalid)
	}
	var ne net.Error
	var ue *url.Error
	if errors.As(err, &ne) || errors.As(err, &ue) || errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("registry unreachable: %v: %w", err, stratus.ErrUnavailable)
	}
	return fmt.Errorf("%v: %w", err, stratus.ErrInvalid)
}
