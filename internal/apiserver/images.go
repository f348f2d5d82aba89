package apiserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/gateway"
	"github.com/stratus-run/stratus/internal/image"
)

// imageStore keeps container images; *image.Store is one.
type imageStore interface {
	Import(ctx context.Context, path, ref string) (*image.Image, error)
	Pull(ctx context.Context, ref string, opt image.PullOptions) (*image.Image, error)
	List() ([]image.Image, error)
	Get(ref string) (*image.Image, error)
	Remove(ref string, inUse func(digest string) bool) error
}

// DefaultMaxImageImport bounds an uploaded image archive when
// ImagesConfig.MaxImport is not set.
const DefaultMaxImageImport int64 = 2 << 30

// ImagesConfig configures the /v1/images routes.
type ImagesConfig struct {
	// Store keeps the images; nil leaves the routes out.
	Store imageStore
	// UploadDir holds uploaded archives while they are imported; it is
	// emptied when the routes are registered.
	UploadDir string
	// MaxImport bounds an uploaded archive (DefaultMaxImageImport if 0).
	MaxImport int64
}

type imageRoutes struct {
	s   *Server
	cfg ImagesConfig
}

// routeImages registers the image routes on mux; a nil c.Store leaves
// them out.
func (s *Server) routeImages(mux *http.ServeMux, c ImagesConfig) {
	if c.Store == nil {
		return
	}
	if c.MaxImport <= 0 {
		c.MaxImport = DefaultMaxImageImport
	}
	// What an interrupted upload left behind.
	if err := os.RemoveAll(c.UploadDir); err != nil {
		s.log.Warn("clean image uploads", "dir", c.UploadDir, "err", err)
	}
	t := &imageRoutes{s: s, cfg: c}
	auth := s.requireToken
	mux.Handle("POST /v1/images/import", auth(http.HandlerFunc(t.importImage)))
	mux.Handle("POST /v1/images/pull", auth(http.HandlerFunc(t.pull)))
	mux.Handle("GET /v1/images", auth(http.HandlerFunc(t.list)))
	mux.Handle("GET /v1/images/{ref...}", auth(http.HandlerFunc(t.get)))
	mux.Handle("DELETE /v1/images", auth(http.HandlerFunc(t.remove)))
	mux.Handle("DELETE /v1/images/{ref...}", auth(http.HandlerFunc(t.remove)))
}

func imageView(img *image.Image) v1.Image {
	return v1.Image{
		Ref: img.Ref, Digest: img.Digest, Layers: img.Layers, Size: img.Size, CreatedAt: img.CreatedAt,
		Config: v1.ImageConfig{
			Entrypoint: img.Config.Entrypoint, Cmd: img.Config.Cmd, Env: img.Config.Env,
			WorkingDir: img.Config.WorkingDir, User: img.Config.User, ExposedPorts: img.Config.ExposedPorts,
		},
	}
}

// importImage streams the body (a docker save tarball or an OCI layout
// tar) to a file under UploadDir, then imports it as ?ref= (or the name
// the archive gives).
func (t *imageRoutes) importImage(w http.ResponseWriter, r *http.Request) {
	limit := t.cfg.MaxImport
	if r.ContentLength > limit {
		t.s.fail(w, r, fmt.Errorf("import image: archive is more than %d MB: %w", limit>>20, stratus.ErrTooLarge))
		return
	}
	if err := os.MkdirAll(t.cfg.UploadDir, 0o700); err != nil {
		t.s.fail(w, r, fmt.Errorf("import image: %w", err))
		return
	}
	f, err := os.CreateTemp(t.cfg.UploadDir, "import-*.tar")
	if err != nil {
		t.s.fail(w, r, fmt.Errorf("import image: %w", err))
		return
	}
	defer os.Remove(f.Name())
	_, err = io.Copy(f, http.MaxBytesReader(w, r.Body, limit))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			err = fmt.Errorf("import image: archive is more than %d MB: %w", limit>>20, stratus.ErrTooLarge)
		} else {
			err = fmt.Errorf("import image: read upload: %v: %w", err, stratus.ErrInvalid)
		}
		t.s.fail(w, r, err)
		return
	}
	img, err := t.cfg.Store.Import(r.Context(), f.Name(), r.URL.Query().Get("ref"))
	if err != nil {
		// The client knows nothing of the server's temporary file.
		t.s.fail(w, r, &hidePath{msg: strings.ReplaceAll(err.Error(), f.Name(), "upload"), err: err})
		return
	}
	t.s.log.Info("image imported", "ref", img.Ref, "digest", img.Digest, "size", img.Size)
	gateway.WriteJSON(w, http.StatusCreated, imageView(img))
}

// hidePath is err with another message.
type hidePath struct {
	msg string
	err error
}

func (h *hidePath) Error() string { return h.msg }
func (h *hidePath) Unwrap() error { return h.err }

func (t *imageRoutes) pull(w http.ResponseWriter, r *http.Request) {
	var spec v1.ImagePull
	if err := decodeSpec(w, r, "pull image", &spec); err != nil {
		t.s.fail(w, r, err)
		return
	}
	if spec.Ref == "" {
		t.s.fail(w, r, fmt.Errorf("pull image: ref is required: %w", stratus.ErrInvalid))
		return
	}
	img, err := t.cfg.Store.Pull(r.Context(), spec.Ref, image.PullOptions{
		Username: spec.Username, Password: spec.Password, Insecure: spec.Insecure,
	})
	if err != nil {
		t.s.fail(w, r, err)
		return
	}
	t.s.log.Info("image pulled", "ref", img.Ref, "digest", img.Digest, "size", img.Size)
	gateway.WriteJSON(w, http.StatusCreated, imageView(img))
}

func (t *imageRoutes) list(w http.ResponseWriter, r *http.Request) {
	imgs, err := t.cfg.Store.List()
	if err != nil {
		t.s.fail(w, r, err)
		return
	}
	out := v1.ImageList{Images: make([]v1.Image, 0, len(imgs))}
	for i := range imgs {
		out.Images = append(out.Images, imageView(&imgs[i]))
	}
	gateway.WriteJSON(w, http.StatusOK, out)
}

// refOf is the image named by the path ({ref...}) or by ?ref=.
func refOf(r *http.Request) (string, error) {
	ref := r.PathValue("ref")
	if ref == "" {
		ref = r.URL.Query().Get("ref")
	}
	if ref == "" {
		return "", fmt.Errorf("image ref is required: %w", stratus.ErrInvalid)
	}
	return ref, nil
}

func (t *imageRoutes) get(w http.ResponseWriter, r *http.Request) {
	ref, err := refOf(r)
	if err != nil {
		t.s.fail(w, r, err)
		return
	}
	img, err := t.cfg.Store.Get(ref)
	if err != nil {
		t.s.fail(w, r, err)
		return
	}
	gateway.WriteJSON(w, http.StatusOK, imageView(img))
}

func (t *imageRoutes) remove(w http.ResponseWriter, r *http.Request) {
	ref, err := refOf(r)
	if err != nil {
		t.s.fail(w, r, err)
		return
	}
	// No image is in use yet: services, which will run images, do not
	// exist. When they do, inUse asks them and Remove answers ErrConflict.
	inUse := func(digest string) bool { return false }
	if err := t.cfg.Store.Remove(ref, inUse); err != nil {
		t.s.fail(w, r, err)
		return
	}
	t.s.log.Info("image removed", "ref", ref)
	w.WriteHeader(http.StatusNoContent)
}
