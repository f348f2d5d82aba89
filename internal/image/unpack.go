package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/stratus-run/stratus"
)

const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
)

// invalid wraps a refusal of the input with stratus.ErrInvalid.
func invalid(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, stratus.ErrInvalid)...)
}

// cleanName checks a tar entry name and returns it relative to the layer
// root ("" for the root itself).
func cleanName(n string) (string, error) {
	if strings.HasPrefix(n, "/") {
		return "", invalid("entry %q: absolute name", n)
	}
	if strings.ContainsRune(n, 0) {
		return "", invalid("entry %q: NUL in name", n)
	}
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return "", invalid("entry %q: \"..\" in name", n)
		}
	}
	c := path.Clean(n)
	if c == "." {
		return "", nil
	}
	return c, nil
}

// unpackLayer writes the entries of the uncompressed layer tar r into dst,
// an existing empty folder, and returns the bytes it read from r. It keeps
// whiteout markers as empty files, never follows a symlink while writing,
// and refuses input that would reach outside dst.
func unpackLayer(ctx context.Context, r io.Reader, dst string) (int64, error) {
	cr := &countingReader{r: r}
	tr := tar.NewReader(cr)
	asRoot := os.Geteuid() == 0
	type dirMode struct {
		path string
		mode fs.FileMode
	}
	var dirs []dirMode
	for {
		if err := ctx.Err(); err != nil {
			return cr.n, err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return cr.n, invalid("read layer tar: %v", err)
		}
		rel, err := cleanName(h.Name)
		if err != nil {
			return cr.n, err
		}
		if isSparse(h) {
			// A few bytes of tar could declare exabytes of holes.
			return cr.n, invalid("entry %q: sparse files are not supported", h.Name)
		}
		if rel == "" {
			if h.Typeflag == tar.TypeDir {
				dirs = append(dirs, dirMode{dst, entryMode(h)})
			}
			continue
		}
		base := path.Base(rel)
		if strings.HasPrefix(base, whiteoutPrefix) {
			if base != opaqueMarker {
				target := strings.TrimPrefix(base, whiteoutPrefix)
				if target == "" || target == "." || target == ".." || strings.HasPrefix(target, whiteoutPrefix) {
					return cr.n, invalid("entry %q: bad whiteout", h.Name)
				}
			}
			// Keep the marker as an empty file, whatever the entry's type.
			h = &tar.Header{Name: h.Name, Typeflag: tar.TypeReg, Mode: 0o600}
		}
		target := filepath.Join(dst, filepath.FromSlash(rel))
		if err := mkdirParents(dst, path.Dir(rel)); err != nil {
			return cr.n, fmt.Errorf("entry %q: %w", h.Name, err)
		}
		mode := entryMode(h)
		switch h.Typeflag {
		case tar.TypeDir:
			fi, err := os.Lstat(target)
			if err == nil && fi.IsDir() {
				// An earlier entry made it; this one sets its mode.
			} else {
				if err := replace(target); err != nil {
					return cr.n, err
				}
				if err := os.Mkdir(target, 0o700); err != nil {
					return cr.n, err
				}
			}
			dirs = append(dirs, dirMode{target, mode})
		case tar.TypeReg:
			// tar.Reader reports an old archive's regular file ('\x00',
			// the deprecated TypeRegA) as TypeReg too.
			if err := replace(target); err != nil {
				return cr.n, err
			}
			f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
			if err != nil {
				return cr.n, err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				if errors.Is(err, io.ErrUnexpectedEOF) {
					return cr.n, invalid("entry %q: layer tar is truncated", h.Name)
				}
				return cr.n, fmt.Errorf("entry %q: %w", h.Name, err)
			}
			if err := os.Chmod(target, mode); err != nil {
				return cr.n, err
			}
		case tar.TypeSymlink:
			if err := checkSymlink(rel, h.Linkname); err != nil {
				return cr.n, err
			}
			if err := replace(target); err != nil {
				return cr.n, err
			}
			if err := os.Symlink(h.Linkname, target); err != nil {
				return cr.n, err
			}
		case tar.TypeLink:
			lrel, err := cleanName(h.Linkname)
			if err != nil || lrel == "" {
				return cr.n, invalid("entry %q: hard link to %q leaves the layer", h.Name, h.Linkname)
			}
			if err := checkNoSymlinkParents(dst, path.Dir(lrel)); err != nil {
				return cr.n, invalid("entry %q: hard link to %q: %v", h.Name, h.Linkname, err)
			}
			old := filepath.Join(dst, filepath.FromSlash(lrel))
			fi, err := os.Lstat(old)
			if err != nil || !fi.Mode().IsRegular() {
				return cr.n, invalid("entry %q: hard link to %q: not a file earlier in this layer", h.Name, h.Linkname)
			}
			if old == target {
				continue
			}
			if err := replace(target); err != nil {
				return cr.n, err
			}
			if err := os.Link(old, target); err != nil {
				return cr.n, err
			}
		default:
			// Devices, fifos and the rest: skipped (not creatable unprivileged,
			// and not wanted in a shared layer store).
			continue
		}
		if asRoot {
			_ = os.Lchown(target, h.Uid, h.Gid)
		}
	}
	// Drain the padding after the last entry so the caller's digest covers
	// the whole stream.
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return cr.n, invalid("read layer tar: %v", err)
	}
	// Deepest first, so a 0o555 folder is made read-only after its children.
	slices.SortFunc(dirs, func(a, b dirMode) int { return len(b.path) - len(a.path) })
	for _, d := range dirs {
		if err := os.Chmod(d.path, d.mode); err != nil {
			return cr.n, err
		}
	}
	return cr.n, nil
}

func isSparse(h *tar.Header) bool {
	if h.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// entryMode keeps the permission and sticky bits and drops setuid/setgid.
func entryMode(h *tar.Header) fs.FileMode {
	m := fs.FileMode(h.Mode) & fs.ModePerm
	if h.Mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// checkSymlink refuses a relative symlink target that climbs above the layer
// root. Absolute targets are kept: they name a path inside the container's
// root, and nothing here follows them.
func checkSymlink(rel, target string) error {
	if target == "" || strings.ContainsRune(target, 0) {
		return invalid("entry %q: bad symlink target %q", rel, target)
	}
	if path.IsAbs(target) {
		return nil
	}
	j := path.Join(path.Dir(rel), target)
	if j == ".." || strings.HasPrefix(j, "../") {
		return invalid("entry %q: symlink to %q leaves the layer", rel, target)
	}
	return nil
}

// mkdirParents makes sure every folder of rel (slash-separated, relative to
// root) is a real folder, creating missing ones; it refuses a symlink on the way.
func mkdirParents(root, rel string) error {
	if rel == "." || rel == "" {
		return nil
	}
	cur := root
	for _, part := range strings.Split(rel, "/") {
		cur = filepath.Join(cur, part)
		fi, err := os.Lstat(cur)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.Mkdir(cur, 0o755); err != nil {
				return err
			}
		case err != nil:
			return err
		case fi.Mode()&fs.ModeSymlink != 0:
			return invalid("path %q goes through a symlink", rel)
		case !fi.IsDir():
			return invalid("path %q goes through a file", rel)
		}
	}
	return nil
}

// checkNoSymlinkParents is mkdirParents without creating anything.
func checkNoSymlinkParents(root, rel string) error {
	if rel == "." || rel == "" {
		return nil
	}
	cur := root
	for _, part := range strings.Split(rel, "/") {
		cur = filepath.Join(cur, part)
		fi, err := os.Lstat(cur)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%q is not a folder", rel)
		}
	}
	return nil
}

// replace removes whatever is at p (never following a symlink at p) so that
// a new entry can take its place.
func replace(p string) error {
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return removeAll(p)
	}
	return os.Remove(p)
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Flatten writes the full root filesystem of img into dst (created if
// missing), applying each layer's whiteouts and opaque folders to the layers
// below it, for sandbox drivers without overlay mounts. Files are copied, so
// the container cannot change the shared layers.
func (s *Store) Flatten(ctx context.Context, img *Image, dst string) error {
	return s.flatten(ctx, img, dst, nil)
}

// flatten is Flatten with the bytes of the files it copies taken from b.
func (s *Store) flatten(ctx context.Context, img *Image, dst string, b *budget) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("flatten image %q: %w", img.Ref, err)
	}
	for _, dir := range s.RootFS(img) {
		if _, err := os.Stat(dir); err != nil {
			return fmt.Errorf("flatten image %q: layer %s: %w", img.Ref, filepath.Base(dir), stratus.ErrNotFound)
		}
		if err := applyLayerBudget(ctx, dir, dst, b); err != nil {
			return fmt.Errorf("flatten image %q: %w", img.Ref, err)
		}
	}
	return nil
}

// applyLayer applies the unpacked layer in src on top of the folder dst.
// Both are trees made by this package; dst's own entries are checked with
// Lstat so that nothing is written through a symlink.
func applyLayer(ctx context.Context, src, dst string) error {
	return applyLayerBudget(ctx, src, dst, nil)
}

// budget bounds the bytes a flatten writes: a layer's hard links are
// copied as files of their own, so a root can be far larger than its
// layers. Nil is no bound.
type budget struct {
	left int64
	err  error // what going over returns
}

func (b *budget) take(n int64) error {
	if b == nil {
		return nil
	}
	if n > b.left {
		return b.err
	}
	b.left -= n
	return nil
}

func applyLayerBudget(ctx context.Context, src, dst string, b *budget) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	// Whiteouts first: they apply to the layers below, not to this one.
	for _, e := range entries {
		n := e.Name()
		switch {
		case n == opaqueMarker:
			old, err := os.ReadDir(dst)
			if err != nil {
				return err
			}
			for _, o := range old {
				if err := replace(filepath.Join(dst, o.Name())); err != nil {
					return err
				}
			}
		case strings.HasPrefix(n, whiteoutPrefix):
			if err := replace(filepath.Join(dst, strings.TrimPrefix(n, whiteoutPrefix))); err != nil {
				return err
			}
		}
	}
	asRoot := os.Geteuid() == 0
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, whiteoutPrefix) {
			continue
		}
		sp, dp := filepath.Join(src, n), filepath.Join(dst, n)
		fi, err := os.Lstat(sp)
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			if dfi, err := os.Lstat(dp); err != nil || !dfi.IsDir() {
				if err := replace(dp); err != nil {
					return err
				}
				if err := os.Mkdir(dp, 0o700); err != nil {
					return err
				}
			}
			if err := os.Chmod(dp, 0o700); err != nil {
				return err
			}
			if err := applyLayerBudget(ctx, sp, dp, b); err != nil {
				return err
			}
			if err := os.Chmod(dp, fi.Mode()&(fs.ModePerm|fs.ModeSticky)); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			if err := b.take(fi.Size()); err != nil {
				return err
			}
			if err := replace(dp); err != nil {
				return err
			}
			if err := copyFile(sp, dp, fi.Mode()&(fs.ModePerm|fs.ModeSticky)); err != nil {
				return err
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(sp)
			if err != nil {
				return err
			}
			if err := replace(dp); err != nil {
				return err
			}
			if err := os.Symlink(t, dp); err != nil {
				return err
			}
		default:
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && asRoot {
			_ = os.Lchown(dp, int(st.Uid), int(st.Gid))
		}
	}
	return nil
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}
