package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/client"
	"github.com/stratus-run/stratus/internal/apiserver"
	"github.com/stratus-run/stratus/internal/image"
)

// imageServer is an API server with a real image store in a temp dir.
func imageServer(t *testing.T) (*client.Client, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := image.Open(image.Config{Dir: filepath.Join(dir, "images")})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(apiserver.New(apiserver.Config{
		Token: "tok", Log: slog.New(slog.DiscardHandler),
		Images: apiserver.ImagesConfig{Store: st, UploadDir: filepath.Join(dir, "uploads")},
	}))
	t.Cleanup(srv.Close)
	return client.New(srv.URL, "tok"), filepath.Join(dir, "images")
}

// randomImage is a runnable linux image of layers random layers.
func randomImage(t *testing.T, layers int) ggcr.Image {
	t.Helper()
	img, err := random.Image(256<<10, int64(layers))
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, ggcr.Config{Entrypoint: []string{"/app"}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// push serves img at a new in-process registry (through wrap, if not
// nil) and returns its ref there.
func push(t *testing.T, img ggcr.Image, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	reg := httptest.NewServer(h)
	t.Cleanup(reg.Close)
	ref := strings.TrimPrefix(reg.URL, "http://") + "/app:v1"
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

// progressLog records the calls of a progress function.
type progressLog struct {
	mu    sync.Mutex
	calls [][2]int64
}

func (p *progressLog) report(done, total int64) {
	p.mu.Lock()
	p.calls = append(p.calls, [2]int64{done, total})
	p.mu.Unlock()
}

// check says what is wrong with the calls: none, done going back, or a
// total that changes.
func (p *progressLog) check() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.calls) == 0 {
		return "progress was never called"
	}
	for i, c := range p.calls[1:] {
		if prev := p.calls[i]; c[0] < prev[0] || c[1] != prev[1] {
			return fmt.Sprintf("progress went from %d/%d to %d/%d", prev[0], prev[1], c[0], c[1])
		}
	}
	return ""
}

func (p *progressLog) last() [2]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[len(p.calls)-1]
}

func TestPullImageProgress(t *testing.T) {
	c, _ := imageServer(t)
	img := randomImage(t, 4)
	ref := push(t, img, nil)
	var p progressLog
	got, err := c.PullImage(context.Background(), v1.ImagePull{Ref: ref, Insecure: true}, p.report)
	if err != nil {
		t.Fatal(err)
	}
	if msg := p.check(); msg != "" {
		t.Error(msg)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, l := range m.Layers {
		total += l.Size
	}
	if last := p.last(); last != [2]int64{total, total} {
		t.Errorf("last progress %v, want %d/%d", last, total, total)
	}
	want, _ := img.Digest()
	if got.Ref != ref || got.Digest != want.String() || len(got.Layers) != 4 {
		t.Errorf("pulled %+v, want %s %s with 4 layers", got, ref, want)
	}
	if imgs, err := c.ListImages(context.Background()); err != nil || len(imgs) != 1 || imgs[0].Digest != want.String() {
		t.Errorf("ListImages = %+v, %v", imgs, err)
	}
}

// TestPullImageFailsMidway has the registry send a corrupt third layer:
// the client has seen progress, then gets the server's error, and the
// store holds nothing of the pull.
func TestPullImageFailsMidway(t *testing.T) {
	c, storeDir := imageServer(t)
	img := randomImage(t, 4)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	bad, err := layers[2].Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref := push(t, img, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+bad.String()) {
				rec := httptest.NewRecorder()
				next.ServeHTTP(rec, r)
				b := rec.Body.Bytes()
				for i := len(b) / 2; i < len(b); i++ {
					b[i] ^= 0xff
				}
				w.WriteHeader(rec.Code)
				_, _ = w.Write(b)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	var p progressLog
	_, err = c.PullImage(context.Background(), v1.ImagePull{Ref: ref, Insecure: true}, p.report)
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || ae.Code != v1.CodeInvalid ||
		!strings.Contains(ae.Message, "layer 2") || !strings.Contains(ae.Message, ref) {
		t.Fatalf("PullImage error = %v (%#v), want a 400 about layer 2 of %s", err, ae, ref)
	}
	t.Logf("error: %v", err)
	if msg := p.check(); msg != "" {
		t.Error(msg)
	}
	if last := p.last(); last[0] >= last[1] {
		t.Errorf("last progress %v: the pull got to the end", last)
	}
	if imgs, err := c.ListImages(context.Background()); err != nil || len(imgs) != 0 {
		t.Errorf("ListImages = %+v, %v; want none", imgs, err)
	}
	for _, sub := range []string{"layers", "tmp"} {
		if ents, err := os.ReadDir(filepath.Join(storeDir, sub)); err != nil || len(ents) != 0 {
			t.Errorf("store folder %s: %d entries (%v), want none", sub, len(ents), err)
		}
	}
}

func TestImportImageProgress(t *testing.T) {
	c, _ := imageServer(t)
	img := randomImage(t, 2)
	tag, err := name.NewTag("example.com/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(t.TempDir(), "image.tar")
	if err := tarball.WriteToFile(tarPath, tag, img); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	var p progressLog
	got, err := c.ImportImage(context.Background(), tarPath, "", p.report)
	if err != nil {
		t.Fatal(err)
	}
	if got.Ref != "example.com/app:v1" {
		t.Errorf("imported %+v", got)
	}
	if msg := p.check(); msg != "" {
		t.Error(msg)
	}
	if last := p.last(); last != [2]int64{fi.Size(), fi.Size()} {
		t.Errorf("last progress %v, want %d/%d", last, fi.Size(), fi.Size())
	}

	// A layout folder goes as a tar of unknown size.
	lp, err := layout.Write(filepath.Join(t.TempDir(), "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	var pd progressLog
	if _, err := c.ImportImage(context.Background(), string(lp), "example.com/app:layout", pd.report); err != nil {
		t.Fatal(err)
	}
	if msg := pd.check(); msg != "" {
		t.Error(msg)
	}
	if last := pd.last(); last[1] != -1 || last[0] < fi.Size()/2 {
		t.Errorf("last progress of the folder %v, want most of %d bytes of -1", last, fi.Size())
	}
}
