package archive

import (
	"archive/zip"
	"compress/flate"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/stratus-run/stratus"
)

// ZipDir writes the folder dir as a zip to w: the archive the CLI uploads.
// Regular files keep their mode bits (executables stay executable),
// symlinks are stored as symlinks and never followed, and folders get
// entries of their own, so empty ones survive. Entries come in lexical
// order.
//
// ZipDir refuses, with an error wrapping stratus.ErrInvalid, what Extract
// would refuse on the server: names with backslashes, symlinks whose target
// is absolute or leaves dir, and files that are neither regular files,
// folders nor symlinks.
func ZipDir(dir string, w io.Writer) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("zip folder: %w", err)
	}
	defer root.Close()
	fsys := root.FS()
	zw := zip.NewWriter(w)
	// Uploads go over a local or fast link: fast compression beats small.
	zw.RegisterCompressor(zip.Deflate, func(out io.Writer) (io.WriteCloser, error) {
		return flate.NewWriter(out, flate.BestSpeed)
	})
	err = fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("zip folder %s: %w", dir, err)
		}
		if name == "." {
			return nil
		}
		if _, err := cleanName(name); err != nil {
			return fmt.Errorf("zip %s: %w", name, err)
		}
		fi, err := d.Info()
		if err != nil {
			return fmt.Errorf("zip %s: %w", name, err)
		}
		hdr, err := zip.FileInfoHeader(fi)
		if err != nil {
			return fmt.Errorf("zip %s: %w", name, err)
		}
		hdr.Name = name
		switch d.Type() {
		case fs.ModeDir:
			hdr.Name += "/"
			hdr.Method = zip.Store
			_, err = zw.CreateHeader(hdr)
		case fs.ModeSymlink:
			err = addSymlink(zw, fsys, hdr)
		case 0:
			hdr.Method = zip.Deflate
			err = addFile(zw, fsys, hdr)
		default:
			err = fmt.Errorf("unsupported file type %s: %w", d.Type(), stratus.ErrInvalid)
		}
		if err != nil {
			return fmt.Errorf("zip %s: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("zip folder %s: %w", dir, err)
	}
	return nil
}

func addFile(zw *zip.Writer, fsys fs.FS, hdr *zip.FileHeader) error {
	f, err := fsys.Open(hdr.Name)
	if err != nil {
		return err
	}
	defer f.Close()
	w, err := zw.CreateHeader(hdr)
	if err != nil {
		return err
	}
	_, err = io.Copy(w, f)
	return err
}

func addSymlink(zw *zip.Writer, fsys fs.FS, hdr *zip.FileHeader) error {
	target, err := fs.ReadLink(fsys, hdr.Name)
	if err != nil {
		return err
	}
	target = filepath.ToSlash(target)
	if err := checkTarget(hdr.Name, target, nil); err != nil {
		return err
	}
	hdr.Method = zip.Store
	w, err := zw.CreateHeader(hdr)
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, target)
	return err
}
