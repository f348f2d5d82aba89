package e2e

import (
	"archive/tar"
	"bytes"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	v1 "github.com/stratus-run/stratus/api/v1"
)

// testImage builds an image of one layer holding a static file, with
// cfg as its config.
func testImage(t *testing.T, cfg ggcr.Config) ggcr.Image {
	t.Helper()
	layer, err := layerOf([]layerFile{
		{Name: "app/", Mode: 0o755},
		{Name: "app/hello", Mode: 0o755, Body: []byte("#!/bin/sh\necho hello from an image\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	return imageOf(t, cfg, layer)
}

// layerFile is one entry of a test image's layer: a folder when Name ends
// in "/", else a regular file holding Body.
type layerFile struct {
	Name string
	Mode int64
	Body []byte
	UID  int // owner (uid and gid)
}

// layerOf makes a layer of files, in order; the same files make the same
// layer. It compresses once, however often the layer is written.
func layerOf(files []layerFile) (ggcr.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.Name, Typeflag: tar.TypeReg, Mode: f.Mode, Size: int64(len(f.Body)), ModTime: time.Unix(1, 0), Uid: f.UID, Gid: f.UID}
		if strings.HasSuffix(f.Name, "/") {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithCompressedCaching)
}

// imageOf builds a linux image of layers with cfg as its config.
func imageOf(t *testing.T, cfg ggcr.Config, layers ...ggcr.Layer) ggcr.Image {
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
	cf.OS, cf.Architecture, cf.Config = "linux", runtime.GOARCH, cfg
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// writeImageTar writes img as a `docker save` tarball tagged tag.
func writeImageTar(t *testing.T, img ggcr.Image, tag string) string {
	t.Helper()
	ref, err := name.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "image.tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.Write(ref, img, f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

func listImages(t *testing.T, s *server) []v1.Image {
	t.Helper()
	return decode[[]v1.Image](t, []byte(s.mustCLI("image", "ls", "-o", "json")))
}

func TestImageImportPullRemove(t *testing.T) {
	s := startServer(t)
	img := testImage(t, ggcr.Config{Entrypoint: []string{"/app/hello"}, Env: []string{"PATH=/bin"}})
	tarPath := writeImageTar(t, img, "example.com/hello:v1")

	// Import, named by --ref.
	out := s.mustCLI("image", "import", tarPath, "--ref", "example.com/hello:v1")
	if !strings.Contains(out, "imported example.com/hello:v1 sha256:") {
		t.Fatalf("import printed %q", out)
	}
	imgs := listImages(t, s)
	if len(imgs) != 1 || imgs[0].Ref != "example.com/hello:v1" || !strings.HasPrefix(imgs[0].Digest, "sha256:") ||
		imgs[0].Size <= 0 || len(imgs[0].Layers) != 1 || strings.Join(imgs[0].Config.Entrypoint, " ") != "/app/hello" {
		t.Fatalf("image ls after import: %+v", imgs)
	}
	imported := imgs[0]
	table := s.mustCLI("image", "ls")
	if !strings.Contains(table, "REF") || !strings.Contains(table, imported.Ref) ||
		!strings.Contains(table, imported.Digest) || !regexp.MustCompile(`\d( B|\.\d [kMG]B)`).MatchString(table) {
		t.Fatalf("image ls table:\n%s", table)
	}
	resp, body := s.do("GET", "/v1/images/example.com/hello:v1", nil, true)
	if resp.StatusCode != http.StatusOK || decode[v1.Image](t, body).Digest != imported.Digest {
		t.Fatalf("GET image: %d %s", resp.StatusCode, body)
	}
	if resp, _ := s.do("GET", "/v1/images", nil, false); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /v1/images without token: %d, want 401", resp.StatusCode)
	}

	// Pull the same image from an in-process registry over plain http.
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	pullRef := host + "/hello:v1"
	rref, err := name.ParseReference(pullRef, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(rref, img); err != nil {
		t.Fatal(err)
	}
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	pulled := decode[v1.Image](t, []byte(s.mustCLI("image", "pull", pullRef, "--insecure", "-o", "json")))
	if pulled.Ref != pullRef || pulled.Digest != want.String() || pulled.Layers[0] != imported.Layers[0] {
		t.Fatalf("pulled %+v, want ref %s digest %s and the imported layer", pulled, pullRef, want)
	}
	if imgs := listImages(t, s); len(imgs) != 2 {
		t.Fatalf("image ls after pull: %+v", imgs)
	}

	// An OCI image layout folder, sent as a tar made on the fly.
	lp, err := layout.Write(filepath.Join(t.TempDir(), "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	fromDir := decode[v1.Image](t, []byte(s.mustCLI("image", "import", string(lp), "--ref", "example.com/hello:layout", "-o", "json")))
	if fromDir.Ref != "example.com/hello:layout" || fromDir.Layers[0] != imported.Layers[0] {
		t.Fatalf("imported layout folder: %+v", fromDir)
	}
	s.mustCLI("image", "rm", "example.com/hello:layout")

	// Remove both; the list is empty again.
	if out := s.mustCLI("image", "rm", pullRef); !strings.Contains(out, "removed image "+pullRef) {
		t.Fatalf("rm printed %q", out)
	}
	s.mustCLI("image", "rm", "example.com/hello:v1")
	if imgs := listImages(t, s); len(imgs) != 0 {
		t.Fatalf("image ls after rm: %+v", imgs)
	}
}

func TestImageBadInput(t *testing.T) {
	s := startServer(t)
	good := writeImageTar(t, testImage(t, ggcr.Config{Entrypoint: []string{"/app/hello"}}), "example.com/good:v1")
	s.mustCLI("image", "import", good)
	before := listImages(t, s)
	if len(before) != 1 || before[0].Ref != "example.com/good:v1" {
		t.Fatalf("image ls: %+v", before)
	}

	// A truncated docker save tarball, and bytes that are no tar at all.
	b, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(t.TempDir(), "truncated.tar")
	if err := os.WriteFile(truncated, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(t.TempDir(), "garbage.tar")
	if err := os.WriteFile(garbage, bytes.Repeat([]byte("not a tar "), 200), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		args   []string
		stderr string
	}{
		{"truncated tar", []string{"image", "import", truncated, "--ref", "example.com/bad:v1"}, "invalid"},
		{"not a tar", []string{"image", "import", garbage, "--ref", "example.com/bad:v1"}, "invalid"},
		{"missing file", []string{"image", "import", filepath.Join(t.TempDir(), "nope.tar")}, "no such file"},
		{"unknown ref to rm", []string{"image", "rm", "example.com/unknown:v1"}, "not found"},
		{"bad ref to pull", []string{"image", "pull", "UPPER/Case::x"}, "invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.cli(tc.args...)
			t.Logf("exit %d: %s", r.Code, strings.TrimSpace(r.Stderr))
			if r.Code == 0 || !strings.Contains(strings.ToLower(r.Stderr), tc.stderr) {
				t.Fatalf("stratus %v: exit %d, stderr %q; want non-zero and %q", tc.args, r.Code, r.Stderr, tc.stderr)
			}
			if strings.Contains(r.Stderr, s.Data) {
				t.Errorf("the error shows a server path: %q", r.Stderr)
			}
			if after := listImages(t, s); len(after) != 1 || after[0].Digest != before[0].Digest {
				t.Fatalf("image ls changed: %+v", after)
			}
		})
	}

	// The same through the API: 4xx with a JSON error.
	for _, tc := range []struct {
		method, path string
		body         []byte
		status       int
	}{
		{"POST", "/v1/images/import?ref=example.com/bad:v1", b[:len(b)/2], http.StatusBadRequest},
		{"POST", "/v1/images/import", nil, http.StatusBadRequest},
		{"POST", "/v1/images/pull", []byte(`{"ref":""}`), http.StatusBadRequest},
		{"POST", "/v1/images/pull", []byte(`{"ref":"x","bogus":1}`), http.StatusBadRequest},
		{"DELETE", "/v1/images?ref=example.com/unknown:v1", nil, http.StatusNotFound},
		{"DELETE", "/v1/images", nil, http.StatusBadRequest},
		{"GET", "/v1/images/example.com/unknown:v1", nil, http.StatusNotFound},
	} {
		resp, body := s.do(tc.method, tc.path, tc.body, true)
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, resp.StatusCode, body, tc.status)
			continue
		}
		if e := decode[v1.Error](t, body); e.Code == "" || e.Message == "" {
			t.Errorf("%s %s: error body %s", tc.method, tc.path, body)
		}
	}
	if after := listImages(t, s); len(after) != 1 || after[0].Digest != before[0].Digest {
		t.Fatalf("image ls changed: %+v", after)
	}
}
