package agentimage

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

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
