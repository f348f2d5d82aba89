package archive

import (
	"archive/zip"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// zentry describes one entry of a zip built by a test.
type zentry struct {
	name string
	mode fs.FileMode // 0: no unix mode stored, like zips made on Windows
	body string
	// header, if set, edits the header before the entry is written.
	header func(*zip.FileHeader)
	// raw writes body as already-compressed data, with the sizes and
	// CRC that header sets (zip.Writer.CreateRaw).
	raw bool
}

func symlink(name, target string) zentry {
	return zentry{name: name, mode: fs.ModeSymlink | 0o777, body: target}
}

func dir(name string) zentry { return zentry{name: name, mode: fs.ModeDir | 0o755} }

func file(name, body string) zentry { return zentry{name: name, mode: 0o644, body: body} }

func buildZip(t testing.TB, entries ...zentry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		hdr := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		if e.mode != 0 {
			hdr.SetMode(e.mode)
		}
		if e.mode.Type() != 0 {
			hdr.Method = zip.Store
		}
		if e.header != nil {
			e.header(hdr)
		}
		var w io.Writer
		var err error
		if e.raw {
			w, err = zw.CreateRaw(hdr)
		} else {
			w, err = zw.CreateHeader(hdr)
		}
		if err != nil {
			t.Fatalf("zip entry %q: %v", e.name, err)
		}
		if _, err := io.WriteString(w, e.body); err != nil {
			t.Fatalf("zip entry %q: %v", e.name, err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// setup writes data as a zip file and returns its path and a destination
// inside an otherwise empty folder.
func setup(t *testing.T, data []byte) (zipPath, dst string) {
	t.Helper()
	zipPath = filepath.Join(t.TempDir(), "code.zip")
	if err := os.WriteFile(zipPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return zipPath, filepath.Join(t.TempDir(), "code")
}

// assertNothingLeft fails unless the folder that would hold dst is empty.
func assertNothingLeft(t *testing.T, dst string) {
	t.Helper()
	left, err := os.ReadDir(filepath.Dir(dst))
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range left {
		t.Errorf("left behind after a failed Extract: %s", de.Name())
	}
}

func TestHash(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, size, err := Hash(p)
	if err != nil {
		t.Fatal(err)
	}
	const abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if sum != abc || size != 3 {
		t.Errorf("Hash = %s, %d; want %s, 3", sum, size, abc)
	}
	if _, _, err := Hash(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Hash of a missing file: %v, want fs.ErrNotExist", err)
	}
}

func TestOverLimit(t *testing.T) {
	tests := []struct {
		n, limit int64
		want     string
	}{
		{63019418, 50 << 20, "60.1 MB, more than the 50 MB limit"},
		{300 << 20, 250 << 20, "300 MB, more than the 250 MB limit"},
		{50<<20 + 1, 50 << 20, "52428801 bytes, more than the limit of 52428800 bytes"},
		{2048, 1000, "2 KB, more than the 1000 B limit"},
		{1536, 1024, "1.5 KB, more than the 1 KB limit"},
	}
	for _, tt := range tests {
		if got := overLimit(tt.n, tt.limit); got != tt.want {
			t.Errorf("overLimit(%d, %d) = %q, want %q", tt.n, tt.limit, got, tt.want)
		}
	}
}

func TestLimitsDefaults(t *testing.T) {
	got := Limits{MaxFiles: 7, MaxZipped: -1}.orDefaults()
	want := Limits{MaxZipped: 50 << 20, MaxUnzipped: 250 << 20, MaxFiles: 7}
	if got != want {
		t.Errorf("orDefaults = %+v, want %+v", got, want)
	}
}
