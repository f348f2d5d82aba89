package clustertest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// NPMModules installs the packages of dir's package.json and
// package-lock.json with npm ci into the user's cache, once per content of
// those two files (stratus-tools/npm-NAME-HASH), and returns its
// node_modules folder; installs of the same files under the same name
// share it, from tests and bench programs alike. It returns errors
// rather than failing a test, so that it may run outside a test's
// goroutine; callers check for npm first.
func NPMModules(ctx context.Context, dir, name string) (string, error) {
	pkg, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err != nil {
		return "", err
	}
	lock, err := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("npm cache: %w", err)
	}
	sum := sha256.Sum256(append(pkg, lock...))
	root := filepath.Join(cache, "stratus-tools")
	out := filepath.Join(root, "npm-"+name+"-"+hex.EncodeToString(sum[:8]))
	modules := filepath.Join(out, "node_modules")
	if _, err := os.Stat(filepath.Join(out, ".complete")); err == nil {
		return modules, nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(root, "npm-"+name+"-tmp-")
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
	cmd := exec.CommandContext(ctx, "npm", "ci", "--ignore-scripts", "--no-bin-links", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = tmp
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm ci (%s): %w\n%s", dir, err, b)
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
