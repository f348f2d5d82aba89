package archive

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"errors"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stratus-run/stratus"
)

func TestExtractRefuses(t *testing.T) {
	big := strings.Repeat("x", 100)
	tests := []struct {
		name    string
		entries []zentry
		data    []byte // used instead of entries when set
		lim     Limits
		kind    error
		msg     string // the error message, or a part of it
	}{
		{name: "garbage", data: []byte("this is not a zip file"), kind: stratus.ErrInvalid,
			msg: "archive is not a valid zip file: invalid"},
		{name: "empty file", data: []byte{}, kind: stratus.ErrInvalid,
			msg: "archive is not a valid zip file: invalid"},
		{name: "truncated zip", data: buildZip(t, file("a.txt", big))[:60], kind: stratus.ErrInvalid,
			msg: "archive is not a valid zip file"},
		{name: "bad local header", data: func() []byte {
			data := buildZip(t, file("a.txt", big))
			copy(data, "XXXX") // the first local header's signature
			return data
		}(), kind: stratus.ErrInvalid, msg: `archive entry "a.txt": corrupt data`},
		{name: "dotdot", entries: []zentry{file("../x", "x")}, kind: stratus.ErrInvalid,
			msg: `archive entry "../x": path escapes the code folder: invalid`},
		{name: "inner dotdot", entries: []zentry{file("a/../../x", "x")}, kind: stratus.ErrInvalid,
			msg: `archive entry "a/../../x": path escapes the code folder`},
		{name: "harmless dotdot still refused", entries: []zentry{file("a/../x", "x")}, kind: stratus.ErrInvalid,
			msg: "path escapes the code folder"},
		{name: "absolute", entries: []zentry{file("/etc/passwd", "x")}, kind: stratus.ErrInvalid,
			msg: `archive entry "/etc/passwd": path is absolute`},
		{name: "drive letter", entries: []zentry{file("C:/Windows/x", "x")}, kind: stratus.ErrInvalid,
			msg: "path is absolute"},
		{name: "bare drive", entries: []zentry{dir("c:/")}, kind: stratus.ErrInvalid,
			msg: "path is absolute"},
		{name: "backslash dotdot", entries: []zentry{file(`..\x`, "x")}, kind: stratus.ErrInvalid,
			msg: "path contains a backslash"},
		{name: "backslash inside", entries: []zentry{file(`a\..\..\x`, "x")}, kind: stratus.ErrInvalid,
			msg: "path contains a backslash"},
		{name: "backslash drive", entries: []zentry{file(`C:\x`, "x")}, kind: stratus.ErrInvalid,
			msg: "path contains a backslash"},
		{name: "nul byte", entries: []zentry{file("a\x00/../../x", "x")}, kind: stratus.ErrInvalid,
			msg: `archive entry "a\x00/../../x": path contains a NUL byte`},
		{name: "empty name", entries: []zentry{file("", "x")}, kind: stratus.ErrInvalid,
			msg: "path is empty"},
		{name: "dot as file", entries: []zentry{file(".", "x")}, kind: stratus.ErrInvalid,
			msg: "path names the code folder itself"},
		{name: "name too long", entries: []zentry{file(strings.Repeat("abcdefgh/", 500)+"x", "x")}, kind: stratus.ErrInvalid,
			msg: "path is longer than 4096 bytes"},
		{name: "too deep", entries: []zentry{file(strings.Repeat("a/", 129)+"x", "x")}, kind: stratus.ErrInvalid,
			msg: "path is more than 128 folders deep"},
		{name: "element too long", entries: []zentry{file(strings.Repeat("a", 256), "x")}, kind: stratus.ErrInvalid,
			msg: "path has an element longer than 255 bytes"},
		{name: "duplicate file", entries: []zentry{file("a.txt", "1"), file("a.txt", "2")}, kind: stratus.ErrInvalid,
			msg: `archive entry "a.txt": path is already used by another entry (a file)`},
		{name: "duplicate after cleaning", entries: []zentry{file("a.txt", "1"), file("./a.txt", "2")}, kind: stratus.ErrInvalid,
			msg: "path is already used by another entry"},
		{name: "file over folder", entries: []zentry{file("a/b", "1"), file("a", "2")}, kind: stratus.ErrInvalid,
			msg: "path is already used by another entry (a folder)"},
		{name: "file as parent", entries: []zentry{file("a", "1"), file("a/b", "2")}, kind: stratus.ErrInvalid,
			msg: `archive entry "a/b": parent "a" is a file`},
		{name: "absolute symlink", entries: []zentry{symlink("passwd", "/etc/passwd")}, kind: stratus.ErrInvalid,
			msg: `archive entry "passwd": symlink target "/etc/passwd" is absolute: invalid`},
		{name: "escaping symlink", entries: []zentry{symlink("up", "..")}, kind: stratus.ErrInvalid,
			msg: `symlink target ".." escapes the code folder`},
		{name: "deep escaping symlink", entries: []zentry{symlink("a/b/up", "../../../etc")}, kind: stratus.ErrInvalid,
			msg: "escapes the code folder"},
		{name: "symlink escaping through a missing folder", entries: []zentry{symlink("up", "x/../..")}, kind: stratus.ErrInvalid,
			msg: "escapes the code folder"},
		{name: "backslash symlink", entries: []zentry{symlink("up", `..\..`)}, kind: stratus.ErrInvalid,
			msg: "contains a backslash"},
		{name: "empty symlink", entries: []zentry{symlink("l", "")}, kind: stratus.ErrInvalid,
			msg: "symlink target is empty"},
		{name: "nul symlink", entries: []zentry{symlink("l", "a\x00b")}, kind: stratus.ErrInvalid,
			msg: "symlink target contains a NUL byte"},
		{name: "long symlink", entries: []zentry{symlink("l", strings.Repeat("a/", 3000))}, kind: stratus.ErrInvalid,
			msg: "symlink target is longer than 4096 bytes"},
		{name: "write through symlink", entries: []zentry{dir("sub/"), symlink("link", "sub"), file("link/evil", "x")},
			kind: stratus.ErrInvalid, msg: `archive entry "link/evil": parent "link" is a symlink: invalid`},
		{name: "write through escaping symlink", entries: []zentry{symlink("link", "/tmp"), file("link/evil", "x")},
			kind: stratus.ErrInvalid, msg: "symlink"},
		{name: "symlink over earlier folder", entries: []zentry{file("link/evil", "x"), symlink("link", "/tmp")},
			kind: stratus.ErrInvalid, msg: `archive entry "link": path is already used by another entry (a folder)`},
		{name: "symlink replacing file", entries: []zentry{file("a", "x"), symlink("a", "b")},
			kind: stratus.ErrInvalid, msg: "path is already used by another entry"},
		{
			// x points at the code folder itself, which is fine; z would go
			// up through x and out, though lexically it stays inside.
			name: "symlink through symlink",
			entries: []zentry{
				symlink("a/b/c/z", "x/../../../.."),
				symlink("a/b/c/x", "../../.."),
			},
			kind: stratus.ErrInvalid, msg: `archive entry "a/b/c/z": symlink target "x/../../../.." passes through another symlink`,
		},
		{name: "named pipe", entries: []zentry{{name: "fifo", mode: fs.ModeNamedPipe | 0o644}}, kind: stratus.ErrInvalid,
			msg: "unsupported file type"},
		{name: "device", entries: []zentry{{name: "dev", mode: fs.ModeDevice | 0o644}}, kind: stratus.ErrInvalid,
			msg: "unsupported file type"},
		{name: "encrypted", entries: []zentry{{name: "secret", mode: 0o644, body: "x", header: func(h *zip.FileHeader) { h.Flags |= 0x1 }}},
			kind: stratus.ErrInvalid, msg: `archive entry "secret": entry is encrypted`},
		{name: "unknown compression", entries: []zentry{{name: "a", mode: 0o644, body: "x", raw: true, header: func(h *zip.FileHeader) {
			h.Method = 99
			h.CompressedSize64, h.UncompressedSize64 = 1, 1
			h.CRC32 = crc32.ChecksumIEEE([]byte("x"))
		}}}, kind: stratus.ErrInvalid, msg: `archive entry "a": unsupported compression method 99`},
		{name: "bad checksum", entries: []zentry{{name: "a", mode: 0o644, body: "hello", raw: true, header: func(h *zip.FileHeader) {
			h.Method = zip.Store
			h.CompressedSize64, h.UncompressedSize64 = 5, 5
			h.CRC32 = 1234
		}}}, kind: stratus.ErrInvalid, msg: `archive entry "a": corrupt data`},
		{name: "corrupt deflate", entries: []zentry{{name: "a", mode: 0o644, body: "\xff\xff\xff\xff", raw: true, header: func(h *zip.FileHeader) {
			h.Method = zip.Deflate
			h.CompressedSize64, h.UncompressedSize64 = 4, 10
		}}}, kind: stratus.ErrInvalid, msg: "corrupt data"},
		{name: "too many files", entries: []zentry{file("a", "1"), file("b", "2"), dir("c/")}, lim: Limits{MaxFiles: 2},
			kind: stratus.ErrTooLarge, msg: "archive has 3 entries, more than the limit of 2: too large"},
		{name: "too large unzipped", entries: []zentry{file("a", big), file("b", big)}, lim: Limits{MaxUnzipped: 150},
			kind: stratus.ErrTooLarge, msg: "archive unzips to more than the 150 B limit: too large"},
		{name: "too large zipped", entries: []zentry{file("a", big)}, lim: Limits{MaxZipped: 100},
			kind: stratus.ErrTooLarge, msg: "more than the 100 B limit: too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := tt.data
			if data == nil {
				data = buildZip(t, tt.entries...)
			}
			zipPath, dst := setup(t, data)
			info, err := Extract(zipPath, dst, tt.lim)
			if err == nil {
				t.Fatalf("Extract succeeded (%+v), want an error", info)
			}
			t.Log(err)
			if !errors.Is(err, tt.kind) {
				t.Errorf("error %q does not wrap %q", err, tt.kind)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not contain %q", err, tt.msg)
			}
			assertNothingLeft(t, dst)
		})
	}
}

// A zip bomb: the entry declares 10 bytes but inflates to 16 MiB.
func TestExtractBomb(t *testing.T) {
	var compressed bytes.Buffer
	fw, err := flate.NewWriter(&compressed, flate.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(fw, zeros{}, 16<<20); err != nil {
		t.Fatal(err)
	}
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	bomb := zentry{name: "bomb", mode: 0o644, body: compressed.String(), raw: true, header: func(h *zip.FileHeader) {
		h.Method = zip.Deflate
		h.CompressedSize64 = uint64(compressed.Len())
		h.UncompressedSize64 = 10
		h.CRC32 = crc32.ChecksumIEEE(make([]byte, 10))
	}}
	for _, entries := range [][]zentry{
		{bomb},
		{file("a", "small"), bomb, file("b", "small")},
	} {
		zipPath, dst := setup(t, buildZip(t, entries...))
		_, err := Extract(zipPath, dst, Limits{MaxUnzipped: 1 << 20})
		if err != nil && !strings.Contains(err.Error(), `archive entry "bomb": data is longer than the 10 bytes the zip declares`) {
			t.Errorf("error %q does not name the bomb", err)
		}
		if !errors.Is(err, stratus.ErrInvalid) && !errors.Is(err, stratus.ErrTooLarge) {
			t.Errorf("Extract of a zip bomb: %v, want ErrInvalid or ErrTooLarge", err)
		}
		assertNothingLeft(t, dst)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// copyAtMost is what stops a reader that inflates more than its entry
// declared, should the zip reader ever let one through.
func TestCopyAtMost(t *testing.T) {
	buf := make([]byte, 32<<10)
	tests := []struct {
		name    string
		r       io.Reader
		budget  int64
		wantN   int64
		wantErr error
	}{
		{"endless", zeros{}, 1 << 20, 1 << 20, errOverBudget},
		{"endless, budget not a multiple of the buffer", zeros{}, 100_000, 98304, errOverBudget},
		{"exactly the budget", io.LimitReader(zeros{}, 1000), 1000, 1000, nil},
		{"one byte over", io.LimitReader(zeros{}, 1001), 1000, 0, errOverBudget},
		{"under", strings.NewReader("hello"), 1000, 5, nil},
		{"zero budget", strings.NewReader("x"), 0, 0, errOverBudget},
		{"empty", strings.NewReader(""), 0, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w countWriter
			n, err := copyAtMost(&w, tt.r, tt.budget, buf)
			if n != tt.wantN || int64(w) != n || !errors.Is(err, tt.wantErr) {
				t.Errorf("copyAtMost = %d, %v (wrote %d); want %d, %v", n, err, w, tt.wantN, tt.wantErr)
			}
			if int64(w) > tt.budget {
				t.Errorf("wrote %d bytes, over the budget of %d", w, tt.budget)
			}
		})
	}
	t.Run("write error", func(t *testing.T) {
		_, err := copyAtMost(failWriter{}, strings.NewReader("x"), 10, buf)
		var werr *writeError
		if !errors.As(err, &werr) || !errors.Is(err, fs.ErrPermission) {
			t.Errorf("copyAtMost = %v, want a *writeError wrapping fs.ErrPermission", err)
		}
	})
}

type countWriter int64

func (w *countWriter) Write(p []byte) (int, error) {
	*w += countWriter(len(p))
	return len(p), nil
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, fs.ErrPermission }

// FuzzExtract checks that no input makes Extract panic, write outside dst,
// create a symlink that resolves outside dst, or leave anything behind on
// error.
func FuzzExtract(f *testing.F) {
	f.Add(buildZip(f, file("handler.py", "def handler(e, c): pass"), zentry{name: "bootstrap", mode: 0o755, body: "#!/bin/sh"}))
	f.Add(buildZip(f, dir("lib/"), file("lib/a.txt", "a"), symlink("lib/b.txt", "a.txt"), symlink("up", "lib/..")))
	f.Add(buildZip(f, file("../escape", "x")))
	f.Add(buildZip(f, file("../../../../../../escape", "x")))
	f.Add(buildZip(f, file("/tmp/abs", "x")))
	f.Add(buildZip(f, file(`..\..\escape`, "x")))
	f.Add(buildZip(f, symlink("link", ".."), file("link/escape", "x")))
	f.Add(buildZip(f, symlink("link", "/tmp"), file("link/escape", "x")))
	f.Add(buildZip(f, symlink("a/b/x", "../.."), symlink("a/b/z", "x/../../..")))
	f.Add(buildZip(f, file("dup", "1"), file("dup", "2")))
	f.Add(buildZip(f, file("a/b", "1"), symlink("a", "..")))
	f.Add(buildZip(f, zentry{name: "x", mode: 0o644, body: "\xff\xff", raw: true, header: func(h *zip.FileHeader) {
		h.Method = zip.Deflate
		h.CompressedSize64, h.UncompressedSize64 = 2, 1<<40
	}}))
	f.Add([]byte("PK\x03\x04 garbage"))
	f.Add([]byte{})
	// dst sits a few folders deep in base so that escapes land inside
	// base, where the walk below finds them. base is shared by the
	// iterations of this process, which run one at a time.
	base := f.TempDir()
	parent := filepath.Join(base, "a", "b", "c")
	if err := os.MkdirAll(parent, 0o755); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		run, err := os.MkdirTemp(parent, "run")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(run)
		zipPath := filepath.Join(run, "in.zip")
		if err := os.WriteFile(zipPath, data, 0o644); err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(run, "code")
		_, err = Extract(zipPath, dst, Limits{MaxUnzipped: 1 << 20, MaxFiles: 64})

		runRel := "a/b/c/" + filepath.Base(run)
		allowed := map[string]bool{"a": true, "a/b": true, "a/b/c": true, runRel: true, runRel + "/in.zip": true}
		walkErr := filepath.WalkDir(base, func(p string, d fs.DirEntry, werr error) error {
			if werr != nil || p == base {
				return werr
			}
			rel, _ := filepath.Rel(base, p)
			rel = filepath.ToSlash(rel)
			if allowed[rel] {
				return nil
			}
			if err != nil || (rel != runRel+"/code" && !strings.HasPrefix(rel, runRel+"/code/")) {
				t.Fatalf("Extract (error %v) wrote %s", err, rel)
			}
			if d.Type() == fs.ModeSymlink {
				assertInside(t, p, dst)
			}
			return nil
		})
		if walkErr != nil {
			t.Fatal(walkErr)
		}
	})
}

// assertInside fails if the symlink at p resolves outside dst.
func assertInside(t *testing.T, p, dst string) {
	t.Helper()
	realDst, err := filepath.EvalSymlinks(dst)
	if err != nil {
		t.Fatal(err)
	}
	resolved, err := filepath.EvalSymlinks(p)
	if err != nil {
		return // dangling or a loop: it points nowhere
	}
	if resolved != realDst && !strings.HasPrefix(resolved, realDst+string(filepath.Separator)) {
		target, _ := os.Readlink(p)
		t.Fatalf("symlink %s -> %s resolves outside dst, to %s", p, target, resolved)
	}
}
