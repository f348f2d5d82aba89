package benchkit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stratus-run/stratus/internal/archive"
)

// GoBuild builds pkg (a path relative to the module root root) into out,
// statically (CGO_ENABLED=0), with the extra build flags.
func GoBuild(ctx context.Context, root, pkg, out string, flags ...string) error {
	args := append(append([]string{"build"}, flags...), "-o", out, pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// ModuleRoot is the folder of the go.mod of the module the bench runs in.
func ModuleRoot(ctx context.Context) (string, error) {
	b, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(b))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("run the bench from inside the stratus module (go run ./bench/...)")
	}
	return filepath.Dir(mod), nil
}

// CodeZip zips the folder dir as the CLI does before it uploads a
// function's code.
func CodeZip(dir string) ([]byte, error) {
	var b bytes.Buffer
	if err := archive.ZipDir(dir, &b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// TreeDigest identifies the source measured: a short sha256 of every file
// of the module outside bench/ (paths and contents; hidden folders and
// bin/ skipped), since figures belong to a tree, not to a commit.
func TreeDigest(root string) string {
	h := sha256.New()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			if rel != "." && (strings.HasPrefix(d.Name(), ".") || rel == "bench" || rel == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || strings.HasSuffix(rel, ".test") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", rel, len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		return "unknown"
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// Environment describes the machine for a report's header: go, cpus,
// goarch, date, cpu (model), memory, kernel, uname, os, runc (version),
// cgroups and "loadavg at start".
func Environment() map[string]string {
	env := map[string]string{
		"go":     runtime.Version(),
		"cpus":   strconv.Itoa(runtime.NumCPU()),
		"goarch": runtime.GOARCH,
		"date":   time.Now().Format(time.DateOnly),
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				env["cpu"] = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		env["memory"] = fmt.Sprintf("%.1f GiB", float64(KBField(string(b), "MemTotal"))/(1<<30))
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		env["uname"] = strings.Join([]string{unix.ByteSliceToString(u.Sysname[:]), unix.ByteSliceToString(u.Release[:]),
			unix.ByteSliceToString(u.Version[:]), unix.ByteSliceToString(u.Machine[:])}, " ")
		env["kernel"] = unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				env["os"] = strings.Trim(v, `"`)
			}
		}
	}
	if b, err := exec.Command("runc", "--version").Output(); err == nil {
		env["runc"] = strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "runc version ")
	}
	env["cgroups"] = "v2"
	if CgroupV1() {
		env["cgroups"] = "v1 (memory, cpuacct)"
	}
	env["loadavg at start"] = fmt.Sprintf("%.1f", LoadAvg())
	return env
}
