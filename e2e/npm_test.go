package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// npmModules installs the packages of testdata/DIR's package-lock.json
// with npm ci into the user's cache, once per package.json and lock file
// (stratus-tools/npm-DIR-HASH, DIR's slashes made dashes), and returns
// its node_modules folder. Installs run outside the test's goroutine, so
// it returns errors; a caller checks for npm with needTool first.
func npmModules(dir string) (string, error) {
	src := filepath.Join("testdata", dir)
	pkg, err := os.ReadFile(filepath.Join(src, "package.json"))
	if err != nil {
		return "", err
	}
	lock, err := os.ReadFile(filepath.Join(src, "package-lock.json"))
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("npm cache: %w", err)
	}
	sum := sha256.Sum256(append(pkg, lock...))
	name := "npm-" + strings.ReplaceAll(dir, "/", "-")
	root := filepath.Join(cache, "stratus-tools")
	out := filepath.Join(root, name+"-"+hex.EncodeToString(sum[:8]))
	modules := filepath.Join(out, "node_modules")
	if _, err := os.Stat(filepath.Join(out, ".complete")); err == nil {
		return modules, nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(root, name+"-tmp-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	for file, b := range map[string][]byte{"package.json": pkg, "package-lock.json": lock} {
		if err := os.WriteFile(filepath.Join(tmp, file), b, 0o644); err != nil {
			return "", err
		}
	}
	// --no-bin-links: plain files only, so the folder copies into a
	// function's code.
	cmd := exec.Command("npm", "ci", "--ignore-scripts", "--no-bin-links", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = tmp
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm ci (%s): %w\n%s", src, err, b)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		return "", err
	}
	// Another run may have finished first: its copy is as good.
	if err := os.Rename(tmp, out); err != nil {
		if _, serr := os.Stat(filepath.Join(out, ".complete")); serr != nil {
			return "", fmt.Errorf("npm cache: %w", err)
		}
	}
	return modules, nil
}
