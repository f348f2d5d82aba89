package e2e

import (
	"os"
	"strings"
	"testing"

	ggcr "github.com/google/go-containerregistry/pkg/v1"
)

// functionImage is a Lambda-style container image with cfg (entrypoint,
// working dir, environment): the goecho function (aws-lambda-go) at
// /var/task/bootstrap and a /tmp, nothing else (no shell, no /etc).
func functionImage(t *testing.T, cfg ggcr.Config) ggcr.Image {
	t.Helper()
	bootstrap, err := os.ReadFile(fixture("goecho") + "/bootstrap")
	if err != nil {
		t.Fatal(err)
	}
	layer, err := layerOf([]layerFile{
		{Name: "var/", Mode: 0o755},
		{Name: "var/task/", Mode: 0o755},
		{Name: "var/task/bootstrap", Mode: 0o755, Body: bootstrap},
		{Name: "tmp/", Mode: 0o1777},
	})
	if err != nil {
		t.Fatal(err)
	}
	return imageOf(t, cfg, layer)
}

func TestFunctionFromImage(t *testing.T) {
	needTool(t, "runc")
	s := startServer(t)
	s.mustCLI("image", "import", writeImageTar(t, functionImage(t, ggcr.Config{
		Entrypoint: []string{"/var/task/bootstrap"}, WorkingDir: "/var/task", Env: []string{"GREETING=from-image"},
	}), "echofn:v1"))
	out := s.mustCLI("deploy", "imgfn", "--image", "echofn:v1", "--memory", "256")
	if !strings.Contains(out, "image echofn:v1") {
		t.Errorf("deploy printed %q", out)
	}
	resp, body := s.invoke("imgfn", `{"echo":{"n":1}}`)
	if resp.StatusCode != 200 {
		t.Fatalf("invoke: %d %s\n%s", resp.StatusCode, body, s.Stderr())
	}
	a := decode[struct {
		Echo map[string]int    `json:"echo"`
		Env  map[string]string `json:"env"`
		Cwd  string            `json:"cwd"`
	}](t, body)
	if a.Echo["n"] != 1 || a.Env["GREETING"] != "from-image" || a.Env["AWS_LAMBDA_FUNCTION_NAME"] != "imgfn" || a.Cwd != "/var/task" {
		t.Errorf("answer from the image's function: %s", body)
	}
	if get := s.mustCLI("get", "imgfn"); !strings.Contains(get, "image") {
		t.Errorf("get: %s", get)
	}
	// Its image is in use.
	if r := s.cli("image", "rm", "echofn:v1"); r.Code == 0 || !strings.Contains(r.Stderr, "in use") {
		t.Errorf("image rm of a function's image: exit %d %s", r.Code, r.Stderr)
	}
	// Bad input: a missing image, both code and image, an image function with a runtime.
	for _, args := range [][]string{
		{"deploy", "nope", "--image", "missing:v1"},
		{"deploy", "both", fixture("goecho"), "--image", "echofn:v1"},
		{"deploy", "rt", "--image", "echofn:v1", "--runtime", "python3"},
		{"deploy", "none"},
	} {
		if r := s.cli(args...); r.Code == 0 {
			t.Errorf("%v: exit 0", args)
		}
	}
	s.mustCLI("rm", "imgfn")
	s.mustCLI("image", "rm", "echofn:v1")
}
