//go:build kube && node

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/stratus-run/stratus/internal/agentimage"
)

// staticStratus is a static build of the stratus binary beside bin, for
// the Stratus image; built once per test binary.
var staticStratus = sync.OnceValues(func() (string, error) {
	out := filepath.Join(filepath.Dir(bin), "stratus-static")
	build := exec.Command("go", "build", "-trimpath", "-o", out, "../cmd/stratus")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build a static stratus: %w\n%s", err, b)
	}
	return out, nil
})

// stratusImage is the Stratus image of a static stratus, with the given
// runtimes' layers (agentimage.Runtimes for all).
func stratusImage(t *testing.T, runtimes ...string) v1.Image {
	t.Helper()
	static, err := staticStratus()
	if err != nil {
		t.Fatal(err)
	}
	img, err := agentimage.Build(static, "e2e", runtimes...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}
