package agent

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/stratus-run/stratus"
)

// extract unpacks the tar read from r into folder dst (created if
// missing) through an os.Root, so that nothing is written outside dst:
// absolute names, ".." and names under a symlink are refused, and so are
// entries other than folders, regular files and symlinks. Regular files
// end read-only (their permission bits without any w); folders keep
// theirs. An entry that exists already (an earlier attempt) is replaced.
// The regular files may hold limit bytes at most, counted as they are
// written.
func extract(r io.Reader, dst string, limit int64) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("extract into %s: %w", dst, err)
	}
	root, err := os.OpenRoot(dst)
	if err != nil {
		return fmt.Errorf("extract into %s: %w", dst, err)
	}
	defer root.Close()

	type dirMode struct {
		name string
		perm fs.FileMode
	}
	var dirs []dirMode
	seen := make(map[string]bool)
	budget := limit
	tr := tar.NewReader(r)
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		if n >= maxMountEntries {
			return fmt.Errorf("tar: more than %d entries: %w", maxMountEntries, stratus.ErrTooLarge)
		}
		name, err := entryName(hdr.Name)
		if err != nil {
			return err
		}
		if name == "." {
			continue // the root itself
		}
		if seen[name] {
			return fmt.Errorf("tar entry %q: duplicate: %w", hdr.Name, stratus.ErrInvalid)
		}
		seen[name] = true
		if err := makeParents(root, name); err != nil {
			return err
		}
		perm := fs.FileMode(hdr.Mode).Perm()
		switch hdr.Typeflag {
		case tar.TypeDir:
			fi, err := root.Lstat(name)
			if err == nil && !fi.IsDir() {
				if err := root.RemoveAll(name); err != nil {
					return fmt.Errorf("tar entry %q: %w", name, err)
				}
			}
			if err == nil && fi.IsDir() {
				err = root.Chmod(name, 0o700) // an earlier attempt's
			} else {
				err = root.Mkdir(name, 0o700)
			}
			if err != nil {
				return fmt.Errorf("tar entry %q: %w", name, err)
			}
			dirs = append(dirs, dirMode{name, perm})
		case tar.TypeReg: // the reader turns the old TypeRegA into it
			if hdr.Size < 0 || hdr.Size > budget {
				return fmt.Errorf("tar entry %q: %d bytes: the mount's files exceed %d bytes: %w", name, hdr.Size, limit, stratus.ErrTooLarge)
			}
			if err := removeEntry(root, name); err != nil {
				return err
			}
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fmt.Errorf("tar entry %q: %w", name, err)
			}
			written, err := io.Copy(f, tr) // tr yields hdr.Size bytes at most
			if err == nil && written != hdr.Size {
				err = io.ErrUnexpectedEOF
			}
			if err == nil {
				err = f.Chmod(perm &^ 0o222)
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("tar entry %q: %w", name, err)
			}
			budget -= written
		case tar.TypeSymlink:
			if hdr.Linkname == "" || strings.IndexByte(hdr.Linkname, 0) >= 0 {
				return fmt.Errorf("tar entry %q: bad symlink target %q: %w", name, hdr.Linkname, stratus.ErrInvalid)
			}
			if err := removeEntry(root, name); err != nil {
				return err
			}
			if err := root.Symlink(hdr.Linkname, name); err != nil {
				return fmt.Errorf("tar entry %q: %w", name, err)
			}
		default:
			return fmt.Errorf("tar entry %q: type %q not allowed (only folders, regular files and symlinks): %w", name, string(hdr.Typeflag), stratus.ErrInvalid)
		}
	}
	// Folders get their modes last (a read-only one may hold files), the
	// deepest first.
	slices.Reverse(dirs)
	for _, d := range dirs {
		if err := root.Chmod(d.name, d.perm); err != nil {
			return fmt.Errorf("tar entry %q: %w", d.name, err)
		}
	}
	return nil
}

// entryName checks a tar entry's name and returns it cleaned ("a/b", "."
// for the root): it must be relative, without "..", without NUL.
func entryName(name string) (string, error) {
	n := strings.TrimPrefix(name, "./")
	n = strings.TrimSuffix(n, "/")
	if n == "" || n == "." {
		return ".", nil
	}
	if strings.IndexByte(n, 0) >= 0 || !filepath.IsLocal(n) || path.Clean(n) != n || strings.Contains(n, `\`) {
		return "", fmt.Errorf("tar entry %q: must be a clean relative path without \"..\": %w", name, stratus.ErrInvalid)
	}
	return n, nil
}

// makeParents makes sure every parent folder of name is a real folder
// (not a symlink), creating missing ones.
func makeParents(root *os.Root, name string) error {
	for i := 0; i < len(name); i++ {
		if name[i] != '/' {
			continue
		}
		p := name[:i]
		fi, err := root.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := root.Mkdir(p, 0o755); err != nil {
				return fmt.Errorf("tar entry %q: %w", name, err)
			}
		case err != nil:
			return fmt.Errorf("tar entry %q: %w", name, err)
		case fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("tar entry %q: parent %q is a symlink: %w", name, p, stratus.ErrInvalid)
		case !fi.IsDir():
			return fmt.Errorf("tar entry %q: parent %q is not a folder: %w", name, p, stratus.ErrInvalid)
		}
	}
	return nil
}

// removeEntry removes what name holds, if anything.
func removeEntry(root *os.Root, name string) error {
	if _, err := root.Lstat(name); err == nil {
		if err := root.RemoveAll(name); err != nil {
			return fmt.Errorf("tar entry %q: %w", name, err)
		}
	}
	return nil
}
