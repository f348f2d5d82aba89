package kubedeploy

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

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
