package archive

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/stratus-run/stratus"
)

// entry is a zip entry that passed the checks, with what it will create.
type entry struct {
	f    *zip.File
	name string // cleaned, slash-separated, relative to the code folder
	kind kind
	perm fs.FileMode // regular files only
}

// Extract unpacks the zip at zipPath into dst, which must not exist yet
// (errors.Is(err, fs.ErrExist) tells when it does) and whose parent folder
// must. It writes into a temporary folder beside dst and renames it into
// place at the end, so on error nothing is left behind.
//
// Regular files are written 0755 when the zip marks them executable (or
// when they are named bootstrap, as Lambda custom runtimes need) and 0644
// otherwise; folders are 0755. Symlinks are kept when their relative target
// stays inside dst. Entries that could reach outside dst, duplicates, and
// archives over lim are refused with errors wrapping stratus.ErrInvalid or
// stratus.ErrTooLarge. Sizes are checked by counting the bytes written, not
// by trusting the sizes the zip declares.
func Extract(zipPath, dst string, lim Limits) (Info, error) {
	lim = lim.orDefaults()
	if dst == "" {
		return Info{}, fmt.Errorf("extract archive: empty destination: %w", stratus.ErrInvalid)
	}
	if _, err := os.Lstat(dst); err == nil {
		return Info{}, fmt.Errorf("extract archive into %s: %w", dst, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return Info{}, fmt.Errorf("extract archive: %w", err)
	}

	f, err := os.Open(zipPath)
	if err != nil {
		return Info{}, fmt.Errorf("open archive: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Info{}, fmt.Errorf("open archive: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return Info{}, fmt.Errorf("archive %s is not a regular file: %w", zipPath, stratus.ErrInvalid)
	}
	if fi.Size() > lim.MaxZipped {
		return Info{}, fmt.Errorf("archive is %s: %w", overLimit(fi.Size(), lim.MaxZipped), stratus.ErrTooLarge)
	}
	h := sha256.New()
	size, err := io.Copy(h, io.LimitReader(f, lim.MaxZipped+1))
	if err != nil {
		return Info{}, fmt.Errorf("read archive: %w", err)
	}
	if size > lim.MaxZipped { // the file grew since Stat
		return Info{}, fmt.Errorf("archive is more than the %s limit: %w", formatSize(lim.MaxZipped), stratus.ErrTooLarge)
	}
	info := Info{SHA256: hex.EncodeToString(h.Sum(nil)), Size: size}

	zr, err := zip.NewReader(f, size)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) { // we check paths ourselves
		var perr *fs.PathError
		if errors.As(err, &perr) {
			return Info{}, fmt.Errorf("read archive: %w", err)
		}
		if errors.Is(err, zip.ErrFormat) {
			return Info{}, fmt.Errorf("archive is not a valid zip file: %w", stratus.ErrInvalid)
		}
		return Info{}, fmt.Errorf("archive is not a valid zip file (%v): %w", err, stratus.ErrInvalid)
	}
	entries, tree, err := plan(zr.File, lim)
	if err != nil {
		return Info{}, err
	}

	tmp, err := os.MkdirTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-")
	if err != nil {
		return Info{}, fmt.Errorf("extract archive: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return Info{}, fmt.Errorf("extract archive: %w", err)
	}
	x := &extractor{root: root, tree: tree, budget: lim.MaxUnzipped, limit: lim.MaxUnzipped, buf: make([]byte, 32<<10)}
	err = x.extractAll(entries)
	if cerr := root.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("extract archive: %w", cerr)
	}
	if err != nil {
		return Info{}, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return Info{}, fmt.Errorf("extract archive: %w", err)
	}
	// Durable before it is named: the tree's files and folders reach the
	// disk before the rename that makes it dst, and the rename before
	// Extract returns.
	if err := SyncTree(tmp); err != nil {
		return Info{}, fmt.Errorf("extract archive: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		// When dst appeared meanwhile and is not empty,
		// errors.Is(err, fs.ErrExist) holds here too.
		return Info{}, fmt.Errorf("extract archive: %w", err)
	}
	ok = true
	if err := SyncDir(filepath.Dir(dst)); err != nil {
		return Info{}, fmt.Errorf("extract archive: %w", err)
	}
	info.Files = x.files
	info.Unzipped = x.written
	return info, nil
}

// plan checks every entry's name and type before anything is written, and
// builds the tree the archive will create. It refuses the archive early
// when the sizes it declares already exceed lim; the sizes are checked
// again while writing, since a zip can lie about them.
func plan(files []*zip.File, lim Limits) ([]entry, *node, error) {
	if len(files) > lim.MaxFiles {
		return nil, nil, fmt.Errorf("archive has %d entries, more than the limit of %d: %w", len(files), lim.MaxFiles, stratus.ErrTooLarge)
	}
	root := &node{kind: kindDir, created: true}
	entries := make([]entry, 0, len(files))
	var declared uint64
	for _, f := range files {
		e, err := classify(f)
		if err != nil {
			return nil, nil, fmt.Errorf("archive entry %s: %w", quote(f.Name), err)
		}
		if e.name == "." {
			continue // the code folder itself, named "./"
		}
		if err := add(root, e.name, e.kind); err != nil {
			return nil, nil, fmt.Errorf("archive entry %s: %w", quote(f.Name), err)
		}
		entries = append(entries, e)
		if e.kind == kindDir {
			continue
		}
		if f.UncompressedSize64 > uint64(lim.MaxUnzipped)-declared {
			return nil, nil, fmt.Errorf("archive unzips to more than the %s limit: %w", formatSize(lim.MaxUnzipped), stratus.ErrTooLarge)
		}
		declared += f.UncompressedSize64
	}
	return entries, root, nil
}

// classify checks one entry's name, type and flags.
func classify(f *zip.File) (entry, error) {
	name, err := cleanName(f.Name)
	if err != nil {
		return entry{}, err
	}
	e := entry{f: f, name: name}
	mode := f.Mode()
	switch mode.Type() {
	case fs.ModeDir:
		e.kind = kindDir
		return e, nil
	case fs.ModeSymlink:
		if strings.HasSuffix(f.Name, "/") {
			return entry{}, invalidf("symlink has a folder name")
		}
		e.kind = kindSymlink
	case 0:
		e.kind = kindFile
		e.perm = 0o644
		if mode&0o111 != 0 || path.Base(name) == "bootstrap" {
			e.perm = 0o755
		}
	default:
		return entry{}, invalidf("unsupported file type %s", mode.Type())
	}
	if name == "." {
		return entry{}, invalidf("path names the code folder itself")
	}
	if f.Flags&0x1 != 0 {
		return entry{}, invalidf("entry is encrypted")
	}
	return e, nil
}

// extractor writes planned entries under root, keeping count of what it
// wrote.
type extractor struct {
	root    *os.Root
	tree    *node
	budget  int64 // bytes still allowed
	limit   int64 // MaxUnzipped, for messages
	written int64
	files   int
	buf     []byte
}

func (x *extractor) extractAll(entries []entry) error {
	for _, e := range entries {
		var err error
		switch e.kind {
		case kindDir:
			err = x.mkdirAll(e.name)
		case kindFile:
			err = x.writeFile(e)
		case kindSymlink:
			err = x.symlink(e)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// mkdirAll creates the folder name and its parents, 0755 whatever the
// umask.
func (x *extractor) mkdirAll(name string) error {
	elems := strings.Split(name, "/")
	n := x.tree
	for i, elem := range elems {
		n = n.child(elem)
		if n == nil || n.kind != kindDir {
			// plan put every parent in the tree as a folder.
			return fmt.Errorf("extract archive: folder %q missing from plan", name)
		}
		if n.created {
			continue
		}
		dir := strings.Join(elems[:i+1], "/")
		if err := x.root.Mkdir(dir, 0o755); err != nil {
			if !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("extract archive: %w", err)
			}
			// Only a case-insensitive file system lets two different
			// names meet here; accept the folder only if it is one.
			fi, lerr := x.root.Lstat(dir)
			if lerr != nil || !fi.IsDir() {
				return fmt.Errorf("archive entry %s: path collides with another entry: %w", quote(dir), stratus.ErrInvalid)
			}
		}
		if err := x.root.Chmod(dir, 0o755); err != nil {
			return fmt.Errorf("extract archive: %w", err)
		}
		n.created = true
	}
	return nil
}

func (x *extractor) mkdirParent(name string) error {
	if dir := path.Dir(name); dir != "." {
		return x.mkdirAll(dir)
	}
	return nil
}

func (x *extractor) writeFile(e entry) error {
	if err := x.mkdirParent(e.name); err != nil {
		return err
	}
	rc, err := e.f.Open()
	if err != nil {
		return x.readError(e, err, false)
	}
	defer rc.Close()
	// O_EXCL: never write into something that exists, least of all
	// through a symlink.
	out, err := x.root.OpenFile(e.name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("archive entry %s: path collides with another entry: %w", quote(e.f.Name), stratus.ErrInvalid)
		}
		return fmt.Errorf("extract archive: %w", err)
	}
	n, err := copyAtMost(out, rc, x.budget, x.buf)
	x.budget -= n
	x.written += n
	if err != nil {
		out.Close()
		return x.copyError(e, err)
	}
	if err := out.Chmod(e.perm); err != nil {
		out.Close()
		return fmt.Errorf("extract archive: %w", err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("extract archive: %w", err)
	}
	x.files++
	return nil
}

func (x *extractor) symlink(e entry) error {
	if err := x.mkdirParent(e.name); err != nil {
		return err
	}
	rc, err := e.f.Open()
	if err != nil {
		return x.readError(e, err, false)
	}
	defer rc.Close()
	var target bytes.Buffer
	limit := min(x.budget, maxTargetLen)
	n, err := copyAtMost(&target, rc, limit, x.buf)
	x.budget -= n
	x.written += n
	if errors.Is(err, errOverBudget) && limit == maxTargetLen {
		return fmt.Errorf("archive entry %s: symlink target is longer than %d bytes: %w", quote(e.f.Name), maxTargetLen, stratus.ErrInvalid)
	}
	if err != nil {
		return x.copyError(e, err)
	}
	if err := checkTarget(e.name, target.String(), x.tree); err != nil {
		return fmt.Errorf("archive entry %s: %w", quote(e.f.Name), err)
	}
	if err := x.root.Symlink(target.String(), e.name); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("archive entry %s: path collides with another entry: %w", quote(e.f.Name), stratus.ErrInvalid)
		}
		return fmt.Errorf("extract archive: %w", err)
	}
	x.files++
	return nil
}

// copyError explains an error from copyAtMost.
func (x *extractor) copyError(e entry, err error) error {
	if errors.Is(err, errOverBudget) {
		return fmt.Errorf("archive unzips to more than the %s limit: %w", formatSize(x.limit), stratus.ErrTooLarge)
	}
	var werr *writeError
	if errors.As(err, &werr) {
		return fmt.Errorf("extract archive entry %s: %w", quote(e.f.Name), werr.err)
	}
	return x.readError(e, err, true)
}

// readError explains an error opening (opened false) or reading an entry:
// a fault of the zip, unless the zip file itself could not be read.
func (x *extractor) readError(e entry, err error, opened bool) error {
	var perr *fs.PathError
	switch {
	case errors.As(err, &perr):
		return fmt.Errorf("read archive entry %s: %w", quote(e.f.Name), err)
	case errors.Is(err, zip.ErrAlgorithm):
		return fmt.Errorf("archive entry %s: unsupported compression method %d: %w", quote(e.f.Name), e.f.Method, stratus.ErrInvalid)
	case errors.Is(err, zip.ErrFormat) && opened:
		// The zip reader stops an entry that inflates past its declared size.
		return fmt.Errorf("archive entry %s: data is longer than the %d bytes the zip declares: %w", quote(e.f.Name), e.f.UncompressedSize64, stratus.ErrInvalid)
	}
	return fmt.Errorf("archive entry %s: corrupt data (%v): %w", quote(e.f.Name), err, stratus.ErrInvalid)
}

// errOverBudget reports that a reader had more bytes than allowed.
var errOverBudget = errors.New("over budget")

// writeError marks an error from the writer side of copyAtMost.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// copyAtMost copies r to w until EOF, but never more than budget bytes: if
// r has more, it stops without writing the excess and returns
// errOverBudget. Write errors come back as *writeError, read errors as
// they are.
func copyAtMost(w io.Writer, r io.Reader, budget int64, buf []byte) (int64, error) {
	var n int64
	for {
		nr, rerr := r.Read(buf)
		if nr > 0 {
			if int64(nr) > budget-n {
				return n, errOverBudget
			}
			nw, werr := w.Write(buf[:nr])
			n += int64(nw)
			if werr == nil && nw < nr {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return n, &writeError{werr}
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}
