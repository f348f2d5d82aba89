package archive

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"encoding/hex"
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

// want describes one path of an extracted tree.
type want struct {
	mode fs.FileMode // type and permission bits; symlinks are not checked for permission
	body string      // file contents or symlink target
}

func TestExtract(t *testing.T) {
	tests := []struct {
		name    string
		entries []zentry
		want    map[string]want
	}{
		{
			name: "unix modes",
			entries: []zentry{
				file("plain.txt", "p"),
				{name: "tool", mode: 0o755, body: "#!/bin/sh"},
				{name: "owner-only-exec", mode: 0o700, body: "x"},
				{name: "private", mode: 0o600, body: "x"},
				{name: "world-writable", mode: 0o777, body: "x"},
				{name: "setuid", mode: 0o755 | fs.ModeSetuid | fs.ModeSetgid, body: "x"},
				{name: "sticky/", mode: fs.ModeDir | fs.ModeSticky | 0o777},
				{name: "private-dir/", mode: fs.ModeDir | 0o700},
				{name: "bootstrap", mode: 0o644, body: "#!/bin/sh"},
			},
			want: map[string]want{
				"plain.txt":       {0o644, "p"},
				"tool":            {0o755, "#!/bin/sh"},
				"owner-only-exec": {0o755, "x"},
				"private":         {0o644, "x"},
				"world-writable":  {0o755, "x"},
				"setuid":          {0o755, "x"},
				"sticky":          {fs.ModeDir | 0o755, ""},
				"private-dir":     {fs.ModeDir | 0o755, ""},
				"bootstrap":       {0o755, "#!/bin/sh"},
			},
		},
		{
			name: "no unix modes, like zips made on Windows",
			entries: []zentry{
				{name: "handler.py", body: "print()"},
				{name: "bootstrap", body: "#!/bin/sh"},
				{name: "bin/bootstrap", body: "#!/bin/sh"},
				{name: "lib/"},
				{name: "readonly", body: "r", header: func(h *zip.FileHeader) { h.ExternalAttrs = 0x01 }}, // MS-DOS read-only
			},
			want: map[string]want{
				"handler.py":    {0o644, "print()"},
				"bootstrap":     {0o755, "#!/bin/sh"},
				"bin":           {fs.ModeDir | 0o755, ""},
				"bin/bootstrap": {0o755, "#!/bin/sh"},
				"lib":           {fs.ModeDir | 0o755, ""},
				"readonly":      {0o644, "r"},
			},
		},
		{
			name: "symlinks inside",
			entries: []zentry{
				file("data/real.txt", "real"),
				symlink("data/alias.txt", "real.txt"),
				symlink("lib/real.txt", "../data/real.txt"),
				symlink("a/b/top", "../.."),
				symlink("self", "."),
				symlink("chain", "lib/real.txt"),
				symlink("dangling", "nowhere/file"),
				symlink("dirlink", "data/"),
				symlink("later", "z/file"),
				file("z/file", "z"),
			},
			want: map[string]want{
				"data":           {fs.ModeDir | 0o755, ""},
				"data/real.txt":  {0o644, "real"},
				"data/alias.txt": {fs.ModeSymlink, "real.txt"},
				"lib":            {fs.ModeDir | 0o755, ""},
				"lib/real.txt":   {fs.ModeSymlink, "../data/real.txt"},
				"a":              {fs.ModeDir | 0o755, ""},
				"a/b":            {fs.ModeDir | 0o755, ""},
				"a/b/top":        {fs.ModeSymlink, "../.."},
				"self":           {fs.ModeSymlink, "."},
				"chain":          {fs.ModeSymlink, "lib/real.txt"},
				"dangling":       {fs.ModeSymlink, "nowhere/file"},
				"dirlink":        {fs.ModeSymlink, "data/"},
				"later":          {fs.ModeSymlink, "z/file"},
				"z":              {fs.ModeDir | 0o755, ""},
				"z/file":         {0o644, "z"},
			},
		},
		{
			name: "odd but safe names",
			entries: []zentry{
				dir("./"),
				file("./a.txt", "a"),
				file("b//c.txt", "c"),
				dir("b/"),
				dir("b/"),
				file("d/./e.txt", "e"),
				file("spaces and ünïcode.txt", "u"),
				file("C:colon", "c"), // a drive letter needs a slash after it
				file("..dots..", "d"),
				dir("empty/"),
			},
			want: map[string]want{
				"a.txt":                  {0o644, "a"},
				"b":                      {fs.ModeDir | 0o755, ""},
				"b/c.txt":                {0o644, "c"},
				"d":                      {fs.ModeDir | 0o755, ""},
				"d/e.txt":                {0o644, "e"},
				"spaces and ünïcode.txt": {0o644, "u"},
				"C:colon":                {0o644, "c"},
				"..dots..":               {0o644, "d"},
				"empty":                  {fs.ModeDir | 0o755, ""},
			},
		},
		{
			name:    "empty archive",
			entries: nil,
			want:    map[string]want{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := buildZip(t, tt.entries...)
			zipPath, dst := setup(t, data)
			info, err := Extract(zipPath, dst, DefaultLimits())
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(dst)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode(); got != fs.ModeDir|0o755 {
				t.Errorf("dst mode = %v, want drwxr-xr-x", got)
			}
			got := readTree(t, dst)
			assertTree(t, got, tt.want)

			sum := sha256.Sum256(data)
			if info.SHA256 != hex.EncodeToString(sum[:]) || info.Size != int64(len(data)) {
				t.Errorf("info = %+v, want sha256 %x and size %d", info, sum, len(data))
			}
			var files int
			var unzipped int64
			for _, w := range tt.want {
				if !w.mode.IsDir() {
					files++
					unzipped += int64(len(w.body))
				}
			}
			if info.Files != files || info.Unzipped != unzipped {
				t.Errorf("info files, unzipped = %d, %d; want %d, %d", info.Files, info.Unzipped, files, unzipped)
			}
			left, err := os.ReadDir(filepath.Dir(dst))
			if err != nil || len(left) != 1 {
				t.Errorf("beside dst: %v (%v), want only dst", left, err)
			}
		})
	}
}

// readTree returns what is under dir, by slash-separated relative path.
func readTree(t *testing.T, dir string) map[string]want {
	t.Helper()
	tree := map[string]want{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		w := want{mode: fi.Mode()}
		switch {
		case fi.Mode().Type() == fs.ModeSymlink:
			w.mode = fs.ModeSymlink
			w.body, err = os.Readlink(p)
		case fi.Mode().IsRegular():
			var b []byte
			b, err = os.ReadFile(p)
			w.body = string(b)
		}
		tree[filepath.ToSlash(rel)] = w
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func assertTree(t *testing.T, got, want map[string]want) {
	t.Helper()
	for name, w := range want {
		g, ok := got[name]
		switch {
		case !ok:
			t.Errorf("%s: missing", name)
		case g != w:
			t.Errorf("%s: got %v %q, want %v %q", name, g.mode, g.body, w.mode, w.body)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: unexpected", name)
		}
	}
}

func TestExtractDeepest(t *testing.T) {
	name := strings.Repeat("d/", maxDepth) + "deepest"
	zipPath, dst := setup(t, buildZip(t, file(name, "deep")))
	if _, err := Extract(zipPath, dst, DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, name)); err != nil || string(b) != "deep" {
		t.Errorf("read %s: %q, %v", name, b, err)
	}
}

func TestExtractDestinationExists(t *testing.T) {
	zipPath, dst := setup(t, buildZip(t, file("a", "a")))
	if err := os.Mkdir(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := Extract(zipPath, dst, DefaultLimits())
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Extract into an existing folder: %v, want fs.ErrExist", err)
	}
	if left, _ := os.ReadDir(filepath.Dir(dst)); len(left) != 1 {
		t.Errorf("beside dst: %v, want only dst", left)
	}
	if left, _ := os.ReadDir(dst); len(left) != 0 {
		t.Errorf("in dst: %v, want nothing", left)
	}
}

func TestExtractMissingZip(t *testing.T) {
	_, err := Extract(filepath.Join(t.TempDir(), "missing.zip"), filepath.Join(t.TempDir(), "code"), Limits{})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Extract of a missing zip: %v, want fs.ErrNotExist", err)
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

func TestZipDirRoundTrip(t *testing.T) {
	src := t.TempDir()
	mustWrite := func(name, body string, perm fs.FileMode) {
		t.Helper()
		p := filepath.Join(src, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), perm); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, perm); err != nil { // past the umask
			t.Fatal(err)
		}
	}
	mustLink := func(target, name string) {
		t.Helper()
		if err := os.Symlink(target, filepath.Join(src, filepath.FromSlash(name))); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite("bootstrap", "#!/bin/sh\nexec ./app", 0o755)
	mustWrite("app", "binary", 0o755)
	mustWrite("handler.py", "def handler(e, c): pass", 0o644)
	mustWrite("secret.txt", "s", 0o600)
	mustWrite("lib/pkg/mod.py", "x = 1", 0o644)
	mustWrite("lib/pkg/tool", "#!/bin/sh", 0o750)
	if err := os.MkdirAll(filepath.Join(src, "empty", "nested"), 0o700); err != nil {
		t.Fatal(err)
	}
	mustLink("lib/pkg/mod.py", "mod.py")
	mustLink("../pkg", "lib/pkg-alias")
	mustLink("../../handler.py", "lib/pkg/handler.py")
	mustLink("missing", "dangling")

	zipPath := filepath.Join(t.TempDir(), "code.zip")
	out, err := os.Create(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := ZipDir(src, out); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}

	dst := filepath.Join(t.TempDir(), "code")
	info, err := Extract(zipPath, dst, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	assertTree(t, readTree(t, dst), map[string]want{
		"bootstrap":          {0o755, "#!/bin/sh\nexec ./app"},
		"app":                {0o755, "binary"},
		"handler.py":         {0o644, "def handler(e, c): pass"},
		"secret.txt":         {0o644, "s"}, // readable by the function's user
		"lib":                {fs.ModeDir | 0o755, ""},
		"lib/pkg":            {fs.ModeDir | 0o755, ""},
		"lib/pkg/mod.py":     {0o644, "x = 1"},
		"lib/pkg/tool":       {0o755, "#!/bin/sh"},
		"lib/pkg/handler.py": {fs.ModeSymlink, "../../handler.py"},
		"lib/pkg-alias":      {fs.ModeSymlink, "../pkg"},
		"empty":              {fs.ModeDir | 0o755, ""},
		"empty/nested":       {fs.ModeDir | 0o755, ""},
		"mod.py":             {fs.ModeSymlink, "lib/pkg/mod.py"},
		"dangling":           {fs.ModeSymlink, "missing"},
	})
	if info.Files != 10 {
		t.Errorf("info.Files = %d, want 10", info.Files)
	}
	sum, size, err := Hash(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	if sum != info.SHA256 || size != info.Size {
		t.Errorf("Hash = %s, %d; Extract said %s, %d", sum, size, info.SHA256, info.Size)
	}

	// The zip itself records the modes, so other unzip tools agree.
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	modes := map[string]fs.FileMode{}
	var names []string
	for _, f := range zr.File {
		modes[f.Name] = f.Mode()
		names = append(names, f.Name)
	}
	for name, mode := range map[string]fs.FileMode{
		"app":          0o755,
		"secret.txt":   0o600,
		"lib/pkg/tool": 0o750,
		"empty/":       fs.ModeDir | 0o700,
		"mod.py":       fs.ModeSymlink | 0o777,
	} {
		if modes[name] != mode {
			t.Errorf("zip entry %s: mode %v, want %v", name, modes[name], mode)
		}
	}
	if names[0] != "app" || names[len(names)-1] != "secret.txt" {
		t.Errorf("zip entries not in lexical order: %q", names)
	}
}

func TestZipDirRefuses(t *testing.T) {
	tests := []struct {
		name   string
		target string // of a symlink named "link" in a subfolder
		msg    string
	}{
		{"absolute symlink", "/usr/bin/python3", `zip sub/link: symlink target "/usr/bin/python3" is absolute: invalid`},
		{"escaping symlink", "../../outside", `zip sub/link: symlink target "../../outside" escapes the code folder: invalid`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := t.TempDir()
			if err := os.Mkdir(filepath.Join(src, "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(tt.target, filepath.Join(src, "sub", "link")); err != nil {
				t.Fatal(err)
			}
			err := ZipDir(src, io.Discard)
			if !errors.Is(err, stratus.ErrInvalid) || err.Error() != tt.msg {
				t.Errorf("ZipDir: %v, want %q", err, tt.msg)
			}
		})
	}
	t.Run("backslash in a name", func(t *testing.T) {
		src := t.TempDir()
		if err := os.WriteFile(filepath.Join(src, `a\b`), nil, 0o644); err != nil {
			t.Skip("file system refuses backslashes:", err)
		}
		err := ZipDir(src, io.Discard)
		if !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("ZipDir: %v, want ErrInvalid", err)
		}
	})
	t.Run("missing folder", func(t *testing.T) {
		err := ZipDir(filepath.Join(t.TempDir(), "missing"), io.Discard)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("ZipDir: %v, want fs.ErrNotExist", err)
		}
	})
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
