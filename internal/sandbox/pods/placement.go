package pods

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/kube"
	"github.com/stratus-run/stratus/internal/sandbox"
)

var _ sandbox.Placer = (*Driver)(nil)

// Placement implements sandbox.Placer: sandbox id's pod and the node it
// is scheduled on, as the driver's informer last saw them; false when the
// informer has no pod of id's.
func (d *Driver) Placement(id string) (sandbox.Placement, bool) {
	name := d.podName(id)
	if s := d.get(id); s != nil {
		name = s.pod
	}
	pod, err := d.lister.Get(name)
	if err != nil {
		return sandbox.Placement{}, false
	}
	return sandbox.Placement{Pod: pod.Name, Node: pod.Spec.NodeName}, true
}

// KubeNodes reads the cluster's nodes, and the pods Stratus runs in the
// driver's namespace (of every server, not only this one's), counted per
// node: function instances (labelled kube.LabelFunction or
// kube.LabelSandbox) and service replicas (kube.LabelService). Pods that
// have ended (Succeeded, Failed) are not counted. A listing of nodes that
// the cluster forbids is not an error: the answer then has no nodes, and
// its Note says why and how to allow it. Other failures of the API are errors of kind
// stratus.ErrUnavailable (or as kind says).
func (d *Driver) KubeNodes(ctx context.Context) (*v1.KubeNodes, error) {
	return listNodes(ctx, d.cfg.Client)
}

// listNodes is Driver.KubeNodes for client's cluster and namespace.
func listNodes(ctx context.Context, client *kube.Client) (*v1.KubeNodes, error) {
	out := &v1.KubeNodes{Namespace: client.Namespace, Nodes: []v1.KubeNode{}}
	podList, err := client.Interface.CoreV1().Pods(client.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: kube.LabelManaged + "=" + kube.Managed,
	})
	if err != nil {
		return nil, fmt.Errorf("list the pods of namespace %s: %w", client.Namespace, kind(err))
	}
	type count struct{ instances, replicas int }
	counts := map[string]*count{}
	for _, p := range podList.Items {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		replica := p.Labels[kube.LabelService] != ""
		instance := !replica && (p.Labels[kube.LabelFunction] != "" || p.Labels[kube.LabelSandbox] != "")
		if !replica && !instance {
			continue
		}
		if p.Spec.NodeName == "" {
			out.Pending++
			continue
		}
		c := counts[p.Spec.NodeName]
		if c == nil {
			c = &count{}
			counts[p.Spec.NodeName] = c
		}
		if replica {
			c.replicas++
		} else {
			c.instances++
		}
	}
	nodeList, err := client.Interface.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	switch {
	case apierrors.IsForbidden(err):
		out.Note = "this server may not list the cluster's nodes (" + err.Error() + "): " +
			"grant its service account get, list and watch on nodes (the Helm chart's ClusterRole, value rbac.nodes)"
	case err != nil:
		return nil, fmt.Errorf("list the nodes of the cluster: %w", kind(err))
	default:
		for _, n := range nodeList.Items {
			kn := v1.KubeNode{Name: n.Name, Region: n.Labels[kube.RegionLabel], Ready: nodeReady(&n)}
			if c := counts[n.Name]; c != nil {
				kn.Instances, kn.Replicas = c.instances, c.replicas
				delete(counts, n.Name)
			}
			out.Nodes = append(out.Nodes, kn)
		}
		// Pods on a node that is gone (deleted, its pods not yet).
		for name, c := range counts {
			out.Nodes = append(out.Nodes, v1.KubeNode{Name: name, Instances: c.instances, Replicas: c.replicas})
		}
	}
	slices.SortFunc(out.Nodes, func(a, b v1.KubeNode) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// nodeReady reports whether n's Ready condition is True.
func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
