// Package agentimage builds the Stratus image: the static stratus binary
// at /stratus on an empty base, with the users and folders a pod of the
// kube sandbox driver needs (Lambda's sbx_user1051 and nobody in
// /etc/passwd and /etc/group, /var/task and /var/runtime to mount the
// code and the runtime clients on, /tmp). The server's Deployment and the
// function pods run the same image: `stratus server` in the one,
// `stratus agent` in the others.
//
// The build is reproducible: every file has the same time (Epoch), owner
// root and a fixed mode, entries are in a fixed order, and the config's
// created time is Epoch, so the same binary gives the same digest.
package agentimage

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/rootfs"
)

// Epoch is the time of every file and of the image: 1980-01-01, the
// earliest a zip can hold (as reproducible builds use).
var Epoch = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)

// Binary is the stratus binary's path in the image.
const Binary = "/stratus"

// Build returns the image of the stratus binary at path, which must be a
// static executable (built with CGO_ENABLED=0): the image has no dynamic
// loader or libraries. version labels the image.
func Build(path, version string) (ggcr.Image, error) {
	if err := checkStatic(path); err != nil {
		return nil, err
	}
	bin, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	u := rootfs.Sandbox
	files := []file{
		{name: "etc/", mode: 0o755},
		{name: "etc/group", mode: 0o644, body: fmt.Sprintf("root:x:0:\n%s:x:%d:\nnogroup:x:65534:\n", u.Name, u.GID)},
		{name: "etc/passwd", mode: 0o644, body: fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\n%s:x:%d:%d::/tmp:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n", u.Name, u.UID, u.GID)},
		{name: "stratus", mode: 0o755, body: string(bin)},
		{name: "tmp/", mode: 0o1777},
		{name: "var/", mode: 0o755},
		{name: "var/runtime/", mode: 0o755},
		{name: "var/task/", mode: 0o755},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, ModTime: Epoch, Format: tar.FormatPAX, Typeflag: tar.TypeReg, Size: int64(len(f.body))}
		if f.name[len(f.name)-1] == '/' {
			h.Typeflag = tar.TypeDir
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := io.WriteString(tw, f.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(buf.Bytes())), nil
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: layer, History: ggcr.History{
		Created: ggcr.Time{Time: Epoch}, CreatedBy: "stratus agentimage", Comment: "the stratus binary " + version,
	}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = ggcr.Time{Time: Epoch}
	cf.Config = ggcr.Config{
		Entrypoint: []string{Binary},
		Cmd:        []string{"server"},
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		User:       "65534:65534",
		WorkingDir: "/",
		Labels: map[string]string{
			"org.opencontainers.image.title":   "stratus",
			"org.opencontainers.image.version": version,
		},
		ExposedPorts: map[string]struct{}{"8080/tcp": {}},
	}
	return mutate.ConfigFile(img, cf)
}

// file is an entry of the image's layer: a folder when name ends in "/".
type file struct {
	name string
	mode int64
	body string
}

// checkStatic refuses a binary that needs a dynamic loader.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("image of %s: not an executable: %v: %w", path, err, stratus.ErrInvalid)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("image of %s: a dynamically linked executable (build it with CGO_ENABLED=0): %w", path, stratus.ErrInvalid)
		}
	}
	return nil
}
