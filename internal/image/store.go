// Package image keeps OCI container images on the local disk: it imports
// `docker save` tarballs and OCI image layouts, pulls from OCI registries
// (github.com/google/go-containerregistry), and unpacks each layer once, by
// the digest of its uncompressed content, into a folder shared by every
// image that has it.
//
// On disk, under the store's folder:
//
//	index.json        the images and the size of each stored layer (atomic writes)
//	layers/HEX/       one unpacked layer, HEX the hex of its diff ID (sha256)
//	rootfs/HEX[-idsN] an image's flattened root (see Root)
//	tmp/              staging; emptied by Open
//
// Bounds: an image whose layers decompress to more than Config.MaxImage
// bytes is refused (ErrTooLarge), and so is one that would make the store
// keep more than Config.MaxStore bytes (ErrNoSpace), counting its layers
// and its flattened roots; both are checked while the layers are read, so
// a bomb stops at the bound, and nothing of a refused image stays.
//
// Durability: a layer or root is synced to disk before the rename that
// names it, and the rename is synced before the index names it. A crash
// leaves the old index or the new one; Open removes what no index names
// (staging, layers and roots of images that were never recorded or were
// being removed).
//
// A layer folder keeps the OCI whiteout markers of its layer as empty files
// (.wh.NAME, .wh..wh..opq); Flatten applies them, and an overlay driver
// converts them. Layers are unpacked as hostile input: entries with "..",
// absolute names, writes through symlinks and hard links that leave the
// layer are refused; setuid and setgid bits are dropped; device nodes and
// fifos are skipped. Every layer is checked against its digests while it is
// read, in a staging folder renamed into place only when the whole image has
// been read, so a failed Import or Pull stores nothing.
//
// Locking: opMu serializes the operations that change the layer folders
// (Import, Pull, Remove); mu guards the in-memory index. Lock order: opMu,
// then mu. List and Get take only mu, so they never wait for a pull. A
// fetch from Config.Blobs runs in the goroutine of the Find that started
// it; concurrent Finds of the same digest wait for it (flights.mu is held
// only to look up or record a fetch, never with opMu or mu).
//
// Several servers (Config.Blobs): every image added (Import, Pull) is also
// published, before the add returns, as the blob image/DIGEST (an OCI
// image layout tar of its manifest, config and compressed layers, which
// imports again with the same manifest digest) and ref/REF (its digest).
// Find answers from this store and, when the image is not here or its ref
// names another digest in the blobs, fetches the archive once, imports it
// (its manifest digest must be the one its name gives, every blob the one
// the manifest gives) and then answers. See blobs.go.
package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"golang.org/x/sys/unix"

	"github.com/stratus-run/stratus"
)

// Image is one stored image.
type Image struct {
	Ref       string      `json:"ref"`    // fully qualified, as name.Reference.Name() gives it
	Digest    string      `json:"digest"` // manifest digest
	Layers    []string    `json:"layers"` // diff IDs (digests of the uncompressed layers), lowest first
	Config    ImageConfig `json:"config"`
	Size      int64       `json:"size"`      // bytes of the uncompressed layers
	CreatedAt time.Time   `json:"createdAt"` // when the store got it
}

// ImageConfig is the part of an image's configuration that runs it.
type ImageConfig struct {
	Entrypoint   []string `json:"entrypoint,omitempty"`
	Cmd          []string `json:"cmd,omitempty"`
	Env          []string `json:"env,omitempty"`
	WorkingDir   string   `json:"workingDir,omitempty"`
	User         string   `json:"user,omitempty"`
	ExposedPorts []string `json:"exposedPorts,omitempty"` // "8080/tcp", sorted
}

// Store keeps images under one folder. Its methods are safe for concurrent use.
type Store struct {
	dir string
	now func() time.Time
	// idBase, when not zero, shifts the owners of flattened roots: a
	// file the image gives uid (or gid) N is owned by idBase+N on the
	// host, where a sandbox's user namespace maps N (see Root).
	idBase uint32

	maxImage, maxStore int64 // Config.MaxImage and MaxStore

	opMu sync.Mutex // serializes Import, Pull and Remove

	mu     sync.RWMutex
	images []Image          // guarded by mu
	layers map[string]int64 // diff ID → uncompressed size; guarded by mu
	roots  map[string]int64 // rootfs folder name → bytes it is counted as; guarded by mu

	blobs   Blobs   // Config.Blobs; nil: none
	flights flights // fetches from blobs, one per digest
}

// Config configures a Store; every field but Dir may be left zero.
type Config struct {
	// Dir is the store's folder (required); Open creates it if needed.
	Dir string
	// IDBase is the host id of a sandbox's uid and gid 0 when sandboxes
	// have a user namespace; 0 when they do not. The owners of flattened
	// roots are shifted by it (see Root).
	IDBase uint32
	// MaxImage bounds one image: the bytes of its layers decompressed.
	// Zero: no bound.
	MaxImage int64
	// MaxStore bounds everything the store keeps: its layers and its
	// flattened roots. Zero: no bound.
	MaxStore int64
	// Blobs, when set, is where the servers of a cluster share their
	// images (a *blobs.Store): adds publish to it, Find fetches from it.
	// Nil: this store is the only one.
	Blobs Blobs
}

type indexFile struct {
	Images []Image          `json:"images"`
	Layers map[string]int64 `json:"layers"`
	// Roots are the bytes of each flattened root (its folder's name).
	Roots map[string]int64 `json:"roots,omitempty"`
}

// Open opens the store in cfg.Dir, creating it if needed, and removes
// what an interrupted import left in its staging folder. An empty Dir is
// ErrInvalid.
func Open(cfg Config) (*Store, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("open image store: no folder: %w", stratus.ErrInvalid)
	}
	dir := cfg.Dir
	s := &Store{
		dir: dir, now: time.Now, idBase: cfg.IDBase, maxImage: cfg.MaxImage, maxStore: cfg.MaxStore,
		layers: map[string]int64{}, roots: map[string]int64{}, blobs: cfg.Blobs,
	}
	if err := removeAll(s.tmpDir()); err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	for _, d := range []string{dir, filepath.Join(dir, "layers"), s.tmpDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("open image store: %w", err)
		}
	}
	var rootSizes map[string]int64
	b, err := os.ReadFile(s.indexPath())
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("open image store: %w", err)
	default:
		var f indexFile
		if err := json.Unmarshal(b, &f); err != nil {
			return nil, fmt.Errorf("open image store: read %s: %v: %w", s.indexPath(), err, stratus.ErrInvalid)
		}
		s.images = f.Images
		if f.Layers != nil {
			s.layers = f.Layers
		}
		rootSizes = f.Roots
	}
	if err := s.removeLeftovers(rootSizes); err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	return s, nil
}

// removeLeftovers removes what the index does not name: index temp files,
// layers of an import that crashed before its commit (or of a remove that
// crashed after it), and roots of images no longer stored. It counts the
// roots that stay. Open calls it before anything else uses the store.
func (s *Store) removeLeftovers(rootSizes map[string]int64) error {
	var errs []error
	if tmps, _ := filepath.Glob(filepath.Join(s.dir, ".index-*")); len(tmps) > 0 {
		for _, p := range tmps {
			errs = append(errs, os.Remove(p))
		}
	}
	layersDir := filepath.Join(s.dir, "layers")
	ents, err := os.ReadDir(layersDir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if _, ok := s.layers["sha256:"+e.Name()]; !ok {
			errs = append(errs, removeAll(filepath.Join(layersDir, e.Name())))
		}
	}
	sizes := map[string]int64{} // digest hex → image size
	for _, img := range s.images {
		sizes[strings.TrimPrefix(img.Digest, "sha256:")] = img.Size
	}
	rootsDir := filepath.Join(s.dir, "rootfs")
	ents, err = os.ReadDir(rootsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, e := range ents {
		hex, _, _ := strings.Cut(e.Name(), "-")
		size, ok := sizes[hex]
		if !ok || !e.IsDir() {
			errs = append(errs, removeAll(filepath.Join(rootsDir, e.Name())))
			continue
		}
		if n, ok := rootSizes[e.Name()]; ok {
			size = n
		}
		s.roots[e.Name()] = size
	}
	return errors.Join(errs...)
}

// usage is what the store keeps, as counted against Config.MaxStore: its
// layers and its roots. The caller holds mu.
func (s *Store) usage() int64 {
	var n int64
	for _, v := range s.layers {
		n += v
	}
	for _, v := range s.roots {
		n += v
	}
	return n
}

// Usage returns the bytes the store keeps, as counted against its
// MaxStore bound: its layers decompressed and its flattened roots.
func (s *Store) Usage() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.usage()
}

// sizeText writes a byte count as people read it: "10 GiB", "64 MiB",
// or bytes when it is not a whole number of either.
func sizeText(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// fullError is the refusal of an image the store has no room for.
func (s *Store) fullError(used int64) error {
	return fmt.Errorf("image store is full: %d of %d bytes; remove images with stratus image rm: %w", used, s.maxStore, stratus.ErrNoSpace)
}

func (s *Store) tmpDir() string    { return filepath.Join(s.dir, "tmp") }
func (s *Store) indexPath() string { return filepath.Join(s.dir, "index.json") }

// layerDir is where the layer with this diff ID is unpacked.
func (s *Store) layerDir(diffID string) string {
	return filepath.Join(s.dir, "layers", strings.TrimPrefix(diffID, "sha256:"))
}

// List returns the stored images, sorted by ref.
func (s *Store) List() ([]Image, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Image, len(s.images))
	for i, img := range s.images {
		out[i] = cloneImage(img)
	}
	slices.SortFunc(out, func(a, b Image) int { return strings.Compare(a.Ref, b.Ref) })
	return out, nil
}

// Get returns the image with this ref ("alpine", "localhost:5000/app:v1")
// or manifest digest ("sha256:...") from this store only (Find also asks
// Config.Blobs). A missing image is ErrNotFound.
func (s *Store) Get(ref string) (*Image, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	i := s.find(ref)
	if i < 0 {
		return nil, fmt.Errorf("image %q: %w", ref, stratus.ErrNotFound)
	}
	img := cloneImage(s.images[i])
	return &img, nil
}

// find returns the index of the image with this ref or digest, or -1.
// The caller holds mu.
func (s *Store) find(ref string) int {
	if strings.HasPrefix(ref, "sha256:") {
		return slices.IndexFunc(s.images, func(img Image) bool { return img.Digest == ref })
	}
	n, err := normalizeRef(ref, false)
	if err != nil {
		return -1
	}
	return slices.IndexFunc(s.images, func(img Image) bool { return img.Ref == n })
}

// Remove removes the image with this ref or digest (all refs of it, for a
// digest) and deletes the layers no other image uses. When removing it would
// drop the last ref of a digest for which inUse reports true, Remove changes
// nothing and returns ErrConflict. A missing image is ErrNotFound.
//
// Remove changes this server's store only: the image's blobs in
// Config.Blobs stay, since other servers may run it (and a later Find
// here fetches it again).
func (s *Store) Remove(ref string, inUse func(digest string) bool) error {
	s.opMu.Lock()
	defer s.opMu.Unlock()

	s.mu.RLock()
	var keep, drop []Image
	if strings.HasPrefix(ref, "sha256:") {
		for _, img := range s.images {
			if img.Digest == ref {
				drop = append(drop, img)
			} else {
				keep = append(keep, img)
			}
		}
	} else if i := s.find(ref); i >= 0 {
		drop = []Image{s.images[i]}
		keep = slices.Concat(s.images[:i], s.images[i+1:])
	}
	layers := s.layers
	s.mu.RUnlock()
	if len(drop) == 0 {
		return fmt.Errorf("image %q: %w", ref, stratus.ErrNotFound)
	}
	for _, d := range drop {
		stillThere := slices.ContainsFunc(keep, func(img Image) bool { return img.Digest == d.Digest })
		if !stillThere && inUse != nil && inUse(d.Digest) {
			return fmt.Errorf("remove image %q (%s): in use: %w", d.Ref, d.Digest, stratus.ErrConflict)
		}
	}

	used := map[string]bool{}
	for _, img := range keep {
		for _, l := range img.Layers {
			used[l] = true
		}
	}
	newLayers := map[string]int64{}
	var freed []string
	for l, size := range layers {
		if used[l] {
			newLayers[l] = size
		} else {
			freed = append(freed, l)
		}
	}
	if err := s.commit(keep, newLayers); err != nil {
		return fmt.Errorf("remove image %q: %w", ref, err)
	}
	// The index no longer names them: a failure here only leaks disk.
	var errs []error
	for _, l := range freed {
		if err := removeAll(s.layerDir(l)); err != nil {
			errs = append(errs, err)
		}
	}
	for _, d := range drop {
		if !slices.ContainsFunc(keep, func(img Image) bool { return img.Digest == d.Digest }) {
			// Its roots for every id base an earlier server used.
			roots, _ := filepath.Glob(filepath.Join(s.dir, "rootfs", strings.TrimPrefix(d.Digest, "sha256:")) + "*")
			for _, r := range roots {
				if err := removeAll(r); err != nil {
					errs = append(errs, err)
					continue
				}
				s.mu.Lock()
				delete(s.roots, filepath.Base(r))
				s.mu.Unlock()
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove image %q: delete layers: %w", ref, err)
	}
	return nil
}

// RootFS returns the unpacked layer folders of img, lowest first, for an
// overlay mount (the OCI whiteout markers still in them).
func (s *Store) RootFS(img *Image) []string {
	dirs := make([]string, len(img.Layers))
	for i, l := range img.Layers {
		dirs[i] = s.layerDir(l)
	}
	return dirs
}

// commit writes the index atomically and then makes it the in-memory one.
// The caller holds opMu.
func (s *Store) commit(images []Image, layers map[string]int64) error {
	s.mu.RLock()
	roots := maps.Clone(s.roots)
	s.mu.RUnlock()
	b, err := json.MarshalIndent(indexFile{Images: images, Layers: layers, Roots: roots}, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(s.indexPath(), b); err != nil {
		return err
	}
	s.mu.Lock()
	s.images, s.layers = images, layers
	s.mu.Unlock()
	return nil
}

func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".index-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op after the rename
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// syncDir fsyncs the folder dir, so that the names made or removed in it
// last.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncTree makes everything written under dir durable with one syncfs(2)
// of its file system, rather than an fsync per file of a layer.
func syncTree(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return unix.Syncfs(int(d.Fd()))
}

// removeAll removes a folder even when some of its folders lack the owner's
// write or search bit (a layer may hold a 0o555 folder).
func removeAll(path string) error {
	if err := os.RemoveAll(path); err == nil {
		return nil
	}
	_ = filepath.WalkDir(path, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(path)
}

// normalizeRef returns the fully qualified form of ref
// ("alpine" → "index.docker.io/library/alpine:latest").
func normalizeRef(ref string, insecure bool) (string, error) {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %v: %w", ref, err, stratus.ErrInvalid)
	}
	return r.Name(), nil
}

func cloneImage(img Image) Image {
	img.Layers = slices.Clone(img.Layers)
	img.Config.Entrypoint = slices.Clone(img.Config.Entrypoint)
	img.Config.Cmd = slices.Clone(img.Config.Cmd)
	img.Config.Env = slices.Clone(img.Config.Env)
	img.Config.ExposedPorts = slices.Clone(img.Config.ExposedPorts)
	return img
}
