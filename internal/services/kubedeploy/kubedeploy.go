// Package kubedeploy runs services' revisions on Kubernetes (the
// services.Revisions backend of --sandbox kube): each revision is one
// Deployment and one headless Service of the same selector, named
// kube.Name("stratus", SERVICE, "rN"), whose EndpointSlices (made by the
// cluster's EndpointSlice controller) say which pods take requests. The
// services manager sets the Deployment's replicas as its autoscaler
// decides and sends requests straight to the ready endpoints: no
// sidecar, no kube-proxy.
//
// A revision's pod runs the revision's image by its reference as
// deployed (pulled IfNotPresent), with its command, args, environment
// and PORT; its readiness probe is GET of the health path, else a TCP
// connect to its port (as Knative's default), every second; its
// liveness probe GET of the liveness path when one is set. Memory is
// requested and limited alike; CPU is requested as CPURequest (else
// CPU) and limited to CPU. It runs as the image's user when the server
// knows the image and its user is not root, else as nobody (65534), non-root
// either way, without privilege escalation or capabilities, with the
// runtime's default seccomp profile and no service account token; on
// nodes of the server's region when it has one.
//
// Backend follows the pods and EndpointSlices labelled with a service
// through informers started by New and stopped by Close; Changed is
// closed on each of their events.
package kubedeploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strconv"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	listersv1 "k8s.io/client-go/listers/core/v1"
	listersdiscoveryv1 "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/kube"
	"github.com/stratus-run/stratus/internal/services"
)

// LabelRevision holds a revision's number on its objects and pods.
const LabelRevision = "stratus.run/revision"

// AnnotationService holds, on a revision's Deployment and Service, the
// service's name as given (kube.LabelService holds it as a label may:
// lower-cased, a hash added).
const AnnotationService = "stratus.run/service-name"

// container is the name of a revision pod's container.
const container = "service"

// nobody runs an image whose user is root or unknown.
const nobody = 65534

// Config configures a Backend.
type Config struct {
	// Client is the cluster and namespace the objects are made in.
	Client *kube.Client
	// Node is this server's node name (the objects' kube.LabelNode).
	Node string
	// Region, when set, is required of the nodes (node affinity on
	// topology.kubernetes.io/region).
	Region string
	// Log receives the backend's events; nil discards them.
	Log *slog.Logger
}

// Backend runs revisions as Deployments. Its methods are safe for
// concurrent use.
type Backend struct {
	cfg    Config
	node   string // kube.LabelNode's value
	pods   listersv1.PodNamespaceLister
	slices listersdiscoveryv1.EndpointSliceNamespaceLister
	stop   chan struct{}

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every event
}

var _ services.Revisions = (*Backend)(nil)

// New starts the informers of the revisions' pods and EndpointSlices in
// cfg.Client's namespace and returns once they have listed them (within
// ctx).
func New(ctx context.Context, cfg Config) (*Backend, error) {
	if cfg.Client == nil || cfg.Node == "" {
		return nil, fmt.Errorf("services on kubernetes: no cluster or no node name: %w", stratus.ErrInvalid)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	b := &Backend{cfg: cfg, node: kube.Name(cfg.Node), stop: make(chan struct{}), changed: make(chan struct{})}
	sel := kube.LabelManaged + "=" + kube.Managed + "," + kube.LabelService + "," + LabelRevision
	factory := informers.NewSharedInformerFactoryWithOptions(cfg.Client.Interface, 0,
		informers.WithNamespace(cfg.Client.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = sel }))
	pods := factory.Core().V1().Pods()
	slices := factory.Discovery().V1().EndpointSlices()
	notify := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { b.notify() },
		UpdateFunc: func(any, any) { b.notify() },
		DeleteFunc: func(any) { b.notify() },
	}
	for _, inf := range []cache.SharedIndexInformer{pods.Informer(), slices.Informer()} {
		if _, err := inf.AddEventHandler(notify); err != nil {
			return nil, err
		}
	}
	b.pods = pods.Lister().Pods(cfg.Client.Namespace)
	b.slices = slices.Lister().EndpointSlices(cfg.Client.Namespace)
	factory.Start(b.stop)
	if !cache.WaitForCacheSync(ctx.Done(), pods.Informer().HasSynced, slices.Informer().HasSynced) {
		b.Close()
		return nil, fmt.Errorf("services on kubernetes: list the pods and endpoint slices of namespace %s: %w", cfg.Client.Namespace, stratus.ErrUnavailable)
	}
	return b, nil
}

// Close stops the informers; the objects stay.
func (b *Backend) Close() error {
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	return nil
}

func (b *Backend) notify() {
	b.mu.Lock()
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

// Changed implements services.Revisions.
func (b *Backend) Changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

// Name is the name of the Deployment and Service of revision number of
// service.
func Name(service string, number int) string {
	return kube.Name("stratus", service, "r"+strconv.Itoa(number))
}

// selector is the labels of revision number of service's pods.
func selector(service string, number int) map[string]string {
	return map[string]string{
		kube.LabelManaged: kube.Managed,
		kube.LabelService: kube.Name(service),
		LabelRevision:     strconv.Itoa(number),
	}
}

// objectLabels is the labels of the revision's Deployment and Service:
// its pods' and this server's node.
func (b *Backend) objectLabels(service string, number int) map[string]string {
	l := selector(service, number)
	l[kube.LabelNode] = b.node
	return l
}

// objectMeta is the name, labels and annotations of revision rev's
// Deployment and Service.
func (b *Backend) objectMeta(rev *stratus.Revision) metav1.ObjectMeta {
	m := metav1.ObjectMeta{Name: Name(rev.Service, rev.Number), Labels: b.objectLabels(rev.Service, rev.Number)}
	annotate(&m, rev.Service)
	return m
}

// Ensure implements services.Revisions.
func (b *Backend) Ensure(ctx context.Context, rev *stratus.Revision, img *services.Image, replicas int) error {
	name := Name(rev.Service, rev.Number)
	dep := b.deployment(rev, img, replicas)
	svc := b.service(rev)
	deps := b.cfg.Client.Interface.AppsV1().Deployments(b.cfg.Client.Namespace)
	if _, err := deps.Create(ctx, dep, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		cur, gerr := deps.Get(ctx, name, metav1.GetOptions{})
		if gerr != nil {
			return kind("get deployment "+name, gerr)
		}
		cur.Labels, cur.Spec.Template, cur.Spec.Replicas = dep.Labels, dep.Spec.Template, dep.Spec.Replicas
		annotate(&cur.ObjectMeta, rev.Service)
		if _, err := deps.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			return kind("update deployment "+name, err)
		}
	} else if err != nil {
		return kind("create deployment "+name, err)
	}
	svcs := b.cfg.Client.Interface.CoreV1().Services(b.cfg.Client.Namespace)
	if _, err := svcs.Create(ctx, svc, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		cur, gerr := svcs.Get(ctx, name, metav1.GetOptions{})
		if gerr != nil {
			return kind("get service "+name, gerr)
		}
		cur.Labels, cur.Spec.Selector, cur.Spec.Ports = svc.Labels, svc.Spec.Selector, svc.Spec.Ports
		annotate(&cur.ObjectMeta, rev.Service)
		if _, err := svcs.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			return kind("update service "+name, err)
		}
	} else if err != nil {
		return kind("create service "+name, err)
	}
	b.cfg.Log.Info("revision ensured", "service", rev.Service, "revision", rev.Name(), "deployment", name, "replicas", replicas)
	return nil
}

// Scale implements services.Revisions.
func (b *Backend) Scale(ctx context.Context, service string, number, replicas int) error {
	name := Name(service, number)
	patch := fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, replicas)
	_, err := b.cfg.Client.Interface.AppsV1().Deployments(b.cfg.Client.Namespace).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return kind("scale deployment "+name, err)
	}
	return nil
}

// Delete implements services.Revisions: the Deployment (its pods go in
// the background) and the Service.
func (b *Backend) Delete(ctx context.Context, service string, number int) error {
	name := Name(service, number)
	bg := metav1.DeletePropagationBackground
	var errs []error
	err := b.cfg.Client.Interface.AppsV1().Deployments(b.cfg.Client.Namespace).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &bg})
	if err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, kind("delete deployment "+name, err))
	}
	err = b.cfg.Client.Interface.CoreV1().Services(b.cfg.Client.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, kind("delete service "+name, err))
	}
	return errors.Join(errs...)
}

// List implements services.Revisions: the revisions of the Deployments
// of the namespace that carry a revision's labels (a revision's Service
// goes with its Deployment: Delete removes both). A Deployment is named
// by its AnnotationService and LabelRevision, or, made without the
// annotation, by its kube.LabelService; one whose name is not Name of
// those (a label that lost the service's name) is left out.
func (b *Backend) List(ctx context.Context) ([]services.RevisionRef, error) {
	opts := metav1.ListOptions{LabelSelector: kube.LabelManaged + "=" + kube.Managed + "," + kube.LabelService + "," + LabelRevision}
	deps, err := b.cfg.Client.Interface.AppsV1().Deployments(b.cfg.Client.Namespace).List(ctx, opts)
	if err != nil {
		return nil, kind("list deployments", err)
	}
	var refs []services.RevisionRef
	for i := range deps.Items {
		if ref, ok := revisionOf(&deps.Items[i].ObjectMeta); ok {
			refs = append(refs, ref)
		}
	}
	return refs, nil
}

// revisionOf is the revision whose object m is (see List).
func revisionOf(m *metav1.ObjectMeta) (services.RevisionRef, bool) {
	number, err := strconv.Atoi(m.Labels[LabelRevision])
	if err != nil {
		return services.RevisionRef{}, false
	}
	service, ok := m.Annotations[AnnotationService]
	if !ok {
		service = m.Labels[kube.LabelService]
	}
	if service == "" || Name(service, number) != m.Name {
		return services.RevisionRef{}, false
	}
	return services.RevisionRef{Service: service, Number: number}, true
}

// annotate sets m's AnnotationService to service, keeping its other
// annotations.
func annotate(m *metav1.ObjectMeta, service string) {
	if m.Annotations == nil {
		m.Annotations = make(map[string]string)
	}
	m.Annotations[AnnotationService] = service
}

// Endpoints implements services.Revisions: the revision's pods, each
// with its address and readiness as its EndpointSlices give them, by
// name.
func (b *Backend) Endpoints(service string, number int) []services.Endpoint {
	sel := labels.SelectorFromSet(selector(service, number))
	pods, _ := b.pods.List(sel)
	byName := make(map[string]*services.Endpoint, len(pods))
	for _, p := range pods {
		ep := podEndpoint(p)
		byName[p.Name] = &ep
	}
	slices, _ := b.slices.List(sel)
	for _, sl := range slices {
		if sl.AddressType != discoveryv1.AddressTypeIPv4 && sl.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		var port int32
		for _, p := range sl.Ports {
			if p.Port != nil {
				port = *p.Port
				break
			}
		}
		for _, e := range sl.Endpoints {
			if e.TargetRef == nil || e.TargetRef.Kind != "Pod" || len(e.Addresses) == 0 || port == 0 {
				continue
			}
			ep := byName[e.TargetRef.Name]
			if ep == nil {
				ep = &services.Endpoint{Name: e.TargetRef.Name}
				byName[ep.Name] = ep
			}
			if addr, err := netipParse(e.Addresses[0], port); err == nil {
				ep.Addr = addr
			}
			// An unknown condition is ready (discovery.k8s.io/v1).
			ep.Ready = e.Conditions.Ready == nil || *e.Conditions.Ready
			ep.Terminating = ep.Terminating || e.Conditions.Terminating != nil && *e.Conditions.Terminating
			if e.NodeName != nil && ep.Node == "" {
				ep.Node = *e.NodeName
			}
		}
	}
	out := make([]services.Endpoint, 0, len(byName))
	for _, ep := range byName {
		if ep.Terminating {
			ep.Ready = false
		}
		out = append(out, *ep)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// podEndpoint is what pod p says of itself: its node, whether it is
// going, its restarts, whether the end it last restarted after was an
// OOM kill (its container's lastState) and why it is not ready or how it
// last ended (its state, else its lastState); no address and no
// readiness: those come from the EndpointSlices.
func podEndpoint(p *corev1.Pod) services.Endpoint {
	ep := services.Endpoint{Name: p.Name, Node: p.Spec.NodeName, Terminating: p.DeletionTimestamp != nil}
	switch p.Status.Phase {
	case corev1.PodFailed, corev1.PodSucceeded:
		ep.Terminating = true
		ep.Reason = "ended (" + string(p.Status.Phase) + ")"
	}
	for _, c := range p.Status.ContainerStatuses {
		if c.Name != container {
			continue
		}
		ep.Restarts = int(c.RestartCount)
		if t := c.LastTerminationState.Terminated; t != nil {
			ep.OOMKilled = t.Reason == oomKilled
			ep.Reason = ended(p, t)
		}
		if t := c.State.Terminated; t != nil {
			ep.Reason = ended(p, t)
		}
		if w := c.State.Waiting; w != nil && w.Reason != "" && w.Reason != "ContainerCreating" {
			reason := w.Reason
			if w.Message != "" {
				reason += ": " + w.Message
			}
			if ep.Reason != "" && w.Reason == "CrashLoopBackOff" {
				reason = ep.Reason + " (" + w.Reason + ")"
			}
			ep.Reason = reason
			switch w.Reason {
			case "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName",
				"CreateContainerConfigError", "CreateContainerError", "RunContainerError", "CrashLoopBackOff":
				ep.Failed = true
			}
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && ep.Reason == "" {
			ep.Reason = "not placed: " + c.Message
		}
	}
	return ep
}

// oomKilled is the reason of a container the kernel killed for exceeding
// its memory limit.
const oomKilled = "OOMKilled"

// ended says how pod p's container ended as t says.
func ended(p *corev1.Pod, t *corev1.ContainerStateTerminated) string {
	if t.Reason == oomKilled {
		return services.OOMReason(memoryMB(p))
	}
	return fmt.Sprintf("exited: %s, exit code %d", t.Reason, t.ExitCode)
}

// memoryMB is the memory limit of pod p's container, in MB.
func memoryMB(p *corev1.Pod) int {
	for _, c := range p.Spec.Containers {
		if c.Name == container {
			return int(c.Resources.Limits.Memory().Value() >> 20)
		}
	}
	return 0
}

// kind wraps err, an API error of op, in the error kind callers decide
// on.
func kind(op string, err error) error {
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%s: %v: %w", op, err, stratus.ErrNotFound)
	case apierrors.IsForbidden(err):
		// The server's RBAC lacks a right: its installation's fault.
		return fmt.Errorf("%s: %v (see the Role of deploy/helm/stratus): %w", op, err, stratus.ErrUnavailable)
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		return fmt.Errorf("%s: %v: %w", op, err, stratus.ErrInvalid)
	case apierrors.IsConflict(err), apierrors.IsAlreadyExists(err):
		return fmt.Errorf("%s: %v: %w", op, err, stratus.ErrConflict)
	}
	return fmt.Errorf("%s: %v: %w", op, err, stratus.ErrUnavailable)
}

// deployment is revision rev's Deployment with replicas.
func (b *Backend) deployment(rev *stratus.Revision, img *services.Image, replicas int) *appsv1.Deployment {
	sel := selector(rev.Service, rev.Number)
	n := int32(replicas)
	history := int32(1)
	return &appsv1.Deployment{
		ObjectMeta: b.objectMeta(rev),
		Spec: appsv1.DeploymentSpec{
			Replicas:             &n,
			RevisionHistoryLimit: &history,
			Selector:             &metav1.LabelSelector{MatchLabels: sel},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: sel},
				Spec:       b.podSpec(rev, img),
			},
		},
	}
}

// service is revision rev's headless Service: the EndpointSlice
// controller makes its pods' slices.
func (b *Backend) service(rev *stratus.Revision) *corev1.Service {
	port := int32(rev.Config.Port)
	return &corev1.Service{
		ObjectMeta: b.objectMeta(rev),
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Selector:  selector(rev.Service, rev.Number),
			Ports: []corev1.ServicePort{{
				Name: portName(rev.Config), Port: port, TargetPort: intstr.FromInt32(port), Protocol: corev1.ProtocolTCP,
			}},
		},
	}
}

func portName(c stratus.ServiceConfig) string {
	if c.H2C {
		return "h2c"
	}
	return "http"
}

// podSpec is the pod of revision rev running img.
func (b *Backend) podSpec(rev *stratus.Revision, img *services.Image) corev1.PodSpec {
	c := rev.Config
	port := int32(c.Port)
	yes, no := true, false
	uid, gid := int64(nobody), int64(nobody)
	var groups []int64
	if u := img.User; u != nil && u.UID != 0 {
		uid, gid = int64(u.UID), int64(u.GID)
		for _, g := range u.Groups {
			groups = append(groups, int64(g))
		}
	}
	keys := make([]string, 0, len(c.Env))
	for k := range c.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var env []corev1.EnvVar
	for _, k := range keys {
		env = append(env, corev1.EnvVar{Name: k, Value: c.Env[k]})
	}
	env = append(env,
		corev1.EnvVar{Name: "PORT", Value: strconv.Itoa(c.Port)},
		corev1.EnvVar{Name: "K_SERVICE", Value: rev.Service},
		corev1.EnvVar{Name: "K_REVISION", Value: rev.Name()},
		corev1.EnvVar{Name: "K_CONFIGURATION", Value: rev.Service},
	)
	memory := resource.NewQuantity(int64(c.MemoryMB)<<20, resource.BinarySI)
	limit := milliCPU(c.CPU)
	request := limit
	if c.CPURequest > 0 {
		request = milliCPU(c.CPURequest)
	}
	probe := func(path string, period int32) *corev1.Probe {
		h := corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(port)}}
		if path != "" {
			h = corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(port)}}
		}
		return &corev1.Probe{ProbeHandler: h, PeriodSeconds: period, TimeoutSeconds: 1, FailureThreshold: 3, SuccessThreshold: 1}
	}
	var liveness *corev1.Probe
	if c.LivenessPath != "" {
		liveness = probe(c.LivenessPath, 5)
	}
	// The requests in flight get the revision's timeout to finish.
	grace := int64(stratus.DefaultServiceTimeoutSec)
	if c.TimeoutSec > 0 {
		grace = int64(c.TimeoutSec)
	}
	return corev1.PodSpec{
		AutomountServiceAccountToken:  &no,
		EnableServiceLinks:            &no,
		TerminationGracePeriodSeconds: &grace,
		SecurityContext: &corev1.PodSecurityContext{
			RunAsUser: &uid, RunAsGroup: &gid, RunAsNonRoot: &yes, SupplementalGroups: groups,
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		Affinity: kube.RegionAffinity(c.Regions, b.cfg.Region),
		Containers: []corev1.Container{{
			Name:            container,
			Image:           c.Image,
			ImagePullPolicy: corev1.PullIfNotPresent,
			Command:         c.Command,
			Args:            c.Args,
			Env:             env,
			Ports:           []corev1.ContainerPort{{Name: portName(c), ContainerPort: port, Protocol: corev1.ProtocolTCP}},
			ReadinessProbe:  probe(c.HealthPath, 1),
			LivenessProbe:   liveness,
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceMemory: *memory, corev1.ResourceCPU: *request},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: *memory, corev1.ResourceCPU: *limit},
			},
			SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: &no,
				Privileged:               &no,
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		}},
	}
}

// milliCPU is c cores, in millicores, 10m at least.
func milliCPU(c float64) *resource.Quantity {
	m := max(int64(c*1000+0.5), 10)
	return resource.NewMilliQuantity(m, resource.DecimalSI)
}

// netipParse is the address ip and port of an endpoint.
func netipParse(ip string, port int32) (netip.AddrPort, error) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(a, uint16(port)), nil
}
