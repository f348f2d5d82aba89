package archive

import (
	"archive/zip"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stratus-run/stratus"
)

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
			t.Fatal("write a file whose name holds a backslash:", err)
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
