package agentimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/stratus-run/stratus"
)

// staticProgram builds a small static Go program into a temp dir: Build
// packs any static executable, and this one builds in seconds.
func staticProgram(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\n\nfunc main() { println(\"stratus\") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "stratus")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build a static program: %v\n%s", err, b)
	}
	return out
}

// TestBuild: the image holds the binary and the pod's files, and the same
// binary gives the same digest.
func TestBuild(t *testing.T) {
	bin := staticProgram(t)
	img, err := Build(bin, "1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	again, err := Build(bin, "1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("two builds of one binary: digests %s and %s", d1, d2)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/stratus"}) || cf.Config.User != "65534:65534" || !cf.Created.Time.Equal(Epoch) {
		t.Errorf("config: entrypoint %q user %q created %v", cf.Config.Entrypoint, cf.Config.User, cf.Created)
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	seen := map[string]*tar.Header{}
	var passwd string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seen[strings.TrimSuffix(h.Name, "/")] = h
		if h.Name == "etc/passwd" {
			b, _ := io.ReadAll(tr)
			passwd = string(b)
		}
	}
	if h := seen["stratus"]; h == nil || h.Mode != 0o755 || h.Uid != 0 {
		t.Errorf("/stratus in the image: %+v", h)
	} else if st, _ := os.Stat(bin); h.Size != st.Size() {
		t.Errorf("/stratus is %d bytes; the binary %d", h.Size, st.Size())
	}
	for _, dir := range []string{"tmp", "var/task", "var/runtime"} {
		if seen[dir] == nil {
			t.Errorf("no %s in the image", dir)
		}
	}
	if !strings.Contains(passwd, "sbx_user1051:x:993:990:") || !strings.Contains(passwd, "nobody:x:65534:") {
		t.Errorf("/etc/passwd:\n%s", passwd)
	}
}

// TestBuildRefusesDynamic: a binary that needs a loader is refused.
func TestBuildRefusesDynamic(t *testing.T) {
	if _, err := Build("/bin/sh", "x"); !errors.Is(err, stratus.ErrInvalid) || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Errorf("Build(/bin/sh) = %v; want ErrInvalid naming CGO_ENABLED=0", err)
	}
	text := filepath.Join(t.TempDir(), "x")
	os.WriteFile(text, []byte("#!/bin/sh\n"), 0o755)
	if _, err := Build(text, "x"); !errors.Is(err, stratus.ErrInvalid) {
		t.Errorf("Build(a script) = %v; want ErrInvalid", err)
	}
}

// needInterpreter skips a test when the host lacks interpreter name,
// which fails it on CI, where scripts/test installs it.
func needInterpreter(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed; scripts/test installs it", name)
		}
		t.Skipf("%s is not installed", name)
	}
}

// entry is a file of a layer: its header and, for a small file, its body.
type entry struct {
	h    *tar.Header
	body []byte
}

// layerFiles reads layer l's entries by name (without a trailing "/"),
// reading the bodies of files below 1 MB.
func layerFiles(t *testing.T, l ggcr.Layer) map[string]entry {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	out := map[string]entry{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		e := entry{h: h}
		if h.Size < 1<<20 {
			e.body, _ = io.ReadAll(tr)
		}
		out[strings.TrimSuffix(h.Name, "/")] = e
	}
}

// TestBuildRuntimes: an image with python3 and nodejs has a layer for
// each, above the binary's, with the interpreter (an executable at its
// place under /var/lang and on the image's PATH), its standard library and
// a library it loads, no file of an earlier layer and not the host's
// accounts or resolver; every entry is root's and at Epoch; two builds
// give one digest.
func TestBuildRuntimes(t *testing.T) {
	needInterpreter(t, "python3")
	needInterpreter(t, "node")
	// Stored, not compressed: gzip under the race detector takes minutes
	// (make image compresses; the stdlib's gzip is deterministic).
	defer func(level int) { compression = level }(compression)
	compression = gzip.NoCompression
	bin := staticProgram(t)
	began := time.Now()
	img, err := Build(bin, "1.2.3", Runtimes...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built in %s", time.Since(began).Round(time.Millisecond))
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 3 {
		t.Fatalf("%d layers; want the binary's, python3's and nodejs's", len(layers))
	}
	base := layerFiles(t, layers[0])
	py := layerFiles(t, layers[1])
	node := layerFiles(t, layers[2])
	for i, files := range []map[string]entry{base, py, node} {
		for name, e := range files {
			if e.h.Uid != 0 || e.h.Gid != 0 || e.h.Uname != "" || !e.h.ModTime.Equal(Epoch) {
				t.Errorf("layer %d: %s: owner %d:%d %q, time %v; want root's, at Epoch", i, name, e.h.Uid, e.h.Gid, e.h.Uname, e.h.ModTime)
			}
			if i > 0 && base[name].h != nil || i == 2 && py[name].h != nil {
				t.Errorf("layer %d repeats %s of an earlier layer", i, name)
			}
		}
	}
	for _, name := range []string{"etc/passwd", "etc/group", "etc/hosts", "etc/resolv.conf"} {
		if py[name].h != nil || node[name].h != nil {
			t.Errorf("a runtime layer has the root's %s", name)
		}
	}

	// python3: the interpreter, where /usr/bin/python3 points, brings its
	// standard library and the libraries it loads.
	link := py["usr/bin/python3"].h
	if link == nil || link.Typeflag != tar.TypeSymlink || !strings.HasPrefix(link.Linkname, "/var/lang/bin/python3.") {
		t.Fatalf("usr/bin/python3 in the python3 layer: %+v; want a link to /var/lang/bin/python3.N", link)
	}
	exe := py[strings.TrimPrefix(link.Linkname, "/")].h
	if exe == nil || exe.Typeflag != tar.TypeReg || exe.Mode&0o111 == 0 {
		t.Fatalf("%s in the python3 layer: %+v; want an executable", link.Linkname, exe)
	}
	lib := "var/lang/lib/" + path.Base(link.Linkname)
	if py[lib+"/os.py"].h == nil || py[lib+"/json/__init__.py"].h == nil {
		t.Errorf("no %s/os.py or json package in the python3 layer", lib)
	}
	for _, skipped := range []string{"site-packages", "test", "tkinter"} {
		if py[lib+"/"+skipped].h != nil {
			t.Errorf("the python3 layer has %s/%s, which the recipe leaves out", lib, skipped)
		}
	}
	if libc := loaded(t, "python3", "libc.so.6"); py[libc].h == nil {
		t.Errorf("the python3 layer lacks %s, which its interpreter loads", libc)
	}
	// Its compiled modules are valid for sources at Epoch, where they
	// were valid on the host.
	atEpoch := 0
	for name, e := range py {
		if strings.HasSuffix(name, ".pyc") && len(e.body) >= 16 && binary.LittleEndian.Uint32(e.body[4:8]) == 0 &&
			binary.LittleEndian.Uint32(e.body[8:12]) == uint32(Epoch.Unix()) {
			atEpoch++
		}
	}
	if _, err := os.Stat(hostPyc(t)); err == nil && atEpoch == 0 {
		t.Errorf("no .pyc of the python3 layer records its source at Epoch")
	}

	// nodejs: the interpreter, and libraries python3 did not bring.
	if l := node["usr/bin/node"].h; l == nil || l.Typeflag != tar.TypeSymlink || l.Linkname != "/var/lang/bin/node" {
		t.Errorf("usr/bin/node in the nodejs layer: %+v; want a link to /var/lang/bin/node", l)
	}
	if e := node["var/lang/bin/node"].h; e == nil || e.Typeflag != tar.TypeReg || e.Mode&0o111 == 0 {
		t.Errorf("var/lang/bin/node in the nodejs layer: %+v; want an executable", e)
	}
	if cxx := loaded(t, "node", "libstdc++.so.6"); cxx != "" && py[cxx].h == nil && node[cxx].h == nil {
		t.Errorf("neither runtime layer has %s, which node loads", cxx)
	}

	// The same binary and interpreters: the same image.
	img, layers, base, py, node = nil, nil, nil, nil, nil
	again, err := Build(bin, "1.2.3", Runtimes...)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := again.Digest(); d != digest {
		t.Errorf("two builds with the runtimes: digests %s and %s", digest, d)
	}

	// Without runtimes, the image is the binary's layer alone.
	plain, err := Build(bin, "1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	if ls, _ := plain.Layers(); len(ls) != 1 {
		t.Errorf("Build without runtimes: %d layers; want 1", len(ls))
	}
}

// loaded is the path (without its leading "/") of library name that the
// host's interpreter loads, as its loader resolves it; "" if it does not.
func loaded(t *testing.T, interpreter, name string) string {
	t.Helper()
	p, err := exec.LookPath(interpreter)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(interpreter, "python") {
		out, err := exec.Command(p, "-c", "import sys; print(sys.executable)").Output()
		if err != nil {
			t.Fatal(err)
		}
		p = strings.TrimSpace(string(out))
	}
	f, err := elf.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	interp := ""
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			b := make([]byte, prog.Filesz)
			prog.ReadAt(b, 0)
			interp = string(bytes.TrimRight(b, "\x00"))
		}
	}
	f.Close()
	out, err := exec.Command(interp, "--list", p).Output()
	if err != nil {
		t.Fatalf("%s --list %s: %v", interp, p, err)
	}
	for line := range strings.Lines(string(out)) {
		if _, rest, ok := strings.Cut(line, name+" => "); ok {
			lib, _, _ := strings.Cut(rest, " (")
			lib = strings.TrimPrefix(lib, "/")
			// In a root, /lib and /lib64 are links into /usr.
			if top, _, _ := strings.Cut(lib, "/"); top == "lib" || top == "lib64" {
				lib = "usr/" + lib
			}
			return lib
		}
	}
	return ""
}

// hostPyc is the host's compiled os module, which the python3 layer has.
func hostPyc(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("python3", "-c", "import os, importlib.util; print(importlib.util.cache_from_source(os.__file__))").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// TestBuildRefusesRuntimes: an unknown runtime, a provided one and one
// named twice are refused before anything is built.
func TestBuildRefusesRuntimes(t *testing.T) {
	bin := staticProgram(t)
	for _, rts := range [][]string{{"ruby"}, {"provided.al2023"}, {"python3", "python3"}} {
		if _, err := Build(bin, "x", rts...); !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("Build(%q) = %v; want ErrInvalid", rts, err)
		}
	}
}

// TestPycAtEpoch: a compiled module checked by timestamp that matches its
// source records Epoch; a stale one, one checked by hash and one without
// its source are left as they are.
func TestPycAtEpoch(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "mod.py")
	if err := os.WriteFile(src, []byte("x = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mtime := time.Unix(1700000000, 0)
	if err := os.Chtimes(src, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	pyc := filepath.Join(dir, "__pycache__", "mod.cpython-311.opt-1.pyc")
	header := func(flags, mtime, size uint32) []byte {
		b := []byte{0xa7, 0x0d, 0x0d, 0x0a}
		b = binary.LittleEndian.AppendUint32(b, flags)
		b = binary.LittleEndian.AppendUint32(b, mtime)
		b = binary.LittleEndian.AppendUint32(b, size)
		return append(b, "code"...)
	}
	valid := header(0, 1700000000, 6)
	got := pycAtEpoch(valid, pyc)
	if want := header(0, uint32(Epoch.Unix()), 6); !bytes.Equal(got, want) {
		t.Errorf("a valid pyc: % x; want % x", got, want)
	}
	if !bytes.Equal(valid, header(0, 1700000000, 6)) {
		t.Errorf("pycAtEpoch changed its argument")
	}
	for name, b := range map[string][]byte{
		"stale (time)":  header(0, 1600000000, 6),
		"stale (size)":  header(0, 1700000000, 7),
		"hash-checked":  header(1, 1700000000, 6),
		"short":         valid[:12],
		"other sources": nil,
	} {
		p := pyc
		if b == nil {
			b, p = valid, filepath.Join(dir, "__pycache__", "other.cpython-311.pyc")
		}
		if got := pycAtEpoch(b, p); !bytes.Equal(got, b) {
			t.Errorf("%s: changed to % x", name, got)
		}
	}
}
