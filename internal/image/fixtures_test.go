package image

import (
	"archive/tar"
	"bytes"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// entry is one entry of a tar built by a test.
type entry struct {
	name string
	typ  byte // tar.TypeReg when 0
	body string
	link string
	mode int64
	uid  int
}

func file(name, body string, mode int64) entry { return entry{name: name, body: body, mode: mode} }

func dir(name string) entry { return entry{name: name, typ: tar.TypeDir, mode: 0o755} }

func symlink(name, to string) entry { return entry{name: name, typ: tar.TypeSymlink, link: to} }

func hardlink(name, to string) entry { return entry{name: name, typ: tar.TypeLink, link: to} }

func tarBytes(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode, ModTime: time.Unix(1, 0), Uid: e.uid, Gid: e.uid}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func layerOf(t testing.TB, entries ...entry) v1.Layer {
	t.Helper()
	b := tarBytes(t, entries...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func imageOf(t testing.TB, cfg v1.Config, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config = "linux", "amd64", cfg
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

var serverCfg = v1.Config{
	Entrypoint:   []string{"/server"},
	Cmd:          []string{"--port", "8080"},
	Env:          []string{"PATH=/usr/bin:/bin"},
	WorkingDir:   "/",
	User:         "1000",
	ExposedPorts: map[string]struct{}{"8080/tcp": {}},
}

// baseLayer holds a small static tree; topLayer removes and hides parts of it.
func baseLayer(t testing.TB) v1.Layer {
	return layerOf(t,
		file("server", "#!server bytes", 0o755),
		dir("etc"),
		file("etc/conf", "a=1", 0o644),
		file("etc/secret", "s", 0o4755), // setuid: dropped
		dir("data"),
		file("data/old", "old", 0o644),
		symlink("bin", "/server"),
		hardlink("server2", "server"),
	)
}

func topLayer(t testing.TB) v1.Layer {
	return layerOf(t,
		dir("etc"),
		file("etc/.wh.conf", "", 0o644),
		dir("data"),
		file("data/.wh..wh..opq", "", 0o644),
		file("data/new", "new", 0o600),
	)
}

func serverImage(t testing.TB) v1.Image {
	return imageOf(t, serverCfg, baseLayer(t), topLayer(t))
}

func writeDocker(t testing.TB, img v1.Image, ref string) string {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "image.tar")
	if err := tarball.WriteToFile(p, tag, img); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeLayout(t testing.TB, img v1.Image, annotations map[string]string) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "layout")
	lp, err := layout.Write(d, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(annotations)); err != nil {
		t.Fatal(err)
	}
	return d
}

// tarDir tars a folder the way `tar -C dir -cf - .` does.
func tarDir(t testing.TB, src string) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.AddFS(os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "layout.tar")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func openStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(Config{Dir: filepath.Join(t.TempDir(), "images")})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func storedLayers(t testing.TB, s *Store) []string {
	t.Helper()
	es, err := os.ReadDir(filepath.Join(s.dir, "layers"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// assertClean checks that a failed import left nothing behind.
func assertClean(t *testing.T, s *Store) {
	t.Helper()
	if l := storedLayers(t, s); len(l) != 0 {
		t.Errorf("layers left behind: %v", l)
	}
	if es, _ := os.ReadDir(s.tmpDir()); len(es) != 0 {
		t.Errorf("staging left behind: %d entries", len(es))
	}
	if imgs, _ := s.List(); len(imgs) != 0 {
		t.Errorf("images: %v", imgs)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mode(t *testing.T, p string) fs.FileMode {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}
