//go:build kube && node

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/kube"
	"github.com/stratus-run/stratus/internal/kubetest"
)

// agentRef is the tag the test imports the Stratus image under.
const agentRef = "stratus.local/stratus:e2e"

// kubectlPods lists the pods Stratus made in ns, as kubectl shows them.
func kubectlPods(t *testing.T, c *kubetest.Cluster, ns string) []corev1.Pod {
	t.Helper()
	out, err := exec.Command("kubectl", "--kubeconfig", c.Kubeconfig(), "-n", ns, "get", "pods",
		"-l", kube.LabelManaged+"="+kube.Managed, "-o", "json").Output()
	if err != nil {
		t.Fatalf("kubectl get pods: %v", err)
	}
	var list corev1.PodList
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("kubectl get pods: %v", err)
	}
	return list.Items
}

// TestKubeNodeRunsFunctions runs a server with --sandbox kube against a
// cluster with a real node (kubelet, containerd, runc): a Go function
// (aws-lambda-go, provided.al2023) is invoked in a pod running stratus
// agent from the image the project builds; its output reaches the logs;
// concurrent calls get a pod each; a crash ends its pod; idle pods go
// (scale to zero); and a server that stops leaves no pod.
func TestKubeNodeRunsFunctions(t *testing.T) {
	needTool(t, "kubectl")
	c := kubetest.StartWithNode(t)
	ns := c.Namespace(t)

	img := stratusImage(t)
	c.ImportImage(t, agentRef, img)

	s := startServer(t, "--sandbox", "kube", "--kubeconfig", c.Kubeconfig(), "--namespace", ns,
		"--agent-image", agentRef)
	s.mustCLI("deploy", "echo", "--runtime", "provided.al2023", "--memory", "256", "--idle-timeout", "4s", fixture("goecho"))

	began := time.Now()
	resp, body := s.invoke("echo", `{"echo":{"hello":"kube"},"print":"from a pod"}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("invoke: %d %s\nserver log:\n%s", resp.StatusCode, body, s.Stderr())
	}
	t.Logf("first invocation, pod made and started: %s", time.Since(began).Round(time.Millisecond))
	var ans struct {
		Echo json.RawMessage   `json:"echo"`
		Env  map[string]string `json:"env"`
		Cwd  string            `json:"cwd"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		t.Fatalf("answer %s: %v", body, err)
	}
	if string(ans.Echo) != `{"hello":"kube"}` || ans.Cwd != "/var/task" || ans.Env["LAMBDA_TASK_ROOT"] != "/var/task" ||
		ans.Env["AWS_LAMBDA_RUNTIME_API"] != "127.0.0.1:9001" || ans.Env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] != "256" {
		t.Errorf("answer %s: want the echo, /var/task and the agent's Runtime API relay", body)
	}
	began = time.Now()
	if resp, body := s.invoke("echo", `{"echo":2}`); resp.StatusCode != http.StatusOK {
		t.Errorf("warm invoke: %d %s", resp.StatusCode, body)
	}
	t.Logf("warm invocation: %s", time.Since(began).Round(time.Millisecond))

	// The pods, as kubectl shows them: the instance's and the one made
	// ahead for the next cold start (create-ahead, maybe still starting),
	// on the real node, with the function's memory and the agent's overhead.
	pods := kubectlPods(t, c, ns)
	if len(pods) < 1 || len(pods) > 2 {
		t.Fatalf("kubectl shows %d pods; want the instance's and at most one made ahead", len(pods))
	}
	running := 0
	for _, p := range pods {
		if p.Status.Phase == corev1.PodRunning {
			running++
		}
		if p.Spec.NodeName != "" && p.Spec.NodeName != c.RealNode() {
			t.Errorf("pod %s on %q; want %s", p.Name, p.Spec.NodeName, c.RealNode())
		}
		if m := p.Spec.Containers[0].Resources.Limits.Memory().Value(); m != (256+32)<<20 {
			t.Errorf("pod %s: memory limit %d; want 288 MiB", p.Name, m)
		}
	}
	if running == 0 {
		t.Errorf("no pod Running; want the instance's")
	}
	eventually.Nil(t, 10*time.Second, "the function's output in its logs", func() error {
		if r := s.cli("logs", "echo"); !strings.Contains(r.Stdout, "from a pod") {
			return fmt.Errorf("stratus logs echo:\n%s", r.Stdout)
		}
		return nil
	})

	// Three calls at once: three pods.
	var wg sync.WaitGroup
	codes := make([]int, 3)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _ := s.invoke("echo", `{"sleep":3000}`)
			codes[i] = resp.StatusCode
		}()
	}
	eventually.Nil(t, 60*time.Second, "three pods for three concurrent calls", func() error {
		if n := len(kubectlPods(t, c, ns)); n < 3 {
			return fmt.Errorf("%d pods", n)
		}
		return nil
	})
	wg.Wait()
	for i, code := range codes {
		if code != http.StatusOK {
			t.Errorf("concurrent call %d: %d", i, code)
		}
	}

	// A crash is the call's error.
	if resp, body := s.invoke("echo", `{"exit":3}`); resp.StatusCode == http.StatusOK && !strings.Contains(string(body), "exit") {
		t.Errorf("invoke of a crash: %d %s; want a function error", resp.StatusCode, body)
	}

	// Idle instances go after 4 s: no pod is left.
	eventually.Nil(t, 60*time.Second, "no pod once the instances were idle", func() error {
		if pods := kubectlPods(t, c, ns); len(pods) > 0 {
			return fmt.Errorf("%d pods left", len(pods))
		}
		return nil
	})

	// Called again from zero, then the server stops: its pods go with it.
	if resp, body := s.invoke("echo", `{}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("invoke from zero: %d %s", resp.StatusCode, body)
	}
	s.Stop()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	l, err := c.Client().CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: kube.LabelManaged + "=" + kube.Managed})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Items) > 0 {
		t.Errorf("%d pods left after the server stopped", len(l.Items))
	}
}
