package agentimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/stratus-run/stratus/internal/rootfs"
	"github.com/stratus-run/stratus/runtimes"
)

// Where the kube driver puts a zip function's code and the runtime
// clients (pool.TaskRoot and pool.RuntimeRoot): the recipes are asked for
// roots with them there.
const (
	taskDir    = "/var/task"
	runtimeDir = "/var/runtime"
)

// rootOnly are the files of a minimal root that stay out of the image:
// its accounts (the base layer has the image's) and the host's names and
// resolver, which the kubelet gives every pod.
var rootOnly = map[string]bool{
	"etc/passwd": true, "etc/group": true, "etc/hosts": true, "etc/resolv.conf": true,
}

// runtimeLayer is the layer of runtime r (one Stratus ships a client
// of): its minimal root, as rootfs
// builds it from the recipe runtimes.Root gives, but for the paths in have
// (which earlier layers hold; the layer's are added) and rootOnly.
func runtimeLayer(r string, have map[string]bool) (ggcr.Layer, error) {
	rec, _, err := runtimes.Root(r, taskDir, runtimeDir)
	if err != nil {
		return nil, fmt.Errorf("image layer of runtime %q: %w", r, err)
	}
	// Built beside the host's files, so that rootfs hard-links them (and
	// they keep their times, which pycAtEpoch compares).
	tmp, err := os.MkdirTemp("", "stratus-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	root, err := rootfs.Build(tmp, rec)
	if err != nil {
		return nil, fmt.Errorf("image layer of runtime %q: %w", r, err)
	}
	lw := newLayerWriter()
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == "." || have[rel] || rootOnly[rel] {
			return nil
		}
		have[rel] = true
		fi, err := d.Info()
		if err != nil {
			return err
		}
		mode := int64(fi.Mode().Perm())
		if fi.Mode()&fs.ModeSticky != 0 {
			mode |= 0o1000
		}
		switch {
		case d.IsDir():
			return lw.dir(rel, mode)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return lw.symlink(rel, target)
		case d.Type().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if strings.HasSuffix(rel, ".pyc") && path.Base(path.Dir(rel)) == "__pycache__" {
				b, err := io.ReadAll(f)
				if err != nil {
					return err
				}
				b = pycAtEpoch(b, p)
				return lw.file(rel, mode, int64(len(b)), bytes.NewReader(b))
			}
			return lw.file(rel, mode, fi.Size(), f)
		}
		return fmt.Errorf("%s: a %s, not a file, folder or symlink", rel, fi.Mode().Type())
	})
	if err != nil {
		return nil, fmt.Errorf("image layer of runtime %q: %w", r, err)
	}
	return lw.layer()
}

// pycAtEpoch returns the compiled module b, at pyc in a root, recording
// Epoch as its source's time if it recorded the source's time and size
// (as a .pyc checked by timestamp does: PEP 552): the source's time in the
// layer is Epoch. Any other .pyc (checked by hash, or stale) is b.
func pycAtEpoch(b []byte, pyc string) []byte {
	if len(b) < 16 || binary.LittleEndian.Uint32(b[4:8]) != 0 {
		return b
	}
	// __pycache__/NAME.TAG[.opt-N].pyc compiles NAME.py.
	name, _, _ := strings.Cut(filepath.Base(pyc), ".")
	src, err := os.Stat(filepath.Join(filepath.Dir(filepath.Dir(pyc)), name+".py"))
	if err != nil || uint32(src.ModTime().Unix()) != binary.LittleEndian.Uint32(b[8:12]) ||
		uint32(src.Size()) != binary.LittleEndian.Uint32(b[12:16]) {
		return b
	}
	out := bytes.Clone(b)
	binary.LittleEndian.PutUint32(out[8:12], uint32(Epoch.Unix()))
	return out
}

// layerWriter writes a layer's entries, owned by root and timed at Epoch,
// as a gzipped tar (Go's gzip writes no time or name: the same entries
// give the same bytes).
type layerWriter struct {
	buf bytes.Buffer
	gz  *gzip.Writer
	tw  *tar.Writer
}

// compression is the gzip level of the layers (tests, which build large
// layers under the race detector, store them uncompressed).
var compression = gzip.DefaultCompression

func newLayerWriter() *layerWriter {
	lw := &layerWriter{}
	lw.gz, _ = gzip.NewWriterLevel(&lw.buf, compression) // a valid level
	lw.tw = tar.NewWriter(lw.gz)
	return lw
}

func (lw *layerWriter) header(h *tar.Header) error {
	h.ModTime, h.Format = Epoch, tar.FormatPAX
	return lw.tw.WriteHeader(h)
}

func (lw *layerWriter) dir(name string, mode int64) error {
	return lw.header(&tar.Header{Name: name + "/", Mode: mode, Typeflag: tar.TypeDir})
}

func (lw *layerWriter) symlink(name, target string) error {
	return lw.header(&tar.Header{Name: name, Mode: 0o777, Typeflag: tar.TypeSymlink, Linkname: target})
}

func (lw *layerWriter) file(name string, mode, size int64, body io.Reader) error {
	if err := lw.header(&tar.Header{Name: name, Mode: mode, Typeflag: tar.TypeReg, Size: size}); err != nil {
		return err
	}
	n, err := io.Copy(lw.tw, body)
	if err == nil && n != size {
		err = fmt.Errorf("%s: %d bytes, not %d (changed while read)", name, n, size)
	}
	return err
}

// layer ends the writer's tar and returns its layer.
func (lw *layerWriter) layer() (ggcr.Layer, error) {
	if err := lw.tw.Close(); err != nil {
		return nil, err
	}
	if err := lw.gz.Close(); err != nil {
		return nil, err
	}
	b := lw.buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	})
}
