package console

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

// The console's third-party files (assets/vendor) are built from the npm
// registry by scripts/console-vendor out of web/package-lock.json and
// committed. These tests check that the pin is exact and hashed, and that
// building it again gives the committed bytes.

const repoRoot = "../.."

func TestVendorPinIsExact(t *testing.T) {
	var pkg struct {
		Dependencies    map[string]string `json:"dependencies"`
		DevDependencies map[string]string `json:"devDependencies"`
	}
	readJSON(t, filepath.Join(repoRoot, "web", "package.json"), &pkg)
	if len(pkg.Dependencies) == 0 {
		t.Fatal("web/package.json: no dependencies")
	}
	exact := regexp.MustCompile(`^\d+\.\d+\.\d+$`)
	for name, v := range pkg.Dependencies {
		if !exact.MatchString(v) {
			t.Errorf("web/package.json: %s is %q, want an exact version (x.y.z)", name, v)
		}
	}
	if len(pkg.DevDependencies) != 0 {
		t.Errorf("web/package.json: devDependencies %v: the console vendors only what it serves", pkg.DevDependencies)
	}

	var lock struct {
		LockfileVersion int `json:"lockfileVersion"`
		Packages        map[string]struct {
			Version   string `json:"version"`
			Integrity string `json:"integrity"`
		} `json:"packages"`
	}
	readJSON(t, filepath.Join(repoRoot, "web", "package-lock.json"), &lock)
	if lock.LockfileVersion < 2 {
		t.Errorf("web/package-lock.json: lockfileVersion %d, want 2 or 3", lock.LockfileVersion)
	}
	for name, v := range pkg.Dependencies {
		p, ok := lock.Packages["node_modules/"+name]
		if !ok {
			t.Errorf("web/package-lock.json: %s is not locked", name)
			continue
		}
		if p.Version != v {
			t.Errorf("web/package-lock.json: %s locked at %s, package.json pins %s", name, p.Version, v)
		}
	}
	for path, p := range lock.Packages {
		if path == "" {
			continue
		}
		if len(p.Integrity) < len("sha512-") || p.Integrity[:7] != "sha512-" {
			t.Errorf("web/package-lock.json: %s has integrity %q, want a sha512 hash", path, p.Integrity)
		}
	}
}

// TestVendorMatchesLock runs the build step (npm ci from the registry)
// into a temporary directory and compares its output with the committed
// files, byte for byte.
func TestVendorMatchesLock(t *testing.T) {
	for _, tool := range []string{"npm", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not found: the console's vendor check needs it in CI (Debian: apt-get install npm)", tool)
			}
			t.Skipf("%s not found (set CI=true to make this a failure)", tool)
		}
	}
	if testing.Short() {
		t.Skip("-short: the vendor check downloads from the npm registry")
	}
	dest := t.TempDir()
	cmd := exec.Command("bash", filepath.Join(repoRoot, "scripts", "console-vendor"), dest)
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false", "npm_config_cache="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/console-vendor: %v\n%s", err, out)
	}
	built := listFiles(t, dest)
	committed := listFiles(t, filepath.Join("assets", "vendor"))
	if !slices.Equal(built, committed) {
		t.Errorf("assets/vendor holds %v; the build step makes %v", committed, built)
	}
	for _, name := range built {
		want, err := os.ReadFile(filepath.Join(dest, name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join("assets", "vendor", name))
		if err != nil {
			t.Errorf("assets/vendor/%s: %v (run make console)", name, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("assets/vendor/%s differs from what web/package-lock.json builds (%d bytes committed, %d built): run make console", name, len(got), len(want))
		}
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names
}
