package image

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// rootDir is where img's flattened root filesystem is kept: one per id
// base, so that a server with another one flattens anew.
func (s *Store) rootDir(digest string) string {
	d := filepath.Join(s.dir, "rootfs", strings.TrimPrefix(digest, "sha256:"))
	if s.idBase != 0 {
		d += "-ids" + strconv.FormatUint(uint64(s.idBase), 10)
	}
	return d
}

// shiftOwners adds s.idBase to the uid and gid of every entry under root
// whose ids are a sandbox's (at most sandbox.MaxUserID), so that in a
// sandbox's user namespace each file has the owner the image gave it.
// Ids above the range stay: the sandbox sees them as nobody's.
func (s *Store) shiftOwners(root string) error {
	if s.idBase == 0 || os.Geteuid() != 0 {
		return nil
	}
	shift := func(id uint32) int {
		if id > sandbox.MaxUserID {
			return int(id)
		}
		return int(s.idBase + id)
	}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		return os.Lchown(p, shift(st.Uid), shift(st.Gid))
	})
}

// Root returns a folder holding img's whole root filesystem, flattened
// once per image digest and then shared: sandboxes mount it read-only.
// Remove deletes it with the image.
func (s *Store) Root(ctx context.Context, img *Image) (string, error) {
	dir := s.rootDir(img.Digest)
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	// One flatten at a time; a second caller finds the folder made.
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	s.mu.RLock()
	gone := s.find(img.Digest) < 0
	used := s.usage()
	s.mu.RUnlock()
	if gone {
		return "", fmt.Errorf("image %q was removed", img.Ref)
	}
	// The root counts against the store's bound with its real size,
	// which hard links can make larger than the image.
	var b *budget
	if s.maxStore > 0 {
		b = &budget{left: s.maxStore - used, err: s.fullError(used)}
	}
	if s.maxImage > 0 && (b == nil || s.maxImage < b.left) {
		b = &budget{left: s.maxImage, err: fmt.Errorf("root filesystem is more than %s (the image limit): %w", sizeText(s.maxImage), stratus.ErrTooLarge)}
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return "", fmt.Errorf("flatten image %q: %w", img.Ref, err)
	}
	tmp, err := os.MkdirTemp(s.tmpDir(), "rootfs-")
	if err != nil {
		return "", fmt.Errorf("flatten image %q: %w", img.Ref, err)
	}
	left := int64(-1)
	if b != nil {
		left = b.left
	}
	if err := s.flatten(ctx, img, tmp, b); err != nil {
		_ = removeAll(tmp)
		return "", err
	}
	// The root of a container is world-readable, as in an image.
	if err := os.Chmod(tmp, 0o755); err != nil {
		_ = removeAll(tmp)
		return "", fmt.Errorf("flatten image %q: %w", img.Ref, err)
	}
	if err := s.shiftOwners(tmp); err != nil {
		_ = removeAll(tmp)
		return "", fmt.Errorf("flatten image %q: shift owners: %w", img.Ref, err)
	}
	if err := syncTree(tmp); err != nil {
		_ = removeAll(tmp)
		return "", fmt.Errorf("flatten image %q: %w", img.Ref, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		_ = removeAll(tmp)
		return "", fmt.Errorf("flatten image %q: %w", img.Ref, err)
	}
	size := img.Size
	if b != nil {
		size = left - b.left
	}
	s.mu.Lock()
	s.roots[filepath.Base(dir)] = size
	images, layers := s.images, s.layers
	s.mu.Unlock()
	// The root is a cache of the layers: a crash before this commit
	// leaves it counted by the image's size at the next start.
	if err := s.commit(images, layers); err != nil {
		return "", fmt.Errorf("flatten image %q: %w", img.Ref, err)
	}
	return dir, nil
}
