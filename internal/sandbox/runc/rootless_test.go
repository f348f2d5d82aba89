package runc_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stratus-run/stratus/internal/sandbox"
	"github.com/stratus-run/stratus/internal/sandbox/runc"
	"github.com/stratus-run/stratus/internal/sandbox/sandboxtest"
)

// rootlessEnv marks the run of this test binary that plays the server
// that is not root.
const rootlessEnv = "STRATUS_RUNC_ROOTLESS_SUITE"

// nobody is the user the rootless suite runs as.
const nobody = 65534

// TestRootlessDriver runs the driver suite with the runc driver of a
// server that is not root: the test binary runs itself again as nobody
// (so the test needs root, as CI has), where runc.New makes a rootless
// driver.
func TestRootlessDriver(t *testing.T) {
	if os.Getenv(rootlessEnv) == "1" {
		if os.Geteuid() == 0 {
			t.Fatal("the rootless suite runs as root")
		}
		sandboxtest.Run(t, func(t *testing.T, stateDir string) sandbox.Driver {
			d, err := runc.New(runc.Config{StateDir: stateDir})
			if err != nil {
				t.Fatalf("runc.New as uid %d: %v", os.Geteuid(), err)
			}
			if caps := d.Capabilities(); caps.MemoryLimit || caps.Isolated || !caps.RootFS || !caps.Mounts {
				t.Fatalf("rootless capabilities = %+v", caps)
			}
			t.Cleanup(func() { _ = d.Close() })
			return d
		})
		return
	}
	newDriver(t, t.TempDir()) // needs runc and root (skips or fails as the others do)
	home, err := os.MkdirTemp("", "stratus-rootless-suite-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	if err := os.Chmod(home, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(home, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(tmp, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(home, "runc.test")
	sandboxtest.CopyFile(t, self, exe, 0o755)
	cmd := exec.Command(exe, "-test.run", "^TestRootlessDriver$", "-test.v", "-test.count", "1")
	cmd.Env = []string{rootlessEnv + "=1", "TMPDIR=" + tmp, "HOME=" + tmp, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "CI=" + os.Getenv("CI")}
	cmd.Dir = tmp
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	passed, skipped := strings.Count(string(out), "--- PASS"), strings.Count(string(out), "--- SKIP")
	t.Logf("as uid %d: %d passed, %d skipped", nobody, passed, skipped)
	if err != nil || passed < 20 {
		t.Fatalf("the suite as uid %d: %v\n%s", nobody, err, out)
	}
}
