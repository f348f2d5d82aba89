//go:build kube

package pods_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/kube"
	"github.com/stratus-run/stratus/internal/kubetest"
	"github.com/stratus-run/stratus/internal/sandbox"
	"github.com/stratus-run/stratus/internal/sandbox/pods"
)

// stratusPod is a pod as Stratus labels its own, with more labels, on
// node ("" leaves it to the scheduler, whom nodeSelector then stops).
func stratusPod(name, node string, labels map[string]string, unschedulable bool) *corev1.Pod {
	l := map[string]string{kube.LabelManaged: kube.Managed}
	for k, v := range labels {
		l[k] = v
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l},
		Spec: corev1.PodSpec{
			NodeName:   node,
			Containers: []corev1.Container{{Name: "c", Image: "none:test"}},
		},
	}
	if unschedulable {
		p.Spec.NodeSelector = map[string]string{"no-such-label": "x"}
	}
	return p
}

// TestPlacementAndNodesOnKWOK: the driver says which pod and node a
// sandbox runs on, as the API does; KubeNodes lists the cluster's nodes
// with their region and readiness and counts the Stratus pods of the
// namespace on each (instances of every server, replicas, not other
// pods, pending ones apart); a server that may not list nodes gets a
// note, not an error.
func TestPlacementAndNodesOnKWOK(t *testing.T) {
	c := kubetest.Start(t, kubetest.Node{Region: "eu-1"}, kubetest.Node{Region: "us-1"})
	ns := c.Namespace(t)
	d := newDriver(t, c, ns, "server-a", "us-1")
	api := c.Client().CoreV1().Pods(ns)

	if p, ok := d.Placement("unknown"); ok {
		t.Errorf("Placement of an unknown sandbox = %+v, true", p)
	}
	ctx, cancel := context.WithCancel(t.Context())
	prepared := make(chan error, 2)
	go func() { prepared <- d.Prepare(ctx, sandbox.Spec{ID: "fn-1", Argv: []string{"/x"}, MemoryMB: 128}) }()
	var where sandbox.Placement
	eventually.Nil(t, 30*time.Second, "the sandbox placed on a node", func() error {
		var ok bool
		if where, ok = d.Placement("fn-1"); !ok || where.Node == "" {
			return fmt.Errorf("placement %+v, %v", where, ok)
		}
		return nil
	})
	l, err := api.List(t.Context(), metav1.ListOptions{LabelSelector: kube.LabelSandbox + "=fn-1"})
	if err != nil || len(l.Items) != 1 {
		t.Fatalf("the sandbox's pod: %v, %v", l, err)
	}
	if want := (sandbox.Placement{Pod: l.Items[0].Name, Node: c.Nodes()[1]}); where != want {
		t.Errorf("Placement = %+v; want %+v (the API's pod, on the us-1 node)", where, want)
	}

	// Another server's instance and a service's replica on the eu-1 node,
	// an instance no node takes, and a pod that is not Stratus's.
	other := newDriver(t, c, ns, "server-b", "eu-1")
	go func() { prepared <- other.Prepare(ctx, sandbox.Spec{ID: "fn-2", Argv: []string{"/x"}, MemoryMB: 128}) }()
	for _, p := range []*corev1.Pod{
		stratusPod("web-1", c.Nodes()[0], map[string]string{kube.LabelService: "web"}, false),
		stratusPod("waiting", "", map[string]string{kube.LabelFunction: "fn"}, true),
	} {
		if _, err := api.Create(t.Context(), p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	foreign := stratusPod("foreign", c.Nodes()[0], nil, false)
	foreign.Labels = map[string]string{"app": "other"}
	if _, err := api.Create(t.Context(), foreign, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	want := &v1.KubeNodes{Namespace: ns, Pending: 1, Nodes: []v1.KubeNode{
		{Name: c.Nodes()[0], Region: "eu-1", Ready: true, Instances: 1, Replicas: 1},
		{Name: c.Nodes()[1], Region: "us-1", Ready: true, Instances: 1},
	}}
	eventually.Nil(t, 30*time.Second, "the nodes and the pods on each", func() error {
		got, err := d.KubeNodes(t.Context())
		if err != nil {
			return err
		}
		if diff := cmp.Diff(want, got); diff != "" {
			return fmt.Errorf("KubeNodes (-want +got):\n%s", diff)
		}
		return nil
	})

	// A server whose account may read and make pods but not list nodes.
	limited := limitedDriver(t, c, ns)
	got, err := limited.KubeNodes(t.Context())
	if err != nil {
		t.Fatalf("KubeNodes, nodes forbidden: %v", err)
	}
	if len(got.Nodes) != 0 || !strings.Contains(got.Note, "may not list the cluster's nodes") || !strings.Contains(got.Note, "rbac.nodes") || got.Pending != 1 {
		t.Errorf("KubeNodes, nodes forbidden = %+v; want no nodes, a note naming the fix, the pending pod", got)
	}

	// Nothing runs the agents on KWOK nodes: the Prepares end with ctx.
	cancel()
	for range 2 {
		select {
		case <-prepared:
		case <-time.After(30 * time.Second):
			t.Fatal("Prepare did not return after its context ended")
		}
	}
}

// limitedDriver is a driver in ns whose requests are those of a user that
// may only read and make pods of ns.
func limitedDriver(t *testing.T, c *kubetest.Cluster, ns string) *pods.Driver {
	t.Helper()
	const user = "stratus-limited"
	rbac := c.Client().RbacV1()
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "pods"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"},
			Verbs: []string{"get", "list", "watch", "create", "delete"}}},
	}
	if _, err := rbac.Roles(ns).Create(t.Context(), role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "pods"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pods"},
	}
	if _, err := rbac.RoleBindings(ns).Create(t.Context(), rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := c.RESTConfig()
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	client := &kube.Client{Config: cfg, Interface: cs, Namespace: ns}
	// RBAC takes a moment to admit the new binding.
	eventually.Nil(t, 30*time.Second, "the limited user may list pods", func() error {
		_, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{Limit: 1})
		return err
	})
	addr, err := pods.HostAddress()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	d, err := pods.New(ctx, pods.Config{Client: client, Node: "server-limited", Image: "stratus-agent:test", Address: addr})
	if err != nil {
		t.Fatal(errors.Join(errors.New("a driver of the limited user"), err))
	}
	t.Cleanup(func() { d.Close() })
	return d
}
