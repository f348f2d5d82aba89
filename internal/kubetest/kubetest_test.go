//go:build kube

package kubetest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/kubetest"
)

// podsTimeout bounds the wait for a Deployment's pods to reach a count.
const podsTimeout = time.Minute

func TestDeploymentRunsScalesAndHonoursAffinity(t *testing.T) {
	c := kubetest.Start(t,
		kubetest.Node{Name: "eu-1", Region: "eu-west"},
		kubetest.Node{Name: "eu-2", Region: "eu-west"},
		kubetest.Node{Name: "us-1", Region: "us-east"},
		kubetest.Node{Name: "us-2", Region: "us-east"},
	)
	client := c.Client()

	t.Run("three replicas run on the fake nodes", func(t *testing.T) {
		ns := c.Namespace(t)
		createDeployment(t, client, ns, "web", 3, nil)
		pods := waitRunning(t, client, ns, "web", 3)
		for _, p := range pods {
			if !slices.Contains(c.Nodes(), p.Spec.NodeName) {
				t.Errorf("pod %s is on node %q; want one of %v", p.Name, p.Spec.NodeName, c.Nodes())
			}
			if p.Status.PodIP == "" {
				t.Errorf("pod %s has no IP", p.Name)
			}
		}

		scale(t, client, ns, "web", 5)
		waitRunning(t, client, ns, "web", 5)
		scale(t, client, ns, "web", 0)
		waitRunning(t, client, ns, "web", 0)
	})

	t.Run("node affinity on the region", func(t *testing.T) {
		ns := c.Namespace(t)
		affinity := &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{
					MatchExpressions: []corev1.NodeSelectorRequirement{{
						Key: kubetest.RegionLabel, Operator: corev1.NodeSelectorOpIn, Values: []string{"us-east"},
					}},
				}},
			},
		}}
		createDeployment(t, client, ns, "pinned", 6, affinity)
		pods := waitRunning(t, client, ns, "pinned", 6)
		for _, p := range pods {
			if p.Spec.NodeName != "us-1" && p.Spec.NodeName != "us-2" {
				t.Errorf("pod %s is on node %q; want us-1 or us-2 (region us-east)", p.Name, p.Spec.NodeName)
			}
		}
	})

	t.Run("kubectl sees the pods the clientset sees", func(t *testing.T) {
		kubectl, err := exec.LookPath("kubectl")
		if err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("missing kubectl: %v", err)
			}
			t.Skipf("missing kubectl: %v (CI=true makes this a failure)", err)
		}
		ns := c.Namespace(t)
		createDeployment(t, client, ns, "seen", 2, nil)
		pods := waitRunning(t, client, ns, "seen", 2)

		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, kubectl, "--kubeconfig", c.Kubeconfig(), "get", "pods", "-n", ns, "-o", "json")
		cmd.Env = append(os.Environ(), "KUBECONFIG=") // only the flag's file
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("kubectl get pods: %v\n%s", err, stderr(err))
		}
		var list struct {
			Items []struct {
				Metadata struct{ Name string }
				Spec     struct{ NodeName string }
				Status   struct{ Phase string }
			}
		}
		if err := json.Unmarshal(out, &list); err != nil {
			t.Fatalf("kubectl get pods: %v\n%s", err, out)
		}
		var got, want []string
		for _, it := range list.Items {
			got = append(got, it.Metadata.Name+" "+it.Spec.NodeName+" "+it.Status.Phase)
		}
		for _, p := range pods {
			want = append(want, p.Name+" "+p.Spec.NodeName+" "+string(p.Status.Phase))
		}
		sort.Strings(got)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("kubectl get pods -n %s shows\n%s\nthe clientset sees\n%s", ns, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})

	t.Run("stop leaves no process and frees the port", func(t *testing.T) {
		host := strings.TrimPrefix(c.RESTConfig().Host, "https://")
		dir := filepath.Dir(c.Kubeconfig())
		c.Stop(t)
		if conn, err := net.DialTimeout("tcp", host, time.Second); err == nil {
			conn.Close()
			t.Errorf("the API server's address %s still accepts connections after Stop", host)
		}
		if left := processesNaming(t, dir); len(left) > 0 {
			t.Errorf("processes left after Stop:\n%s", strings.Join(left, "\n"))
		}
	})
}

// processesNaming returns the command lines of the processes whose
// arguments name something under dir.
func processesNaming(t *testing.T, dir string) []string {
	t.Helper()
	cmdlines, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, f := range cmdlines {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // gone meanwhile
		}
		if strings.Contains(string(b), dir+"/") {
			found = append(found, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return found
}

// createDeployment creates a Deployment of replicas pods labelled
// app=name, with affinity if not nil.
func createDeployment(t *testing.T, client kubernetes.Interface, ns, name string, replicas int32, affinity *corev1.Affinity) {
	t.Helper()
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Affinity:   affinity,
					Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app:1"}},
				},
			},
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment %s/%s: %v", ns, name, err)
	}
}

// scale sets the replicas of Deployment ns/name through its scale
// subresource, as kubectl scale does, again when the controller changed
// the Deployment in between.
func scale(t *testing.T, client kubernetes.Interface, ns, name string, replicas int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := client.AppsV1().Deployments(ns).GetScale(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s.Spec.Replicas = replicas
		_, err = client.AppsV1().Deployments(ns).UpdateScale(ctx, name, s, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("scale deployment %s/%s to %d: %v", ns, name, replicas, err)
	}
}

// waitRunning waits until exactly n pods labelled app=name exist in ns,
// each Running and Ready, and returns them.
func waitRunning(t *testing.T, client kubernetes.Interface, ns, name string, n int) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	eventually.Nil(t, podsTimeout, fmt.Sprintf("%d running pods of %s/%s", n, ns, name), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		list, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return err
		}
		if len(list.Items) != n {
			return fmt.Errorf("%d pods: %s", len(list.Items), describe(list.Items))
		}
		for _, p := range list.Items {
			if p.Status.Phase != corev1.PodRunning || !podReady(&p) || p.Spec.NodeName == "" {
				return fmt.Errorf("not all running and ready: %s", describe(list.Items))
			}
		}
		pods = list.Items
		return nil
	})
	return pods
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// describe shows each pod's name, node and phase.
func describe(pods []corev1.Pod) string {
	var s []string
	for _, p := range pods {
		s = append(s, fmt.Sprintf("%s on %q %s", p.Name, p.Spec.NodeName, p.Status.Phase))
	}
	return "[" + strings.Join(s, ", ") + "]"
}

// stderr is what a failed command wrote to its standard error.
func stderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
