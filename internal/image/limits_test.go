package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/stratus-run/stratus"
)

// zerosLayer is a layer holding one file of n zero bytes: a few KiB
// compressed, n bytes decompressed.
func zerosLayer(t testing.TB, n int64) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "zeros", Typeflag: tar.TypeReg, Mode: 0o644, Size: n}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(tw, zeroReader{}, n); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// openLimited opens a store in dir with cfg's bounds.
func openLimited(t testing.TB, dir string, cfg Config) *Store {
	t.Helper()
	cfg.Dir = dir
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A layer that decompresses beyond MaxImage is refused as it is read, by
// every way in (docker tarball, OCI layout folder and tar, registry), and
// nothing of it stays.
func TestImportRefusesLayerBomb(t *testing.T) {
	ctx := context.Background()
	s := openLimited(t, filepath.Join(t.TempDir(), "images"), Config{MaxImage: 1 << 20, MaxStore: 4 << 20})
	bomb := imageOf(t, serverCfg, zerosLayer(t, 8<<20))
	for _, tc := range []struct{ name, path string }{
		{"docker", writeDocker(t, bomb, "bomb:1")},
		{"layout", writeLayout(t, bomb, map[string]string{"org.opencontainers.image.ref.name": "bomb:1"})},
		{"layout tar", tarDir(t, writeLayout(t, bomb, map[string]string{"org.opencontainers.image.ref.name": "bomb:1"}))},
	} {
		_, err := s.Import(ctx, tc.path, "bomb:1")
		if !errors.Is(err, stratus.ErrTooLarge) || !strings.Contains(err.Error(), "image is more than 1 MiB, its layers decompressed") {
			t.Errorf("%s: import of a layer bomb: %v, want ErrTooLarge saying the limit", tc.name, err)
		}
		assertClean(t, s)
	}
	// Pulled from a registry.
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	ref := strings.TrimPrefix(reg.URL, "http://") + "/bomb:1"
	rref, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(rref, bomb); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(ctx, ref, PullOptions{Insecure: true}); !errors.Is(err, stratus.ErrTooLarge) {
		t.Errorf("pull of a layer bomb: %v, want ErrTooLarge", err)
	}
	assertClean(t, s)

	// A gzipped archive that unpacks beyond the bound is refused before
	// its layout reaches the disk.
	big := imageOf(t, serverCfg, layerOf(t, file("big", strings.Repeat("x", 3<<20), 0o644)))
	gz := gzipFile(t, tarDir(t, writeLayout(t, big, map[string]string{"org.opencontainers.image.ref.name": "big:1"})))
	if _, err := s.Import(ctx, gz, "big:1"); !errors.Is(err, stratus.ErrTooLarge) {
		t.Errorf("import of a gzipped archive beyond the bound: %v, want ErrTooLarge", err)
	}
	assertClean(t, s)

	// Within the bound, it is stored.
	if _, err := s.Import(ctx, writeDocker(t, imageOf(t, serverCfg, zerosLayer(t, 512<<10)), "ok:1"), ""); err != nil {
		t.Fatal(err)
	}
}

func gzipFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	out := p + ".gz"
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// The store refuses an image that would make it keep more than MaxStore,
// saying how full it is; the images it has stay, and removing one makes
// room. Flattened roots count.
func TestImportRefusesWhenStoreIsFull(t *testing.T) {
	ctx := context.Background()
	s := openLimited(t, filepath.Join(t.TempDir(), "images"), Config{MaxImage: 4 << 20, MaxStore: 5 << 20})
	a, err := s.Import(ctx, writeDocker(t, imageOf(t, serverCfg, zerosLayer(t, 2<<20)), "a:1"), "")
	if err != nil {
		t.Fatal(err)
	}
	used := s.Usage()
	if used < 2<<20 || used > 3<<20 {
		t.Fatalf("usage after a 2 MiB image: %d", used)
	}
	b := imageOf(t, serverCfg, layerOf(t, file("b", strings.Repeat("b", 3<<20), 0o644)))
	_, err = s.Import(ctx, writeDocker(t, b, "b:1"), "")
	want := "image store is full: " + itoa(used) + " of " + itoa(5<<20) + " bytes; remove images with stratus image rm"
	if !errors.Is(err, stratus.ErrNoSpace) || !strings.Contains(err.Error(), want) {
		t.Fatalf("import into a full store: %v, want ErrNoSpace saying %q", err, want)
	}
	if imgs, _ := s.List(); len(imgs) != 1 || s.Usage() != used {
		t.Errorf("after the refusal: images %v, usage %d (was %d)", imgs, s.Usage(), used)
	}
	if es, _ := os.ReadDir(s.tmpDir()); len(es) != 0 {
		t.Errorf("staging left behind: %d entries", len(es))
	}

	// a's root counts too: 2 MiB more, so even a small image no longer fits.
	if _, err := s.Root(ctx, a); err != nil {
		t.Fatal(err)
	}
	if got := s.Usage(); got < used+2<<20 {
		t.Errorf("usage with a's root: %d, want at least %d", got, used+2<<20)
	}
	if _, err := s.Import(ctx, writeDocker(t, imageOf(t, serverCfg, zerosLayer(t, 1<<20)), "c:1"), ""); !errors.Is(err, stratus.ErrNoSpace) {
		t.Errorf("import with the root counted: %v, want ErrNoSpace", err)
	}

	// The usage survives a restart, roots included.
	s2 := openLimited(t, s.dir, Config{MaxImage: s.maxImage, MaxStore: s.maxStore})
	if s2.Usage() != s.Usage() {
		t.Errorf("usage after reopening: %d, want %d", s2.Usage(), s.Usage())
	}
	if err := s2.Remove("a:1", nil); err != nil {
		t.Fatal(err)
	}
	if s2.Usage() != 0 {
		t.Errorf("usage of an empty store: %d", s2.Usage())
	}
	if _, err := s2.Import(ctx, writeDocker(t, b, "b:1"), ""); err != nil {
		t.Errorf("import after making room: %v", err)
	}
}

// A root whose hard links copy into more than the store has room for is
// refused, and nothing of it stays.
func TestRootRefusesHardLinkBomb(t *testing.T) {
	ctx := context.Background()
	s := openLimited(t, filepath.Join(t.TempDir(), "images"), Config{MaxImage: 4 << 20, MaxStore: 8 << 20})
	entries := []entry{file("f", strings.Repeat("z", 256<<10), 0o644)}
	for i := range 64 { // 64 × 256 KiB = 16 MiB once flattened
		entries = append(entries, hardlink("l"+itoa(int64(i)), "f"))
	}
	img, err := s.Import(ctx, writeDocker(t, imageOf(t, serverCfg, layerOf(t, entries...)), "links:1"), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Root(ctx, img); !errors.Is(err, stratus.ErrTooLarge) && !errors.Is(err, stratus.ErrNoSpace) {
		t.Fatalf("Root of a hard link bomb: %v, want ErrTooLarge or ErrNoSpace", err)
	}
	if es, _ := os.ReadDir(s.tmpDir()); len(es) != 0 {
		t.Errorf("staging left behind: %d entries", len(es))
	}
	if es, _ := os.ReadDir(filepath.Join(s.dir, "rootfs")); len(es) != 0 {
		t.Errorf("roots left behind: %d", len(es))
	}
}

// Open removes what an import or remove interrupted by a crash left: a
// layer or root no index names, staging, index temp files. What the index
// names stays.
func TestOpenRemovesLeftovers(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "images")
	s := openLimited(t, dir, Config{})
	img, err := s.Import(ctx, writeDocker(t, serverImage(t), "a:1"), "")
	if err != nil {
		t.Fatal(err)
	}
	root, err := s.Root(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		filepath.Join(dir, "layers", strings.Repeat("ab", 32), "file"),
		filepath.Join(dir, "rootfs", strings.Repeat("cd", 32), "file"),
		filepath.Join(dir, "tmp", "layer-123", "file"),
		filepath.Join(dir, ".index-42"),
	} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Open(Config{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		filepath.Join(dir, "layers", strings.Repeat("ab", 32)),
		filepath.Join(dir, "rootfs", strings.Repeat("cd", 32)),
		filepath.Join(dir, "tmp", "layer-123"),
		filepath.Join(dir, ".index-42"),
	} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is left after Open: %v", p, err)
		}
	}
	for _, p := range append(s.RootFS(img), root) {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s of the stored image is gone: %v", p, err)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestOpenNeedsDir: a Config without a folder is refused.
func TestOpenNeedsDir(t *testing.T) {
	if _, err := Open(Config{}); !errors.Is(err, stratus.ErrInvalid) {
		t.Errorf("Open without a folder: %v, want ErrInvalid", err)
	}
}
