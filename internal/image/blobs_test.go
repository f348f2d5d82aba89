package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/blobs"
	"github.com/stratus-run/stratus/internal/blobs/blobstest"
)

// countingBlobs counts the Gets of each name.
type countingBlobs struct {
	Blobs
	mu   sync.Mutex
	gets map[string]int
}

func (c *countingBlobs) Get(ctx context.Context, name string, w io.Writer) error {
	c.mu.Lock()
	if c.gets == nil {
		c.gets = map[string]int{}
	}
	c.gets[name]++
	c.mu.Unlock()
	return c.Blobs.Get(ctx, name, w)
}

func (c *countingBlobs) count(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gets[name]
}

// cluster is two image stores, A and B, sharing one blob store on an
// embedded nats-server; raw is its bucket, for tampering.
type cluster struct {
	a, b   *Store
	ba, bb *countingBlobs
	raw    jetstream.ObjectStore
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	js := blobstest.JetStream(t)
	bs, err := blobs.Open(t.Context(), js, 1)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := js.ObjectStore(t.Context(), blobs.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{ba: &countingBlobs{Blobs: bs}, bb: &countingBlobs{Blobs: bs}, raw: raw}
	for _, p := range []struct {
		s  **Store
		bl *countingBlobs
	}{{&c.a, c.ba}, {&c.b, c.bb}} {
		if *p.s, err = Open(Config{Dir: filepath.Join(t.TempDir(), "images"), Blobs: p.bl}); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// checkRoot checks that img's root on s is serverImage's, flattened.
func checkRoot(t *testing.T, s *Store, img *Image) {
	t.Helper()
	root, err := s.Root(t.Context(), img)
	if err != nil {
		t.Fatal(err)
	}
	if b := readFile(t, filepath.Join(root, "server")); b != "#!server bytes" {
		t.Errorf("server = %q", b)
	}
	if b := readFile(t, filepath.Join(root, "data/new")); b != "new" {
		t.Errorf("data/new = %q", b)
	}
	for _, gone := range []string{"etc/conf", "data/old"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %v, want it hidden by a whiteout", gone, err)
		}
	}
	dst := t.TempDir()
	if err := s.Flatten(t.Context(), img, dst); err != nil {
		t.Fatal(err)
	}
	if b := readFile(t, filepath.Join(dst, "server")); b != "#!server bytes" {
		t.Errorf("flattened server = %q", b)
	}
}

func TestBlobsShareImportedImage(t *testing.T) {
	ctx := t.Context()
	c := newCluster(t)
	layoutDir := writeLayout(t, serverImage(t), map[string]string{"org.opencontainers.image.ref.name": "example.com/app:v1"})
	for _, tc := range []struct{ name, path, ref string }{
		{"oci layout", layoutDir, "example.com/app:v1"},
		{"oci layout tar", tarDir(t, layoutDir), "example.com/app:tar"},
		{"docker save", writeDocker(t, serverImage(t), "example.com/app:docker"), "example.com/app:docker"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := c.a.Import(ctx, tc.path, tc.ref)
			if err != nil {
				t.Fatal(err)
			}
			// The tar of the layout is the same image: B has it by then.
			_, err = c.b.Get(img.Digest)
			wantGets := 1
			if err == nil {
				wantGets = 0
			}
			before := c.bb.count(blobs.ImageName(img.Digest))
			// Many at once, by ref and by digest: one fetch.
			var wg sync.WaitGroup
			errs := make(chan error, 16)
			for i := range 16 {
				wg.Go(func() {
					key := tc.ref
					if i%2 == 1 {
						key = img.Digest
					}
					got, err := c.b.Find(ctx, key)
					switch {
					case err != nil:
						errs <- err
					case got.Digest != img.Digest:
						errs <- fmt.Errorf("find %s: digest %s, want %s", key, got.Digest, img.Digest)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if n := c.bb.count(blobs.ImageName(img.Digest)) - before; n != wantGets {
				t.Errorf("B fetched the archive %d times, want %d", n, wantGets)
			}
			byRef, err := c.b.Get(tc.ref)
			if err != nil {
				t.Fatalf("B by ref after the fetch: %v", err)
			}
			if byRef.Digest != img.Digest || len(byRef.Layers) != 2 || byRef.Config.Entrypoint[0] != "/server" {
				t.Errorf("B has %+v", byRef)
			}
			checkRoot(t, c.b, byRef)
		})
	}
	if n := c.ba.count(blobs.ImageName(mustDigest(t, c.a, "example.com/app:v1"))); n != 0 {
		t.Errorf("A fetched its own image %d times", n)
	}

	// Removing it on A leaves it for B and the others.
	if err := c.a.Remove("example.com/app:v1", nil); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := c.ba.Get(ctx, blobs.RefName("example.com/app:v1"), &buf); err != nil {
		t.Fatalf("ref blob after remove: %v", err)
	}
}

func mustDigest(t *testing.T, s *Store, ref string) string {
	t.Helper()
	img, err := s.Get(ref)
	if err != nil {
		t.Fatal(err)
	}
	return img.Digest
}

func TestBlobsSharePulledImage(t *testing.T) {
	ctx := t.Context()
	c := newCluster(t)
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	var blobGets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			blobGets.Add(1)
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	ref := strings.TrimPrefix(srv.URL, "http://") + "/app:v1"
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, serverImage(t)); err != nil {
		t.Fatal(err)
	}
	blobGets.Store(0)
	img, err := c.a.Pull(ctx, ref, PullOptions{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	// Config and two layers, each read once: publishing read the layers
	// from what the pull kept.
	if n := blobGets.Load(); n != 3 {
		t.Errorf("the pull read %d blobs from the registry, want 3", n)
	}
	got, err := c.b.Find(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != img.Digest {
		t.Fatalf("B found %s, want %s", got.Digest, img.Digest)
	}
	checkRoot(t, c.b, got)
	if n := blobGets.Load(); n != 3 {
		t.Errorf("B went to the registry (%d blob reads)", n)
	}
}

func TestBlobsRefMoves(t *testing.T) {
	ctx := t.Context()
	c := newCluster(t)
	v1, err := c.a.Import(ctx, writeDocker(t, serverImage(t), "example.com/app:v1"), "")
	if err != nil {
		t.Fatal(err)
	}
	// B runs it by digest (as a revision names it), then finds it by ref.
	if got, err := c.b.Find(ctx, v1.Digest); err != nil || got.Digest != v1.Digest || got.Ref != "example.com/app@"+v1.Digest {
		t.Fatalf("B by digest: %+v %v", got, err)
	}
	if got, err := c.b.Find(ctx, "example.com/app:v1"); err != nil || got.Digest != v1.Digest {
		t.Fatalf("B by ref: %+v %v", got, err)
	}
	other := imageOf(t, serverCfg, baseLayer(t), layerOf(t, file("data/new", "newer", 0o644)))
	v2, err := c.a.Import(ctx, writeDocker(t, other, "example.com/app:v1"), "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.b.Find(ctx, "example.com/app:v1")
	if err != nil || got.Digest != v2.Digest {
		t.Fatalf("B after the ref moved: %v %v, want %s", got, err, v2.Digest)
	}
	// The old image is still there by digest, without another fetch (a
	// ref names one image: had B known v1 only as app:v1, it would have
	// left with the ref, as on a local import).
	if old, err := c.b.Find(ctx, v1.Digest); err != nil || old.Digest != v1.Digest {
		t.Errorf("old by digest: %v %v", old, err)
	}
	if n := c.bb.count(blobs.ImageName(v1.Digest)); n != 1 {
		t.Errorf("v1 fetched %d times", n)
	}
	if _, err := c.b.Find(ctx, "example.com/nothing:v1"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("unknown ref: %v, want ErrNotFound", err)
	}
	if _, err := c.b.Find(ctx, "sha256:"+strings.Repeat("0", 64)); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("unknown digest: %v, want ErrNotFound", err)
	}
	if _, err := c.b.Find(ctx, "sha256:nothex"); !errors.Is(err, stratus.ErrInvalid) {
		t.Errorf("bad digest: %v, want ErrInvalid", err)
	}
}

func TestBlobsRefuseTamperedArchive(t *testing.T) {
	ctx := t.Context()
	c := newCluster(t)
	real := serverImage(t)
	d, err := real.Digest()
	if err != nil {
		t.Fatal(err)
	}
	digest := d.String()

	// Another image's archive under this image's name.
	other := newCluster(t)
	otherImg, err := other.a.Import(ctx, writeDocker(t, imageOf(t, serverCfg, baseLayer(t)), "example.com/other:v1"), "")
	if err != nil {
		t.Fatal(err)
	}
	var otherArchive bytes.Buffer
	if err := other.ba.Get(ctx, blobs.ImageName(otherImg.Digest), &otherArchive); err != nil {
		t.Fatal(err)
	}
	// This image's archive with one layer blob's bytes changed.
	var realArchive bytes.Buffer
	if err := writeArchive(real, mustRaw(t, real), "example.com/app:v1", nil, &realArchive); err != nil {
		t.Fatal(err)
	}
	layers, _ := real.Layers()
	ld, _ := layers[0].Digest()
	corrupt := corruptEntry(t, realArchive.Bytes(), "blobs/sha256/"+ld.Hex)
	// Its config with another entrypoint, of the same length.
	evil := bytes.Replace(realArchive.Bytes(), []byte(`"Entrypoint":["/server"]`), []byte(`"Entrypoint":["/evil!!"]`), 1)
	if bytes.Equal(evil, realArchive.Bytes()) {
		t.Fatal("no entrypoint in the archive's config")
	}

	for _, tc := range []struct {
		name    string
		archive []byte
	}{
		{"another image", otherArchive.Bytes()},
		{"changed layer", corrupt},
		{"changed config", evil},
		{"garbage", []byte("not a tar at all")},
		{"empty", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.raw.PutBytes(ctx, blobs.ImageName(digest), tc.archive); err != nil {
				t.Fatal(err)
			}
			_, err := c.b.Find(ctx, digest)
			if !errors.Is(err, stratus.ErrInvalid) {
				t.Fatalf("find: %v, want ErrInvalid", err)
			}
			t.Log(err)
			assertClean(t, c.b)
		})
	}
	// A ref that names the image leads to the same refusal.
	if _, err := c.raw.PutString(ctx, blobs.RefName("example.com/app:v1"), digest); err != nil {
		t.Fatal(err)
	}
	if _, err := c.b.Find(ctx, "example.com/app:v1"); !errors.Is(err, stratus.ErrInvalid) {
		t.Fatalf("find by ref: %v, want ErrInvalid", err)
	}
	if _, err := c.raw.PutString(ctx, blobs.RefName("example.com/app:v1"), "not a digest"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.b.Find(ctx, "example.com/app:v1"); !errors.Is(err, stratus.ErrInvalid) {
		t.Fatalf("find by a bad ref blob: %v, want ErrInvalid", err)
	}
	assertClean(t, c.b)

	// The untouched archive imports, named by its digest in the
	// repository it names.
	if _, err := c.raw.PutBytes(ctx, blobs.ImageName(digest), realArchive.Bytes()); err != nil {
		t.Fatal(err)
	}
	if got, err := c.b.Find(ctx, digest); err != nil || got.Digest != digest || got.Ref != "example.com/app@"+digest {
		t.Fatalf("find of the real archive: %+v %v", got, err)
	}
}

func mustRaw(t *testing.T, img interface{ RawManifest() ([]byte, error) }) []byte {
	t.Helper()
	b, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// corruptEntry returns the tar archive with a byte in the middle of entry
// p's content flipped.
func corruptEntry(t *testing.T, archive []byte, p string) []byte {
	t.Helper()
	out := bytes.Clone(archive)
	// Tar headers are 512-byte blocks with the name first.
	for off := 0; off+512 <= len(out); off += 512 {
		if string(bytes.TrimRight(out[off:off+100], "\x00")) == p {
			size, err := strconv.ParseInt(strings.Trim(string(out[off+124:off+136]), "\x00 "), 8, 64)
			if err != nil {
				t.Fatal(err)
			}
			out[off+512+int(size/2)] ^= 0xff
			return out
		}
	}
	t.Fatalf("no entry %s", p)
	return nil
}

// failingBlobs refuses every Put.
type failingBlobs struct{ Blobs }

func (failingBlobs) Put(context.Context, string, io.Reader) error {
	return fmt.Errorf("nats: no responders: %w", stratus.ErrUnavailable)
}

func TestBlobsPublishFailureStoresNothing(t *testing.T) {
	s, err := Open(Config{Dir: filepath.Join(t.TempDir(), "images"), Blobs: failingBlobs{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(t.Context(), writeLayout(t, serverImage(t), map[string]string{"org.opencontainers.image.ref.name": "example.com/app:v1"}), ""); !errors.Is(err, stratus.ErrUnavailable) {
		t.Fatalf("import: %v, want ErrUnavailable", err)
	}
	assertClean(t, s)
}
