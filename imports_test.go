package stratus_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// module is the import path of Stratus's module.
const module = "github.com/stratus-run/stratus"

// goPackage is what TestImportRules reads of `go list -json`.
type goPackage struct {
	ImportPath   string
	Standard     bool
	Module       *struct{ Path string }
	Imports      []string // direct, of the package's own files
	Deps         []string // transitive, of the package's own files
	TestImports  []string // of its _test.go files in the package
	XTestImports []string // of its _test.go files in package NAME_test
	Error        *struct{ Err string }
}

// TestImportRules holds the dependency rules of STYLE.md ("Dependencies
// point inward"), read from `go list -deps -json ./...`:
//
//   - the root package imports only the standard library, so every other
//     package may import it;
//   - only internal/server imports internal/pool (and pool's own tests);
//   - the sandbox drivers (internal/sandbox/...) depend neither on the
//     gateway nor on the autoscaler;
//   - only internal/cli, which runs `stratus server`, imports
//     internal/server: the wiring sits above every part it wires.
//
// With the root at the bottom and internal/server (then internal/cli) at
// the top, an import cycle between the parts and their wiring cannot be
// written.
func TestImportRules(t *testing.T) {
	pkgs := listPackages(t)
	own := func(p string) string { return strings.TrimPrefix(strings.TrimPrefix(p, module), "/") }
	byPath := map[string]goPackage{}
	for _, p := range pkgs {
		byPath[p.ImportPath] = p
	}
	var mine []goPackage
	for _, p := range pkgs {
		if p.Module != nil && p.Module.Path == module {
			mine = append(mine, p)
		}
	}
	if len(mine) < 10 {
		t.Fatalf("go list found %d packages of %s; want them all", len(mine), module)
	}

	t.Run("root imports only the standard library", func(t *testing.T) {
		root, ok := byPath[module]
		if !ok {
			t.Fatalf("go list did not list %s", module)
		}
		for _, d := range root.Deps {
			if p, ok := byPath[d]; !ok || !p.Standard {
				t.Errorf("package stratus depends on %s, which is not in the standard library", d)
			}
		}
	})

	// importers lists who may import a package directly; test files
	// included, except the package's own tests.
	importers := map[string][]string{
		"internal/pool":   {"internal/server"},
		"internal/server": {"internal/cli"},
	}
	for imported, allowed := range importers {
		t.Run("only "+strings.Join(allowed, ", ")+" import "+imported, func(t *testing.T) {
			if _, ok := byPath[module+"/"+imported]; !ok {
				t.Fatalf("go list did not list %s", imported)
			}
			for _, p := range mine {
				name := own(p.ImportPath)
				if name == imported || slices.Contains(allowed, name) {
					continue
				}
				for _, list := range [][]string{p.Imports, p.TestImports, p.XTestImports} {
					if slices.Contains(list, module+"/"+imported) {
						t.Errorf("%s imports %s", p.ImportPath, imported)
						break
					}
				}
			}
		})
	}

	t.Run("drivers depend on neither the gateway nor the autoscaler", func(t *testing.T) {
		drivers := 0
		for _, p := range mine {
			name := own(p.ImportPath)
			if name != "internal/sandbox" && !strings.HasPrefix(name, "internal/sandbox/") {
				continue
			}
			drivers++
			for _, d := range p.Deps {
				for _, banned := range []string{"internal/gateway", "internal/autoscaler", "internal/pool", "internal/server"} {
					if d == module+"/"+banned {
						t.Errorf("%s depends on %s", p.ImportPath, banned)
					}
				}
			}
		}
		if drivers < 3 {
			t.Errorf("found %d packages under internal/sandbox; want the contract and its drivers", drivers)
		}
	})
}

// listPackages runs `go list -deps -json ./...` in the module's root (the
// test's working folder) and decodes its stream of packages.
func listPackages(t *testing.T) []goPackage {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the import rules are read with `go list`: no go command on PATH: %v", err)
	}
	cmd := exec.Command(goBin, "list", "-deps", "-json", "./...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []goPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p goPackage
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decode go list's output: %v", err)
		}
		if p.Error != nil {
			t.Fatalf("go list %s: %s", p.ImportPath, p.Error.Err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}
