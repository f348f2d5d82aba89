package blobs

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Getter is what GetFile needs: a Store, or a fake of one in tests.
type Getter interface {
	Get(ctx context.Context, name string, w io.Writer) error
}

// Putter is what PutFile needs: a Store, or a fake of one in tests.
type Putter interface {
	Put(ctx context.Context, name string, r io.Reader) error
}

// GetFile fetches the object name into the file path (mode perm). It
// writes a temporary file in path's folder, syncs it and renames it into
// place only when Get succeeded, so path never holds a partial or
// unverified blob. Errors are Get's.
func GetFile(ctx context.Context, g Getter, name, path string, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".blob-*")
	if err != nil {
		return fmt.Errorf("get blob %s: %w", name, err)
	}
	defer os.Remove(f.Name()) // no-op after the rename
	if err := g.Get(ctx, name, f); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("get blob %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("get blob %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("get blob %s: %w", name, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("get blob %s: %w", name, err)
	}
	return nil
}

// PutFile stores the file at path under name (see Store.Put).
func PutFile(ctx context.Context, p Putter, name, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("put blob %s: %w", name, err)
	}
	defer f.Close()
	return p.Put(ctx, name, f)
}
