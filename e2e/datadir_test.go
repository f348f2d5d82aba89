package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDataDirMadePrivate: a data dir that others may read, with a token
// file others may read, is made private at start (0700 and 0600), and the
// server says so; the database files are 0600. A data dir of another user
// is refused with the reason.
func TestDataDirMadePrivate(t *testing.T) {
	data := t.TempDir()
	if err := os.Chmod(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "token"), []byte("e2e-private-token-42\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, Data: data, ownToken: true}
	s.start()
	t.Cleanup(func() { s.Stop() })
	if s.Token != "e2e-private-token-42" {
		t.Errorf("token = %q, want the one kept in the data dir", s.Token)
	}
	s.mustCLI("ls") // the store is open and answers
	for name, want := range map[string]os.FileMode{".": 0o700, "token": 0o600, "stratus.db": 0o600} {
		fi, err := os.Stat(filepath.Join(data, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode %#o, want %#o", name, got, want)
		}
	}
	for _, want := range []string{"data dir was readable by others; made it private", "token file was readable by others"} {
		if !strings.Contains(s.Stderr(), want) {
			t.Errorf("the server did not say %q:\n%s", want, s.Stderr())
		}
	}
	s.Stop()

	if os.Geteuid() != 0 {
		return // chown needs root
	}
	other := t.TempDir()
	if err := os.Chown(other, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "server", "--listen", "127.0.0.1:0", "--data", other, "--token", testToken).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "belongs to uid 65534") {
		t.Errorf("a data dir of another user: err %v, output %s", err, out)
	}
}
