//go:build kube && node

package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/stratus-run/stratus/internal/clustertest"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/kubetest"
)

// fnImageRef is the reference the test's function image has, both in the
// node's containerd and in the server's image store.
const fnImageRef = "stratus.local/echofn:e2e"

// TestKubeNodeImageFunction deploys a function from a container image on
// a server with --sandbox kube against a cluster with a real node: the
// image (the goecho function, aws-lambda-go, as its entrypoint) is in the
// node's containerd and in the server's image store under the same
// reference. Its pod runs that image, with the agent that an init
// container of the Stratus image installed; the function answers with
// the image's environment and working dir, and its output reaches the
// logs.
func TestKubeNodeImageFunction(t *testing.T) {
	needTool(t, "kubectl")
	c := kubetest.StartWithNode(t)
	ns := c.Namespace(t)
	c.ImportImage(t, agentRef, stratusImage(t))

	img := functionImage(t, ggcr.Config{
		Entrypoint: []string{"/var/task/bootstrap"}, WorkingDir: "/var/task", Env: []string{"GREETING=from-image"},
	})
	c.ImportImage(t, fnImageRef, img)

	s := startServer(t, "--sandbox", "kube", "--kubeconfig", c.Kubeconfig(), "--namespace", ns,
		"--agent-image", agentRef)
	s.mustCLI("image", "import", writeImageTar(t, img, fnImageRef))
	if out := s.mustCLI("deploy", "imgecho", "--image", fnImageRef, "--memory", "256", "--idle-timeout", "30s"); !strings.Contains(out, fnImageRef) {
		t.Errorf("deploy printed %q; want the image named", out)
	}

	began := time.Now()
	resp, body := s.invoke("imgecho", `{"echo":{"hello":"image"},"print":"from an image's pod"}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("invoke: %d %s\nserver log:\n%s", resp.StatusCode, body, s.Stderr())
	}
	t.Logf("first invocation, pod made (agent installed, image run) and started: %s", time.Since(began).Round(time.Millisecond))
	var ans struct {
		Echo json.RawMessage   `json:"echo"`
		Env  map[string]string `json:"env"`
		Cwd  string            `json:"cwd"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		t.Fatalf("answer %s: %v", body, err)
	}
	if string(ans.Echo) != `{"hello":"image"}` || ans.Cwd != "/var/task" || ans.Env["GREETING"] != "from-image" ||
		ans.Env["AWS_LAMBDA_FUNCTION_NAME"] != "imgecho" || ans.Env["LAMBDA_TASK_ROOT"] != "/var/task" ||
		ans.Env["AWS_LAMBDA_RUNTIME_API"] != "127.0.0.1:9001" {
		t.Errorf("answer %s: want the echo, the image's working dir and environment, and the agent's Runtime API relay", body)
	}
	began = time.Now()
	if resp, body := s.invoke("imgecho", `{"echo":2}`); resp.StatusCode != http.StatusOK {
		t.Errorf("warm invoke: %d %s", resp.StatusCode, body)
	}
	t.Logf("warm invocation: %s", time.Since(began).Round(time.Millisecond))

	eventually.Nil(t, 10*time.Second, "the function's output in its logs", func() error {
		if r := s.cli("logs", "imgecho"); !strings.Contains(r.Stdout, "from an image's pod") {
			return fmt.Errorf("stratus logs imgecho:\n%s", r.Stdout)
		}
		return nil
	})

	// The instance's pod, as kubectl shows it, ran the function's image
	// on the real node, after the agent's installer from the Stratus
	// image.
	var ran *corev1.Pod
	for _, p := range kubectlPods(t, c, ns) {
		if p.Status.Phase == corev1.PodRunning {
			ran = &p
			break
		}
	}
	if ran == nil {
		t.Fatalf("no pod Running; want the instance's")
	}
	if ran.Spec.NodeName != c.RealNode() {
		t.Errorf("pod %s on %q; want %s", ran.Name, ran.Spec.NodeName, c.RealNode())
	}
	if len(ran.Spec.Containers) != 1 || ran.Spec.Containers[0].Image != fnImageRef ||
		!slices.Equal(ran.Spec.Containers[0].Command, []string{"/.stratus/bin/stratus", "agent"}) {
		t.Errorf("pod %s containers %+v; want one running %s's agent from /.stratus/bin", ran.Name, ran.Spec.Containers, fnImageRef)
	}
	if len(ran.Spec.InitContainers) != 1 || ran.Spec.InitContainers[0].Image != agentRef {
		t.Errorf("pod %s init containers %+v; want the installer from %s", ran.Name, ran.Spec.InitContainers, agentRef)
	}
	if st := ran.Status.ContainerStatuses; len(st) != 1 || st[0].State.Running == nil || !strings.Contains(st[0].Image, "echofn") {
		t.Errorf("pod %s container statuses %+v; want the function's image running", ran.Name, st)
	}
	if st := ran.Status.InitContainerStatuses; len(st) != 1 || st[0].State.Terminated == nil || st[0].State.Terminated.ExitCode != 0 {
		t.Errorf("pod %s init container statuses %+v; want the installer ended with 0", ran.Name, st)
	}
	if sc := ran.Spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Errorf("pod %s security context %+v; want non-root", ran.Name, sc)
	}

	// An image the store has and the node neither has nor can pull (its
	// registry, on a closed port of this machine, refuses at once; a host
	// name that does not resolve could keep the pull waiting on DNS for
	// longer than a start): the call fails, and the server's log says why.
	const unpullable = "127.0.0.1:1/echofn:not-on-the-node"
	s.mustCLI("image", "import", writeImageTar(t, img, unpullable))
	s.mustCLI("deploy", "nopull", "--image", unpullable, "--memory", "128")
	began = time.Now()
	if resp, body := s.invoke("nopull", `{}`); resp.StatusCode == http.StatusOK {
		t.Errorf("invoke of an image the node cannot pull: %d %s; want an error", resp.StatusCode, body)
	}
	t.Logf("invocation of an image the node cannot pull failed after %s", time.Since(began).Round(time.Millisecond))
	eventually.Nil(t, 10*time.Second, "the pull failure in the server's log", func() error {
		for line := range strings.Lines(s.Stderr()) {
			if strings.Contains(line, "ErrImagePull") || strings.Contains(line, "ImagePullBackOff") {
				t.Logf("server log: %s", strings.TrimSpace(line))
				return nil
			}
		}
		return errors.New("the server's log does not name the pull failure; its end:\n" + clustertest.LastLines([]byte(s.Stderr()), 20))
	})
}
