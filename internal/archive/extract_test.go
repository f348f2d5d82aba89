package archive

import (
	"archive/zip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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
