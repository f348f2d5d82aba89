package kubetest

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// goBuildTimeout bounds the build of one small program.
const goBuildTimeout = 5 * time.Minute

// GoProgram builds the Go program whose main package is source (one file,
// standard library only) as a static binary (CGO_ENABLED=0, -trimpath,
// stripped) into a temp dir of t, and returns its path: a program that
// runs in an image with nothing else in it. A missing go command skips t
// (fails it under CI=true); a failed build fails it.
func GoProgram(t testing.TB, source string) string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("missing the go command, to build a program for an image: %v", err)
		}
		t.Skipf("missing the go command, to build a program for an image: %v (CI=true makes this a failure)", err)
	}
	dir := t.TempDir()
	files := map[string]string{
		"go.mod":  "module program\n\ngo " + strings.TrimPrefix(runtime.Version(), "go") + "\n",
		"main.go": source,
	}
	for f, data := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(data), 0o644); err != nil {
			t.Fatalf("build a program: %v", err)
		}
	}
	bin := filepath.Join(dir, "program")
	ctx, cancel := context.WithTimeout(context.Background(), goBuildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goCmd, "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build a program: %v\n%s", err, out)
	}
	return bin
}

// StaticImage returns an image of this machine's OS and architecture with
// one layer holding files (absolute path in the image → content, written
// with mode 0755 so that programs run), whose config runs entrypoint with
// env (NAME=value). Made for static programs: the image has no shell, no
// C library, no /etc.
func StaticImage(t testing.TB, files map[string][]byte, entrypoint []string, env ...string) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	names := make([]string, 0, len(files))
	for p := range files {
		if !path.IsAbs(p) {
			t.Fatalf("make an image: file %q: the path must be absolute", p)
		}
		names = append(names, p)
	}
	slices.Sort(names)
	modTime := time.Unix(0, 0)
	for _, p := range names {
		// Parent directories first, each once.
		var parents []string
		for d := path.Dir(p); d != "/" && !dirs[d]; d = path.Dir(d) {
			parents = append(parents, d)
			dirs[d] = true
		}
		slices.Reverse(parents)
		for _, d := range parents {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755, ModTime: modTime}); err != nil {
				t.Fatalf("make an image: %v", err)
			}
		}
		data := files[p]
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(p, "/"), Mode: 0o755, Size: int64(len(data)), ModTime: modTime}); err != nil {
			t.Fatalf("make an image: %v", err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatalf("make an image: %v", err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("make an image: %v", err)
	}
	layerData := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerData)), nil
	})
	if err != nil {
		t.Fatalf("make an image: %v", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatalf("make an image: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatalf("make an image: %v", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = runtime.GOOS, runtime.GOARCH
	cf.Config.Entrypoint = slices.Clone(entrypoint)
	cf.Config.Env = append([]string{"PATH=/"}, env...)
	cf.Created = v1.Time{Time: modTime}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatalf("make an image: %v", err)
	}
	return img
}

// ProgramImage is StaticImage of one program: the binary at binPath as
// /NAME (its file name), run with args.
func ProgramImage(t testing.TB, binPath string, args ...string) v1.Image {
	t.Helper()
	data, err := os.ReadFile(binPath)
	if err != nil {
		t.Fatalf("make an image: %v", err)
	}
	p := "/" + filepath.Base(binPath)
	return StaticImage(t, map[string][]byte{p: data}, append([]string{p}, args...))
}

// ImportImage stores img in the real node's containerd under ref (a
// reference with a registry host and a tag, such as
// stratus.local/hello:1), as `ctr images import` of a Docker archive
// does, so that pods with image ref and imagePullPolicy Never (or
// IfNotPresent) run it without a registry. It fails t when the cluster
// has no real node.
func (c *Cluster) ImportImage(t testing.TB, ref string, img v1.Image) {
	t.Helper()
	if c.node == nil {
		t.Fatalf("import image %s: the cluster has no real node (start it with StartWithNode)", ref)
	}
	if err := c.node.importImage(ref, img); err != nil {
		t.Fatalf("%v", err)
	}
}

// writeArchive writes img as a Docker archive (docker save's format) named
// ref into file.
func writeArchive(file, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(file, tag, img)
}
