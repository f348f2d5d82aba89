package e2e

import (
	"strings"
	"testing"

	ggcr "github.com/google/go-containerregistry/pkg/v1"
)

// TestRegions: functions and services name the regions they may run in.
// A server whose instances and replicas run on its own machine runs only
// what its region allows: a function allowed elsewhere is deployed but
// its invocation says where it may run (503), a service allowed
// elsewhere is refused at deploy and leaves nothing; a bad region list
// is refused before anything changes. (On Kubernetes the regions become
// the pods' node affinity: the kube tests check that.)
func TestRegions(t *testing.T) {
	needTool(t, "python3")
	s := startServer(t, "--region", "eu-west-1")
	code := writeFiles(t, map[string]string{"h.py": "def handler(event, context):\n    return {'ok': True}\n"})

	s.mustCLI("deploy", "near", "--runtime", "python3", "--handler", "h.handler", "--regions", "eu-west-1,eu-central-1", code)
	if out := s.mustCLI("invoke", "near"); !strings.Contains(out, `"ok": true`) && !strings.Contains(out, `"ok":true`) {
		t.Errorf("invoke near (allowed in this server's region): %s", out)
	}
	if out := s.mustCLI("get", "near"); !strings.Contains(out, "eu-west-1, eu-central-1") {
		t.Errorf("stratus get near does not show its regions:\n%s", out)
	}

	s.mustCLI("deploy", "far", "--runtime", "python3", "--handler", "h.handler", "--regions", "us-east-1", code)
	resp, body := s.do("POST", "/v1/functions/far/invoke", []byte(`{}`), true)
	if resp.StatusCode != 503 || !strings.Contains(string(body), "may run in regions us-east-1; this server is in region eu-west-1") {
		t.Errorf("invoke far (allowed only in us-east-1): %d %s; want 503 naming the regions", resp.StatusCode, body)
	}

	for _, bad := range []string{"EU", "eu-west-1,eu-west-1", "eu west"} {
		r := s.cli("deploy", "bad", "--runtime", "python3", "--handler", "h.handler", "--regions", bad, code)
		if r.Code == 0 || !strings.Contains(r.Stderr, "region") {
			t.Errorf("deploy --regions %q: exit %d, %s; want a usage error about the region", bad, r.Code, r.Stderr)
		}
	}
	if r := s.cli("get", "bad"); r.Code == 0 {
		t.Errorf("a refused deploy left function bad: %s", r.Stdout)
	}

	s.mustCLI("image", "import", serviceImageTar(t, "gosvc:v1", ggcr.Config{}))
	// Through the API, which the CLI's check does not guard.
	resp, body = s.do("PUT", "/v1/services/bad", []byte(`{"image":"gosvc:v1","regions":["Not A Region"]}`), true)
	wantAPIError(t, resp, body, 400, "InvalidParameterValueException", "region")
	r := s.cli("service", "deploy", "farsvc", "--image", "gosvc:v1", "--regions", "us-east-1")
	if r.Code == 0 || !strings.Contains(r.Stderr, "may run in regions us-east-1; this server is in region eu-west-1") {
		t.Errorf("service deploy allowed only in us-east-1: exit %d, %s", r.Code, r.Stderr)
	}
	if out := s.mustCLI("service", "ls"); strings.Contains(out, "farsvc") {
		t.Errorf("a refused service deploy left a service:\n%s", out)
	}
	s.mustCLI("service", "deploy", "nearsvc", "--image", "gosvc:v1", "--regions", "eu-west-1")
	if out := s.mustCLI("service", "get", "nearsvc"); !strings.Contains(out, "regions:") || !strings.Contains(out, "eu-west-1") {
		t.Errorf("service get does not show its regions:\n%s", out)
	}
}
