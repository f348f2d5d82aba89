package agent

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestInstall: the running program is copied whole, read-only and
// executable, replacing what was there, and nothing else is left in the
// folder; a folder that does not exist is an error.
func TestInstall(t *testing.T) {
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dst := filepath.Join(dir, InstalledName)
	if err := os.WriteFile(dst, []byte("an older copy"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Install(dir); err != nil {
		t.Fatalf("Install: %v", err)
	}
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, self) {
		t.Errorf("installed copy: %d bytes, %v; want the running program's %d bytes", len(got), err, len(self))
	}
	if fi, err := os.Stat(dst); err != nil || fi.Mode().Perm() != 0o555 {
		t.Errorf("installed copy's mode: %v, %v; want 0555", fi.Mode(), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("folder holds %d entries; want only %s", len(entries), InstalledName)
	}
	if err := Install(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Install into a missing folder = %v; want ErrNotExist", err)
	}
}
