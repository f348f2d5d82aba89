package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/stratus-run/stratus"
)

func TestImportDockerSave(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	img := serverImage(t)
	p := writeDocker(t, img, "example.com/app:v1")

	got, err := s.Import(ctx, p, "")
	if err != nil {
		t.Fatal(err)
	}
	want := ImageConfig{
		Entrypoint: []string{"/server"}, Cmd: []string{"--port", "8080"}, Env: []string{"PATH=/usr/bin:/bin"},
		WorkingDir: "/", User: "1000", ExposedPorts: []string{"8080/tcp"},
	}
	if diff := cmp.Diff(want, got.Config); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	if got.Ref != "example.com/app:v1" || len(got.Layers) != 2 || got.Size == 0 || got.CreatedAt.IsZero() {
		t.Errorf("image = %+v", got)
	}
	d, _ := img.Digest()
	if got.Digest != d.String() {
		t.Errorf("digest %s, want %s", got.Digest, d)
	}
	for _, ref := range []string{"example.com/app:v1", got.Digest} {
		if g, err := s.Get(ref); err != nil || g.Digest != got.Digest {
			t.Errorf("Get(%q) = %v, %v", ref, g, err)
		}
	}
	if _, err := s.Get("example.com/app:v2"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("Get missing: %v", err)
	}

	// The layers are kept apart, whiteouts as markers.
	dirs := s.RootFS(got)
	if len(dirs) != 2 {
		t.Fatalf("RootFS = %v", dirs)
	}
	if b := readFile(t, filepath.Join(dirs[0], "server")); b != "#!server bytes" {
		t.Errorf("server = %q", b)
	}
	if m := mode(t, filepath.Join(dirs[0], "server")); m != 0o755 {
		t.Errorf("server mode %v", m)
	}
	if m := mode(t, filepath.Join(dirs[0], "etc/secret")); m != 0o755 {
		t.Errorf("setuid file mode %v, want 0755", m)
	}
	if l, err := os.Readlink(filepath.Join(dirs[0], "bin")); err != nil || l != "/server" {
		t.Errorf("bin -> %q, %v", l, err)
	}
	if b := readFile(t, filepath.Join(dirs[0], "server2")); b != "#!server bytes" {
		t.Errorf("hard link = %q", b)
	}
	for _, m := range []string{"etc/.wh.conf", "data/.wh..wh..opq"} {
		if _, err := os.Lstat(filepath.Join(dirs[1], m)); err != nil {
			t.Errorf("marker %s: %v", m, err)
		}
	}

	// Flatten applies them.
	root := filepath.Join(t.TempDir(), "rootfs")
	if err := s.Flatten(ctx, got, root); err != nil {
		t.Fatal(err)
	}
	var files []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(root, p)
		files = append(files, rel)
		return err
	})
	wantFiles := []string{".", "bin", "data", "data/new", "etc", "etc/secret", "server", "server2"}
	if diff := cmp.Diff(wantFiles, files); diff != "" {
		t.Errorf("flattened files (-want +got):\n%s", diff)
	}
	if m := mode(t, filepath.Join(root, "data/new")); m != 0o600 {
		t.Errorf("data/new mode %v", m)
	}

	// Another Open sees the same images.
	s2, err := Open(Config{Dir: s.dir})
	if err != nil {
		t.Fatal(err)
	}
	if g, err := s2.Get("example.com/app:v1"); err != nil || g.Digest != got.Digest {
		t.Errorf("after reopen: %v, %v", g, err)
	}
}

func TestImportOCILayout(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	img := serverImage(t)
	d := writeLayout(t, img, map[string]string{"org.opencontainers.image.ref.name": "example.com/app:oci"})

	fromDir, err := s.Import(ctx, d, "")
	if err != nil {
		t.Fatal(err)
	}
	if fromDir.Ref != "example.com/app:oci" {
		t.Errorf("ref %q", fromDir.Ref)
	}
	fromTar, err := s.Import(ctx, tarDir(t, d), "example.com/app:tar")
	if err != nil {
		t.Fatal(err)
	}
	if fromTar.Digest != fromDir.Digest {
		t.Errorf("digests differ: %s %s", fromTar.Digest, fromDir.Digest)
	}
	// The docker save form of the same image has the same layers.
	if _, err := s.Import(ctx, writeDocker(t, img, "example.com/app:docker"), ""); err != nil {
		t.Fatal(err)
	}
	if l := storedLayers(t, s); len(l) != 2 {
		t.Errorf("stored layers %v, want 2", l)
	}
	imgs, _ := s.List()
	if len(imgs) != 3 {
		t.Errorf("List = %d images", len(imgs))
	}
}

func TestSharedLayersAndRemove(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	base := baseLayer(t)
	a, err := s.Import(ctx, writeDocker(t, imageOf(t, serverCfg, base, topLayer(t)), "a:1"), "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Import(ctx, writeDocker(t, imageOf(t, serverCfg, base, layerOf(t, file("b", "b", 0))), "b:1"), "")
	if err != nil {
		t.Fatal(err)
	}
	if a.Layers[0] != b.Layers[0] {
		t.Fatal("base layer differs")
	}
	if l := storedLayers(t, s); len(l) != 3 {
		t.Errorf("stored layers %v, want 3", l)
	}

	inUse := func(d string) bool { return d == a.Digest }
	if err := s.Remove("a:1", inUse); !errors.Is(err, stratus.ErrConflict) {
		t.Fatalf("Remove in use: %v", err)
	}
	if _, err := s.Get("a:1"); err != nil {
		t.Errorf("a removed despite conflict: %v", err)
	}
	if err := s.Remove("a:1", func(string) bool { return false }); err != nil {
		t.Fatal(err)
	}
	if l := storedLayers(t, s); len(l) != 2 {
		t.Errorf("stored layers after removing a: %v", l)
	}
	if _, err := os.Stat(s.RootFS(b)[0]); err != nil {
		t.Errorf("shared layer deleted: %v", err)
	}
	if err := s.Remove("a:1", nil); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("Remove again: %v", err)
	}
	if err := s.Remove(b.Digest, nil); err != nil {
		t.Fatal(err)
	}
	assertClean(t, s)
}

// authRegistry serves an in-process registry that wants basic auth.
func authRegistry(t *testing.T, user, pass string) string {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"who are you"}]}`, http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestPull(t *testing.T) {
	ctx := context.Background()
	host := authRegistry(t, "alice", "secret")
	auth := remote.WithAuth(&authn.Basic{Username: "alice", Password: "secret"})
	push := func(ref string, img v1.Image) {
		t.Helper()
		r, err := name.ParseReference(ref, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(r, img, auth); err != nil {
			t.Fatal(err)
		}
	}
	push(host+"/app:v1", serverImage(t))
	rnd, err := random.Image(64<<10, 4)
	if err != nil {
		t.Fatal(err)
	}
	rnd, err = mutate.Config(rnd, serverCfg)
	if err != nil {
		t.Fatal(err)
	}
	push(host+"/bulk:v1", rnd)

	s := openStore(t)
	opt := PullOptions{Username: "alice", Password: "secret", Insecure: true}
	var lastDone, lastTotal int64
	opt.Progress = func(done, total int64) { lastDone, lastTotal = done, total }
	got, err := s.Pull(ctx, host+"/bulk:v1", opt)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Layers) != 4 || lastTotal == 0 || lastDone != lastTotal {
		t.Errorf("layers %d, progress %d/%d", len(got.Layers), lastDone, lastTotal)
	}
	d, _ := rnd.Digest()
	if got.Digest != d.String() {
		t.Errorf("digest %s, want %s", got.Digest, d)
	}

	opt.Progress = nil
	app, err := s.Pull(ctx, host+"/app:v1", opt)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := s.Flatten(ctx, app, root); err != nil {
		t.Fatal(err)
	}
	if b := readFile(t, filepath.Join(root, "server")); b != "#!server bytes" {
		t.Errorf("server = %q", b)
	}
	if _, err := s.Pull(ctx, host+"/app@"+app.Digest, opt); err != nil {
		t.Errorf("pull by digest: %v", err)
	}

	before, _ := s.List()
	for _, tc := range []struct {
		name string
		ref  string
		opt  PullOptions
		want error
	}{
		{"wrong password", host + "/app:v1", PullOptions{Username: "alice", Password: "nope", Insecure: true}, stratus.ErrInvalid},
		{"anonymous", host + "/app:v1", PullOptions{Insecure: true}, stratus.ErrInvalid},
		{"missing tag", host + "/app:v9", opt, stratus.ErrNotFound},
		{"missing repo", host + "/nothing:v1", opt, stratus.ErrNotFound},
		{"bad ref", "UPPER/Case:v1", opt, stratus.ErrInvalid},
		{"unreachable", "127.0.0.1:1/app:v1", opt, stratus.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Pull(ctx, tc.ref, tc.opt)
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
	after, _ := s.List()
	if len(after) != len(before) {
		t.Errorf("failed pulls changed the store: %d → %d images", len(before), len(after))
	}
}

func TestImportBadInput(t *testing.T) {
	ctx := context.Background()
	good := writeDocker(t, serverImage(t), "example.com/app:v1")
	goodBytes, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	writeBytes := func(b []byte) string {
		p := filepath.Join(t.TempDir(), "x.tar")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// An OCI layout whose layer blob was replaced after the manifest was written.
	tampered := writeLayout(t, serverImage(t), nil)
	{
		lp, _ := layout.FromPath(tampered)
		idx, _ := lp.ImageIndex()
		im, _ := idx.IndexManifest()
		img, _ := idx.Image(im.Manifests[0].Digest)
		m, _ := img.Manifest()
		other, _ := layerOf(t, file("server", "evil", 0o755)).Compressed()
		b, _ := io.ReadAll(other)
		if err := os.WriteFile(filepath.Join(tampered, "blobs", "sha256", m.Layers[1].Digest.Hex), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A layout whose layer blob holds the same tar, compressed differently:
	// the manifest's digest for it is now a lie.
	recompressed := writeLayout(t, serverImage(t), nil)
	{
		lp, _ := layout.FromPath(recompressed)
		idx, _ := lp.ImageIndex()
		im, _ := idx.IndexManifest()
		img, _ := idx.Image(im.Manifests[0].Digest)
		m, _ := img.Manifest()
		// Keep the diff ID right so only the compressed digest is wrong.
		l, _ := img.LayerByDigest(m.Layers[0].Digest)
		u, _ := l.Uncompressed()
		raw, _ := io.ReadAll(u)
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Name = "different"
		zw.Write(raw)
		zw.Close()
		if err := os.WriteFile(filepath.Join(recompressed, "blobs", "sha256", m.Layers[0].Digest.Hex), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The same, with the config's diff ID pointing elsewhere: a docker save
	// whose layer file differs from the config's diff ID.
	lying := imageOf(t, serverCfg, baseLayer(t))
	cf, _ := lying.ConfigFile()
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs[0] = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}
	lyingRaw, _ := mutate.ConfigFile(lying, cf)

	for _, tc := range []struct {
		name, path, ref string
		want            error
		msg             string
	}{
		{"missing file", filepath.Join(t.TempDir(), "nope.tar"), "", stratus.ErrNotFound, "no such file"},
		{"corrupt tar", writeBytes(bytes.Repeat([]byte("garbage!"), 200)), "", stratus.ErrInvalid, "corrupt"},
		{"truncated tar", writeBytes(goodBytes[:len(goodBytes)/2]), "", stratus.ErrInvalid, "truncated"},
		{"empty tar", writeBytes(tarBytes(t)), "", stratus.ErrInvalid, "not a docker save"},
		{"tampered layout blob", tampered, "example.com/app:t", stratus.ErrInvalid, "digest"},
		{"recompressed layout blob", recompressed, "example.com/app:r", stratus.ErrInvalid, "as the manifest says"},
		{"lying diff id", writeDocker(t, lyingRaw, "example.com/app:l"), "", stratus.ErrInvalid, ""},
		{"traversal", writeDocker(t, imageOf(t, serverCfg, layerOf(t, file("../../evil", "x", 0))), "example.com/app:p"), "", stratus.ErrInvalid, `".."`},
		{"absolute", writeDocker(t, imageOf(t, serverCfg, layerOf(t, file("/etc/evil", "x", 0))), "example.com/app:p"), "", stratus.ErrInvalid, "absolute"},
		{"no ref", writeLayout(t, serverImage(t), nil), "", stratus.ErrInvalid, "give a ref"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			_, err := s.Import(ctx, tc.path, tc.ref)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %v, want %v containing %q", err, tc.want, tc.msg)
			}
			assertClean(t, s)
		})
	}
}

func FuzzImport(f *testing.F) {
	good := writeDocker(f, imageOf(f, serverCfg, layerOf(f, file("server", "x", 0o755))), "example.com/app:v1")
	b, err := os.ReadFile(good)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:len(b)/3])
	f.Add(tarBytes(f, file("manifest.json", `[{"Config":"c","RepoTags":["a:1"],"Layers":["../l"]}]`, 0)))
	f.Add(tarBytes(f, file("oci-layout", `{"imageLayoutVersion":"1.0.0"}`, 0), file("index.json", `{"manifests":[]}`, 0)))
	s := openStore(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "in.tar")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		img, err := s.Import(context.Background(), p, "example.com/fuzz:v1")
		if err != nil {
			if !errors.Is(err, stratus.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			return
		}
		if err := s.Remove(img.Ref, nil); err != nil {
			t.Fatal(err)
		}
	})
}

// TestRootShiftsOwners: with an id base, a flattened root's owners are
// the image's own shifted into the sandboxes' range (uid N of the image is
// base+N on the host, which a sandbox's user namespace maps back to N);
// ids beyond the range stay as they are. Remove deletes the root.
func TestRootShiftsOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		// CI runs the tests as root; elsewhere the store cannot chown.
		if os.Getenv("CI") == "true" {
			t.Fatal("owners are kept only when the store runs as root; CI runs the tests as root")
		}
		t.Skip("owners are kept only when the store runs as root")
	}
	const base = 1_000_000_000
	ctx := context.Background()
	s, err := Open(Config{Dir: filepath.Join(t.TempDir(), "images"), IDBase: base})
	if err != nil {
		t.Fatal(err)
	}
	owned := func(e entry, uid int) entry { e.uid = uid; return e }
	img := imageOf(t, v1.Config{Entrypoint: []string{"/app/run"}, User: "app"}, layerOf(t,
		owned(dir("app"), 1000),
		owned(file("app/secret", "only for app", 0o600), 1000),
		file("app/run", "#!run", 0o755),
		owned(file("far", "beyond the range", 0o644), 70000),
	))
	got, err := s.Import(ctx, writeDocker(t, img, "example.com/owned:v1"), "")
	if err != nil {
		t.Fatal(err)
	}
	root, err := s.Root(ctx, got)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(root, "-ids1000000000") {
		t.Errorf("root %s is not named after its id base", root)
	}
	for p, want := range map[string]uint32{".": base, "app": base + 1000, "app/secret": base + 1000, "app/run": base, "far": 70000} {
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != want || st.Gid != want {
			t.Errorf("%s owned by %d:%d, want %d:%d", p, st.Uid, st.Gid, want, want)
		}
	}
	if err := s.Remove(got.Ref, func(string) bool { return false }); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("root left after Remove: %v", err)
	}
}
