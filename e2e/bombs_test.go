package e2e

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/client"
	"github.com/stratus-run/stratus/internal/archive"
)

// diskDirs are the folders of a data dir that uploads, code and images
// are written to.
var diskDirs = []string{"uploads", "code", "images", "tmp"}

// fixedDirs are the folders a server makes once and keeps.
var fixedDirs = []string{"uploads", "uploads/images", "code", "images", "images/layers", "images/tmp", "images/rootfs", "tmp"}

// diskState lists every file and folder under the diskDirs of data,
// relative to data (files with their sizes, so a rewrite shows), but for
// the fixedDirs.
func diskState(t *testing.T, data string) []string {
	t.Helper()
	var out []string
	for _, d := range diskDirs {
		err := filepath.WalkDir(filepath.Join(data, d), func(p string, e fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(data, p)
			if slices.Contains(fixedDirs, rel) {
				return nil
			}
			if e.Type().IsRegular() {
				fi, err := e.Info()
				if err != nil {
					return err
				}
				rel += fmt.Sprintf(" (%d bytes)", fi.Size())
			}
			out = append(out, rel)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// zipBomb writes a zip holding a bootstrap of n zero bytes (n a whole
// number of MiB) and returns its path: about 1 KB zipped per MiB. Its
// deflate stream is made cheaply: Go's deflate writes the same bytes for
// each flushed MiB of zeros after the first, so one is repeated.
func zipBomb(t *testing.T, n int64) string {
	t.Helper()
	const mib = 1 << 20
	var buf bytes.Buffer
	fw, err := flate.NewWriter(&buf, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, mib)
	var chunks [2][]byte
	for i := range chunks {
		fw.Write(zeros)
		fw.Flush()
		chunks[i] = bytes.Clone(buf.Bytes())
		buf.Reset()
	}
	fw.Close()
	deflated := slices.Concat(chunks[0], bytes.Repeat(chunks[1], int(n/mib)-1), buf.Bytes())
	crc := uint32(0)
	for range n / mib {
		crc = crc32.Update(crc, crc32.IEEETable, zeros)
	}
	p := filepath.Join(t.TempDir(), "bomb.zip")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	hdr := &zip.FileHeader{Name: "bootstrap", Method: zip.Deflate, CRC32: crc,
		CompressedSize64: uint64(len(deflated)), UncompressedSize64: uint64(n)}
	hdr.SetMode(0o755)
	w, err := zw.CreateRaw(hdr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(deflated); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// zerosLayer is a layer whose tar holds one file, name, of n zero bytes
// (n a multiple of 1 MiB, at least 1 MiB). Its gzip is made cheaply, as a
// gzip of the tar header followed by one small gzip member of 1 MiB of
// zeros repeated (gzip readers read concatenated members as one stream):
// about 1 KB per MiB.
func zerosLayer(t *testing.T, name string, n int64) ggcr.Layer {
	t.Helper()
	const mib = 1 << 20
	if n < mib || n%mib != 0 {
		t.Fatalf("zerosLayer: %d is not a whole number of MiB", n)
	}
	var hdr bytes.Buffer
	tw := tar.NewWriter(&hdr)
	// The file's size leaves 1024 zero bytes of the last MiB for the
	// tar's end marker; the header's own block comes before.
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: n - 1024, ModTime: time.Unix(1, 0)}); err != nil {
		t.Fatal(err)
	}
	tw.Flush()
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(b)
		zw.Close()
		return buf.Bytes()
	}
	zeroMember := gz(make([]byte, mib))
	compressed := gz(hdr.Bytes())
	diff := sha256.New()
	diff.Write(hdr.Bytes())
	zeros := make([]byte, mib)
	for range n / mib {
		compressed = append(compressed, zeroMember...)
		diff.Write(zeros)
	}
	return &memLayer{compressed: compressed, diffID: ggcr.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(diff.Sum(nil))}}
}

// memLayer is a gzipped layer held in memory whose diff ID is known.
type memLayer struct {
	compressed []byte
	diffID     ggcr.Hash
}

func (l *memLayer) Digest() (ggcr.Hash, error) {
	sum := sha256.Sum256(l.compressed)
	return ggcr.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}, nil
}
func (l *memLayer) DiffID() (ggcr.Hash, error) { return l.diffID, nil }
func (l *memLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.compressed)), nil
}
func (l *memLayer) Uncompressed() (io.ReadCloser, error) {
	return gzip.NewReader(bytes.NewReader(l.compressed))
}
func (l *memLayer) Size() (int64, error)                { return int64(len(l.compressed)), nil }
func (l *memLayer) MediaType() (types.MediaType, error) { return types.DockerLayer, nil }

// writeImage writes img as a docker save tarball tagged tag under dir.
func writeImage(t *testing.T, dir string, img ggcr.Image, tag string) string {
	t.Helper()
	ref, err := name.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, strings.NewReplacer("/", "_", ":", "_").Replace(tag)+".tar")
	if err := tarball.WriteToFile(p, ref, img); err != nil {
		t.Fatal(err)
	}
	return p
}

// wantClientError checks that err is an answer of the server with status and
// a message holding msg.
func wantClientError(t *testing.T, what string, err error, status int, msg string) {
	t.Helper()
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != status || !strings.Contains(ae.Message, msg) {
		t.Errorf("%s: %v, want %d with a message holding %q", what, err, status, msg)
	}
}

// TestBombsRefused: a zip bomb and an image layer bomb are refused at the
// configured limits (413, saying which), an image beyond the store's
// bound is refused (507), and none of them leaves anything on disk; what
// fits is still taken afterwards.
func TestBombsRefused(t *testing.T) {
	s := startServer(t, "--max-unzipped-bytes", "8388608", "--max-image-bytes", "8388608", "--image-store-bytes", "12582912")
	ctx := context.Background()
	c := client.New(s.URL, s.Token)
	before := diskState(t, s.Data)

	// A zip of 1 GiB of zeros, about 1 MB zipped, over an 8 MiB bound.
	bomb := zipBomb(t, 1<<30)
	r := s.cli("deploy", "bomb", "--runtime", "provided", bomb)
	if r.Code == 0 || !strings.Contains(r.Stderr, "unzips to more than the 8 MB limit") {
		t.Errorf("deploy of a zip bomb: exit %d, stderr %q", r.Code, r.Stderr)
	}
	f, err := os.Open(bomb)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Deploy(ctx, "bomb", stratus.FunctionConfig{Runtime: stratus.RuntimeProvided}, f)
	f.Close()
	wantClientError(t, "deploy of a zip bomb", err, http.StatusRequestEntityTooLarge, "unzips to more than the 8 MB limit")
	if after := diskState(t, s.Data); !slices.Equal(before, after) {
		t.Errorf("the zip bomb left files on disk:\nbefore %v\nafter  %v", before, after)
	}

	// An image whose one layer is the gzip of 1 GiB of zeros (about 1 MB)
	// over an 8 MiB bound.
	dir := t.TempDir()
	layerBomb := writeImage(t, dir, imageOf(t, ggcr.Config{Entrypoint: []string{"/zeros"}}, zerosLayer(t, "zeros", 1<<30)), "example.com/bomb:1")
	if fi, err := os.Stat(layerBomb); err != nil || fi.Size() > 4<<20 {
		t.Fatalf("the layer bomb's tarball: %v, %v", fi, err)
	}
	start := time.Now()
	_, err = c.ImportImage(ctx, layerBomb, "", nil)
	wantClientError(t, "import of a layer bomb", err, http.StatusRequestEntityTooLarge, "image is more than 8 MiB, its layers decompressed")
	t.Logf("layer bomb refused in %s", time.Since(start).Round(time.Millisecond))
	r = s.cli("image", "import", layerBomb)
	if r.Code == 0 || !strings.Contains(r.Stderr, "image is more than 8 MiB") {
		t.Errorf("image import of a layer bomb: exit %d, stderr %q", r.Code, r.Stderr)
	}
	if after := diskState(t, s.Data); !slices.Equal(before, after) {
		t.Errorf("the layer bomb left files on disk:\nbefore %v\nafter  %v", before, after)
	}

	// Images within the image bound until the store's is reached: 507,
	// saying how full it is, and nothing of the refused one stays.
	var imgs []string
	for i := range 3 {
		img := imageOf(t, ggcr.Config{Entrypoint: []string{"/zeros"}}, zerosLayer(t, fmt.Sprintf("zeros%d", i), 5<<20))
		imgs = append(imgs, writeImage(t, dir, img, fmt.Sprintf("example.com/fits:%d", i)))
	}
	for _, p := range imgs[:2] {
		if _, err := c.ImportImage(ctx, p, "", nil); err != nil {
			t.Fatalf("import of an image within the bounds: %v", err)
		}
	}
	full := diskState(t, s.Data)
	_, err = c.ImportImage(ctx, imgs[2], "", nil)
	wantClientError(t, "import into a full store", err, http.StatusInsufficientStorage, "image store is full: ")
	wantClientError(t, "import into a full store", err, http.StatusInsufficientStorage, " of 12582912 bytes; remove images with stratus image rm")
	if after := diskState(t, s.Data); !slices.Equal(full, after) {
		t.Errorf("the refused image left files on disk:\nbefore %v\nafter  %v", full, after)
	}
	s.mustCLI("image", "rm", "example.com/fits:0")
	if _, err := c.ImportImage(ctx, imgs[2], "", nil); err != nil {
		t.Errorf("import once room was made: %v", err)
	}

	// Code within the bounds deploys and runs.
	s.mustCLI("deploy", "fits", "--runtime", "provided", fixture("gonoop"))
	s.mustInvoke("fits", `{}`)
}

// saltedCode is a copy of the goecho fixture with a file of its own, so
// that each salt makes code of another digest.
func saltedCode(t *testing.T, salt string) string {
	t.Helper()
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join(fixture("goecho"), "bootstrap"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bootstrap"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "salt"), []byte(salt), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// zipDir zips a folder as the CLI does.
func zipDir(t *testing.T, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := archive.ZipDir(dir, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// codeEntries lists DATA/code.
func codeEntries(t *testing.T, data string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(data, "code"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// TestKeepVersions: with --keep-versions 3, a function deployed 12 times
// keeps its 3 newest versions; the code of the others is gone from disk,
// and the function still runs, across a restart too.
func TestKeepVersions(t *testing.T) {
	s := startServer(t, "--keep-versions", "3")
	var shas []string
	for i := range 12 {
		out := s.mustCLI("deploy", "kept", "--runtime", "provided", "-o", "json", saltedCode(t, fmt.Sprint("salt ", i)))
		shas = append(shas, decode[v1.Function](t, []byte(out)).CodeSHA)
		if i == 5 {
			s.mustInvoke("kept", `{}`)
		}
	}
	check := func(when string) {
		t.Helper()
		resp, body := s.do("GET", "/v1/functions/kept/versions", nil, true)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("versions %s: %d %s", when, resp.StatusCode, body)
		}
		// None was published: $LATEST, the 12th deploy, is all there is.
		var got []string
		for _, v := range decode[v1.VersionList](t, body).Versions {
			got = append(got, fmt.Sprint(v.Version, "@", v.Snapshot))
		}
		if !slices.Equal(got, []string{"$LATEST@12"}) {
			t.Errorf("versions %s: %v, want [$LATEST@12]", when, got)
		}
		var want []string
		for _, sha := range shas[9:] {
			want = append(want, sha, sha+".zip")
		}
		slices.Sort(want)
		if got := codeEntries(t, s.Data); !slices.Equal(got, want) {
			t.Errorf("code on disk %s: %v, want the code of versions 10-12 only: %v", when, got, want)
		}
		if c := s.mustInvoke("kept", `{}`); c.Status != 200 {
			t.Errorf("invoke %s: %s", when, c)
		}
	}
	check("after 12 deploys")
	s.Stop()
	s.Restart()
	check("after a restart")
}
