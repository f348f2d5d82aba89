//go:build kube && node

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/kube"
	"github.com/stratus-run/stratus/internal/kubetest"
)

// kubectlWide returns the node of each Stratus pod of ns, by pod name, as
// `kubectl get pods -o wide` prints it.
func kubectlWide(t *testing.T, c *kubetest.Cluster, ns string) map[string]string {
	t.Helper()
	out, err := exec.Command("kubectl", "--kubeconfig", c.Kubeconfig(), "-n", ns, "get", "pods",
		"-l", kube.LabelManaged+"="+kube.Managed, "-o", "wide").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl get pods -o wide: %v\n%s", err, out)
	}
	nodes := map[string]string{}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "NAME") {
		return nodes // "No resources found in NS namespace."
	}
	head := strings.Fields(lines[0])
	col := slices.Index(head, "NODE")
	if col < 0 {
		t.Fatalf("kubectl get pods -o wide: no NODE column:\n%s", out)
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) > col {
			nodes[f[0]] = f[col]
		}
	}
	return nodes
}

// TestKubeNodesShowPlacement runs a server with --sandbox kube on a
// cluster with the real node and a KWOK node: after a call, `stratus get`
// shows the function's pods and their node, the ones kubectl shows there;
// `stratus nodes` lists both nodes of the cluster with their region,
// readiness and the Stratus pods on each, as kubectl counts them.
func TestKubeNodesShowPlacement(t *testing.T) {
	needTool(t, "kubectl")
	c := kubetest.StartWithNode(t, kubetest.Node{Name: "kwok-eu", Region: "eu-1"})
	ns := c.Namespace(t)
	realNode := c.RealNode()
	// The real node is region "home", the server's: its pods go there,
	// not to the KWOK node, where nothing would run them.
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:"home"}}}`, kube.RegionLabel)
	if _, err := c.Client().CoreV1().Nodes().Patch(t.Context(), realNode, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}

	img := stratusImage(t)
	const ref = "stratus.local/stratus:e2e-nodes"
	c.ImportImage(t, ref, img)

	s := startServer(t, "--sandbox", "kube", "--kubeconfig", c.Kubeconfig(), "--namespace", ns,
		"--agent-image", ref, "--region", "home")
	s.mustCLI("deploy", "echo", "--runtime", "provided.al2023", "--memory", "128", fixture("goecho"))
	if resp, body := s.invoke("echo", `{"echo":1}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("invoke: %d %s\nserver log:\n%s", resp.StatusCode, body, s.Stderr())
	}

	// stratus get: the instance (and the one prepared ahead) with its pod,
	// on the real node; kubectl shows the same pods on the same node.
	var f v1.Function
	if err := json.Unmarshal([]byte(s.mustCLI("get", "echo", "-o", "json")), &f); err != nil {
		t.Fatal(err)
	}
	items := f.Instances.Items
	if len(items) == 0 || !slices.ContainsFunc(items, func(in v1.Instance) bool { return in.State == "idle" }) {
		t.Fatalf("stratus get echo: instances %+v; want the idle one", items)
	}
	wide := kubectlWide(t, c, ns)
	for _, in := range items {
		if in.Pod == "" || in.Node != realNode {
			t.Errorf("instance %+v: want its pod on %s", in, realNode)
		}
		if node, ok := wide[in.Pod]; !ok || node != realNode {
			t.Errorf("kubectl shows pod %s on %q (listed: %v); want it on %s", in.Pod, node, ok, realNode)
		}
	}
	out := s.mustCLI("get", "echo")
	t.Logf("stratus get echo:\n%s", out)
	if !strings.Contains(out, "POD") || !strings.Contains(out, "NODE") {
		t.Errorf("stratus get echo: no POD and NODE columns:\n%s", out)
	}
	for _, in := range items {
		if !slices.ContainsFunc(strings.Split(out, "\n"), func(l string) bool {
			f := strings.Fields(l)
			return len(f) > 2 && f[0] == in.ID && f[len(f)-2] == in.Pod && f[len(f)-1] == realNode
		}) {
			t.Errorf("stratus get echo: no row of %s with pod %s on %s:\n%s", in.ID, in.Pod, realNode, out)
		}
	}

	// A service's replica on the KWOK node (KWOK runs it, as far as the
	// API can tell).
	replica := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Labels: map[string]string{kube.LabelManaged: kube.Managed, kube.LabelService: "web"}},
		Spec:       corev1.PodSpec{NodeName: "kwok-eu", Containers: []corev1.Container{{Name: "web", Image: "none:test"}}},
	}
	if _, err := c.Client().CoreV1().Pods(ns).Create(t.Context(), replica, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// stratus nodes: both nodes, with the pods kubectl shows on each.
	var list v1.NodeList
	eventually.Nil(t, 30*time.Second, "stratus nodes counting what kubectl shows", func() error {
		if err := json.Unmarshal([]byte(s.mustCLI("nodes", "-o", "json")), &list); err != nil {
			return err
		}
		onReal := 0
		for _, node := range kubectlWide(t, c, ns) {
			if node == realNode {
				onReal++
			}
		}
		want := &v1.KubeNodes{Namespace: ns, Nodes: []v1.KubeNode{
			{Name: "kwok-eu", Region: "eu-1", Ready: true, Replicas: 1},
			{Name: realNode, Region: "home", Ready: true, Instances: onReal},
		}}
		if diff := cmp.Diff(want, list.Kube); diff != "" || onReal == 0 {
			return fmt.Errorf("%d pods on %s; kubeNodes (-want +got):\n%s", onReal, realNode, diff)
		}
		return nil
	})
	out = s.mustCLI("nodes")
	t.Logf("stratus nodes:\n%s", out)
	var rows [][]string
	for l := range strings.SplitSeq(out, "\n") {
		rows = append(rows, strings.Fields(l))
	}
	for _, want := range [][]string{
		{"Kubernetes", "nodes", "(Stratus", "pods", "of", "namespace", ns + "):"},
		{"NAME", "REGION", "READY", "INSTANCES", "REPLICAS"},
		{"kwok-eu", "eu-1", "yes", "0", "1"},
	} {
		if !slices.ContainsFunc(rows, func(r []string) bool { return slices.Equal(r, want) }) {
			t.Errorf("stratus nodes: no row %q:\n%s", want, out)
		}
	}
	if !slices.ContainsFunc(rows, func(r []string) bool {
		return len(r) == 5 && r[0] == realNode && r[1] == "home" && r[2] == "yes" && r[3] != "0"
	}) {
		t.Errorf("stratus nodes: no row of %s in region home, Ready, with its pods:\n%s", realNode, out)
	}
}
