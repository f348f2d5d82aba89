package image

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/zstd"
	"github.com/stratus-run/stratus"
)

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
	// fromBlob: the image comes from Config.Blobs (and wantDigest is the
	// digest its blob's name gives); it is not published back.
	fromBlob bool
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
	tooLarge := fmt.Errorf("image is more than %s, its layers decompressed (the image limit): %w", sizeText(s.maxImage), stratus.ErrTooLarge)
	if s.maxImage > 0 && size > s.maxImage {
		return nil, tooLarge
	}
	var added int64 // bytes of the new layers
	budgetFor := func() *budget {
		var b *budget
		if s.maxImage > 0 {
			b = &budget{left: s.maxImage - size, err: tooLarge}
		}
		if s.maxStore > 0 && (b == nil || s.maxStore-used-added < b.left) {
			b = &budget{left: s.maxStore - used - added, err: s.fullError(used)}
		}
		return b
	}

	staged := map[string]string{} // diff ID → staging folder
	defer func() {
		for _, dir := range staged {
			_ = removeAll(dir)
		}
	}()
	// With blobs, the compressed layers read are kept, to publish the
	// image without reading its source twice.
	var kept map[string]string // compressed digest → file
	if s.blobs != nil && !src.fromBlob && src.compressed {
		kept = map[string]string{}
		defer func() {
			for _, p := range kept {
				_ = os.Remove(p)
			}
		}()
	}
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
		var keep *os.File
		if kept != nil {
			if keep, err = os.CreateTemp(s.tmpDir(), "blob-"); err != nil {
				return nil, err
			}
			kept[wantDigest] = keep.Name()
		}
		var keepW io.Writer // nil unless keep is set (a nil *os.File is not a nil io.Writer)
		if keep != nil {
			keepW = keep
		}
		n, err := readLayer(ctx, l, wantDigest, diffID, onRead, dir, budgetFor(), keepW)
		if keep != nil {
			if cerr := keep.Close(); err == nil && cerr != nil {
				err = cerr
			}
		}
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
	// Every layer is checked: publish before anything here changes, so
	// that a failed publish leaves the store as it was.
	if s.blobs != nil && !src.fromBlob {
		if err := s.publish(ctx, img, rawManifest, nref, digest, kept); err != nil {
			return nil, err
		}
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
// bytes than b allows (nil: no bound). When keep is not nil and the layer
// is read compressed, the compressed stream is copied to it.
func readLayer(ctx context.Context, l v1.Layer, wantDigest, diffID string, onRead func(int64), dir string, b *budget, keep io.Writer) (n int64, err error) {
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
		var sink io.Writer = ch
		if keep != nil {
			sink = io.MultiWriter(ch, keep)
		}
		br := bufio.NewReader(io.TeeReader(r, sink))
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
