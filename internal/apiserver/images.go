package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
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
	// InUse reports whether a service or function runs the image with
	// this digest; removing such an image is refused. Nil: none is.
	InUse func(digest string) bool
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
		t.s.answer.Error(w, r, fmt.Errorf("import image: archive is more than %d MB: %w", limit>>20, stratus.ErrTooLarge))
		return
	}
	if err := os.MkdirAll(t.cfg.UploadDir, 0o700); err != nil {
		t.s.answer.Error(w, r, fmt.Errorf("import image: %w", err))
		return
	}
	f, err := os.CreateTemp(t.cfg.UploadDir, "import-*.tar")
	if err != nil {
		t.s.answer.Error(w, r, fmt.Errorf("import image: %w", err))
		return
	}
	defer os.Remove(f.Name())
	_, err = io.Copy(f, http.MaxBytesReader(w, r.Body, limit))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		var mbe *http.MaxBytesError
		var perr *os.PathError
		if errors.As(err, &mbe) {
			err = fmt.Errorf("import image: archive is more than %d MB: %w", limit>>20, stratus.ErrTooLarge)
		} else if errors.As(err, &perr) {
			// Writing the upload failed (a full disk: 507), not the client.
			err = fmt.Errorf("import image: store upload: %w", err)
		} else {
			err = fmt.Errorf("import image: read upload: %v: %w", err, stratus.ErrInvalid)
		}
		t.s.answer.Error(w, r, err)
		return
	}
	img, err := t.cfg.Store.Import(r.Context(), f.Name(), r.URL.Query().Get("ref"))
	if err != nil {
		// The client knows nothing of the server's temporary file.
		t.s.answer.Error(w, r, &hidePath{msg: strings.ReplaceAll(err.Error(), f.Name(), "upload"), err: err})
		return
	}
	t.s.log.Info("image imported", "ref", img.Ref, "digest", img.Digest, "size", img.Size)
	t.s.answer.JSON(w, r, http.StatusCreated, imageView(img))
}

// hidePath is err with another message.
type hidePath struct {
	msg string
	err error
}

func (h *hidePath) Error() string { return h.msg }
func (h *hidePath) Unwrap() error { return h.err }

// pull pulls spec.Ref into the store. A request that accepts
// application/x-ndjson gets the pull's progress as it goes (see
// v1.ImagePullEvent); the others get the image at the end.
func (t *imageRoutes) pull(w http.ResponseWriter, r *http.Request) {
	var spec v1.ImagePull
	if err := decodeSpec(w, r, maxSpecBody, "pull image", &spec); err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	if spec.Ref == "" {
		t.s.answer.Error(w, r, fmt.Errorf("pull image: ref is required: %w", stratus.ErrInvalid))
		return
	}
	opt := image.PullOptions{Username: spec.Username, Password: spec.Password, Insecure: spec.Insecure}
	var stream *pullStream
	if acceptsNDJSON(r) {
		stream = &pullStream{w: w, rc: http.NewResponseController(w), now: time.Now}
		opt.Progress = stream.progress
	}
	img, err := t.cfg.Store.Pull(r.Context(), spec.Ref, opt)
	if err == nil {
		t.s.log.Info("image pulled", "ref", img.Ref, "digest", img.Digest, "size", img.Size)
	}
	if stream == nil || !stream.started {
		if err != nil {
			t.s.answer.Error(w, r, err)
			return
		}
		t.s.answer.JSON(w, r, http.StatusCreated, imageView(img))
		return
	}
	// The status went with the first progress line: the outcome is the
	// last line.
	last := v1.ImagePullEvent{Done: stream.done, Total: stream.total}
	if err != nil {
		status, e := t.s.answer.Status(w, r, err)
		last.Error, last.Status = &e, status
	} else {
		view := imageView(img)
		last.Image = &view
	}
	stream.send(last)
}

// acceptsNDJSON says whether r's Accept header lists
// application/x-ndjson.
func acceptsNDJSON(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			mt, params, err := mime.ParseMediaType(part)
			if err == nil && mt == v1.MediaTypeNDJSON && params["q"] != "0" {
				return true
			}
		}
	}
	return false
}

// pullProgressEvery is how often at most a streamed pull sends a progress
// line; the one with every byte fetched always goes.
const pullProgressEvery = 100 * time.Millisecond

// pullStream writes a pull's answer as v1.ImagePullEvent lines. It is
// used from the handler's goroutine only (Pull calls its Progress there).
type pullStream struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	now func() time.Time

	started     bool // the status and the first line are sent
	done, total int64
	sent        time.Time // of the last line
}

// progress is the pull's image.PullOptions.Progress.
func (p *pullStream) progress(done, total int64) {
	p.done, p.total = done, total
	if p.started && done < total && p.now().Sub(p.sent) < pullProgressEvery {
		return
	}
	p.send(v1.ImagePullEvent{Done: done, Total: total})
}

// send writes ev as a line and flushes it, after the status if it is the
// first. A client that went away cancels the request's context, which
// ends the pull, so write errors are left to that.
func (p *pullStream) send(ev v1.ImagePullEvent) {
	if !p.started {
		p.started = true
		p.w.Header().Set("Content-Type", v1.MediaTypeNDJSON)
		p.w.WriteHeader(http.StatusOK)
	}
	p.sent = p.now()
	_ = json.NewEncoder(p.w).Encode(ev)
	_ = p.rc.Flush()
}

func (t *imageRoutes) list(w http.ResponseWriter, r *http.Request) {
	imgs, err := t.cfg.Store.List()
	if err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	out := v1.ImageList{Images: make([]v1.Image, 0, len(imgs))}
	for i := range imgs {
		out.Images = append(out.Images, imageView(&imgs[i]))
	}
	t.s.answer.JSON(w, r, http.StatusOK, out)
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
		t.s.answer.Error(w, r, err)
		return
	}
	img, err := t.cfg.Store.Get(ref)
	if err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	t.s.answer.JSON(w, r, http.StatusOK, imageView(img))
}

func (t *imageRoutes) remove(w http.ResponseWriter, r *http.Request) {
	ref, err := refOf(r)
	if err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	if err := t.cfg.Store.Remove(ref, t.cfg.InUse); err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	t.s.log.Info("image removed", "ref", ref)
	w.WriteHeader(http.StatusNoContent)
}
