//go:build kube

package pods_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/agent"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/kube"
	"github.com/stratus-run/stratus/internal/kubetest"
	"github.com/stratus-run/stratus/internal/sandbox"
	"github.com/stratus-run/stratus/internal/sandbox/pods"
)

// newDriver makes a driver for node in a fresh namespace of c.
func newDriver(t *testing.T, c *kubetest.Cluster, ns, node, region string) *pods.Driver {
	t.Helper()
	return newDriverOwned(t, c, ns, node, region, nil)
}

// newDriverOwned is newDriver whose pods have owner.
func newDriverOwned(t *testing.T, c *kubetest.Cluster, ns, node, region string, owner *metav1.OwnerReference) *pods.Driver {
	t.Helper()
	client, err := kube.Connect(c.Kubeconfig(), ns)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := pods.HostAddress()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	d, err := pods.New(ctx, pods.Config{Client: client, Node: node, Image: "stratus-agent:test", Address: addr, Region: region, Owner: owner})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// TestPodsOnKWOK checks the pods the driver makes on a cluster whose
// nodes run nothing (KWOK): what each asks of its node, where it is
// placed, that an agent that never answers fails Prepare with a message
// and leaves no pod, and that List and Stop find a pod an earlier server
// left.
func TestPodsOnKWOK(t *testing.T) {
	c := kubetest.Start(t, kubetest.Node{Region: "eu-1"}, kubetest.Node{Region: "us-1"})
	ns := c.Namespace(t)
	d := newDriver(t, c, ns, "server-a", "us-1")
	pods := c.Client().CoreV1().Pods(ns)

	spec := sandbox.Spec{
		ID: "fn-hello-1", Argv: []string{"/var/task/bootstrap"}, Dir: "/var/task",
		Env:      []string{"AWS_LAMBDA_RUNTIME_API=10.0.0.1:9999", "SECRET_OF_THE_FUNCTION=x"},
		Mounts:   []sandbox.Mount{{Source: t.TempDir(), Target: "/var/task"}},
		MemoryMB: 256, CPUWeight: true, Hostname: "fn-hello",
		User: &sandbox.User{UID: 993, GID: 990},
	}
	ctx, cancel := context.WithCancel(t.Context())
	prepared := make(chan error, 1)
	go func() { prepared <- d.Prepare(ctx, spec) }()

	var pod *corev1.Pod
	eventually.Nil(t, 30*time.Second, "the sandbox's pod running on a node", func() error {
		l, err := pods.List(t.Context(), metav1.ListOptions{LabelSelector: kube.LabelSandbox + "=fn-hello-1"})
		if err != nil || len(l.Items) != 1 {
			return errors.New("no pod yet")
		}
		pod = &l.Items[0]
		if pod.Spec.NodeName == "" || pod.Status.PodIP == "" {
			return errors.New("not placed yet")
		}
		return nil
	})
	if pod.Spec.NodeName != c.Nodes()[1] {
		t.Errorf("pod on node %s; want %s, the only one in region us-1", pod.Spec.NodeName, c.Nodes()[1])
	}
	ctr := pod.Spec.Containers[0]
	res := ctr.Resources
	wantMem := resource.MustParse("288Mi") // 256 MB and the agent's 32
	if m := res.Limits[corev1.ResourceMemory]; m.Cmp(wantMem) != 0 || res.Requests.Memory().Cmp(wantMem) != 0 {
		t.Errorf("memory request %v limit %v; want %v", res.Requests.Memory(), res.Limits.Memory(), &wantMem)
	}
	// 256/1769 of a core is requested; as a weight, up to one core is allowed.
	if r, l := res.Requests.Cpu().MilliValue(), res.Limits.Cpu().MilliValue(); r != 145 || l != 1000 {
		t.Errorf("cpu request %dm limit %dm; want 145m and 1000m", r, l)
	}
	sc, psc := ctr.SecurityContext, pod.Spec.SecurityContext
	if *psc.RunAsUser != 993 || *psc.RunAsGroup != 990 || !*psc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem ||
		*sc.AllowPrivilegeEscalation || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("security context %+v / %+v: want user 993:990, non-root, read-only root, no escalation, no capabilities", psc, sc)
	}
	if *pod.Spec.AutomountServiceAccountToken || pod.Spec.Hostname != "fn-hello" || pod.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("pod spec: token %v, hostname %q, restart %s", *pod.Spec.AutomountServiceAccountToken, pod.Spec.Hostname, pod.Spec.RestartPolicy)
	}
	var targets []string
	for _, m := range ctr.VolumeMounts {
		targets = append(targets, m.MountPath)
	}
	if !slices.Equal(targets, []string{"/tmp", "/var/task"}) || !ctr.VolumeMounts[1].ReadOnly {
		t.Errorf("volume mounts %+v; want /tmp, and the code's volume read-only at /var/task and nowhere else", ctr.VolumeMounts)
	}
	// The code is unpacked by an init container, the only one that has
	// its volume writable.
	if len(pod.Spec.InitContainers) != 1 {
		t.Fatalf("init containers %+v; want the mounts' stager", pod.Spec.InitContainers)
	}
	st := pod.Spec.InitContainers[0]
	if !slices.Equal(st.Command, []string{"/stratus", "agent", "--stage", "/.stratus/mounts"}) || len(st.VolumeMounts) != 1 ||
		st.VolumeMounts[0].ReadOnly || st.VolumeMounts[0].MountPath != "/.stratus/mounts/0" || st.VolumeMounts[0].Name != ctr.VolumeMounts[1].Name {
		t.Errorf("init container %s runs %q with mounts %+v; want the stager with the code's volume writable at /.stratus/mounts/0", st.Name, st.Command, st.VolumeMounts)
	}
	// The function's environment stays with the server: the pod spec,
	// readable by whoever may read pods, holds only the agent's.
	for _, e := range ctr.Env {
		if strings.Contains(e.Value, "SECRET_OF_THE_FUNCTION") || e.Name == "SECRET_OF_THE_FUNCTION" {
			t.Errorf("the pod spec holds the function's environment: %v", ctr.Env)
		}
	}
	if len(ctr.Env) != 3 {
		t.Errorf("container env %v; want only the agent's three variables", ctr.Env)
	}

	// Nothing runs the agent on a KWOK node: once the driver saw the pod
	// run, Prepare waits for the agent; it ends with its context and says
	// why; the pod goes.
	eventually.Nil(t, 30*time.Second, "the driver seeing the pod run", func() error {
		_, err := d.Addr(t.Context(), spec.ID)
		return err
	})
	// The pod runs, so its init containers ended: the Host serves the
	// agent its Sandbox, and the mounts to nobody any more.
	agentEnv := map[string]string{}
	for _, e := range ctr.Env {
		agentEnv[e.Name] = e.Value
	}
	sandboxURL := agentEnv[agent.EnvServer] + "/v1/agent/sandboxes/" + agentEnv[agent.EnvSandbox]
	for path, want := range map[string]int{"": http.StatusOK, "/mounts/0": http.StatusNotFound} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, sandboxURL+path, nil)
		req.Header.Set("Authorization", "Bearer "+agentEnv[agent.EnvToken])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s of the Host once the pod runs: %d; want %d", sandboxURL+path, resp.StatusCode, want)
		}
	}
	cancel()
	select {
	case err := <-prepared:
		if err == nil || !strings.Contains(err.Error(), "agent of pod") {
			t.Errorf("Prepare with no agent answering = %v; want an error about the agent", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Prepare did not return after its context ended")
	}
	eventually.Nil(t, 30*time.Second, "the failed sandbox's pod deleted", func() error {
		_, err := pods.Get(t.Context(), pod.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return errors.New("still there")
	})
	if _, err := d.Wait(t.Context(), spec.ID); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("Wait on a failed sandbox = %v; want ErrNotFound", err)
	}

	// A function's allowed regions place its pod in place of the
	// server's region.
	euSpec := sandbox.Spec{ID: "fn-eu-1", Argv: []string{"/bootstrap"}, MemoryMB: 128, Regions: []string{"eu-1"}}
	euCtx, euCancel := context.WithCancel(t.Context())
	defer euCancel()
	go func() { _ = d.Prepare(euCtx, euSpec) }() // no agent answers: it waits until euCancel
	eventually.Nil(t, 30*time.Second, "the pod of a sandbox allowed in eu-1 placed", func() error {
		l, err := pods.List(t.Context(), metav1.ListOptions{LabelSelector: kube.LabelSandbox + "=fn-eu-1"})
		if err != nil || len(l.Items) != 1 || l.Items[0].Spec.NodeName == "" {
			return errors.New("not placed yet")
		}
		if n := l.Items[0].Spec.NodeName; n != c.Nodes()[0] {
			t.Fatalf("pod allowed in eu-1 on node %s; want %s, the only one in eu-1", n, c.Nodes()[0])
		}
		return nil
	})
}

// TestPodsLeftByAnEarlierServer: a server that crashed left a pod; the
// next server of the same node name lists it and stops it; a server of
// another node name does not see it.
func TestPodsLeftByAnEarlierServer(t *testing.T) {
	c := kubetest.Start(t, kubetest.Node{Region: "eu-1"})
	ns := c.Namespace(t)
	first := newDriver(t, c, ns, "server-a", "")
	// Its Prepare waits for an agent that never comes; the server dies
	// meanwhile.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go first.Prepare(ctx, sandbox.Spec{ID: "left", Argv: []string{"/bin/true"}, MemoryMB: 128})
	eventually.Nil(t, 30*time.Second, "the pod made", func() error {
		ids, err := first.List(t.Context())
		if err != nil || !slices.Equal(ids, []string{"left"}) {
			return errors.New("not listed yet")
		}
		return nil
	})
	first.Close() // the server dies; its pod stays

	other := newDriver(t, c, ns, "server-b", "")
	if ids, err := other.List(t.Context()); err != nil || len(ids) != 0 {
		t.Errorf("another server's List = %v, %v; want nothing", ids, err)
	}
	next := newDriver(t, c, ns, "server-a", "")
	ids, err := next.List(t.Context())
	if err != nil || !slices.Equal(ids, []string{"left"}) {
		t.Fatalf("List after a restart = %v, %v; want [left]", ids, err)
	}
	sctx, scancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer scancel()
	if err := next.Stop(sctx, "left", 0); err != nil {
		t.Fatalf("Stop a left pod: %v", err)
	}
	if ids, err := next.List(t.Context()); err != nil || len(ids) != 0 {
		t.Errorf("List after Stop = %v, %v; want nothing", ids, err)
	}
	if err := next.Stop(sctx, "never-was", 0); err != nil {
		t.Errorf("Stop of an unknown sandbox = %v; want nil", err)
	}
}

// TestPodsRefuseBadSpecs: what the driver cannot run is refused before
// any pod is made.
func TestPodsRefuseBadSpecs(t *testing.T) {
	c := kubetest.StartAPIServer(t)
	ns := c.Namespace(t)
	d := newDriver(t, c, ns, "server-a", "")
	for _, tc := range []struct {
		name string
		spec sandbox.Spec
		want string
	}{
		{"root filesystem", sandbox.Spec{ID: "a", Argv: []string{"x"}, RootFS: "/srv/root"}, "root filesystem"},
		{"root user", sandbox.Spec{ID: "b", Argv: []string{"x"}, User: &sandbox.User{}}, "never run as root"},
		{"relative mount", sandbox.Spec{ID: "c", Argv: []string{"x"}, Mounts: []sandbox.Mount{{Source: "/", Target: "task"}}}, "absolute"},
		{"mount on /tmp", sandbox.Spec{ID: "d", Argv: []string{"x"}, Mounts: []sandbox.Mount{{Source: "/", Target: "/tmp/"}}}, "/tmp"},
		{"hostname", sandbox.Spec{ID: "e", Argv: []string{"x"}, Hostname: "-bad"}, "hostname"},
		{"no command", sandbox.Spec{ID: "f"}, "command"},
	} {
		err := d.Start(t.Context(), tc.spec)
		if !errors.Is(err, stratus.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Start = %v; want ErrInvalid naming %q", tc.name, err, tc.want)
		}
	}
	l, err := c.Client().CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil || len(l.Items) != 0 {
		t.Errorf("pods after refused specs: %d, %v; want none", len(l.Items), err)
	}
}

// TestPodsGoWithTheirServer: the pods of a server that runs in a pod are
// owned by that pod, and Kubernetes deletes them when it goes (a server
// pod that is replaced comes back under another node name, which would
// not list them).
func TestPodsGoWithTheirServer(t *testing.T) {
	c := kubetest.Start(t, kubetest.Node{})
	ns := c.Namespace(t)
	server, err := c.Client().CoreV1().Pods(ns).Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "stratus-server"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "server", Image: "stratus:test"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := newDriverOwned(t, c, ns, "stratus-server", "", &metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: server.Name, UID: server.UID})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go d.Prepare(ctx, sandbox.Spec{ID: "owned", Argv: []string{"/bin/true"}, MemoryMB: 128})
	var pod corev1.Pod
	eventually.Nil(t, 30*time.Second, "the sandbox's pod", func() error {
		l, err := c.Client().CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: kube.LabelSandbox + "=owned"})
		if err != nil || len(l.Items) != 1 {
			return errors.New("no pod yet")
		}
		pod = l.Items[0]
		return nil
	})
	if refs := pod.OwnerReferences; len(refs) != 1 || refs[0].UID != server.UID || refs[0].Kind != "Pod" {
		t.Fatalf("owner references %+v; want the server's pod", refs)
	}
	if err := c.Client().CoreV1().Pods(ns).Delete(t.Context(), server.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually.Nil(t, 60*time.Second, "the sandbox's pod deleted with the server's", func() error {
		_, err := c.Client().CoreV1().Pods(ns).Get(t.Context(), pod.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%v)", err)
	})
}

// TestPodsOfAnImageOnKWOK: the API takes the pod of a sandbox that runs
// an image as the driver makes it (the function's image running the
// agent from a read-only volume that an init container of the agent
// image fills), and the driver follows it past its init container to
// running.
func TestPodsOfAnImageOnKWOK(t *testing.T) {
	c := kubetest.Start(t, kubetest.Node{})
	ns := c.Namespace(t)
	d := newDriver(t, c, ns, "server-a", "")
	spec := sandbox.Spec{
		ID: "fn-image-1", Image: "registry.example/fn:1", Argv: []string{"/var/task/bootstrap"}, Dir: "/var/task",
		Env: []string{"AWS_LAMBDA_RUNTIME_API=10.0.0.1:9999"}, MemoryMB: 128, User: &sandbox.User{UID: 993, GID: 990},
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	prepared := make(chan error, 1)
	go func() { prepared <- d.Prepare(ctx, spec) }()
	var pod *corev1.Pod
	eventually.Nil(t, 30*time.Second, "the sandbox's pod", func() error {
		l, err := c.Client().CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: kube.LabelSandbox + "=fn-image-1"})
		if err != nil || len(l.Items) != 1 {
			return errors.New("no pod yet")
		}
		pod = &l.Items[0]
		return nil
	})
	if len(pod.Spec.InitContainers) != 1 || len(pod.Spec.Containers) != 1 {
		t.Fatalf("pod has %d init containers and %d containers; want one of each", len(pod.Spec.InitContainers), len(pod.Spec.Containers))
	}
	init, ctr := pod.Spec.InitContainers[0], pod.Spec.Containers[0]
	if init.Image != "stratus-agent:test" || !slices.Equal(init.Command, []string{"/stratus", "agent", "--install", "/.stratus/bin"}) {
		t.Errorf("init container runs %s %q; want the agent image installing the agent", init.Image, init.Command)
	}
	if ctr.Image != spec.Image || !slices.Equal(ctr.Command, []string{"/.stratus/bin/stratus", "agent"}) {
		t.Errorf("container runs %s %q; want the function's image running the installed agent", ctr.Image, ctr.Command)
	}
	ro := map[string]bool{}
	for _, m := range ctr.VolumeMounts {
		ro[m.MountPath] = m.ReadOnly
	}
	if readOnly, ok := ro["/.stratus/bin"]; !ok || !readOnly {
		t.Errorf("container's mounts %+v; want the agent's volume read-only at /.stratus/bin", ctr.VolumeMounts)
	}
	psc := pod.Spec.SecurityContext
	for _, c := range []corev1.Container{init, ctr} {
		if sc := c.SecurityContext; !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || !*psc.RunAsNonRoot || *psc.RunAsUser != 993 {
			t.Errorf("%s: security context %+v / %+v; want a read-only root, no escalation, non-root user 993", c.Name, sc, psc)
		}
	}
	// KWOK runs nothing: once the pod is seen running, Prepare waits for
	// an agent that never answers, and fails when its context ends.
	eventually.Nil(t, 30*time.Second, "the driver seeing the pod run", func() error {
		_, err := d.Addr(t.Context(), spec.ID)
		return err
	})
	cancel()
	select {
	case err := <-prepared:
		if err == nil || !strings.Contains(err.Error(), "agent of pod") {
			t.Errorf("Prepare with no agent answering = %v; want an error about the agent", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Prepare did not return after its context ended")
	}
}
