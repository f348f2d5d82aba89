package pods

import (
	"errors"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/agent"
	"github.com/stratus-run/stratus/internal/sandbox"
)

func TestCPU(t *testing.T) {
	for _, tc := range []struct {
		name       string
		spec       sandbox.Spec
		req, limit int64 // milli-cores
	}{
		{"quota in proportion to memory", sandbox.Spec{MemoryMB: 1769}, 1000, 1000},
		{"quota, small", sandbox.Spec{MemoryMB: 128}, 73, 73},
		{"weight: up to a core", sandbox.Spec{MemoryMB: 128, CPUWeight: true}, 73, 1000},
		{"weight above a core", sandbox.Spec{MemoryMB: 3538, CPUWeight: true}, 2000, 2000},
		{"explicit cores", sandbox.Spec{MemoryMB: 128, CPU: 0.5}, 500, 500},
		{"request apart", sandbox.Spec{MemoryMB: 128, CPU: 2, CPURequest: 0.25}, 250, 2000},
		{"request above the limit", sandbox.Spec{CPU: 0.5, CPURequest: 1}, 1000, 1000},
		{"no memory: the floor", sandbox.Spec{}, minMilliCPU, minMilliCPU},
	} {
		req, limit := cpu(tc.spec)
		if req.MilliValue() != tc.req || limit.MilliValue() != tc.limit {
			t.Errorf("%s: request %dm limit %dm; want %dm and %dm", tc.name, req.MilliValue(), limit.MilliValue(), tc.req, tc.limit)
		}
	}
}

func TestRuntimeAPI(t *testing.T) {
	if got := runtimeAPI([]string{"A=1", "AWS_LAMBDA_RUNTIME_API=10.0.0.1:9001"}); got != "10.0.0.1:9001" {
		t.Errorf("runtimeAPI = %q", got)
	}
	if got := runtimeAPI([]string{"AWS_LAMBDA_RUNTIME_APIX=1"}); got != "" {
		t.Errorf("runtimeAPI of another variable = %q", got)
	}
}

func TestSignalName(t *testing.T) {
	if signalName(9) != "killed" || signalName(15) != "terminated" || signalName(40) != "signal 40" {
		t.Errorf("signalName: %q %q %q", signalName(9), signalName(15), signalName(40))
	}
}

// TestPodOfAnImage: a sandbox that runs an image is a pod whose container
// runs that image with the agent an init container of the agent image
// installed into a volume, read-only in the container; both run as the
// sandbox's user, non-root, with a read-only root. A sandbox without an
// image runs the agent image alone.
func TestPodOfAnImage(t *testing.T) {
	d := &Driver{cfg: Config{Image: "stratus.local/stratus:1", PullPolicy: corev1.PullIfNotPresent}, nodeName: "server-a", hostURL: "http://10.0.0.5:4000"}
	spec := sandbox.Spec{
		ID: "fn-1", Image: "registry.example/fn:1", Argv: []string{"/var/task/bootstrap"}, Dir: "/var/task",
		Env: []string{"AWS_LAMBDA_RUNTIME_API=10.0.0.5:9001"}, MemoryMB: 128, User: &sandbox.User{UID: 993, GID: 990},
	}
	if err := check(spec); err != nil {
		t.Fatalf("check of an image's spec: %v", err)
	}
	pod := d.podSpec(spec, "stratus-fn-1", "token")
	if len(pod.Spec.InitContainers) != 1 || len(pod.Spec.Containers) != 1 {
		t.Fatalf("pod has %d init containers and %d containers; want one of each", len(pod.Spec.InitContainers), len(pod.Spec.Containers))
	}
	init, ctr := pod.Spec.InitContainers[0], pod.Spec.Containers[0]
	if init.Image != d.cfg.Image || !slices.Equal(init.Command, []string{"/stratus", "agent", "--install", "/.stratus/bin"}) {
		t.Errorf("init container runs %s %q; want the agent image installing the agent at /.stratus/bin", init.Image, init.Command)
	}
	if ctr.Image != spec.Image || !slices.Equal(ctr.Command, []string{"/.stratus/bin/stratus", "agent"}) || len(ctr.Args) != 0 {
		t.Errorf("container runs %s %q %q; want the function's image running the installed agent", ctr.Image, ctr.Command, ctr.Args)
	}
	var vol *corev1.Volume
	for i, v := range pod.Spec.Volumes {
		if v.Name == "agent" {
			vol = &pod.Spec.Volumes[i]
		}
	}
	if vol == nil || vol.EmptyDir == nil || vol.EmptyDir.SizeLimit == nil {
		t.Fatalf("volumes %+v; want an emptyDir named agent with a size limit", pod.Spec.Volumes)
	}
	mountOf := func(c corev1.Container) *corev1.VolumeMount {
		for i, m := range c.VolumeMounts {
			if m.Name == "agent" {
				return &c.VolumeMounts[i]
			}
		}
		return nil
	}
	if m := mountOf(init); m == nil || m.MountPath != "/.stratus/bin" || m.ReadOnly {
		t.Errorf("init container's mounts %+v; want the agent volume writable at /.stratus/bin", init.VolumeMounts)
	}
	if m := mountOf(ctr); m == nil || m.MountPath != "/.stratus/bin" || !m.ReadOnly {
		t.Errorf("container's mounts %+v; want the agent volume read-only at /.stratus/bin", ctr.VolumeMounts)
	}
	psc := pod.Spec.SecurityContext
	if *psc.RunAsUser != 993 || !*psc.RunAsNonRoot || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security context %+v; want user 993, non-root, the runtime's seccomp profile", psc)
	}
	for _, c := range []corev1.Container{init, ctr} {
		sc := c.SecurityContext
		if sc == nil || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || *sc.Privileged || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("%s: security context %+v; want a read-only root, no escalation, no capabilities", c.Name, sc)
		}
		if c.Resources.Limits.Memory().IsZero() || c.Resources.Limits.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
			t.Errorf("%s: resources %+v; want requests and limits", c.Name, c.Resources)
		}
		if c.ImagePullPolicy != corev1.PullIfNotPresent {
			t.Errorf("%s: pull policy %q", c.Name, c.ImagePullPolicy)
		}
	}
	// The pod asks for no more than the sandbox's container (a pod's
	// request is the larger of its init containers' and its containers').
	if !equality.Semantic.DeepEqual(init.Resources, ctr.Resources) {
		t.Errorf("installer's resources %+v; want the container's %+v", init.Resources, ctr.Resources)
	}
	// The agent's three variables, and its test settings pinned empty so
	// that the image's ENV cannot set them.
	pinned := map[string]bool{}
	for _, e := range ctr.Env[min(3, len(ctr.Env)):] {
		pinned[e.Name] = e.Value == ""
	}
	if len(ctr.Env) != 3+len(agent.TestSettings) || len(init.Env) != 0 {
		t.Errorf("env: container %v, init container %v; want the agent's three variables and its test settings, in the container only", ctr.Env, init.Env)
	}
	for _, name := range agent.TestSettings {
		if !pinned[name] {
			t.Errorf("container env %v: %s not pinned empty", ctr.Env, name)
		}
	}
	if *pod.Spec.AutomountServiceAccountToken || *pod.Spec.EnableServiceLinks {
		t.Errorf("pod has a token or service links")
	}

	spec.Image = ""
	pod = d.podSpec(spec, "stratus-fn-1", "token")
	if len(pod.Spec.InitContainers) != 0 || pod.Spec.Containers[0].Image != d.cfg.Image || !slices.Equal(pod.Spec.Containers[0].Command, []string{"/stratus", "agent"}) {
		t.Errorf("pod of a spec without an image: init %v, container %s %q; want the agent image alone", pod.Spec.InitContainers, pod.Spec.Containers[0].Image, pod.Spec.Containers[0].Command)
	}
}

// TestPodMounts: a sandbox's mounts are unpacked by an init container
// of the agent image (after the installer, when the sandbox runs an
// image), which alone has their volumes writable, at /.stratus/mounts/N;
// the sandbox's container has each volume read-only at its target and no
// other view of it. The stager asks the node for what the container
// does.
func TestPodMounts(t *testing.T) {
	d := &Driver{cfg: Config{Image: "stratus.local/stratus:1", PullPolicy: corev1.PullIfNotPresent}, nodeName: "server-a", hostURL: "http://10.0.0.5:4000"}
	spec := sandbox.Spec{
		ID: "fn-1", Argv: []string{"/var/task/bootstrap"}, Dir: "/var/task", MemoryMB: 128,
		Mounts: []sandbox.Mount{{Source: t.TempDir(), Target: "/var/task"}, {Source: t.TempDir(), Target: "/opt/runtime/"}},
	}
	if err := check(spec); err != nil {
		t.Fatal(err)
	}
	for _, image := range []string{"", "registry.example/fn:1"} {
		spec.Image = image
		pod := d.podSpec(spec, "stratus-fn-1", "token")
		var names []string
		for _, c := range pod.Spec.InitContainers {
			names = append(names, c.Name)
		}
		want := []string{stager}
		if image != "" {
			want = []string{installer, stager}
		}
		if !slices.Equal(names, want) {
			t.Fatalf("image %q: init containers %q; want %q", image, names, want)
		}
		st, ctr := pod.Spec.InitContainers[len(names)-1], pod.Spec.Containers[0]
		if st.Image != d.cfg.Image || !slices.Equal(st.Command, []string{"/stratus", "agent", "--stage", "/.stratus/mounts"}) {
			t.Errorf("image %q: stager runs %s %q; want the agent image staging into /.stratus/mounts", image, st.Image, st.Command)
		}
		if !slices.Equal(st.Env, ctr.Env) || len(st.Env) < 3 {
			t.Errorf("image %q: stager's env %v, container's %v; want the agent's three variables in both", image, st.Env, ctr.Env)
		}
		if st.TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError {
			t.Errorf("image %q: stager's termination message policy %q", image, st.TerminationMessagePolicy)
		}
		if !st.Resources.Limits.Memory().Equal(*ctr.Resources.Limits.Memory()) || !st.Resources.Requests.Cpu().Equal(*ctr.Resources.Requests.Cpu()) {
			t.Errorf("image %q: stager's resources %+v, container's %+v; want the same", image, st.Resources, ctr.Resources)
		}
		if sc := st.SecurityContext; sc == nil || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("image %q: stager's security context %+v; want a read-only root, no escalation, no capabilities", image, sc)
		}
		wantStaged := []corev1.VolumeMount{{Name: "mount-0", MountPath: "/.stratus/mounts/0"}, {Name: "mount-1", MountPath: "/.stratus/mounts/1"}}
		if !slices.Equal(st.VolumeMounts, wantStaged) {
			t.Errorf("image %q: stager's mounts %+v; want %+v", image, st.VolumeMounts, wantStaged)
		}
		seen := map[string]string{}
		for _, m := range ctr.VolumeMounts {
			if strings.HasPrefix(m.MountPath, "/.stratus/mounts") {
				t.Errorf("image %q: container mounts %s at %s; want no view under /.stratus/mounts", image, m.Name, m.MountPath)
			}
			if strings.HasPrefix(m.Name, "mount-") {
				if !m.ReadOnly {
					t.Errorf("image %q: container has %s writable at %s; want read-only", image, m.Name, m.MountPath)
				}
				if seen[m.Name] != "" {
					t.Errorf("image %q: container has %s at %s and %s; want one view", image, m.Name, seen[m.Name], m.MountPath)
				}
				seen[m.Name] = m.MountPath
			}
		}
		if seen["mount-0"] != "/var/task" || seen["mount-1"] != "/opt/runtime" || len(seen) != 2 {
			t.Errorf("image %q: container's mounts of the volumes %v; want mount-0 at /var/task, mount-1 at /opt/runtime", image, seen)
		}
	}

	// No mounts, no stager.
	spec.Image, spec.Mounts = "", nil
	if pod := d.podSpec(spec, "stratus-fn-1", "token"); len(pod.Spec.InitContainers) != 0 {
		t.Errorf("pod of a spec without mounts has init containers %+v", pod.Spec.InitContainers)
	}
}

// TestCheckImage: an image runs by reference, never with a root
// filesystem of the host, and its pod's /.stratus is the agent's.
func TestCheckImage(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec sandbox.Spec
		want string
	}{
		{"image and root filesystem", sandbox.Spec{ID: "a", Argv: []string{"x"}, Image: "fn:1", RootFS: "/srv/root"}, "root filesystem"},
		{"spaces", sandbox.Spec{ID: "b", Argv: []string{"x"}, Image: " fn:1"}, "spaces"},
		{"mount on the agent's folder", sandbox.Spec{ID: "c", Argv: []string{"x"}, Image: "fn:1", Mounts: []sandbox.Mount{{Source: "/", Target: "/.stratus/bin"}}}, "/.stratus"},
	} {
		if err := check(tc.spec); !errors.Is(err, stratus.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: check = %v; want ErrInvalid naming %q", tc.name, err, tc.want)
		}
	}
}

// TestPodFailed: a pod whose agent's installer, mounts' stager or image
// cannot run fails at once, saying why (a failed stager's termination
// message); one still initialising does not.
func TestPodFailed(t *testing.T) {
	waiting := func(reason string) corev1.ContainerState {
		return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: "the message"}}
	}
	for _, tc := range []struct {
		name       string
		init, main []corev1.ContainerState
		want       string
	}{
		{"initialising", []corev1.ContainerState{{Running: &corev1.ContainerStateRunning{}}}, []corev1.ContainerState{waiting("PodInitializing")}, ""},
		{"installed", []corev1.ContainerState{{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}}, []corev1.ContainerState{{Running: &corev1.ContainerStateRunning{}}}, ""},
		{"agent image not pulled", []corev1.ContainerState{waiting("ImagePullBackOff")}, []corev1.ContainerState{waiting("PodInitializing")}, "init container install-agent ImagePullBackOff: the message"},
		{"install failed", []corev1.ContainerState{{Terminated: &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 1, Message: "no space\n"}}}, nil, "init container install-agent ended: Error, exit code 1: no space"},
		{"function's image not pulled", []corev1.ContainerState{{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}}, []corev1.ContainerState{waiting("ErrImagePull")}, "container ErrImagePull: the message"},
		{"installed, staging", []corev1.ContainerState{{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}, {Running: &corev1.ContainerStateRunning{}}}, []corev1.ContainerState{waiting("PodInitializing")}, ""},
		{"installed and staged", []corev1.ContainerState{{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}, {Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}}, []corev1.ContainerState{{Running: &corev1.ContainerStateRunning{}}}, ""},
		{"staging failed", []corev1.ContainerState{{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}, {Terminated: &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 1, Message: "mount 0 into /var/task: too large"}}}, []corev1.ContainerState{waiting("PodInitializing")},
			"init container stage-mounts ended: Error, exit code 1: mount 0 into /var/task: too large"},
	} {
		pod := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending}}
		for i, st := range tc.init {
			name := installer
			if i == 1 {
				name = stager
			}
			pod.Status.InitContainerStatuses = append(pod.Status.InitContainerStatuses, corev1.ContainerStatus{Name: name, State: st})
		}
		for _, st := range tc.main {
			pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{Name: container, State: st})
		}
		if got := podFailed(pod); got != tc.want {
			t.Errorf("%s: podFailed = %q; want %q", tc.name, got, tc.want)
		}
	}
}
