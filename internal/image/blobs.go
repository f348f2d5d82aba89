package image

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/blobs"
)

// Blobs is where the servers of a cluster share images (a *blobs.Store).
// Put is idempotent by name; Get returns ErrNotFound for a missing name.
type Blobs interface {
	Put(ctx context.Context, name string, r io.Reader) error
	Get(ctx context.Context, name string, w io.Writer) error
}

// refAnnotation names the image in the archives the store publishes.
const refAnnotation = "io.containerd.image.name"

// Find returns the image with this ref or manifest digest, as Get does,
// and with Config.Blobs set also when this store does not have it yet:
// it then fetches the image's archive from the blobs, imports it and
// answers. A ref ("app:v1") is looked up in the blobs first, since another
// server may have moved it; when the blobs cannot be reached, the image
// this store has under the ref answers. An image is fetched once however
// many Finds want it at the same time; a fetch runs under the context of
// the Find that started it. Errors: ErrNotFound (neither here nor in the
// blobs), ErrInvalid (a bad ref, or an archive that is not the image its
// name gives: nothing is stored then), ErrUnavailable (blobs unreachable),
// and the bounds of Import.
func (s *Store) Find(ctx context.Context, ref string) (*Image, error) {
	if s.blobs == nil {
		return s.Get(ref)
	}
	if strings.HasPrefix(ref, "sha256:") {
		if img, err := s.Get(ref); err == nil {
			return img, nil
		}
		if !isDigest(ref) {
			return nil, fmt.Errorf("image %q: not a sha256 digest: %w", ref, stratus.ErrInvalid)
		}
		return s.fetch(ctx, ref, "")
	}
	nref, err := normalizeRef(ref, false)
	if err != nil {
		return nil, err
	}
	local, lerr := s.Get(nref)
	digest, err := s.refDigest(ctx, nref)
	switch {
	case errors.Is(err, stratus.ErrNotFound):
		return local, lerr
	case err != nil && lerr == nil:
		return local, nil // the blobs are out of reach: what this server has
	case err != nil:
		return nil, fmt.Errorf("image %q: %w", ref, err)
	case lerr == nil && local.Digest == digest:
		return local, nil
	}
	return s.fetch(ctx, digest, nref)
}

// isDigest says whether d is "sha256:" and 64 lowercase hex digits.
func isDigest(d string) bool {
	h, ok := strings.CutPrefix(d, "sha256:")
	return ok && len(h) == 64 && !strings.ContainsFunc(h, func(r rune) bool {
		return (r < '0' || r > '9') && (r < 'a' || r > 'f')
	})
}

// refDigest reads the digest the blobs say nref names.
func (s *Store) refDigest(ctx context.Context, nref string) (string, error) {
	var buf bytes.Buffer
	if err := s.blobs.Get(ctx, blobs.RefName(nref), &limitWriter{w: &buf, left: blobs.MaxRef}); err != nil {
		return "", err
	}
	d := strings.TrimSpace(buf.String())
	if !isDigest(d) {
		return "", fmt.Errorf("blob %s holds %q, not a digest: %w", blobs.RefName(nref), d, stratus.ErrInvalid)
	}
	return d, nil
}

// fetchTimeout bounds one fetch of an image from the blobs.
const fetchTimeout = 10 * time.Minute

// fetch makes the image with this digest stored here, fetching it from
// the blobs unless it is here already, and names it nref too when nref is
// not empty.
func (s *Store) fetch(ctx context.Context, digest, nref string) (*Image, error) {
	img, err := s.flights.do(ctx, digest, func() (*Image, error) {
		if img, err := s.Get(digest); err == nil {
			return img, nil // a fetch that ended a moment ago
		}
		// The fetch serves every caller waiting for it: it does not end
		// with the first one's context, only with its own bound.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
		defer cancel()
		return s.importBlob(fctx, digest, nref)
	})
	if err != nil {
		return nil, fmt.Errorf("fetch image %s: %w", digest, err)
	}
	if nref == "" || img.Ref == nref {
		return img, nil
	}
	img, err = s.tag(nref, digest)
	if err != nil {
		return nil, fmt.Errorf("fetch image %s: %w", digest, err)
	}
	return img, nil
}

// importBlob fetches the archive image/DIGEST into the staging folder and
// imports it, as nref or, when nref is empty, as REPO@DIGEST (REPO the
// repository the archive names).
func (s *Store) importBlob(ctx context.Context, digest, nref string) (*Image, error) {
	f, err := os.CreateTemp(s.tmpDir(), "blob-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	var w io.Writer = f
	if b := s.archiveBudget(); b != nil {
		w = &limitWriter{w: f, left: b.left, err: b.err}
	}
	err = s.blobs.Get(ctx, blobs.ImageName(digest), w)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return s.importPath(ctx, f.Name(), nref, digest)
}

// repoAt is the ref of digest in the repository ref names: "" when ref
// names none.
func repoAt(ref, digest string) string {
	r, err := name.ParseReference(ref)
	if err != nil || ref == "" {
		return ""
	}
	return r.Context().Name() + "@" + digest
}

// tag names the stored image with this digest nref as well (replacing
// what nref named). The image must be stored.
func (s *Store) tag(nref, digest string) (*Image, error) {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.mu.RLock()
	i := s.find(digest)
	var img Image
	if i >= 0 {
		img = cloneImage(s.images[i])
	}
	images := slices.DeleteFunc(slices.Clone(s.images), func(i Image) bool { return i.Ref == nref })
	layers := s.layers
	s.mu.RUnlock()
	if i < 0 {
		return nil, fmt.Errorf("image %s was removed: %w", digest, stratus.ErrNotFound)
	}
	img.Ref, img.CreatedAt = nref, s.now().UTC()
	if err := s.commit(append(images, img), layers); err != nil {
		return nil, err
	}
	out := cloneImage(img)
	return &out, nil
}

// publish puts the image into the blobs: its archive as image/DIGEST
// (unless the blobs have it), then ref/NREF → digest. Layers read
// compressed by this add are in kept (digest → file); the others are read
// from img again. The caller holds opMu.
func (s *Store) publish(ctx context.Context, img v1.Image, rawManifest []byte, nref, digest string, kept map[string]string) error {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := writeArchive(img, rawManifest, nref, kept, pw)
		pw.CloseWithError(err)
		done <- err
	}()
	err := s.blobs.Put(ctx, blobs.ImageName(digest), pr)
	pr.CloseWithError(errPublished) // a Put that kept what was there read nothing
	werr := <-done
	if err != nil {
		if werr != nil && !errors.Is(werr, errPublished) {
			err = werr
		}
		return fmt.Errorf("publish image %s: %w", digest, err)
	}
	if err := s.blobs.Put(ctx, blobs.RefName(nref), strings.NewReader(digest)); err != nil {
		return fmt.Errorf("publish image ref %s: %w", nref, err)
	}
	return nil
}

var errPublished = errors.New("archive no longer read")

// writeArchive writes img as an OCI image layout tar: oci-layout,
// index.json naming the manifest (annotated with ref), and the manifest,
// config and compressed layers under blobs/sha256/. Importing it gives the
// same manifest digest: the raw manifest and config are written as read.
func writeArchive(img v1.Image, rawManifest []byte, ref string, kept map[string]string, w io.Writer) error {
	m, err := img.Manifest()
	if err != nil {
		return invalid("read manifest: %v", err)
	}
	rawConfig, err := img.RawConfigFile()
	if err != nil {
		return invalid("read config: %v", err)
	}
	mt, err := img.MediaType()
	if err != nil {
		return invalid("read manifest media type: %v", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return invalid("read layers: %v", err)
	}
	if len(layers) != len(m.Layers) {
		return invalid("manifest lists %d layers, image has %d", len(m.Layers), len(layers))
	}
	mdigest, msize, err := v1.SHA256(bytes.NewReader(rawManifest))
	if err != nil {
		return err
	}
	index, err := json.Marshal(v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: mt, Digest: mdigest, Size: msize,
			Annotations: map[string]string{refAnnotation: ref},
		}},
	})
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	entry := func(p string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: p, Typeflag: tar.TypeReg, Mode: 0o644, Size: size}); err != nil {
			return err
		}
		if n, err := io.CopyN(tw, r, size); err != nil {
			return fmt.Errorf("write %s: %d of %d bytes: %w", p, n, size, err)
		}
		return nil
	}
	dir := func(p string) error {
		return tw.WriteHeader(&tar.Header{Name: p, Typeflag: tar.TypeDir, Mode: 0o755})
	}
	blob := func(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }
	layoutFile := []byte(`{"imageLayoutVersion":"1.0.0"}`)
	for _, err := range []error{
		entry("oci-layout", int64(len(layoutFile)), bytes.NewReader(layoutFile)),
		entry("index.json", int64(len(index)), bytes.NewReader(index)),
		dir("blobs/"), dir("blobs/sha256/"),
		entry(blob(mdigest), msize, bytes.NewReader(rawManifest)),
		entry(blob(m.Config.Digest), int64(len(rawConfig)), bytes.NewReader(rawConfig)),
	} {
		if err != nil {
			return err
		}
	}
	written := map[v1.Hash]bool{m.Config.Digest: true, mdigest: true}
	for i, d := range m.Layers {
		if written[d.Digest] {
			continue
		}
		written[d.Digest] = true
		if err := writeLayerBlob(layers[i], d, kept[d.Digest.String()], blob(d.Digest), entry); err != nil {
			return err
		}
	}
	return tw.Close()
}

// writeLayerBlob writes one compressed layer: from the file this add kept
// when there is one, else read from its source.
func writeLayerBlob(l v1.Layer, d v1.Descriptor, keptFile, p string, entry func(string, int64, io.Reader) error) error {
	var rc io.ReadCloser
	var err error
	if keptFile != "" {
		rc, err = os.Open(keptFile)
	} else {
		rc, err = l.Compressed()
	}
	if err != nil {
		return fmt.Errorf("read layer %s: %w", d.Digest, err)
	}
	defer rc.Close()
	return entry(p, d.Size, rc)
}

// limitWriter writes at most left bytes to w and fails with err (or
// ErrTooLarge) past them.
type limitWriter struct {
	w    io.Writer
	left int64
	err  error
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		if l.err != nil {
			return 0, l.err
		}
		return 0, fmt.Errorf("more than the bound: %w", stratus.ErrTooLarge)
	}
	l.left -= int64(len(p))
	return l.w.Write(p)
}

// flights runs one fetch per key at a time: a caller that finds one
// running waits for its result instead of starting another.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight // guarded by mu
}

type flight struct {
	done chan struct{} // closed when img and err are set
	img  *Image
	err  error
}

// do runs fn under key, on a goroutine of its own, unless a call with
// that key runs; then waits for the result of the one that runs, or the
// end of ctx (fn goes on for the others).
func (f *flights) do(ctx context.Context, key string, fn func() (*Image, error)) (*Image, error) {
	f.mu.Lock()
	c, ok := f.m[key]
	if !ok {
		if f.m == nil {
			f.m = map[string]*flight{}
		}
		c = &flight{done: make(chan struct{})}
		f.m[key] = c
		go func() {
			c.img, c.err = fn()
			f.mu.Lock()
			delete(f.m, key)
			f.mu.Unlock()
			close(c.done)
		}()
	}
	f.mu.Unlock()
	select {
	case <-c.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if c.err != nil {
		return nil, c.err
	}
	img := cloneImage(*c.img)
	return &img, nil
}
