//go:build kube

package kubedeploy_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/kube"
	"github.com/stratus-run/stratus/internal/kubetest"
	"github.com/stratus-run/stratus/internal/services"
	"github.com/stratus-run/stratus/internal/services/kubedeploy"
	"github.com/stratus-run/stratus/internal/store"
)

// TestServicesOnKWOK runs the services manager on the Kubernetes backend
// against a cluster whose nodes run nothing (KWOK marks pods ready): a
// deploy makes the revision's Deployment and headless Service with the
// right spec, on the nodes of the server's region; requests from zero
// scale it to 1, then to 2 when the first replica is busy, each request
// going to a ready endpoint of its own; idle, it scales to 0; a new
// revision deletes the old one's objects, and removing the service
// deletes the rest.
func TestServicesOnKWOK(t *testing.T) {
	c := kubetest.Start(t, kubetest.Node{Region: "eu-1"}, kubetest.Node{Region: "us-1"}, kubetest.Node{Region: "us-1"})
	ns := c.Namespace(t)
	client, err := kube.Connect(c.Kubeconfig(), ns)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	b, err := kubedeploy.New(ctx, kubedeploy.Config{Client: client, Node: "server-a", Region: "us-1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "stratus.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	m := runManager(t, services.Config{
		Store: st, Revisions: b,
		ReadyTimeout: time.Minute, Tick: 50 * time.Millisecond,
		StableWindow: 2 * time.Second, PanicWindow: time.Second, ScaleToZeroGrace: time.Nanosecond,
		StopGrace: time.Second,
	})

	cfg := stratus.ServiceConfig{
		Image: "registry.example/hello:1", Port: 8081, Concurrency: 1, Target: 1, MaxScale: 3,
		MemoryMB: 128, CPU: 0.5, CPURequest: 0.25, HealthPath: "/healthz", LivenessPath: "/livez",
		Args: []string{"--greeting", "hi"}, Env: map[string]string{"GREETING": "hello"},
	}
	start := time.Now()
	if _, err := m.Deploy(t.Context(), "hello", cfg); err != nil {
		t.Fatal(err)
	}
	t.Logf("deploy (a Deployment, a Service, one pod ready) took %s", time.Since(start).Round(time.Millisecond))

	apps, core := c.Client().AppsV1().Deployments(ns), c.Client().CoreV1()
	name := kubedeploy.Name("hello", 1)
	if name != "stratus-hello-r1" {
		t.Errorf("name %q; want stratus-hello-r1", name)
	}
	dep, err := apps.Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkDeployment(t, dep)
	svc, err := core.Services(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone || !equalMaps(svc.Spec.Selector, dep.Spec.Selector.MatchLabels) ||
		len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 8081 {
		t.Errorf("service: clusterIP %q, selector %v, ports %v; want headless, the deployment's selector %v, port 8081",
			svc.Spec.ClusterIP, svc.Spec.Selector, svc.Spec.Ports, dep.Spec.Selector.MatchLabels)
	}
	if svc.Labels[kube.LabelNode] != "server-a" || dep.Labels[kube.LabelNode] != "server-a" {
		t.Errorf("node labels %v / %v; want server-a", svc.Labels, dep.Labels)
	}

	// Idle (minScale 0), it scales to zero.
	waitReplicas(t, apps, name, 0)
	waitEndpoints(t, b, "hello", 1, 0)

	// Two requests from zero: the first starts a replica, the second,
	// with the first busy (concurrency 1), another; each gets its own.
	type got struct {
		t       *services.Target
		release func()
		err     error
	}
	results := make(chan got, 2)
	for range 2 {
		go func() {
			tg, rel, err := m.Acquire(t.Context(), "hello")
			results <- got{tg, rel, err}
		}()
	}
	var hosts []string
	var releases []func()
	for range 2 {
		g := <-results
		if g.err != nil {
			t.Fatal(g.err)
		}
		hosts = append(hosts, g.t.URL.Host)
		releases = append(releases, g.release)
	}
	if hosts[0] == hosts[1] {
		t.Errorf("both requests went to %s; want one replica each (concurrency 1)", hosts[0])
	}
	waitReplicas(t, apps, name, 2)
	pods, err := core.Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: kube.LabelService + "=hello"})
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		ips = append(ips, fmt.Sprintf("%s:8081", p.Status.PodIP))
		if n := p.Spec.NodeName; n != c.Nodes()[1] && n != c.Nodes()[2] {
			t.Errorf("pod %s on node %s; want one of region us-1 (%s, %s)", p.Name, n, c.Nodes()[1], c.Nodes()[2])
		}
	}
	for _, h := range hosts {
		if !slices.Contains(ips, h) {
			t.Errorf("a request went to %s; want a pod's address (%v)", h, ips)
		}
	}
	_, status, err := m.Get("hello")
	if err != nil {
		t.Fatal(err)
	}
	ready := 0
	for _, r := range status.Replicas {
		if r.State == "ready" && r.Node != "" && r.ID != "" {
			ready++
		}
	}
	if ready != 2 {
		t.Errorf("replicas %+v; want 2 ready pods with their names and nodes", status.Replicas)
	}
	for _, r := range releases {
		r()
	}
	waitReplicas(t, apps, name, 0)

	// A new revision: the old one's objects go.
	cfg.Env = map[string]string{"GREETING": "hello again"}
	if _, err := m.Deploy(t.Context(), "hello", cfg); err != nil {
		t.Fatal(err)
	}
	waitGone(t, c, ns, name)
	if _, err := apps.Get(t.Context(), kubedeploy.Name("hello", 2), metav1.GetOptions{}); err != nil {
		t.Fatalf("revision 2's deployment: %v", err)
	}
	if err := m.Remove(t.Context(), "hello"); err != nil {
		t.Fatal(err)
	}
	waitGone(t, c, ns, kubedeploy.Name("hello", 2))

	// A service's allowed regions place its pods in place of the
	// server's region.
	if _, err := m.Deploy(t.Context(), "eu", stratus.ServiceConfig{Image: "registry.example/hello:1", MinScale: 1, Regions: []string{"eu-1"}}); err != nil {
		t.Fatal(err)
	}
	pods, err = core.Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: kube.LabelService + "=eu"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 1 || pods.Items[0].Spec.NodeName != c.Nodes()[0] {
		t.Errorf("pods of a service allowed in eu-1: %d, on %v; want one on %s", len(pods.Items), nodeNames(pods.Items), c.Nodes()[0])
	}
}

// nodeNames are the nodes pods run on.
func nodeNames(pods []corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Spec.NodeName)
	}
	return out
}

// checkDeployment checks revision 1's Deployment of TestServicesOnKWOK.
func checkDeployment(t *testing.T, dep *appsv1.Deployment) {
	t.Helper()
	want := map[string]string{kube.LabelManaged: kube.Managed, kube.LabelService: "hello", kubedeploy.LabelRevision: "1"}
	if !equalMaps(dep.Spec.Selector.MatchLabels, want) || !equalMaps(dep.Spec.Template.Labels, want) {
		t.Errorf("selector %v, pod labels %v; want %v", dep.Spec.Selector.MatchLabels, dep.Spec.Template.Labels, want)
	}
	pod := dep.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers; want 1", len(pod.Containers))
	}
	ctr := pod.Containers[0]
	if ctr.Image != "registry.example/hello:1" || ctr.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("image %s (%s); want registry.example/hello:1, IfNotPresent", ctr.Image, ctr.ImagePullPolicy)
	}
	if len(ctr.Command) != 0 || !slices.Equal(ctr.Args, []string{"--greeting", "hi"}) {
		t.Errorf("command %q args %q; want the image's entrypoint with the revision's args", ctr.Command, ctr.Args)
	}
	env := map[string]string{}
	for _, e := range ctr.Env {
		env[e.Name] = e.Value
	}
	if env["PORT"] != "8081" || env["GREETING"] != "hello" || env["K_REVISION"] != "hello-00001" {
		t.Errorf("env %v; want PORT 8081, GREETING and K_REVISION", env)
	}
	if len(ctr.Ports) != 1 || ctr.Ports[0].ContainerPort != 8081 {
		t.Errorf("ports %v; want 8081", ctr.Ports)
	}
	if p := ctr.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.IntValue() != 8081 {
		t.Errorf("readiness probe %+v; want GET /healthz on 8081", p)
	}
	if p := ctr.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/livez" {
		t.Errorf("liveness probe %+v; want GET /livez", p)
	}
	res := ctr.Resources
	mem := resource.MustParse("128Mi")
	if res.Requests.Memory().Cmp(mem) != 0 || res.Limits.Memory().Cmp(mem) != 0 {
		t.Errorf("memory request %v limit %v; want 128Mi both", res.Requests.Memory(), res.Limits.Memory())
	}
	if r, l := res.Requests.Cpu().MilliValue(), res.Limits.Cpu().MilliValue(); r != 250 || l != 500 {
		t.Errorf("cpu request %dm limit %dm; want 250m and 500m", r, l)
	}
	sc := pod.SecurityContext
	if sc == nil || *sc.RunAsUser != 65534 || !*sc.RunAsNonRoot || *pod.AutomountServiceAccountToken {
		t.Errorf("pod security %+v, token %v; want nobody, non-root, no token", sc, *pod.AutomountServiceAccountToken)
	}
	if csc := ctr.SecurityContext; *csc.AllowPrivilegeEscalation || !slices.Equal(csc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container security %+v; want no escalation, no capabilities", csc)
	}
	terms := pod.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) != 1 || terms[0].MatchExpressions[0].Key != kube.RegionLabel || !slices.Equal(terms[0].MatchExpressions[0].Values, []string{"us-1"}) {
		t.Errorf("node affinity %+v; want region us-1", terms)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

type deployments interface {
	Get(context.Context, string, metav1.GetOptions) (*appsv1.Deployment, error)
}

// waitReplicas waits until Deployment name asks for n replicas and has
// as many ready.
func waitReplicas(t *testing.T, apps deployments, name string, n int32) {
	t.Helper()
	eventually.Nil(t, time.Minute, fmt.Sprintf("deployment %s at %d replicas", name, n), func() error {
		d, err := apps.Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if *d.Spec.Replicas != n || d.Status.ReadyReplicas != n || d.Status.Replicas != n {
			return fmt.Errorf("spec %d, %d pods, %d ready", *d.Spec.Replicas, d.Status.Replicas, d.Status.ReadyReplicas)
		}
		return nil
	})
}

// waitEndpoints waits until the backend sees n endpoints of a revision.
func waitEndpoints(t *testing.T, b *kubedeploy.Backend, service string, number, n int) {
	t.Helper()
	eventually.Nil(t, time.Minute, fmt.Sprintf("%d endpoints", n), func() error {
		if eps := b.Endpoints(service, number); len(eps) != n {
			return fmt.Errorf("%d endpoints: %+v", len(eps), eps)
		}
		return nil
	})
}

// waitGone waits until the Deployment and Service name are gone.
func waitGone(t *testing.T, c *kubetest.Cluster, ns, name string) {
	t.Helper()
	eventually.Nil(t, time.Minute, "deployment and service "+name+" deleted", func() error {
		_, err1 := c.Client().AppsV1().Deployments(ns).Get(t.Context(), name, metav1.GetOptions{})
		_, err2 := c.Client().CoreV1().Services(ns).Get(t.Context(), name, metav1.GetOptions{})
		if !apierrors.IsNotFound(err1) || !apierrors.IsNotFound(err2) {
			return errors.Join(errors.New("still there"), err1, err2)
		}
		return nil
	})
}

// TestEndpointsRestartsAndOOM: a revision's pod whose container status
// says it restarted twice, last after an OOM kill, is reported by
// Endpoints with those figures and the OOM kill's reason. The API server
// alone keeps the pod as the test sets its status (through the status
// subresource, as a kubelet would): no scheduler or node touches it.
func TestEndpointsRestartsAndOOM(t *testing.T) {
	c := kubetest.StartAPIServer(t)
	ns := c.Namespace(t)
	client, err := kube.Connect(c.Kubeconfig(), ns)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	b, err := kubedeploy.New(ctx, kubedeploy.Config{Client: client, Node: "server-a"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })

	// (No controller-manager makes the namespace's service account.)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	if _, err := c.Client().CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods := c.Client().CoreV1().Pods(ns)
	mem := resource.MustParse("128Mi")
	pod, err := pods.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "stratus-web-r1-abc", Labels: map[string]string{
			kube.LabelManaged: kube.Managed, kube.LabelService: kube.Name("web"), kubedeploy.LabelRevision: "1",
		}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "service", Image: "registry.example/web:1",
			Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: mem}},
		}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitEndpoints(t, b, "web", 1, 1)

	now := metav1.Now()
	pod.Status.Phase = corev1.PodRunning
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: "service", Image: "registry.example/web:1", RestartCount: 2,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			Reason: "OOMKilled", ExitCode: 137, StartedAt: now, FinishedAt: now,
		}},
	}}
	if _, err := pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually.Nil(t, 30*time.Second, "the pod's restarts and OOM kill in its endpoint", func() error {
		eps := b.Endpoints("web", 1)
		if len(eps) != 1 {
			return fmt.Errorf("%d endpoints: %+v", len(eps), eps)
		}
		ep := eps[0]
		if ep.Name != pod.Name || ep.Restarts != 2 || !ep.OOMKilled || ep.Reason != services.OOMReason(128) {
			return fmt.Errorf("endpoint %+v; want %s, 2 restarts, OOM killed, %q", ep, pod.Name, services.OOMReason(128))
		}
		return nil
	})
}

// TestOrphansOnKWOK: when a Manager starts on the backend, the
// Deployments and Services of services its store does not have (those a
// crashed server left) are deleted; the store's live revision's stay,
// its service's name one that no label holds as given.
func TestOrphansOnKWOK(t *testing.T) {
	c := kubetest.Start(t, kubetest.Node{})
	ns := c.Namespace(t)
	client, err := kube.Connect(c.Kubeconfig(), ns)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	b, err := kubedeploy.New(ctx, kubedeploy.Config{Client: client, Node: "server-a"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "stratus.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	cfg := stratus.ServiceConfig{Image: "registry.example/hello:1"}
	cfg.Defaults()
	img := &services.Image{Digest: cfg.Image}
	live := &stratus.Revision{Service: "Live_Svc", Number: 1, Config: cfg, Digest: cfg.Image}
	if _, err := st.PutRevision(t.Context(), live); err != nil {
		t.Fatal(err)
	}
	// (In the API's order, one orphan comes before the live revision's
	// Deployment and one after it.)
	orphans := []*stratus.Revision{
		{Service: "gone", Number: 3, Config: cfg, Digest: cfg.Image},
		{Service: "zz-gone", Number: 1, Config: cfg, Digest: cfg.Image},
	}
	for _, rev := range append([]*stratus.Revision{live}, orphans...) {
		if err := b.Ensure(ctx, rev, img, 0); err != nil {
			t.Fatal(err)
		}
	}
	refs, err := b.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(refs, func(a, b services.RevisionRef) int { return strings.Compare(a.Service, b.Service) })
	want := []services.RevisionRef{{Service: "Live_Svc", Number: 1}, {Service: "gone", Number: 3}, {Service: "zz-gone", Number: 1}}
	if !slices.Equal(refs, want) {
		t.Errorf("List: %v; want %v", refs, want)
	}

	runManager(t, services.Config{
		Store: st, Revisions: b,
		ReadyTimeout: time.Minute, Tick: 50 * time.Millisecond,
		StopGrace: time.Second,
	})
	for _, rev := range orphans {
		waitGone(t, c, ns, kubedeploy.Name(rev.Service, rev.Number))
	}
	name := kubedeploy.Name(live.Service, live.Number)
	if _, err := c.Client().AppsV1().Deployments(ns).Get(t.Context(), name, metav1.GetOptions{}); err != nil {
		t.Errorf("the live revision's deployment: %v", err)
	}
	if _, err := c.Client().CoreV1().Services(ns).Get(t.Context(), name, metav1.GetOptions{}); err != nil {
		t.Errorf("the live revision's service: %v", err)
	}
}

// runManager makes a services Manager of cfg, loads it and runs it until
// t ends.
func runManager(t *testing.T, cfg services.Config) *services.Manager {
	t.Helper()
	m := services.New(cfg)
	if err := m.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	runCtx, stopRun := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- m.Run(runCtx) }()
	t.Cleanup(func() {
		stopRun()
		select {
		case <-ran:
		case <-time.After(30 * time.Second):
			t.Error("Run did not return")
		}
	})
	return m
}
