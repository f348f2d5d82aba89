package blobs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/blobs/blobstest"
)

func openTest(t *testing.T) (*Store, jetstream.JetStream) {
	t.Helper()
	js := blobstest.JetStream(t)
	s, err := Open(t.Context(), js, 0)
	if err != nil {
		t.Fatal(err)
	}
	return s, js
}

func shaHex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// failReader fails the test when something reads it.
type failReader struct{ t *testing.T }

func (f failReader) Read([]byte) (int, error) {
	f.t.Error("Put read the content of a blob the bucket already holds")
	return 0, io.EOF
}

func get(t *testing.T, s *Store, name string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := s.Get(t.Context(), name, &buf); err != nil {
		t.Fatalf("get %s: %v", name, err)
	}
	return buf.Bytes()
}

func TestPutGet(t *testing.T) {
	s, js := openTest(t)
	ctx := t.Context()
	st, err := s.obs.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Bucket() != Bucket || st.Storage() != jetstream.FileStorage || st.Replicas() != 1 {
		t.Fatalf("bucket %s storage %v replicas %d", st.Bucket(), st.Storage(), st.Replicas())
	}
	code := bytes.Repeat([]byte("zip bytes "), 100_000) // several chunks
	name := CodeName(shaHex(code))
	if err := s.Put(ctx, name, bytes.NewReader(code)); err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, name); !bytes.Equal(got, code) {
		t.Fatalf("got %d bytes back, want %d", len(got), len(code))
	}
	info, err := s.obs.GetInfo(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	// Idempotent: the second Put reads nothing and rewrites nothing.
	if err := s.Put(ctx, name, failReader{t}); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.obs.GetInfo(ctx, name); again.NUID != info.NUID {
		t.Errorf("second put rewrote the object")
	}

	archive := []byte("an image archive")
	img := ImageName("sha256:" + strings.Repeat("ab", 32))
	if err := s.Put(ctx, img, bytes.NewReader(archive)); err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, img); !bytes.Equal(got, archive) {
		t.Fatalf("image: got %q", got)
	}

	// A ref moves: rewritten when it differs, kept when it does not.
	ref := RefName("index.docker.io/library/app:v1")
	if ref != "ref/index.docker.io%2Flibrary%2Fapp:v1" {
		t.Errorf("RefName = %q", ref)
	}
	for _, d := range []string{"sha256:1111", "sha256:2222"} {
		if err := s.Put(ctx, ref, strings.NewReader(d)); err != nil {
			t.Fatal(err)
		}
		if got := string(get(t, s, ref)); got != d {
			t.Errorf("ref = %q, want %q", got, d)
		}
	}
	info, _ = s.obs.GetInfo(ctx, ref)
	if err := s.Put(ctx, ref, strings.NewReader("sha256:2222")); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.obs.GetInfo(ctx, ref); again.NUID != info.NUID {
		t.Errorf("same ref content rewrote the object")
	}
	if err := s.Put(ctx, ref, bytes.NewReader(make([]byte, MaxRef+1))); !errors.Is(err, stratus.ErrTooLarge) {
		t.Errorf("oversized ref: %v, want ErrTooLarge", err)
	}

	missing := CodeName(strings.Repeat("0", 64))
	if err := s.Get(ctx, missing, io.Discard); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("missing: %v, want ErrNotFound", err)
	}

	// Opening again finds the same bucket and what it holds.
	s2, err := Open(ctx, js, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := get(t, s2, name); !bytes.Equal(got, code) {
		t.Fatal("reopened bucket lost the object")
	}
}

func TestBadNames(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	hex64 := strings.Repeat("a", 64)
	for _, name := range []string{
		"", "code", "code/", "code/" + hex64[:63], "code/" + strings.ToUpper(hex64), "code/" + hex64 + "/x",
		"code/../" + hex64, "image/" + hex64, "image/sha512:" + hex64, "image/sha256:" + hex64 + "0",
		"ref/", "ref/a/b", "ref/..", "ref/.", "ref/a%2", "ref/a b", "ref/a%20b", "ref/%2e%2e",
		"ref/" + strings.Repeat("a", 1025), "other/x", "/code/" + hex64, "../code/" + hex64,
	} {
		if err := s.Put(ctx, name, strings.NewReader("x")); !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("put %q: %v, want ErrInvalid", name, err)
		}
		if err := s.Get(ctx, name, io.Discard); !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("get %q: %v, want ErrInvalid", name, err)
		}
	}
	if objs, err := s.obs.List(ctx); !errors.Is(err, jetstream.ErrNoObjectsFound) {
		t.Errorf("bucket holds %d objects after bad puts (%v)", len(objs), err)
	}
	if _, err := Open(ctx, nil, 1); !errors.Is(err, stratus.ErrInvalid) {
		t.Errorf("nil jetstream: %v", err)
	}
	if _, err := Open(ctx, blobstest.JetStream(t), 7); !errors.Is(err, stratus.ErrInvalid) {
		t.Errorf("7 replicas: %v", err)
	}
}

func TestDigestMismatch(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	good, bad := []byte("the real zip"), []byte("something else")
	name := CodeName(shaHex(good))

	// Put refuses content that is not what its name says, and keeps none.
	if err := s.Put(ctx, name, bytes.NewReader(bad)); !errors.Is(err, stratus.ErrInvalid) {
		t.Fatalf("put under a wrong digest: %v, want ErrInvalid", err)
	}
	if err := s.Get(ctx, name, io.Discard); !errors.Is(err, stratus.ErrNotFound) {
		t.Fatalf("after a refused put: %v, want ErrNotFound", err)
	}

	// Bytes written into the bucket under a wrong name are refused by Get,
	// and GetFile leaves no file.
	if _, err := s.obs.PutBytes(ctx, name, bad); err != nil {
		t.Fatal(err)
	}
	err := s.Get(ctx, name, io.Discard)
	if !errors.Is(err, stratus.ErrInvalid) || !strings.Contains(err.Error(), shaHex(bad)) {
		t.Fatalf("get of tampered blob: %v, want ErrInvalid naming the digest", err)
	}
	p := filepath.Join(t.TempDir(), "code.zip")
	if err := GetFile(ctx, s, name, p, 0o600); !errors.Is(err, stratus.ErrInvalid) {
		t.Fatalf("GetFile of tampered blob: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(p)); len(ents) != 0 {
		t.Fatalf("GetFile left %v", ents)
	}

	// A Put of the name replaces the wrong content rather than keep it,
	// and a Put of the name that holds the right content keeps it.
	if err := s.Put(ctx, name, bytes.NewReader(good)); err != nil {
		t.Fatalf("put over tampered blob: %v", err)
	}
	if err := s.Get(ctx, name, io.Discard); err != nil {
		t.Fatalf("get after the put replaced tampered content: %v", err)
	}
	info, err := s.obs.GetInfo(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, name, failReader{t}); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.obs.GetInfo(ctx, name); again.NUID != info.NUID {
		t.Error("a put of an object with the right content rewrote it")
	}

	// The right content fetches into place.
	if err := GetFile(ctx, s, name, p, 0o640); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); !bytes.Equal(b, good) {
		t.Fatalf("file holds %q", b)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", fi.Mode())
	}
	q := filepath.Join(t.TempDir(), "other.zip")
	if err := PutFile(ctx, s, CodeName(shaHex(good)), p); err != nil {
		t.Fatal(err)
	}
	if err := GetFile(ctx, s, CodeName(strings.Repeat("1", 64)), q, 0o600); !errors.Is(err, stratus.ErrNotFound) {
		t.Fatalf("GetFile of missing: %v", err)
	}
}

func FuzzParseName(f *testing.F) {
	for _, s := range []string{
		"code/" + strings.Repeat("a", 64), "image/sha256:" + strings.Repeat("0", 64),
		"ref/index.docker.io%2Flibrary%2Fapp:v1", "ref/..", "ref/a%2Fb", "ref/%zz", "x/y", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseName(s)
		if err != nil {
			if !errors.Is(err, stratus.ErrInvalid) {
				t.Fatalf("%q: error without ErrInvalid: %v", s, err)
			}
			return
		}
		if n.full != s || strings.Contains(strings.TrimPrefix(s, n.prefix+"/"), "/") {
			t.Fatalf("%q accepted as %+v", s, n)
		}
		if n.prefix == "ref" {
			rest := strings.TrimPrefix(s, "ref/")
			for _, r := range rest {
				if r == ' ' || r < 0x20 {
					t.Fatalf("%q: raw space or control character accepted", s)
				}
			}
		}
	})
}
