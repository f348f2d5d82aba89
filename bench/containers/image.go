package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// imageRef is the tag of the service image the bench imports.
const imageRef = "bench.local/gosvc:v1"

// layerFile is one entry of the image's layer: a folder when Name ends in
// "/", else a regular file holding Body.
type layerFile struct {
	Name string
	Mode int64
	Body []byte
}

// writeServiceImage writes to path a `docker save` tarball, tagged
// imageRef, of a linux image of one layer: the static gosvc binary at
// /app/gosvc, a minimal /etc/passwd and /etc/group and a world-writable
// /tmp; entrypoint /app/gosvc, port 8080. It is the image the end-to-end
// tests build (e2e/svcimage_test.go), made here without the test code.
func writeServiceImage(path, gosvc string) error {
	bin, err := os.ReadFile(gosvc)
	if err != nil {
		return err
	}
	layer, err := layerOf([]layerFile{
		{Name: "app/", Mode: 0o755},
		{Name: "app/gosvc", Mode: 0o755, Body: bin},
		{Name: "etc/", Mode: 0o755},
		{Name: "etc/passwd", Mode: 0o644, Body: []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n")},
		{Name: "etc/group", Mode: 0o644, Body: []byte("root:x:0:\nnogroup:x:65534:\n")},
		{Name: "tmp/", Mode: 0o1777},
	})
	if err != nil {
		return fmt.Errorf("image layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("image config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config = ggcr.Config{
		Entrypoint:   []string{"/app/gosvc"},
		ExposedPorts: map[string]struct{}{"8080/tcp": {}},
		Env:          []string{"PATH=/app:/bin"},
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return fmt.Errorf("image config: %w", err)
	}
	ref, err := name.NewTag(imageRef)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := tarball.Write(ref, img, f); err != nil {
		f.Close()
		return fmt.Errorf("write image tarball: %w", err)
	}
	return f.Close()
}

// layerOf makes a layer of files, in order.
func layerOf(files []layerFile) (ggcr.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.Name, Typeflag: tar.TypeReg, Mode: f.Mode, Size: int64(len(f.Body)), ModTime: time.Unix(1, 0)}
		if f.Name[len(f.Name)-1] == '/' {
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
