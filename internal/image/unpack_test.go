package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stratus-run/stratus"
)

func TestUnpackLayerRefuses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []entry
	}{
		{"dotdot", []entry{file("a/../../x", "x", 0)}},
		{"absolute", []entry{file("/x", "x", 0)}},
		{"through symlink", []entry{symlink("l", "/etc"), file("l/passwd", "x", 0)}},
		{"through relative symlink", []entry{dir("d"), symlink("d/l", ".."), file("d/l/x", "x", 0)}},
		{"symlink escaping", []entry{symlink("l", "../../etc")}},
		{"hard link escaping", []entry{hardlink("h", "../x")}},
		{"hard link absolute", []entry{hardlink("h", "/etc/passwd")}},
		{"hard link through symlink", []entry{symlink("l", "/etc"), hardlink("h", "l/passwd")}},
		{"bad whiteout", []entry{file(".wh...", "", 0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			dst := filepath.Join(parent, "layer")
			if err := os.Mkdir(dst, 0o755); err != nil {
				t.Fatal(err)
			}
			_, err := unpackLayer(context.Background(), bytes.NewReader(tarBytes(t, tc.entries...)), dst)
			if !errors.Is(err, stratus.ErrInvalid) {
				t.Errorf("err = %v, want ErrInvalid", err)
			}
			assertOnly(t, parent, "layer")
		})
	}
}

// assertOnly checks that parent holds nothing but the named entry.
func assertOnly(t testing.TB, parent, only string) {
	t.Helper()
	es, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.Name() != only {
			t.Fatalf("wrote outside the destination: %s", e.Name())
		}
	}
}

// seed drops the tar's end-of-archive blocks (the reader takes a plain end
// of input as well), which keeps the fuzzer's minimization short.
func seed(b []byte) []byte { return bytes.TrimRight(b, "\x00") }

func FuzzUnpackLayer(f *testing.F) {
	f.Add(seed(tarBytes(f, file("server", "x", 0o755), dir("etc"), file("etc/.wh.conf", "", 0), file("etc/.wh..wh..opq", "", 0))))
	f.Add(seed(tarBytes(f, file("../x", "x", 0))))
	f.Add(seed(tarBytes(f, symlink("l", ".."), file("l/x", "x", 0))))
	f.Add(seed(tarBytes(f, symlink("l", "/tmp"), hardlink("h", "l/x"))))
	f.Add(seed(tarBytes(f, dir("a"), file("a", "now a file", 0), dir("a/b"), hardlink("c", "a"))))
	f.Add(seed(tarBytes(f, entry{name: "dev", typ: tar.TypeChar}, entry{name: "fifo", typ: tar.TypeFifo})))
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		dst := filepath.Join(parent, "layer")
		if err := os.Mkdir(dst, 0o755); err != nil {
			t.Fatal(err)
		}
		_, err := unpackLayer(context.Background(), bytes.NewReader(data), dst)
		assertOnly(t, parent, "layer")
		if err != nil {
			return
		}
		// What unpacked also flattens without leaving its root.
		root := filepath.Join(parent, "root")
		if err := os.Mkdir(root, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := applyLayer(context.Background(), dst, root); err != nil {
			t.Fatalf("apply an unpacked layer: %v", err)
		}
		if err := applyLayer(context.Background(), dst, root); err != nil {
			t.Fatalf("apply an unpacked layer twice: %v", err)
		}
		es, _ := os.ReadDir(parent)
		if len(es) != 2 {
			t.Fatalf("wrote outside the destination: %d entries", len(es))
		}
	})
}

// TestUnpackLayerOldRegularFile: an entry of an old archive whose type
// flag is '\x00' (before POSIX named regular files '0') unpacks as a
// regular file. tar.Writer never writes that flag, so the test sets it in
// the header block and fixes the block's checksum.
func TestUnpackLayerOldRegularFile(t *testing.T) {
	b := tarBytes(t, file("old", "hello", 0o644))
	const typeflag, chksum = 156, 148 // offsets in the header block
	if b[typeflag] != tar.TypeReg {
		t.Fatalf("type flag %q, want %q", b[typeflag], tar.TypeReg)
	}
	b[typeflag] = 0
	copy(b[chksum:chksum+8], "        ")
	sum := 0
	for _, c := range b[:512] {
		sum += int(c)
	}
	copy(b[chksum:chksum+8], fmt.Sprintf("%06o\x00 ", sum))

	dst := filepath.Join(t.TempDir(), "layer")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := unpackLayer(context.Background(), bytes.NewReader(b), dst); err != nil {
		t.Fatalf("unpack: %v", err)
	}
	if got := readFile(t, filepath.Join(dst, "old")); got != "hello" {
		t.Errorf("old = %q, want hello", got)
	}
	if m := mode(t, filepath.Join(dst, "old")); !m.IsRegular() {
		t.Errorf("old has mode %s, want a regular file", m)
	}
}
