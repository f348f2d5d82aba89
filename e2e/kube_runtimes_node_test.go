//go:build kube && node

package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/agentimage"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/kubetest"
)

// TestKubeNodeRunsRuntimes runs Python and Node.js functions in pods of
// the Stratus image with its runtime layers, on a cluster with a real
// node: the server gives them the commands of a driver without roots
// ("python3 -u /var/runtime/python/bootstrap.py", "node ..."), which the
// agent finds on the function's PATH in the image, with the code and the
// runtime clients fetched from the server. Their answers come back and
// their print and console.log output reaches stratus logs. It logs the
// image's size with and without the runtimes and each runtime's first
// invocation (pod made, interpreter started).
func TestKubeNodeRunsRuntimes(t *testing.T) {
	needTool(t, "kubectl")
	needTool(t, "python3")
	needTool(t, "node")
	c := kubetest.StartWithNode(t)
	ns := c.Namespace(t)

	began := time.Now()
	img := stratusImage(t, agentimage.Runtimes...)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int64
	for _, l := range layers {
		n, err := l.Size()
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, n)
	}
	if len(sizes) != 1+len(agentimage.Runtimes) {
		t.Fatalf("%d layers; want the binary's and one per runtime %q", len(sizes), agentimage.Runtimes)
	}
	mb := func(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
	t.Logf("image built in %s: %s without runtimes, %s with them (python3 %s, nodejs %s; compressed)",
		time.Since(began).Round(time.Millisecond), mb(sizes[0]), mb(sizes[0]+sizes[1]+sizes[2]), mb(sizes[1]), mb(sizes[2]))
	const ref = "stratus.local/stratus:e2e-runtimes"
	began = time.Now()
	c.ImportImage(t, ref, img)
	t.Logf("image imported into the node's containerd in %s", time.Since(began).Round(time.Millisecond))

	// No pod made ahead (create-ahead), so that a first invocation makes
	// its pod.
	s := startServer(t, "--sandbox", "kube", "--kubeconfig", c.Kubeconfig(), "--namespace", ns, "--agent-image", ref,
		"--max-prepared", "0")
	py := writeFiles(t, map[string]string{"app.py": pythonApp})
	s.mustCLI("deploy", "py", "--runtime", "python3", "--handler", "app.handler", "--memory", "256", "--env", "GREETING=from a pod", py)
	js := writeFiles(t, map[string]string{"index.js": nodeCJS, "package.json": `{"name": "fn", "version": "1.0.0"}`})
	s.mustCLI("deploy", "js", "--runtime", "nodejs", "--handler", "index.handler", "--memory", "256", js)

	// Python: the fixture's answer, from /var/task, and its print.
	began = time.Now()
	resp, body := s.invoke("py", `{"n":1,"where":"kube"}`)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Amz-Function-Error") != "" {
		t.Fatalf("invoke py: %d %s\nstratus logs py:\n%s\nserver log:\n%s", resp.StatusCode, body, s.cli("logs", "py").Stdout, s.Stderr())
	}
	t.Logf("python3 first invocation, pod made and runtime started: %s", time.Since(began).Round(time.Millisecond))
	id := wantOK(t, resp, body)
	pa := decode[struct {
		Event     map[string]any `json:"event"`
		RequestID string         `json:"requestId"`
		Cwd       string         `json:"cwd"`
		Greeting  string         `json:"greeting"`
	}](t, body)
	if pa.Event["where"] != "kube" || pa.RequestID != id || pa.Cwd != "/var/task" || pa.Greeting != "from a pod" {
		t.Errorf("python answered %s (request %s); want its event, request ID, /var/task and GREETING", body, id)
	}
	began = time.Now()
	resp, body = s.invoke("py", `{"fail":"on purpose"}`)
	if e := wantFunctionError(t, resp, body); e.ErrorType != "ValueError" || e.ErrorMessage != "on purpose" {
		t.Errorf("python's exception: %+v", e)
	}
	t.Logf("python3 warm invocation: %s", time.Since(began).Round(time.Millisecond))

	// Node.js: the CommonJS fixture's answer and its console.log.
	began = time.Now()
	resp, body = s.invoke("js", `{"n":2}`)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Amz-Function-Error") != "" {
		t.Fatalf("invoke js: %d %s\nstratus logs js:\n%s\nserver log:\n%s", resp.StatusCode, body, s.cli("logs", "js").Stdout, s.Stderr())
	}
	t.Logf("nodejs first invocation, pod made and runtime started: %s", time.Since(began).Round(time.Millisecond))
	id = wantOK(t, resp, body)
	ja := decode[struct {
		Style        string         `json:"style"`
		Event        map[string]any `json:"event"`
		RequestID    string         `json:"requestId"`
		FunctionName string         `json:"functionName"`
	}](t, body)
	if ja.Style != "cjs-async" || ja.Event["n"] != float64(2) || ja.RequestID != id || ja.FunctionName != "js" {
		t.Errorf("node answered %s (request %s)", body, id)
	}
	began = time.Now()
	resp, body = s.invoke("js", `{"n":3}`)
	wantOK(t, resp, body)
	t.Logf("nodejs warm invocation: %s", time.Since(began).Round(time.Millisecond))

	// Their output, as stratus logs shows it, and the first call's report
	// (its init, the runtime's start in the pod).
	for fn, want := range map[string]string{"py": `python saw {"n": 1, "where": "kube"}`, "js": `cjs saw {"n":2}`} {
		var out string
		eventually.Nil(t, 10*time.Second, fn+"'s output in its logs", func() error {
			if out = s.cli("logs", fn).Stdout; !strings.Contains(out, want) {
				return fmt.Errorf("stratus logs %s lacks %q:\n%s", fn, want, out)
			}
			return nil
		})
		for line := range strings.Lines(out) {
			if strings.Contains(line, "Init Duration") {
				t.Logf("%s: %s", fn, strings.TrimSpace(line))
			}
		}
	}

	// In pods on the real node.
	pods := kubectlPods(t, c, ns)
	if len(pods) < 2 {
		t.Errorf("kubectl shows %d pods; want one per function at least", len(pods))
	}
	for _, p := range pods {
		if p.Spec.NodeName != c.RealNode() || p.Spec.Containers[0].Image != ref {
			t.Errorf("pod %s on %q of image %s; want %s on %s", p.Name, p.Spec.NodeName, p.Spec.Containers[0].Image, ref, c.RealNode())
		}
	}
}
