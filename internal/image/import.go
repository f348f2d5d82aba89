package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/stratus-run/stratus"
)

// Import stores the image in path: a `docker save` tarball (plain or
// gzipped), an OCI image layout folder, or an OCI image layout tar. ref names
// it in the store; when empty, the archive's own name for it is used
// (docker's RepoTags, or the layout's ref annotation). A missing file is
// ErrNotFound; anything unreadable, inconsistent or not runnable is
// ErrInvalid, and then the store is unchanged.
func (s *Store) Import(ctx context.Context, p string, ref string) (*Image, error) {
	img, err := s.importPath(ctx, p, ref, "")
	if err != nil {
		return nil, fmt.Errorf("import image %s: %w", p, err)
	}
	return img, nil
}

// importPath imports the archive or layout at p. fromBlob, when set, is
// the manifest digest the blob p was fetched by names: the archive must
// hold that image, which is not published again.
func (s *Store) importPath(ctx context.Context, p string, ref, fromBlob string) (*Image, error) {
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no such file: %w", stratus.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return s.importLayout(ctx, p, ref, fromBlob)
	}
	kind, gz, err := sniffArchive(p, s.archiveBudget())
	if err != nil {
		return nil, err
	}
	switch kind {
	case "docker":
		return s.importDocker(ctx, p, gz, ref, fromBlob)
	default: // "oci"
		dir, err := os.MkdirTemp(s.tmpDir(), "layout-")
		if err != nil {
			return nil, err
		}
		defer removeAll(dir)
		if err := extractLayoutTar(ctx, p, gz, dir, s.archiveBudget()); err != nil {
			return nil, err
		}
		return s.importLayout(ctx, dir, ref, fromBlob)
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
	if s.maxImage <= 0 {
		return nil
	}
	const slack = 1 << 20
	return &budget{left: s.maxImage + slack, err: fmt.Errorf("image archive unpacks to more than %s (the image limit): %w", sizeText(s.maxImage), stratus.ErrTooLarge)}
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

func (s *Store) importDocker(ctx context.Context, p string, gz bool, ref, fromBlob string) (*Image, error) {
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
	return s.add(ctx, ref, source{img: img, wantDigest: fromBlob, fromBlob: fromBlob != ""})
}

// importLayout imports from an OCI image layout folder.
func (s *Store) importLayout(ctx context.Context, dir, ref, fromBlob string) (*Image, error) {
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
	if ref == "" && fromBlob != "" {
		// Found by digest: named by it, in the repository the archive names.
		ref = repoAt(refOf(*pick), fromBlob)
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
	if fromBlob != "" && desc.Digest.String() != fromBlob {
		return nil, invalid("archive holds image %s, not %s as its name says", desc.Digest, fromBlob)
	}
	img, err := idx.Image(desc.Digest)
	if err != nil {
		return nil, invalid("read image %s: %v", desc.Digest, err)
	}
	return s.add(ctx, ref, source{img: img, wantDigest: desc.Digest.String(), compressed: true, fromBlob: fromBlob != ""})
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
		case tar.TypeReg:
			// tar.Reader reports an old archive's regular file ('\x00',
			// the deprecated TypeRegA) as TypeReg too.
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
