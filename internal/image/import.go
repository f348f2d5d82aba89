package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/zstd"

	"github.com/stratus-run/stratus"
)

// PullOptions configures Pull.
type PullOptions struct {
	Username, Password string                  // basic auth; anonymous when both are empty
	Insecure           bool                    // plain http (and https without verification is not offered)
	Progress           func(done, total int64) // compressed layer bytes; called from Pull's goroutine
}

// source says how far an image's blobs can be trusted before they are read.
type source struct {
	img v1.Image
	// wantDigest, if set, is the manifest digest the image was found by.
	wantDigest string
	// compressed: the manifest names compressed blobs that must match their
	// digests (OCI layouts, registries). A docker save tarball carries only
	// the uncompressed layers, checked against the config's diff IDs.
	compressed bool
	progress   func(done, total int64)
}

// Import stores the image in path: a `docker save` tarball (plain or
// gzipped), an OCI image layout folder, or an OCI image layout tar. ref names
// it in the store; when empty, the archive's own name for it is used
// (docker's RepoTags, or the layout's ref annotation). A missing file is
// ErrNotFound; anything unreadable, inconsistent or not runnable is
// ErrInvalid, and then the store is unchanged.
func (s *Store) Import(ctx context.Context, p string, ref string) (*Image, error) {
	img, err := s.importPath(ctx, p, ref)
	if err != nil {
		return nil, fmt.Errorf("import image %s: %w", p, err)
	}
	return img, nil
}

func (s *Store) importPath(ctx context.Context, p string, ref string) (*Image, error) {
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no such file: %w", stratus.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return s.importLayout(ctx, p, ref)
	}
	kind, gz, err := sniffArchive(p, s.archiveBudget())
	if err != nil {
		return nil, err
	}
	switch kind {
	case "docker":
		return s.importDocker(ctx, p, gz, ref)
	default: // "oci"
		dir, err := os.MkdirTemp(s.tmpDir(), "layout-")
		if err != nil {
			return nil, err
		}
		defer removeAll(dir)
		if err := extractLayoutTar(ctx, p, gz, dir, s.archiveBudget()); err != nil {
			return nil, err
		}
		return s.importLayout(ctx, dir, ref)
	}
}

// openArchive opens the tar at p, through gzip when gz.
func openArchive(p string, gz bool) (io.ReadCloser, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	if !gz {
		return f, nil
	}
	zr, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		f.Close()
		return nil, invalid("read gzip: %v", err)
	}
	return struct {
		io.Reader
		io.Closer
	}{zr, f}, nil
}

// archiveBudget bounds the bytes of an image archive's tar, once
// decompressed: it holds the image's layers (compressed or not) and a
// little metadata, so more than the image bound (and a MiB) is a bomb.
// Nil: no bound.
func (s *Store) archiveBudget() *budget {
	if s.lim.MaxImage <= 0 {
		return nil
	}
	const slack = 1 << 20
	return &budget{left: s.lim.MaxImage + slack, err: fmt.Errorf("image archive unpacks to more than %s (the image limit): %w", sizeText(s.lim.MaxImage), stratus.ErrTooLarge)}
}

// sniffArchive reads the whole tar at p once and says whether it is a docker
// save tarball ("docker", manifest.json) or an OCI image layout ("oci"),
// reading at most what b allows (nil: no bound).
func sniffArchive(p string, b *budget) (kind string, gz bool, err error) {
	f, err := os.Open(p)
	if err != nil {
		return "", false, err
	}
	magic := make([]byte, 2)
	_, _ = io.ReadFull(f, magic)
	f.Close()
	gz = bytes.Equal(magic, []byte{0x1f, 0x8b})
	rc, err := openArchive(p, gz)
	if err != nil {
		return "", false, err
	}
	defer rc.Close()
	r, overErr := b.limit(rc)
	defer func() { err = overErr(err) }()
	tr := tar.NewReader(r)
	var docker, oci bool
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", false, invalid("read tar: %v (corrupt or truncated)", err)
		}
		switch path.Clean(h.Name) {
		case "manifest.json":
			docker = true
		case "oci-layout":
			oci = true
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return "", false, invalid("read tar entry %q: %v (corrupt or truncated)", h.Name, err)
		}
	}
	switch {
	case docker:
		return "docker", gz, nil
	case oci:
		return "oci", gz, nil
	}
	return "", false, invalid("not a docker save tarball or an OCI image layout (no manifest.json or oci-layout)")
}

func (s *Store) importDocker(ctx context.Context, p string, gz bool, ref string) (*Image, error) {
	opener := func() (io.ReadCloser, error) { return openArchive(p, gz) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, invalid("read manifest.json: %v", err)
	}
	var desc *tarball.Descriptor
	switch {
	case len(m) == 1:
		desc = &m[0]
	case len(m) == 0:
		return nil, invalid("manifest.json lists no image")
	case ref != "":
		want, err := normalizeRef(ref, false)
		if err != nil {
			return nil, err
		}
		for i := range m {
			for _, t := range m[i].RepoTags {
				if n, err := normalizeRef(t, false); err == nil && n == want {
					desc = &m[i]
				}
			}
		}
	}
	if desc == nil {
		var tags []string
		for _, d := range m {
			tags = append(tags, d.RepoTags...)
		}
		return nil, invalid("the tarball holds %d images; name one of %s", len(m), strings.Join(tags, ", "))
	}
	if ref == "" {
		if len(desc.RepoTags) == 0 {
			return nil, invalid("the tarball does not name its image; give a ref")
		}
		ref = desc.RepoTags[0]
	}
	var tag *name.Tag
	if len(m) > 1 {
		t, err := name.NewTag(desc.RepoTags[0])
		if err != nil {
			return nil, invalid("tag %q: %v", desc.RepoTags[0], err)
		}
		tag = &t
	}
	img, err := tarball.Image(opener, tag)
	if err != nil {
		return nil, invalid("read image: %v", err)
	}
	return s.add(ctx, ref, source{img: img})
}

// importLayout imports from an OCI image layout folder.
func (s *Store) importLayout(ctx context.Context, dir, ref string) (*Image, error) {
	lp, err := layout.FromPath(dir)
	if err != nil {
		return nil, invalid("read OCI layout: %v", err)
	}
	idx, err := lp.ImageIndex()
	if err != nil {
		return nil, invalid("read OCI layout: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, invalid("read OCI layout index.json: %v", err)
	}
	var want string
	if ref != "" {
		if want, err = normalizeRef(ref, false); err != nil {
			return nil, err
		}
	}
	refOf := func(d v1.Descriptor) string {
		for _, k := range []string{"io.containerd.image.name", "org.opencontainers.image.ref.name"} {
			if v := d.Annotations[k]; v != "" {
				return v
			}
		}
		return ""
	}
	var pick *v1.Descriptor
	if len(im.Manifests) == 1 {
		pick = &im.Manifests[0]
	} else if want != "" {
		for i, d := range im.Manifests {
			r := refOf(d)
			if r == "" {
				continue
			}
			n, err := normalizeRef(r, false)
			if err == nil && n == want || r == ref || strings.HasSuffix(want, ":"+r) {
				pick = &im.Manifests[i]
				break
			}
		}
	}
	if pick == nil {
		return nil, invalid("the layout holds %d manifests; name one by its ref annotation", len(im.Manifests))
	}
	if ref == "" {
		// A bare tag ("v1") in org.opencontainers.image.ref.name names no repository.
		if r := refOf(*pick); strings.Contains(r, "/") {
			ref = r
		}
		if ref == "" {
			return nil, invalid("the layout does not name its image; give a ref")
		}
	}
	desc := *pick
	if desc.MediaType.IsIndex() {
		child, err := idx.ImageIndex(desc.Digest)
		if err != nil {
			return nil, invalid("read index %s: %v", desc.Digest, err)
		}
		if desc, err = platformManifest(child); err != nil {
			return nil, err
		}
		idx = child
	}
	if !desc.MediaType.IsImage() {
		return nil, invalid("manifest %s has media type %q, not an image", desc.Digest, desc.MediaType)
	}
	img, err := idx.Image(desc.Digest)
	if err != nil {
		return nil, invalid("read image %s: %v", desc.Digest, err)
	}
	return s.add(ctx, ref, source{img: img, wantDigest: desc.Digest.String(), compressed: true})
}

// platformManifest picks the linux image for this machine's architecture
// from an image index (the only image when there is one).
func platformManifest(idx v1.ImageIndex) (v1.Descriptor, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return v1.Descriptor{}, invalid("read index: %v", err)
	}
	var images []v1.Descriptor
	for _, d := range im.Manifests {
		if !d.MediaType.IsImage() {
			continue
		}
		images = append(images, d)
		if d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == runtime.GOARCH {
			return d, nil
		}
	}
	if len(images) == 1 {
		return images[0], nil
	}
	return v1.Descriptor{}, invalid("index has no image for linux/%s", runtime.GOARCH)
}

// extractLayoutTar unpacks an OCI layout tar into dir: only folders and
// regular files, with checked names, reading at most what b allows (nil:
// no bound).
func extractLayoutTar(ctx context.Context, p string, gz bool, dir string, b *budget) (err error) {
	rc, err := openArchive(p, gz)
	if err != nil {
		return err
	}
	defer rc.Close()
	r, overErr := b.limit(rc)
	defer func() { err = overErr(err) }()
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return invalid("read tar: %v", err)
		}
		rel, err := cleanName(h.Name)
		if err != nil || rel == "" {
			if err != nil {
				return err
			}
			continue
		}
		if err := mkdirParents(dir, path.Dir(rel)); err != nil {
			return err
		}
		target := filepath.Join(dir, filepath.FromSlash(rel))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := mkdirParents(dir, rel); err != nil {
				return err
			}
		case tar.TypeReg, tar.TypeRegA:
			if err := replace(target); err != nil {
				return err
			}
			f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			var perr *os.PathError
			if errors.As(err, &perr) {
				return fmt.Errorf("write %q: %w", h.Name, err) // a full disk is not a bad archive
			}
			if err != nil {
				return invalid("read tar entry %q: %v", h.Name, err)
			}
		}
	}
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

// add checks src, unpacks the layers the store does not have yet into
// staging folders, and then moves them into place and records the image.
func (s *Store) add(ctx context.Context, ref string, src source) (*Image, error) {
	nref, err := normalizeRef(ref, false)
	if err != nil {
		return nil, err
	}
	img := src.img

	rawManifest, err := img.RawManifest()
	if err != nil {
		return nil, invalid("read manifest: %v", err)
	}
	digest := sha256Hex(rawManifest)
	if src.wantDigest != "" && src.wantDigest != digest {
		return nil, invalid("manifest digest is %s, not %s as its index says", digest, src.wantDigest)
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, invalid("read manifest: %v", err)
	}
	rawConfig, err := img.RawConfigFile()
	if err != nil {
		return nil, invalid("read config: %v", err)
	}
	if got := sha256Hex(rawConfig); got != m.Config.Digest.String() {
		return nil, invalid("config digest is %s, not %s as the manifest says", got, m.Config.Digest)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, invalid("read config: %v", err)
	}
	if cf.OS != "" && cf.OS != "linux" {
		return nil, invalid("image is for %s, not linux", cf.OS)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, invalid("read layers: %v", err)
	}
	if len(cf.RootFS.DiffIDs) != len(layers) {
		return nil, invalid("config lists %d layers, manifest %d", len(cf.RootFS.DiffIDs), len(layers))
	}
	if len(layers) == 0 {
		return nil, invalid("image has no layers")
	}
	var total int64
	if src.progress != nil {
		for _, l := range m.Layers {
			total += l.Size
		}
	}

	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.mu.RLock()
	known := make(map[string]int64, len(s.layers))
	for k, v := range s.layers {
		known[k] = v
	}
	used := s.usage()
	s.mu.RUnlock()

	// The layers the store has count against the image's bound; the new
	// ones against both bounds, as they are read.
	var size int64
	for i := range layers {
		size += known[cf.RootFS.DiffIDs[i].String()]
	}
	tooLarge := fmt.Errorf("image is more than %s, its layers decompressed (the image limit): %w", sizeText(s.lim.MaxImage), stratus.ErrTooLarge)
	if s.lim.MaxImage > 0 && size > s.lim.MaxImage {
		return nil, tooLarge
	}
	var added int64 // bytes of the new layers
	budgetFor := func() *budget {
		var b *budget
		if s.lim.MaxImage > 0 {
			b = &budget{left: s.lim.MaxImage - size, err: tooLarge}
		}
		if s.lim.MaxStore > 0 && (b == nil || s.lim.MaxStore-used-added < b.left) {
			b = &budget{left: s.lim.MaxStore - used - added, err: s.fullError(used)}
		}
		return b
	}

	staged := map[string]string{} // diff ID → staging folder
	defer func() {
		for _, dir := range staged {
			_ = removeAll(dir)
		}
	}()
	var done int64
	diffIDs := make([]string, len(layers))
	for i, l := range layers {
		diffID := cf.RootFS.DiffIDs[i].String()
		diffIDs[i] = diffID
		if _, ok := known[diffID]; ok {
			if src.progress != nil {
				done += m.Layers[i].Size
				src.progress(done, total)
			}
			continue
		}
		if _, ok := staged[diffID]; ok {
			continue // the same layer twice in one image
		}
		dir, err := os.MkdirTemp(s.tmpDir(), "layer-")
		if err != nil {
			return nil, err
		}
		staged[diffID] = dir
		var onRead func(n int64)
		if src.progress != nil {
			onRead = func(n int64) { done += n; src.progress(done, total) }
		}
		var wantDigest string
		if src.compressed {
			wantDigest = m.Layers[i].Digest.String()
		}
		n, err := readLayer(ctx, l, wantDigest, diffID, onRead, dir, budgetFor())
		if err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", i, diffID, err)
		}
		known[diffID] = n
		size += n
		added += n
	}

	out := Image{
		Ref:       nref,
		Digest:    digest,
		Layers:    diffIDs,
		Config:    configOf(cf),
		Size:      size,
		CreatedAt: s.now().UTC(),
	}
	// Sync the new layers, move them into place, sync their names, then
	// record the image. A crash in between leaves unreferenced layer
	// folders (Open removes them), never a reference to a missing one.
	if len(staged) > 0 {
		if err := syncTree(s.tmpDir()); err != nil {
			return nil, fmt.Errorf("sync layers: %w", err)
		}
	}
	for diffID, dir := range staged {
		if err := os.Rename(dir, s.layerDir(diffID)); err != nil {
			return nil, err
		}
		delete(staged, diffID)
	}
	if err := syncDir(filepath.Join(s.dir, "layers")); err != nil {
		return nil, fmt.Errorf("sync layers: %w", err)
	}
	s.mu.RLock()
	images := slices.DeleteFunc(slices.Clone(s.images), func(i Image) bool { return i.Ref == nref })
	layerSizes := make(map[string]int64, len(s.layers)+len(diffIDs))
	for k, v := range s.layers {
		layerSizes[k] = v
	}
	s.mu.RUnlock()
	for _, d := range diffIDs {
		layerSizes[d] = known[d]
	}
	images = append(images, out)
	if err := s.commit(images, layerSizes); err != nil {
		return nil, err
	}
	c := cloneImage(out)
	return &c, nil
}

// readLayer unpacks one layer into dir, checking the compressed stream
// against wantDigest (when set) and the uncompressed one against diffID.
// It stops with b's error as soon as the uncompressed stream has more
// bytes than b allows (nil: no bound).
func readLayer(ctx context.Context, l v1.Layer, wantDigest, diffID string, onRead func(int64), dir string, b *budget) (n int64, err error) {
	var rc io.ReadCloser
	if wantDigest != "" {
		rc, err = l.Compressed()
	} else {
		rc, err = l.Uncompressed()
	}
	if err != nil {
		return 0, invalid("open: %v", err)
	}
	defer rc.Close()
	var r io.Reader = rc
	if onRead != nil {
		r = &progressReader{r: r, f: onRead}
	}
	var ch hash.Hash
	if wantDigest != "" {
		ch = sha256.New()
		br := bufio.NewReader(io.TeeReader(r, ch))
		dr, err := decompress(br)
		if err != nil {
			return 0, err
		}
		if c, ok := dr.(io.Closer); ok {
			defer c.Close()
		}
		// After the tar, drain the compressed stream so ch covers all of it.
		r = io.MultiReader(dr, drainReader{br})
	}
	r, overErr := b.limit(r)
	defer func() { err = overErr(err) }()
	uh := sha256.New()
	n, err = unpackLayer(ctx, io.TeeReader(r, uh), dir)
	if err != nil {
		return n, err
	}
	if got := "sha256:" + hex.EncodeToString(uh.Sum(nil)); got != diffID {
		return n, invalid("uncompressed content has digest %s, not %s as the config says", got, diffID)
	}
	if ch != nil {
		if got := "sha256:" + hex.EncodeToString(ch.Sum(nil)); got != wantDigest {
			return n, invalid("blob has digest %s, not %s as the manifest says", got, wantDigest)
		}
	}
	return n, nil
}

// limit returns r bounded by b (r itself when b is nil), and a function
// that turns the error of what read it into b.err when the bound stopped
// it: a tar reader reports a failed read as a broken tar, which would hide
// which bound was met.
func (b *budget) limit(r io.Reader) (io.Reader, func(error) error) {
	if b == nil {
		return r, func(err error) error { return err }
	}
	br := &budgetReader{r: r, b: b}
	return br, func(err error) error {
		if br.over && err != nil {
			return b.err
		}
		return err
	}
}

// budgetReader reads r and takes what it reads from b; once r has more
// than b allows, it fails with b.err.
type budgetReader struct {
	r    io.Reader
	b    *budget
	over bool
}

func (br *budgetReader) Read(p []byte) (int, error) {
	if br.over {
		return 0, br.b.err
	}
	n, err := br.r.Read(p)
	if terr := br.b.take(int64(n)); terr != nil {
		br.over = true
		return 0, terr
	}
	return n, err
}

// drainReader reads r to its end and contributes nothing.
type drainReader struct{ r io.Reader }

func (d drainReader) Read([]byte) (int, error) {
	if _, err := io.Copy(io.Discard, d.r); err != nil {
		return 0, invalid("read blob: %v", err)
	}
	return 0, io.EOF
}

// decompress picks the decompressor from the stream's magic bytes (media
// types lie more often than magic does).
func decompress(br *bufio.Reader) (io.Reader, error) {
	magic, _ := br.Peek(4)
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, invalid("read gzip: %v", err)
		}
		zr.Multistream(true)
		return zr, nil
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, invalid("read zstd: %v", err)
		}
		return zr.IOReadCloser(), nil
	}
	return br, nil
}

type progressReader struct {
	r io.Reader
	f func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.f(int64(n))
	}
	return n, err
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func configOf(cf *v1.ConfigFile) ImageConfig {
	c := ImageConfig{
		Entrypoint: slices.Clone(cf.Config.Entrypoint),
		Cmd:        slices.Clone(cf.Config.Cmd),
		Env:        slices.Clone(cf.Config.Env),
		WorkingDir: cf.Config.WorkingDir,
		User:       cf.Config.User,
	}
	for p := range cf.Config.ExposedPorts {
		c.ExposedPorts = append(c.ExposedPorts, p)
	}
	slices.Sort(c.ExposedPorts)
	return c
}
