package agent

import (
	"archive/tar"
	"bytes"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stratus-run/stratus"
)

// TestTarRoundTrip: a folder served by the Host extracts to the same tree,
// files read-only, symlinks kept, sockets left out.
func TestTarRoundTrip(t *testing.T) {
	src := t.TempDir()
	mustWrite(t, filepath.Join(src, "a.txt"), "a", 0o640)
	mustWrite(t, filepath.Join(src, "bin", "run"), "#!/bin/sh\n", 0o755)
	mustWrite(t, filepath.Join(src, "deep", "er", "x"), strings.Repeat("x", 100_000), 0o600)
	if err := os.Symlink("../a.txt", filepath.Join(src, "bin", "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(src, "ro"), 0o555); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(src, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var buf bytes.Buffer
	if err := writeTar(&buf, src); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "dst")
	if err := extract(&buf, dst, MaxMountBytes); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dst, p)
		fi, _ := d.Info()
		v := fi.Mode().String()
		switch {
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			v += " " + string(b[:min(len(b), 10)])
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			v += " " + l
		}
		got[rel] = v
		return nil
	})
	want := map[string]string{
		".":         "drwxr-xr-x",
		"a.txt":     "-r--r----- a",
		"bin":       "drwxr-xr-x",
		"bin/run":   "-r-xr-xr-x #!/bin/sh\n",
		"bin/link":  "Lrwxrwxrwx ../a.txt",
		"deep":      "drwxr-xr-x",
		"deep/er":   "drwxr-xr-x",
		"deep/er/x": "-r-------- xxxxxxxxxx",
		"ro":        "dr-xr-xr-x",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected %s: %s", k, got[k])
		}
	}
	// Extracting again over it (a retried setup) replaces what is there.
	buf.Reset()
	if err := writeTar(&buf, src); err != nil {
		t.Fatal(err)
	}
	if err := extract(&buf, dst, MaxMountBytes); err != nil {
		t.Errorf("second extract: %v", err)
	}
}

type tarEntry struct {
	name, link string
	typ        byte
	size       int64 // -1: len(body)
	body       string
}

// buildTar writes entries as a tar; a size larger than the body leaves
// the archive cut after it (as a lying header would).
func buildTar(t testing.TB, entries ...tarEntry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		size := e.size
		if size < 0 {
			size = int64(len(e.body))
		}
		if e.typ != tar.TypeReg {
			size = 0
		}
		hdr := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Size: size, Mode: 0o644, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
		if size > int64(len(e.body)) {
			tw.Flush()
			return buf.Bytes()
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func file(name, body string) tarEntry {
	return tarEntry{name: name, typ: tar.TypeReg, size: -1, body: body}
}
func link(name, target string) tarEntry {
	return tarEntry{name: name, link: target, typ: tar.TypeSymlink}
}

var refused = []struct {
	name    string
	entries []tarEntry
	kind    error
	msg     string
}{
	{"dot dot", []tarEntry{file("../x", "x")}, stratus.ErrInvalid, `"../x": must be a clean relative path`},
	{"inner dot dot", []tarEntry{file("a/../../x", "x")}, stratus.ErrInvalid, "must be a clean relative path"},
	{"absolute", []tarEntry{file("/abs", "x")}, stratus.ErrInvalid, `"/abs": must be a clean relative path`},
	{"symlink out, write through", []tarEntry{link("l", "/tmp"), file("l/x", "x")}, stratus.ErrInvalid, `parent "l" is a symlink`},
	{"symlink in, write through", []tarEntry{{name: "d/", typ: tar.TypeDir}, link("l", "d"), file("l/x", "x")}, stratus.ErrInvalid, `parent "l" is a symlink`},
	{"symlink up, write through", []tarEntry{link("l", ".."), file("l/x", "x")}, stratus.ErrInvalid, `parent "l" is a symlink`},
	{"duplicate", []tarEntry{link("l", "/etc/passwd"), file("l", "x")}, stratus.ErrInvalid, "duplicate"},
	{"huge size header", []tarEntry{{name: "big", typ: tar.TypeReg, size: 1 << 40}}, stratus.ErrTooLarge, "exceed 1048576 bytes"},
	{"device", []tarEntry{{name: "dev", typ: tar.TypeChar}}, stratus.ErrInvalid, "type \"3\" not allowed"},
	{"hard link", []tarEntry{file("a", "x"), {name: "b", link: "a", typ: tar.TypeLink}}, stratus.ErrInvalid, "not allowed"},
	{"cut short", []tarEntry{{name: "short", typ: tar.TypeReg, size: 10, body: "abc"}}, nil, "unexpected EOF"},
}

// TestExtractRefuses: entries that could write outside the target, or
// more than the bound, are refused and nothing leaves the target.
func TestExtractRefuses(t *testing.T) {
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			dst := filepath.Join(parent, "dst")
			err := extract(bytes.NewReader(buildTar(t, tc.entries...)), dst, 1<<20)
			if err == nil || (tc.kind != nil && !errors.Is(err, tc.kind)) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("extract = %v, want %v with %q", err, tc.kind, tc.msg)
			}
			assertOnly(t, parent, dst)
		})
	}
	// The bound counts the bytes of every file.
	dst := filepath.Join(t.TempDir(), "dst")
	err := extract(bytes.NewReader(buildTar(t, file("a", strings.Repeat("a", 600)), file("b", strings.Repeat("b", 600)))), dst, 1000)
	if !errors.Is(err, stratus.ErrTooLarge) {
		t.Errorf("two files over the bound: %v", err)
	}
}

// assertOnly fails unless parent holds nothing but dst.
func assertOnly(t testing.TB, parent, dst string) {
	t.Helper()
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if filepath.Join(parent, e.Name()) != dst {
			t.Errorf("extract wrote %s outside its target", e.Name())
		}
	}
	filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type()&fs.ModeSymlink == 0 && !d.IsDir() && !d.Type().IsRegular() {
			t.Errorf("extract made %s of type %v", p, d.Type())
		}
		return nil
	})
}

func FuzzExtract(f *testing.F) {
	for _, tc := range refused {
		f.Add(buildTar(f, tc.entries...))
	}
	f.Add(buildTar(f, tarEntry{name: "d/", typ: tar.TypeDir}, file("d/a", "a"), link("d/l", "a"), file("./b", "b")))
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		dst := filepath.Join(parent, "dst")
		extract(bytes.NewReader(data), dst, 1<<20)
		assertOnly(t, parent, dst)
	})
}
