package runc

import (
	"runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/stratus-run/stratus/internal/sandbox"
)

// Limits every sandbox gets.
const (
	pidsLimit    = 1024
	tmpSize      = "512m"
	maxOpenFiles = 1024
	// mbPerCPU is the memory size that gets one full vCPU, as on Lambda;
	// smaller sandboxes get a proportional CPU quota.
	mbPerCPU  = 1769
	cpuPeriod = 100_000 // µs
	minQuota  = 1_000   // µs per period: 1% of a CPU, the floor
)

// initPath is where the driver's own executable is bind-mounted in every
// container, to run as its PID 1 (see init.go). /dev is a tmpfs of the
// container's, so the mount point is created there, not on the host.
const initPath = "/dev/.stratus-init"

// bundleSpec is the OCI runtime spec of a sandbox.
//
//   - Namespaces: pid, mount, ipc, uts. The network namespace is the
//     host's, for now: functions reach the Runtime API on the host's
//     loopback; a private namespace needs the veth/bridge setup first.
//   - Root filesystem: the host's root, bound recursively read-only
//     ("rro"), with a fresh /proc and /dev, the container's own cgroups
//     read-only at /sys/fs/cgroup, a bounded
//     tmpfs /tmp, and spec.Dir bound read-only at its own path. /sys is
//     the host's, read-only: a new sysfs cannot be mounted in the host's
//     network namespace (Docker binds /sys the same way for --net=host).
//   - User: uid 0 with no capabilities at all and no new privileges. Such
//     a process can do what an ordinary user owning root's files could: no
//     chown, no bypassing file modes, no raw sockets, no mounts, no
//     signalling other users' processes. Nothing in a function or service
//     needs more (a service binding a port below 1024 would want
//     CAP_NET_BIND_SERVICE, which in the host's network namespace would
//     be the host's ports).
//   - Seccomp: a deny list of the syscalls Docker's default profile
//     refuses (see seccompProfile); everything else is allowed.
//   - Cgroups: memory (no swap), a CPU quota in proportion to memory and a
//     pids limit.
func bundleSpec(spec sandbox.Spec, exe, cgroupsPath string) *specs.Spec {
	cwd := spec.Dir
	if cwd == "" {
		cwd = "/"
	}
	env := spec.Env
	if env == nil {
		env = []string{}
	}
	s := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Terminal: false,
			User:     specs.User{UID: 0, GID: 0},
			Args:     append([]string{initPath}, spec.Argv...),
			Env:      env,
			Cwd:      cwd,
			// Every set empty: the process has no capabilities at all.
			Capabilities: &specs.LinuxCapabilities{
				Bounding: []string{}, Effective: []string{}, Permitted: []string{},
				Inheritable: []string{}, Ambient: []string{},
			},
			Rlimits: []specs.POSIXRlimit{
				{Type: "RLIMIT_NOFILE", Hard: maxOpenFiles, Soft: maxOpenFiles},
				{Type: "RLIMIT_CORE", Hard: 0, Soft: 0},
			},
			NoNewPrivileges: true,
		},
		Root:     &specs.Root{Path: "rootfs", Readonly: true},
		Hostname: "stratus",
		Mounts: []specs.Mount{
			{Destination: "/", Type: "bind", Source: "/", Options: []string{"rbind", "rro", "rprivate"}},
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777", "size=" + tmpSize}},
		},
		Linux: &specs.Linux{
			CgroupsPath: cgroupsPath,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.MountNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
			},
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
				Pids:    &specs.LinuxPids{Limit: ptr(int64(pidsLimit))},
			},
			RootfsPropagation: "rprivate",
			MaskedPaths: []string{
				"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
				"/sys/firmware", "/sys/devices/virtual/powercap",
			},
			ReadonlyPaths: []string{
				"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
			},
			Seccomp: seccompProfile(),
		},
	}
	if spec.Dir != "" && spec.Dir != "/" {
		s.Mounts = append(s.Mounts, specs.Mount{
			Destination: spec.Dir, Type: "bind", Source: spec.Dir,
			Options: []string{"bind", "ro", "nosuid", "nodev"},
		})
	}
	s.Mounts = append(s.Mounts, specs.Mount{
		Destination: initPath, Type: "bind", Source: exe,
		Options: []string{"bind", "ro", "nosuid", "nodev"},
	})
	if spec.MemoryMB > 0 {
		limit := int64(spec.MemoryMB) << 20
		quota := max(int64(cpuPeriod)*int64(spec.MemoryMB)/mbPerCPU, minQuota)
		period := uint64(cpuPeriod)
		s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit, Swap: &limit}
		s.Linux.Resources.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
	}
	return s
}

// seccompProfile refuses, with EPERM, the syscalls Docker's default
// profile leaves out (kernel modules, kexec, mounts, namespaces, tracing,
// keyrings, clock setting, BPF, perf, NUMA policy, handle-based opens and
// the like) and allows the rest. Docker's profile is an allow list of
// about 350 syscalls with argument filters (clone flags, personality);
// this deny list is weaker where it is silent (new syscalls are allowed).
// runc skips names its libseccomp does not know.
func seccompProfile() *specs.LinuxSeccomp {
	var arches []specs.Arch
	switch runtime.GOARCH {
	case "amd64":
		arches = []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}
	case "arm64":
		arches = []specs.Arch{specs.ArchAARCH64, specs.ArchARM}
	default:
		return nil
	}
	eperm := uint(1)
	return &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: arches,
		Syscalls: []specs.LinuxSyscall{{
			Names: []string{
				"acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module",
				"delete_module", "finit_module", "fsconfig", "fsmount", "fsopen", "fspick",
				"get_kernel_syms", "get_mempolicy", "init_module", "ioperm", "iopl", "kcmp",
				"kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mbind", "mount",
				"mount_setattr", "move_mount", "move_pages", "name_to_handle_at", "nfsservctl",
				"open_by_handle_at", "open_tree", "perf_event_open", "pivot_root",
				"process_vm_readv", "process_vm_writev", "ptrace", "query_module", "quotactl",
				"quotactl_fd", "reboot", "request_key", "set_mempolicy", "setns",
				"settimeofday", "stime", "swapoff", "swapon", "sysfs", "_sysctl", "umount",
				"umount2", "unshare", "uselib", "userfaultfd", "ustat", "vm86", "vm86old",
			},
			Action:   specs.ActErrno,
			ErrnoRet: &eperm,
		}},
	}
}

func ptr[T any](v T) *T { return &v }
