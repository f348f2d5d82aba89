package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestFileModes: the database and its -wal and -shm files are the owner's
// only (0600), when Open creates them and when an earlier run left them
// with a wider mode.
func TestFileModes(t *testing.T) {
	sqliteOnly(t, "the modes of the database file")
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "stratus.db")
	files := []string{path, path + "-wal", path + "-shm"}
	wantModes := func(when string) {
		t.Helper()
		for _, p := range files {
			fi, err := os.Stat(p)
			if err != nil {
				t.Errorf("%s: %v", when, err)
				continue
			}
			if m := fi.Mode().Perm(); m != 0o600 {
				t.Errorf("%s: %s has mode %#o, want 0600", when, filepath.Base(p), m)
			}
		}
	}

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutVersion(ctx, "f", testConfig(128), "sha", 1); err != nil {
		t.Fatal(err)
	}
	wantModes("a new database") // open, so its -wal and -shm exist
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// As an older server or a crash left them: world-readable.
	for _, p := range files {
		if _, err := os.Stat(p); os.IsNotExist(err) {
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	wantModes("a database left with mode 0644")
	if _, err := s.GetVersion(ctx, "f", 1); err != nil {
		t.Errorf("the reopened database lost its data: %v", err)
	}
}
