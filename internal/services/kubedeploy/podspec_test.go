package kubedeploy

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sandbox"
	"github.com/stratus-run/stratus/internal/services"
)

// TestPodUserAndProbes: an image of a user other than root runs as that
// user, one of root or unknown as nobody, non-root always; without a
// health path the readiness probe is a TCP connect to the port and
// there is no liveness probe.
func TestPodUserAndProbes(t *testing.T) {
	b := &Backend{}
	rev := &stratus.Revision{Service: "web", Number: 3, Config: stratus.ServiceConfig{Image: "r/web:1", Port: 9000, MemoryMB: 64, CPU: 1}}
	for _, tc := range []struct {
		user *sandbox.User
		uid  int64
	}{
		{nil, nobody},
		{&sandbox.User{UID: 0, GID: 0}, nobody},
		{&sandbox.User{UID: 1000, GID: 1001, Groups: []uint32{27}}, 1000},
	} {
		pod := b.podSpec(rev, &services.Image{User: tc.user})
		sc := pod.SecurityContext
		if *sc.RunAsUser != tc.uid || !*sc.RunAsNonRoot {
			t.Errorf("user %+v: runs as %d (non-root %v); want %d, non-root", tc.user, *sc.RunAsUser, *sc.RunAsNonRoot, tc.uid)
		}
	}
	ctr := b.podSpec(rev, &services.Image{}).Containers[0]
	if p := ctr.ReadinessProbe; p.TCPSocket == nil || p.TCPSocket.Port.IntValue() != 9000 || p.PeriodSeconds != 1 {
		t.Errorf("readiness probe %+v; want a TCP connect to 9000 every second", p)
	}
	if ctr.LivenessProbe != nil {
		t.Errorf("liveness probe %+v; want none", ctr.LivenessProbe)
	}
	if l, r := ctr.Resources.Limits.Cpu().MilliValue(), ctr.Resources.Requests.Cpu().MilliValue(); l != 1000 || r != 1000 {
		t.Errorf("cpu request %dm limit %dm; want 1000m both (no CPURequest)", r, l)
	}
}

// TestPodEndpoint reads a pod's restarts and why it is not ready.
func TestPodEndpoint(t *testing.T) {
	waiting := func(reason, msg string) corev1.PodStatus {
		return corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
			Name: container, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}},
		}}}
	}
	crash := waiting("CrashLoopBackOff", "back-off 10s")
	crash.ContainerStatuses[0].RestartCount = 3
	crash.ContainerStatuses[0].LastTerminationState.Terminated = &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 2}
	for _, tc := range []struct {
		status corev1.PodStatus
		failed bool
		reason string
	}{
		{waiting("ContainerCreating", ""), false, ""},
		{waiting("ImagePullBackOff", "not found"), true, "ImagePullBackOff: not found"},
		{crash, true, "exited: Error, exit code 2 (CrashLoopBackOff)"},
		{corev1.PodStatus{Phase: corev1.PodFailed}, false, "ended (Failed)"},
	} {
		ep := podEndpoint(&corev1.Pod{Status: tc.status})
		if ep.Failed != tc.failed || !strings.HasPrefix(ep.Reason, tc.reason) || (tc.reason == "" && ep.Reason != "") {
			t.Errorf("status %+v: failed %v reason %q; want %v %q", tc.status, ep.Failed, ep.Reason, tc.failed, tc.reason)
		}
	}
}

// TestPodEndpointOOM: restarts after an OOM kill (lastState) say so, in
// the words of the runc replicas, with the container's memory limit; a
// container that ended (state) says how, its OOMKilled staying that of
// the end it last restarted after.
func TestPodEndpointOOM(t *testing.T) {
	b := &Backend{}
	rev := &stratus.Revision{Service: "web", Number: 1, Config: stratus.ServiceConfig{Image: "r/web:1", Port: 8080, MemoryMB: 128, CPU: 1}}
	spec := b.podSpec(rev, &services.Image{})
	oom := &corev1.ContainerStateTerminated{Reason: "OOMKilled", ExitCode: 137}
	exit := &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 1}
	for _, tc := range []struct {
		name        string
		restarts    int32
		last, state *corev1.ContainerStateTerminated
		oomKilled   bool
		reason      string
	}{
		{"restarted after an OOM kill", 2, oom, nil, true, services.OOMReason(128)},
		{"restarted after an exit", 1, exit, nil, false, "exited: Error, exit code 1"},
		{"OOM killed now, restarted after an exit", 1, exit, oom, false, services.OOMReason(128)},
		{"ended now, restarted after an OOM kill", 1, oom, exit, true, "exited: Error, exit code 1"},
		{"never ended", 0, nil, nil, false, ""},
	} {
		pod := &corev1.Pod{Spec: spec, Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
			Name: container, RestartCount: tc.restarts,
			LastTerminationState: corev1.ContainerState{Terminated: tc.last},
			State:                corev1.ContainerState{Terminated: tc.state},
		}}}}
		ep := podEndpoint(pod)
		if ep.Restarts != int(tc.restarts) || ep.OOMKilled != tc.oomKilled || ep.Reason != tc.reason {
			t.Errorf("%s: restarts %d, OOM killed %v, reason %q; want %d, %v, %q", tc.name, ep.Restarts, ep.OOMKilled, ep.Reason, tc.restarts, tc.oomKilled, tc.reason)
		}
	}
}

// TestKind: the API's refusals of an object are the caller's (invalid);
// a refusal of the server's rights (RBAC), timeouts and the API being
// away are unavailable, retried by the services manager.
func TestKind(t *testing.T) {
	gr := schema.GroupResource{Group: "apps", Resource: "deployments"}
	for _, tc := range []struct {
		err  error
		want error
	}{
		{apierrors.NewInvalid(schema.GroupKind{Group: "apps", Kind: "Deployment"}, "x", nil), stratus.ErrInvalid},
		{apierrors.NewBadRequest("bad"), stratus.ErrInvalid},
		{apierrors.NewForbidden(gr, "x", errors.New("RBAC: no rights")), stratus.ErrUnavailable},
		{apierrors.NewNotFound(gr, "x"), stratus.ErrNotFound},
		{apierrors.NewConflict(gr, "x", errors.New("changed")), stratus.ErrConflict},
		{apierrors.NewServerTimeout(gr, "create", 1), stratus.ErrUnavailable},
		{apierrors.NewTimeoutError("slow", 1), stratus.ErrUnavailable},
		{apierrors.NewServiceUnavailable("away"), stratus.ErrUnavailable},
		{errors.New("connection refused"), stratus.ErrUnavailable},
	} {
		if got := kind("create deployment x", tc.err); !errors.Is(got, tc.want) {
			t.Errorf("kind(%v) = %v; want %v", tc.err, got, tc.want)
		}
	}
}
