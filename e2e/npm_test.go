package e2e

import (
	"context"
	"path/filepath"
	"strings"

	"github.com/stratus-run/stratus/internal/clustertest"
)

// npmModules installs the packages of testdata/DIR's package-lock.json
// once into the user's cache (clustertest.NPMModules, named DIR with its
// slashes made dashes) and returns its node_modules folder. A caller
// checks for npm with needTool first.
func npmModules(dir string) (string, error) {
	return clustertest.NPMModules(context.Background(), filepath.Join("testdata", dir), strings.ReplaceAll(dir, "/", "-"))
}
