//go:build kube

package helm_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/kubetest"
)

// Bounds of the test's waits.
const (
	kubectlTimeout = time.Minute // one run of kubectl
	podsTimeout    = time.Minute // the servers' pods Running
)

// TestChartAppliesToACluster renders the chart for three servers, has the
// API server check it (a server-side dry run: admission, every field of
// every object, Pod Security's restricted profile), applies it, checks
// its NetworkPolicies are there, and waits for the servers' pods to be
// scheduled onto the fake nodes and run (KWOK runs nothing; the pods only
// become Running). It then checks what the ServiceAccount may do, as the
// API server's RBAC answers it, and that helm upgrade keeps the token the
// chart generated.
func TestChartAppliesToACluster(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("missing kubectl: %v", err)
		}
		t.Skipf("missing kubectl: %v (CI=true makes this a failure)", err)
	}
	helmBinary(t) // built before the cluster starts: its clock does not run meanwhile
	c := kubetest.Start(t, kubetest.Node{Region: "eu-west"}, kubetest.Node{Region: "eu-west"}, kubetest.Node{Region: "eu-west"})
	client := c.Client()
	kubeconfig := "KUBECONFIG=" + c.Kubeconfig()

	t.Run("three servers", func(t *testing.T) {
		ns := c.Namespace(t)
		// Pod Security Admission's restricted profile: a server pod that
		// breaks it is refused (and the Deployment warned about).
		run(t, kubectl, nil, "--kubeconfig", c.Kubeconfig(), "label", "namespace", ns,
			"pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/warn=restricted")
		// The Secrets the values name.
		for _, s := range []struct{ name, key, value string }{
			{"stratus-api-token", "api-token", "a-token-for-the-test"},
			{"stratus-db", "pg-password", "a-password"},
			{"stratus-nats", "server.creds", "not a real creds file"},
		} {
			run(t, kubectl, nil, "--kubeconfig", c.Kubeconfig(), "-n", ns, "create", "secret", "generic", s.name, "--from-literal="+s.key+"="+s.value)
		}
		manifests, err := helm(t, nil, "template", "demo", chartDir, "--namespace", ns, "-f", "testdata/cluster.yaml")
		if err != nil {
			t.Fatalf("helm template: %v", err)
		}

		out, warnings, err := runStatus(t, kubectl, []byte(manifests), "--kubeconfig", c.Kubeconfig(), "apply", "--dry-run=server", "-f", "-")
		if err != nil {
			t.Fatalf("kubectl apply --dry-run=server: %v\n%s", err, out)
		}
		t.Logf("server-side dry run:\n%s", out)
		if warnings != "" {
			t.Errorf("the server-side dry run warned:\n%s", warnings)
		}
		if _, err := client.AppsV1().Deployments(ns).Get(context.Background(), "demo-stratus", metav1.GetOptions{}); err == nil {
			t.Fatal("the dry run made the Deployment")
		}
		run(t, kubectl, []byte(manifests), "--kubeconfig", c.Kubeconfig(), "apply", "-f", "-")
		// The API server validated the NetworkPolicies (selectors, ports,
		// the egress rules of testdata/cluster.yaml) and keeps them as given.
		nps, err := client.NetworkingV1().NetworkPolicies(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var npNames []string
		for _, np := range nps.Items {
			npNames = append(npNames, fmt.Sprintf("%s(%d egress rules)", np.Name, len(np.Spec.Egress)))
		}
		slices.Sort(npNames)
		if want := []string{"demo-stratus-functions(2 egress rules)", "demo-stratus-services(2 egress rules)"}; !slices.Equal(npNames, want) {
			t.Errorf("NetworkPolicies in the cluster %v; want %v", npNames, want)
		}

		sel := labels.SelectorFromSet(labels.Set{"app.kubernetes.io/instance": "demo", "app.kubernetes.io/component": "server"}).String()
		var pods []corev1.Pod
		eventually.Nil(t, podsTimeout, "the 3 server pods Running on the fake nodes", func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			list, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
			if err != nil {
				return err
			}
			pods = list.Items
			running := 0
			for _, p := range pods {
				if p.Status.Phase == corev1.PodRunning && slices.Contains(c.Nodes(), p.Spec.NodeName) {
					running++
				}
			}
			if len(pods) != 3 || running != 3 {
				return fmt.Errorf("%d pods, %d of them Running on a fake node", len(pods), running)
			}
			return nil
		})
		nodes := map[string]bool{}
		for _, p := range pods {
			nodes[p.Spec.NodeName] = true
			if p.Spec.ServiceAccountName != "demo-stratus" {
				t.Errorf("pod %s runs as ServiceAccount %q; want demo-stratus", p.Name, p.Spec.ServiceAccountName)
			}
		}
		t.Logf("server pods on nodes %v", nodes)
		if len(nodes) < 2 {
			t.Errorf("the 3 server pods share %d node(s) of 3; the anti-affinity prefers spreading them", len(nodes))
		}

		// What the server's ServiceAccount may do, as RBAC answers it.
		as := "--as=system:serviceaccount:" + ns + ":demo-stratus"
		for _, q := range []struct {
			verb, resource, subresource string
			namespace                   string // "" the release's
			want                        string
		}{
			{"create", "pods", "", "", "yes"},
			{"delete", "pods", "", "", "yes"},
			{"get", "pods", "log", "", "no"},
			{"patch", "deployments.apps", "", "", "yes"},
			{"create", "services", "", "", "yes"},
			{"patch", "services", "", "", "no"},
			{"watch", "endpointslices.discovery.k8s.io", "", "", "yes"},
			{"update", "leases.coordination.k8s.io", "", "", "yes"},
			{"create", "events", "", "", "yes"},
			{"list", "nodes", "", "", "yes"},
			{"get", "secrets", "", "", "no"},
			{"update", "pods", "", "", "no"},
			{"create", "pods", "exec", "", "no"},
			{"update", "pods", "status", "", "no"},
			{"delete", "nodes", "", "", "no"},
			{"create", "pods", "", "default", "no"},
			{"list", "deployments.apps", "", "kube-system", "no"},
		} {
			where := q.namespace
			if where == "" {
				where = ns
			}
			args := []string{"--kubeconfig", c.Kubeconfig(), "auth", "can-i", as, "-n", where, q.verb, q.resource}
			what := q.resource
			if q.subresource != "" {
				args = append(args, "--subresource="+q.subresource)
				what += "/" + q.subresource
			}
			out, _, _ := runStatus(t, kubectl, nil, args...) // "no" exits 1
			if got := strings.TrimSpace(out); got != q.want {
				t.Errorf("can the ServiceAccount %s %s in %s? %q; want %q", q.verb, what, where, got, q.want)
			}
		}
	})

	t.Run("helm upgrade keeps the generated token", func(t *testing.T) {
		ns := c.Namespace(t)
		install := []string{"upgrade", "--install", "one", chartDir, "--namespace", ns, "-f", "testdata/single.yaml", "--timeout", "1m"}
		notes, err := helm(t, []string{kubeconfig}, install...)
		if err != nil {
			t.Fatalf("helm install: %v\n%s", err, notes)
		}
		first := secretToken(t, c, ns, "one-stratus-token")

		// The notes' commands: reach the Service, and read the token.
		if want := "kubectl -n " + ns + " port-forward service/one-stratus 8080:80"; !strings.Contains(notes, want) {
			t.Errorf("the release's notes do not say %q:\n%s", want, notes)
		}
		_, cmdline, ok := strings.Cut(notes, "export STRATUS_TOKEN=$(kubectl ")
		cmdline, _, ok2 := strings.Cut(cmdline, " | base64 -d)")
		if !ok || !ok2 {
			t.Fatalf("the release's notes do not say how to read the token:\n%s", notes)
		}
		args := []string{"--kubeconfig", c.Kubeconfig()}
		for _, a := range strings.Fields(cmdline) {
			args = append(args, strings.ReplaceAll(a, "'", "")) // as the shell does
		}
		encoded := run(t, kubectl, nil, args...)
		if tok, err := base64.StdEncoding.DecodeString(encoded); err != nil || string(tok) != first {
			t.Errorf("kubectl %s printed %q (%v); want the token %q, base64", cmdline, encoded, err, first)
		}
		if out, err := helm(t, []string{kubeconfig}, append(install, "--set", "region=eu-west")...); err != nil {
			t.Fatalf("helm upgrade: %v\n%s", err, out)
		}
		if again := secretToken(t, c, ns, "one-stratus-token"); again != first {
			t.Errorf("helm upgrade changed the generated token from %q to %q; want it kept", first, again)
		}
		d, err := client.AppsV1().Deployments(ns).Get(context.Background(), "one-stratus", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if env := d.Spec.Template.Spec.Containers[0].Env; !slices.Contains(env, corev1.EnvVar{Name: "STRATUS_REGION", Value: "eu-west"}) {
			t.Errorf("after the upgrade the server's env is %v; want STRATUS_REGION=eu-west", env)
		}
		if out, err := helm(t, []string{kubeconfig}, "uninstall", "one", "--namespace", ns); err != nil {
			t.Fatalf("helm uninstall: %v\n%s", err, out)
		}
		if _, err := client.RbacV1().ClusterRoles().Get(context.Background(), ns+"-one-stratus-nodes", metav1.GetOptions{}); err == nil {
			t.Errorf("helm uninstall left the ClusterRole %s-one-stratus-nodes", ns)
		}
	})
}

// secretToken returns the token in Secret name of ns.
func secretToken(t *testing.T, c *kubetest.Cluster, ns, name string) string {
	t.Helper()
	s, err := c.Client().CoreV1().Secrets(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get the token's Secret: %v", err)
	}
	tok := string(s.Data["token"])
	if len(tok) != 48 {
		t.Fatalf("Secret %s holds token %q; want 48 characters", name, tok)
	}
	return tok
}

// run runs name with args and stdin, failing t if it fails; it returns
// its standard output.
func run(t *testing.T, name string, stdin []byte, args ...string) string {
	t.Helper()
	out, stderr, err := runStatus(t, name, stdin, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr)
	}
	return out
}

// runStatus runs name with args and stdin and returns its standard output
// and standard error.
func runStatus(t *testing.T, name string, stdin []byte, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), kubectlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var outBuf, errBuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outBuf, &errBuf
	err = cmd.Run()
	return outBuf.String(), errBuf.String(), err
}
