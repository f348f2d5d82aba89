package image

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// rootDir is where img's flattened root filesystem is kept.
func (s *Store) rootDir(digest string) string {
	return filepath.Join(s.dir, "rootfs", strings.TrimPrefix(digest, "sha256:"))
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
	s.mu.RUnlock()
	if gone {
		return "", fmt.Errorf("image %q was removed", img.Ref)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return "", fmt.Errorf("flatten image %q: %w", img.Ref, err)
	}
	tmp, err := os.MkdirTemp(s.tmpDir(), "rootfs-")
	if err != nil {
		return "", fmt.Errorf("flatten image %q: %w", img.Ref, err)
	}
	if err := s.Flatten(ctx, img, tmp); err != nil {
		_ = removeAll(tmp)
		return "", err
	}
	// The root of a container is world-readable, as in an image.
	if err := os.Chmod(tmp, 0o755); err != nil {
		_ = removeAll(tmp)
		return "", fmt.Errorf("flatten image %q: %w", img.Ref, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		_ = removeAll(tmp)
		return "", fmt.Errorf("flatten image %q: %w", img.Ref, err)
	}
	return dir, nil
}
