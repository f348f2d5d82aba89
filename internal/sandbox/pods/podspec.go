package pods

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/agent"
	"github.com/stratus-run/stratus/internal/kube"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// annotationID holds a pod's sandbox ID as given (its label is a
// DNS-safe form of it).
const annotationID = "stratus.run/sandbox-id"

// Where things are in a pod.
const (
	// binary is the stratus binary in the agent image.
	binary = "/stratus"
	// container is the name of a pod's container, the agent's.
	container = "sandbox"
	// installer is the name of the init container of a pod whose sandbox
	// runs an image (Spec.Image): from the agent image, it installs the
	// agent at agentDir.
	installer = "install-agent"
	// agentDir is where the pod of an image's sandbox has the agent: a
	// volume, writable for the installer and read-only in the container,
	// that holds the stratus binary as agent.InstalledName.
	agentDir = "/.stratus/bin"
	// agentDirSizeMB bounds that volume (the binary is well below).
	agentDirSizeMB = 256
	// mbPerCPU is the memory that comes with a whole core, as on Lambda.
	mbPerCPU = 1769
	// minMilliCPU is the smallest CPU share a pod gets.
	minMilliCPU = 10
	// stager is the name of the init container of a pod whose sandbox has
	// mounts: from the agent image, it unpacks mount i into its volume,
	// which it alone has writable, at mountStage/i.
	stager = "stage-mounts"
	// mountStage is where the stager has the mounts' volumes.
	mountStage = "/.stratus/mounts"
)

// check refuses specs the driver cannot run.
func check(spec sandbox.Spec) error {
	switch {
	case spec.ID == "":
		return fmt.Errorf("sandbox: empty ID: %w", stratus.ErrInvalid)
	case len(spec.Argv) == 0 || spec.Argv[0] == "":
		return fmt.Errorf("sandbox %s: empty command: %w", spec.ID, stratus.ErrInvalid)
	case spec.RootFS != "":
		return fmt.Errorf("sandbox %s: the kube driver runs no root filesystem of the host (it runs images by reference, Spec.Image): %w", spec.ID, stratus.ErrInvalid)
	case spec.Image != "" && strings.TrimSpace(spec.Image) != spec.Image:
		return fmt.Errorf("sandbox %s: image %q: spaces around the reference: %w", spec.ID, spec.Image, stratus.ErrInvalid)
	case spec.MemoryMB < 0 || spec.CPU < 0 || spec.CPURequest < 0:
		return fmt.Errorf("sandbox %s: negative memory or CPU: %w", spec.ID, stratus.ErrInvalid)
	}
	if spec.Hostname != "" {
		if err := sandbox.CheckHostname(spec.Hostname); err != nil {
			return err
		}
	}
	if u := spec.User; u != nil && (u.UID == 0 || u.UID > sandbox.MaxUserID || u.GID > sandbox.MaxUserID) {
		return fmt.Errorf("sandbox %s: user %d:%d: must be 1-%d (pods of Stratus never run as root): %w", spec.ID, u.UID, u.GID, sandbox.MaxUserID, stratus.ErrInvalid)
	}
	seen := map[string]bool{"/tmp": true}
	for _, m := range spec.Mounts {
		t := path.Clean(m.Target)
		if !path.IsAbs(m.Target) || t == "/" || seen[t] || t == path.Dir(mountStage) || strings.HasPrefix(t, path.Dir(mountStage)+"/") {
			return fmt.Errorf("sandbox %s: mount target %q: must be an absolute folder other than /, /tmp, %s and the other targets: %w", spec.ID, m.Target, path.Dir(mountStage), stratus.ErrInvalid)
		}
		seen[t] = true
		// The agent fetches the source as a tar into an emptyDir: a
		// folder of this host, checked now rather than by an agent that
		// retries for a minute.
		if fi, err := os.Stat(m.Source); err != nil || !fi.IsDir() {
			return fmt.Errorf("sandbox %s: mount source %q: the kube driver mounts folders of this host that exist: %w", spec.ID, m.Source, stratus.ErrInvalid)
		}
	}
	return nil
}

// runtimeAPI is the AWS_LAMBDA_RUNTIME_API of env, "" without one.
func runtimeAPI(env []string) string {
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "AWS_LAMBDA_RUNTIME_API="); ok {
			return v
		}
	}
	return ""
}

// podSpec is the pod of spec, named name, whose agent holds token. Its
// container runs the agent image's stratus agent or, for a spec with an
// Image, that image with the agent an init container installed from the
// agent image. A spec with mounts has an init container of the agent
// image that unpacks them (after the installer, when there is one).
func (d *Driver) podSpec(spec sandbox.Spec, name, token string) *corev1.Pod {
	uid, gid := int64(nobody), int64(nobody)
	var groups []int64
	if u := spec.User; u != nil {
		uid, gid = int64(u.UID), int64(u.GID)
		for _, g := range u.Groups {
			groups = append(groups, int64(g))
		}
	}
	yes, no := true, false
	memory := resource.NewQuantity(int64(max(spec.MemoryMB, 0)+agentOverheadMB)<<20, resource.BinarySI)
	share, limit := cpu(spec)
	tmpSize := resource.NewQuantity(tmpSizeMB<<20, resource.BinarySI)
	volumes := []corev1.Volume{{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: tmpSize}}}}
	mounts := []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}}
	// Each mount is a volume the stager unpacks it into (writable there
	// only): the program, which runs as the same user, sees it read-only
	// at its target and has no other view of it.
	var staged []corev1.VolumeMount
	for i, m := range spec.Mounts {
		v := fmt.Sprintf("mount-%d", i)
		// The stager unpacks at most agent.MaxMountBytes into it.
		mountSize := resource.NewQuantity(agent.MaxMountBytes, resource.BinarySI)
		volumes = append(volumes, corev1.Volume{Name: v, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: mountSize}}})
		mounts = append(mounts, corev1.VolumeMount{Name: v, MountPath: path.Clean(m.Target), ReadOnly: true})
		staged = append(staged, corev1.VolumeMount{Name: v, MountPath: path.Join(mountStage, strconv.Itoa(i))})
	}
	env := []corev1.EnvVar{
		{Name: agent.EnvServer, Value: d.hostURL},
		{Name: agent.EnvSandbox, Value: spec.ID},
		{Name: agent.EnvToken, Value: token},
	}
	resources := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceMemory: *memory, corev1.ResourceCPU: *share},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: *memory, corev1.ResourceCPU: *limit},
	}
	security := &corev1.SecurityContext{
		AllowPrivilegeEscalation: &no,
		ReadOnlyRootFilesystem:   &yes,
		Privileged:               &no,
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	image, command := d.cfg.Image, []string{binary, "agent"}
	var inits []corev1.Container
	if spec.Image != "" {
		image, command = spec.Image, []string{path.Join(agentDir, agent.InstalledName), "agent"}
		size := resource.NewQuantity(agentDirSizeMB<<20, resource.BinarySI)
		volumes = append(volumes, corev1.Volume{Name: "agent", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: size}}})
		mounts = append(mounts, corev1.VolumeMount{Name: "agent", MountPath: agentDir, ReadOnly: true})
		// The image's ENV comes before the pod's: the agent's test
		// settings are pinned to their defaults.
		for _, name := range agent.TestSettings {
			env = append(env, corev1.EnvVar{Name: name, Value: ""})
		}
		// The installer has the sandbox's resources, so that the pod
		// asks its node for no more than the sandbox's container does.
		inits = []corev1.Container{{
			Name:                     installer,
			Image:                    d.cfg.Image,
			ImagePullPolicy:          d.cfg.PullPolicy,
			Command:                  []string{binary, "agent", "--install", agentDir},
			Resources:                *resources.DeepCopy(),
			VolumeMounts:             []corev1.VolumeMount{{Name: "agent", MountPath: agentDir}},
			SecurityContext:          security,
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		}}
	}
	if len(staged) > 0 {
		// The stager has the sandbox's resources, so that the pod asks
		// its node for no more than the sandbox's container does; it
		// writes why it failed to its termination log.
		inits = append(inits, corev1.Container{
			Name:                     stager,
			Image:                    d.cfg.Image,
			ImagePullPolicy:          d.cfg.PullPolicy,
			Command:                  []string{binary, "agent", "--stage", mountStage},
			Env:                      slices.Clone(env),
			Resources:                *resources.DeepCopy(),
			VolumeMounts:             staged,
			SecurityContext:          security,
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		})
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				kube.LabelManaged: kube.Managed,
				kube.LabelNode:    d.nodeName,
				kube.LabelSandbox: kube.Name(spec.ID),
			},
			Annotations: map[string]string{annotationID: spec.ID},
		},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			AutomountServiceAccountToken:  &no,
			EnableServiceLinks:            &no,
			Hostname:                      spec.Hostname,
			TerminationGracePeriodSeconds: ptr(int64(1)),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsUser: &uid, RunAsGroup: &gid, RunAsNonRoot: &yes, SupplementalGroups: groups,
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Affinity:       kube.RegionAffinity(spec.Regions, d.cfg.Region),
			Volumes:        volumes,
			InitContainers: inits,
			Containers: []corev1.Container{{
				Name:                     container,
				Image:                    image,
				ImagePullPolicy:          d.cfg.PullPolicy,
				Command:                  command,
				Env:                      env,
				Ports:                    []corev1.ContainerPort{{Name: "agent", ContainerPort: agent.Port, Protocol: corev1.ProtocolTCP}},
				Resources:                resources,
				VolumeMounts:             mounts,
				SecurityContext:          security,
				TerminationMessagePolicy: corev1.TerminationMessageReadFile,
			}},
		},
	}
	if o := d.cfg.Owner; o != nil {
		pod.OwnerReferences = []metav1.OwnerReference{*o}
	}
	return pod
}

// cpu is spec's CPU request (its share: Spec.CPURequest, else Spec.CPU,
// else in proportion to its memory) and limit (the share; with CPUWeight
// one core at least).
func cpu(spec sandbox.Spec) (request, limit *resource.Quantity) {
	share := spec.CPU
	if share <= 0 {
		share = float64(spec.MemoryMB) / mbPerCPU
	}
	lim := share
	if spec.CPUWeight {
		lim = max(share, 1)
	}
	req := share
	if spec.CPURequest > 0 {
		req = spec.CPURequest
	}
	milli := func(c float64) *resource.Quantity {
		m := max(int64(math.Ceil(c*1000-1e-6)), minMilliCPU)
		return resource.NewMilliQuantity(m, resource.DecimalSI)
	}
	request, limit = milli(req), milli(lim)
	if request.Cmp(*limit) > 0 {
		// A request above the limit is refused by the API.
		limit = request
	}
	return request, limit
}

// podFailed says why pod cannot come to run its agent, "" when it may
// still: it ended, is being deleted, an init container (the agent's
// installer, the mounts' stager: its termination message says why)
// failed, or a container cannot be made (its image, the agent's or the
// sandbox's own, cannot be had).
func podFailed(pod *corev1.Pod) string {
	if pod.DeletionTimestamp != nil {
		return "deleted"
	}
	for _, c := range pod.Status.InitContainerStatuses {
		if why := cannotRun(c.State.Waiting); why != "" {
			return "init container " + c.Name + " " + why
		}
		if t := c.State.Terminated; t != nil && t.ExitCode != 0 {
			why := fmt.Sprintf("init container %s ended: %s, exit code %d", c.Name, t.Reason, t.ExitCode)
			if m := strings.TrimSpace(t.Message); m != "" {
				why += ": " + m
			}
			return why
		}
	}
	switch pod.Status.Phase {
	case corev1.PodFailed, corev1.PodSucceeded:
		return "ended (" + string(pod.Status.Phase) + ")"
	}
	for _, c := range pod.Status.ContainerStatuses {
		if why := cannotRun(c.State.Waiting); why != "" {
			return "container " + why
		}
		if t := c.State.Terminated; t != nil {
			return fmt.Sprintf("container ended: %s, exit code %d", t.Reason, t.ExitCode)
		}
	}
	return ""
}

// cannotRun says why a container waiting as w cannot be made to run, ""
// when it may still be.
func cannotRun(w *corev1.ContainerStateWaiting) string {
	if w == nil {
		return ""
	}
	switch w.Reason {
	case "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName",
		"CreateContainerConfigError", "CreateContainerError", "RunContainerError":
		return w.Reason + ": " + w.Message
	}
	return ""
}

// podExit is how sandbox pod name ended, as its status tells: its
// container terminated (the agent's termination message, else its exit
// code and reason), or the pod is gone or being deleted (killed). clean
// reports that the agent ended by itself, which it does once its output
// was read.
func (d *Driver) podExit(name string) (e sandbox.Exit, ended, clean bool) {
	pod, err := d.lister.Get(name)
	if err != nil {
		return sandbox.Exit{Code: -1, Signal: "killed"}, true, false
	}
	for _, c := range pod.Status.ContainerStatuses {
		t := c.State.Terminated
		if c.Name != container || t == nil {
			continue
		}
		oom := t.Reason == "OOMKilled"
		if t.Message != "" && json.Unmarshal([]byte(t.Message), &e) == nil {
			e.OOM = e.OOM || oom
			return e, true, !oom
		}
		e = sandbox.Exit{Code: int(t.ExitCode), OOM: oom}
		if t.ExitCode > 128 && t.ExitCode < 128+65 {
			e = sandbox.Exit{Code: -1, Signal: signalName(int(t.ExitCode - 128)), OOM: oom}
		}
		return e, true, false
	}
	if pod.DeletionTimestamp != nil && pod.Status.Phase != corev1.PodRunning {
		return sandbox.Exit{Code: -1, Signal: "killed"}, true, false
	}
	return sandbox.Exit{}, false, false
}

// signalName names signal n as Go's exec package does ("killed").
func signalName(n int) string {
	names := map[int]string{1: "hangup", 2: "interrupt", 3: "quit", 6: "aborted", 9: "killed", 11: "segmentation fault", 13: "broken pipe", 15: "terminated"}
	if s, ok := names[n]; ok {
		return s
	}
	return "signal " + itoa(int64(n))
}

func ptr[T any](v T) *T { return &v }
