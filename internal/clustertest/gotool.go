package clustertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// GoTool names programs that BuildGoTool builds with the go command from a
// module version pinned in a go.mod, and where they are cached.
type GoTool struct {
	// Name names the cache directory: Name-VERSION-GOVERSION.
	Name string
	// ModDir is the directory of the go.mod that pins Module and in which
	// the go command builds, relative to the root of the module of the
	// test's working directory (go env GOMOD: Stratus's); "" is that
	// root, so Stratus's go.mod.
	ModDir string
	// Module is the module whose version (go list -m) names the build.
	Module string
	// Binaries maps the file name of each program to its main package.
	Binaries map[string]string
	// LDFlags, if set, returns the -ldflags for Module's version.
	LDFlags func(version string) string
	// Static builds with CGO_ENABLED=0 and -trimpath: programs that run
	// where there is no C library (in an image) and hold no path of this
	// machine.
	Static bool
	// Timeout bounds the build; 0 is 10 minutes.
	Timeout time.Duration
}

// goToolMu serializes the builds of one test binary; the file lock those
// of several.
var goToolMu sync.Mutex

// BuildGoTool returns the directory that holds tool's binaries, built
// once per version of tool.Module and Go toolchain into
// ${XDG_CACHE_HOME:-~/.cache}/stratus-tools/NAME-VERSION-GOVERSION/ under a
// file lock (NAME-VERSION-GOVERSION.lock), so that test binaries running at
// once share one build. The go command runs with GOWORK=off: the version
// is the one ModDir's go.mod pins. A missing go command skips t, or fails
// it under CI=true; a failed build fails it.
func BuildGoTool(t testing.TB, tool GoTool) string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		goToolMissing(t, "the go command, to build %s: %v", tool.Name, err)
	}
	modFile := goToolOutput(t, goCmd, "", "env", "GOMOD")
	if modFile == "" || modFile == os.DevNull {
		t.Fatalf("build %s: not inside the Stratus module (go env GOMOD is %q)", tool.Name, modFile)
	}
	modDir := filepath.Join(filepath.Dir(modFile), tool.ModDir)
	version := goToolOutput(t, goCmd, modDir, "list", "-m", "-f", "{{.Version}}", tool.Module)
	goVersion := goToolOutput(t, goCmd, modDir, "env", "GOVERSION")
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatalf("build %s: %v", tool.Name, err)
	}
	tools := filepath.Join(cache, "stratus-tools")
	dir := filepath.Join(tools, tool.Name+"-"+version+"-"+goVersion)

	goToolMu.Lock()
	defer goToolMu.Unlock()
	if err := os.MkdirAll(tools, 0o755); err != nil {
		t.Fatalf("build %s: %v", tool.Name, err)
	}
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("build %s: %v", tool.Name, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("build %s: lock %s: %v", tool.Name, lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if goToolBuilt(dir, tool.Binaries) {
		return dir
	}

	t.Logf("building %s %s with %s into %s (once)", tool.Name, version, goVersion, dir)
	start := time.Now()
	tmp, err := os.MkdirTemp(tools, tool.Name+".build-")
	if err != nil {
		t.Fatalf("build %s: %v", tool.Name, err)
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		t.Fatalf("build %s: %v", tool.Name, err)
	}
	args := []string{"build", "-o", tmp + string(filepath.Separator)}
	env := goToolEnv()
	if tool.Static {
		args = append(args, "-trimpath")
		env = append(env, "CGO_ENABLED=0")
	}
	if tool.LDFlags != nil {
		args = append(args, "-ldflags", tool.LDFlags(version))
	}
	for _, pkg := range tool.Binaries {
		args = append(args, pkg)
	}
	timeout := tool.Timeout
	if timeout == 0 {
		timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goCmd, args...)
	cmd.Dir = modDir
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s %s: %v\n%s", tool.Name, version, err, out)
	}
	for name, pkg := range tool.Binaries {
		if err := os.Rename(filepath.Join(tmp, goBinaryName(pkg)), filepath.Join(tmp, name)); err != nil {
			t.Fatalf("build %s: %v", tool.Name, err)
		}
	}
	// A directory left by a build that died half-way is replaced whole.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatalf("build %s: %v", tool.Name, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatalf("build %s: %v", tool.Name, err)
	}
	t.Logf("built %s %s in %s", tool.Name, version, time.Since(start).Round(time.Second))
	return dir
}

// goToolBuilt reports whether dir holds every binary, executable.
func goToolBuilt(dir string, binaries map[string]string) bool {
	for name := range binaries {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o100 == 0 {
			return false
		}
	}
	return true
}

// majorSuffix matches the major version element of a module path.
var majorSuffix = regexp.MustCompile(`^v[0-9]+$`)

// goBinaryName is the file name `go build -o DIR/` gives the program of
// main package pkg: its last path element, or the one before a major
// version suffix.
func goBinaryName(pkg string) string {
	dir, base := path.Split(pkg)
	if majorSuffix.MatchString(base) && dir != "" {
		return path.Base(dir)
	}
	return base
}

// goToolOutput runs the go command with args in dir ("" is the working
// directory) and returns its trimmed output.
func goToolOutput(t testing.TB, goCmd, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(goCmd, args...)
	cmd.Dir = dir
	cmd.Env = goToolEnv()
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
		}
		t.Fatalf("go %s: %v", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out))
}

// goToolEnv is the go command's environment: this process's, with no
// workspace.
func goToolEnv() []string {
	return append(os.Environ(), "GOWORK=off")
}

// goToolMissing fails t under CI=true, else skips it.
func goToolMissing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("missing "+format, args...)
	}
	t.Skipf("missing "+format+" (CI=true makes this a failure)", args...)
}
