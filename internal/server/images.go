package server

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/image"
	"github.com/stratus-run/stratus/internal/pool"
	"github.com/stratus-run/stratus/internal/services"
)

// lookupTimeout bounds a deploy's look for its image, which in a cluster
// may be fetched from the blobs another server put.
const lookupTimeout = 2 * time.Minute

// imageResolver answers, from the image store, what services (Resolve),
// functions (Lookup) and the pools (run) need of an image.
type imageResolver struct{ s *image.Store }

func (r imageResolver) Resolve(ctx context.Context, ref string) (*services.Image, error) {
	img, err := r.s.Find(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("%w (import or pull it first: stratus image import|pull)", err)
	}
	root, err := r.s.Root(ctx, img)
	if err != nil {
		return nil, err
	}
	c := img.Config
	user, err := image.ResolveUser(root, c.User)
	if err != nil {
		return nil, err
	}
	return &services.Image{
		Digest: img.Digest, RootFS: root,
		Entrypoint: c.Entrypoint, Cmd: c.Cmd, Env: c.Env, WorkingDir: c.WorkingDir, User: user,
	}, nil
}

// Lookup implements functions.Images.
func (r imageResolver) Lookup(ref string) (string, int64, bool, error) {
	// A deploy names an image another server of a cluster may hold:
	// fetching it is bounded.
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	img, err := r.s.Find(ctx, ref)
	if err != nil {
		return "", 0, false, err
	}
	return img.Digest, img.Size, len(img.Config.Entrypoint)+len(img.Config.Cmd) > 0, nil
}

// run is how function version v, deployed from an image, runs: the image's
// entrypoint with its command, or with the function's handler in its
// place (as Lambda's ImageConfig.Command replaces CMD). Its root
// filesystem is unpacked only when rootFS is set (a driver whose nodes
// pull the image by reference needs only its config).
func (r imageResolver) run(ctx context.Context, v *stratus.Version, rootFS bool) (*pool.ImageRun, error) {
	img, err := r.s.Find(ctx, v.CodeSHA)
	if err != nil {
		return nil, fmt.Errorf("image of %s: %w", v.Key(), err)
	}
	var root string
	if rootFS {
		if root, err = r.s.Root(ctx, img); err != nil {
			return nil, err
		}
	}
	c := img.Config
	argv := append(slices.Clip(c.Entrypoint), c.Cmd...)
	if v.Config.Handler != "" {
		argv = append(slices.Clip(c.Entrypoint), v.Config.Handler)
	}
	return &pool.ImageRun{RootFS: root, Argv: argv, Env: c.Env, Dir: c.WorkingDir}, nil
}
