//go:build kube && node

package kubetest_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/kubetest"
)

// nodePodsTimeout bounds the wait for real pods (sandbox, container,
// readiness probe) to reach a state.
const nodePodsTimeout = 2 * time.Minute

// helloSource is the workload: an HTTP server on :8080 that names its
// pod (the hostname) and the VERSION of its environment.
const helloSource = `package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	host, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s version=%s", host, os.Getenv("VERSION"))
	})
	if err := http.ListenAndServe(":8080", nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
`

const helloImage = "stratus.local/kubetest-hello:1"

func TestRealNodeRunsADeployment(t *testing.T) {
	before := hostSnapshot(t)

	began := time.Now()
	c := kubetest.StartWithNode(t)
	t.Logf("figure: cluster + real node started in %s", time.Since(began).Round(time.Millisecond))
	if c.RealNode() != kubetest.RealNodeName {
		t.Fatalf("RealNode() = %q; want %q", c.RealNode(), kubetest.RealNodeName)
	}
	dir := filepath.Dir(c.Kubeconfig())
	c.ImportImage(t, helloImage, kubetest.ProgramImage(t, kubetest.GoProgram(t, helloSource)))
	client := c.Client()

	t.Run("a deployment runs, scales, rolls and goes", func(t *testing.T) {
		ns := c.Namespace(t)
		began := time.Now()
		createHello(t, client, ns, 2)
		pods := waitHello(t, client, ns, 2, "v1")
		t.Logf("figure: 2 pods Ready %s after the Deployment was created", time.Since(began).Round(time.Millisecond))
		checkAnswers(t, pods, "v1")

		scale(t, client, ns, "hello", 0)
		waitHello(t, client, ns, 0, "")
		began = time.Now()
		scale(t, client, ns, "hello", 3)
		pods = waitHello(t, client, ns, 3, "v1")
		t.Logf("figure: 0 → 3 Ready in %s", time.Since(began).Round(time.Millisecond))
		checkAnswers(t, pods, "v1")

		began = time.Now()
		setVersion(t, client, ns, "v2")
		pods = waitHello(t, client, ns, 3, "v2")
		t.Logf("figure: 3 pods rolled to v2 in %s", time.Since(began).Round(time.Millisecond))
		checkAnswers(t, pods, "v2")

		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		foreground := metav1.DeletePropagationForeground
		if err := client.AppsV1().Deployments(ns).Delete(ctx, "hello", metav1.DeleteOptions{PropagationPolicy: &foreground}); err != nil {
			t.Fatalf("delete the deployment: %v", err)
		}
		waitHello(t, client, ns, 0, "")
		for _, p := range pods {
			if conn, err := net.DialTimeout("tcp", net.JoinHostPort(p.Status.PodIP, "8080"), time.Second); err == nil {
				conn.Close()
				t.Errorf("pod %s's address %s still accepts connections after the deletion", p.Name, p.Status.PodIP)
			}
		}
	})

	t.Run("stop puts the host back", func(t *testing.T) {
		c.Stop(t)
		if left := processesUnder(t, dir); len(left) > 0 {
			t.Errorf("processes left after Stop:\n%s", strings.Join(left, "\n"))
		}
		if left := mountsUnder(t, dir); len(left) > 0 {
			t.Errorf("mounts left after Stop:\n%s", strings.Join(left, "\n"))
		}
		if diff := cmp.Diff(before, hostSnapshot(t)); diff != "" {
			t.Errorf("the host after Stop differs from before the start (-before +after):\n%s", diff)
		}
	})
}

// createHello creates Deployment hello of the hello image, VERSION v1,
// with a readiness probe, on the real node.
func createHello(t *testing.T, client kubernetes.Interface, ns string, replicas int32) {
	t.Helper()
	labels := map[string]string{"app": "hello"}
	no := false
	grace := int64(2)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "hello", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{RollingUpdate: &appsv1.RollingUpdateDeployment{
				MaxSurge: ptr(intstr.FromInt32(1)), MaxUnavailable: ptr(intstr.FromInt32(0)),
			}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector:                  map[string]string{"kubernetes.io/hostname": kubetest.RealNodeName},
					AutomountServiceAccountToken:  &no,
					TerminationGracePeriodSeconds: &grace,
					Containers: []corev1.Container{{
						Name:            "hello",
						Image:           helloImage,
						ImagePullPolicy: corev1.PullNever,
						Env:             []corev1.EnvVar{{Name: "VERSION", Value: "v1"}},
						Ports:           []corev1.ContainerPort{{ContainerPort: 8080}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(8080)}},
							PeriodSeconds: 1,
						},
					}},
				},
			},
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment %s/hello: %v", ns, err)
	}
}

func ptr[T any](v T) *T { return &v }

// setVersion changes the VERSION of Deployment hello's template: a roll.
func setVersion(t *testing.T, client kubernetes.Interface, ns, version string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := client.AppsV1().Deployments(ns).Get(ctx, "hello", metav1.GetOptions{})
		if err != nil {
			return err
		}
		d.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "VERSION", Value: version}}
		_, err = client.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("set VERSION=%s on %s/hello: %v", version, ns, err)
	}
}

// waitHello waits until exactly n pods of hello exist, each Running and
// Ready on the real node with an IP, with VERSION version, and returns
// them.
func waitHello(t *testing.T, client kubernetes.Interface, ns string, n int, version string) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	eventually.Nil(t, nodePodsTimeout, fmt.Sprintf("%d ready pods of %s/hello (VERSION %s)", n, ns, version), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		list, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=hello"})
		if err != nil {
			return err
		}
		if len(list.Items) != n {
			return fmt.Errorf("%d pods: %s", len(list.Items), describeNode(list.Items))
		}
		for _, p := range list.Items {
			env := p.Spec.Containers[0].Env
			if p.Status.Phase != corev1.PodRunning || !podReady(&p) || p.Status.PodIP == "" ||
				p.Spec.NodeName != kubetest.RealNodeName || len(env) != 1 || env[0].Value != version {
				return fmt.Errorf("not all ready: %s", describeNode(list.Items))
			}
		}
		pods = list.Items
		return nil
	})
	return pods
}

// checkAnswers asks each pod, by its IP, who it is.
func checkAnswers(t *testing.T, pods []corev1.Pod, version string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	for _, p := range pods {
		url := "http://" + net.JoinHostPort(p.Status.PodIP, "8080") + "/"
		resp, err := client.Get(url)
		if err != nil {
			t.Errorf("GET %s (pod %s): %v", url, p.Name, err)
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := "hello from " + p.Name + " version=" + version
		if err != nil || resp.StatusCode != http.StatusOK || string(body) != want {
			t.Errorf("GET %s: %d %q (%v); want 200 %q", url, resp.StatusCode, body, err, want)
		}
	}
}

// describeNode shows each pod's name, phase, readiness and IP.
func describeNode(pods []corev1.Pod) string {
	var s []string
	for _, p := range pods {
		s = append(s, fmt.Sprintf("%s %s ready=%t ip=%s", p.Name, p.Status.Phase, podReady(&p), p.Status.PodIP))
	}
	return "[" + strings.Join(s, ", ") + "]"
}

// hostSnapshot is what a real node changes on the host, read without the
// package's help: sysctls, the paths containerd and the kubelet use
// whatever their configuration, the pods' cgroups, the CNI-* and KUBE-*
// iptables chains, nft tables, and the bridge.
func hostSnapshot(t *testing.T) []string {
	t.Helper()
	var s []string
	for _, k := range []string{"kernel.panic", "kernel.panic_on_oops", "vm.overcommit_memory", "vm.panic_on_oom", "net.ipv4.ip_forward"} {
		b, err := os.ReadFile(filepath.Join("/proc/sys", strings.ReplaceAll(k, ".", "/")))
		if err != nil {
			t.Fatal(err)
		}
		s = append(s, "sysctl "+k+"="+strings.TrimSpace(string(b)))
	}
	for _, p := range []string{"/run/containerd", "/var/lib/kubelet", "/var/lib/cni", "/var/log/containers", "/var/log/pods",
		"/run/netns", "/etc/cni", "/opt/cni", "/var/lib/containerd", "/run/kubernetes", "/etc/kubernetes"} {
		if _, err := os.Lstat(p); err == nil {
			s = append(s, "path "+p)
		}
	}
	cgroups, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods")
	if _, err := os.Stat("/sys/fs/cgroup/kubepods"); err == nil {
		cgroups = append(cgroups, "/sys/fs/cgroup/kubepods")
	}
	for _, cg := range cgroups {
		s = append(s, "cgroup "+cg)
	}
	for _, cmd := range []string{"iptables", "ip6tables"} {
		for _, table := range []string{"nat", "filter", "mangle"} {
			out, err := exec.Command(cmd, "-w", "-t", table, "-S").Output()
			if err != nil {
				t.Fatalf("%s -t %s -S: %v", cmd, table, err)
			}
			for _, l := range strings.Split(string(out), "\n") {
				if strings.Contains(l, "CNI-") || strings.Contains(l, "KUBE-") {
					s = append(s, cmd+" "+table+" "+l)
				}
			}
		}
	}
	if out, err := exec.Command("nft", "list", "tables").Output(); err == nil {
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if l != "" {
				s = append(s, "nft "+l)
			}
		}
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifaces {
		if i.Name == "stratuskube0" {
			s = append(s, "link "+i.Name)
		}
	}
	slices.Sort(s)
	return s
}

// processesUnder returns the command lines of the processes whose
// arguments name something under dir.
func processesUnder(t *testing.T, dir string) []string {
	t.Helper()
	cmdlines, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, f := range cmdlines {
		b, err := os.ReadFile(f)
		if err == nil && strings.Contains(string(b), dir+"/") {
			found = append(found, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return found
}

// mountsUnder returns the mount points under dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			found = append(found, f[4])
		}
	}
	return found
}
