package runc

import (
	"math"
	"strconv"
	"strings"
	"sync"

	"github.com/moby/profiles/seccomp"
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
	maxShares = 262_144 // the most cpu.shares a cgroup v1 takes
)

// initPath is where the driver's own executable is bind-mounted in every
// container, to run as its PID 1 (see init.go). /dev is a tmpfs of the
// container's, so the mount point is created there, not on the host.
const initPath = "/dev/.stratus-init"

// bundleSpec is the OCI runtime spec of a sandbox.
//
//   - Namespaces: pid, mount, ipc, uts (the hostname: Spec.Hostname, else
//     the sandbox's address, see hostnameOf), and network: the one at path
//     netns (the driver's open descriptor of it), which the driver has set
//     up (eth0 on its bridge, see net.go); functions reach the Runtime API
//     at the bridge's address.
//   - Root filesystem: spec.RootFS, else the host's root, bound
//     recursively read-only ("rro"; see rootfs.go for mount points missing
//     in it), with a fresh /proc (Docker's masked and read-only paths)
//     and /dev, the container's own cgroups read-only at /sys/fs/cgroup
//     (no sysfs: a user namespace cannot mount the sysfs of a network
//     namespace it does not own), a bounded tmpfs /tmp and spec.Mounts
//     bound read-only. On the host's root, spec.Dir is bound read-only at
//     its own path unless a mount holds it (a code folder under the host's
//     /tmp would be hidden by the tmpfs). /tmp is world-writable and
//     sticky (1777) whatever the root holds there (see mountPoint). Every
//     sandbox gets an /etc/hosts of its own, read-only: localhost and its
//     hostname at its address (writeHosts); an image without
//     /etc/resolv.conf gets the driver's (the host's nameservers).
//   - Users: a user namespace maps the sandbox's uids and gids 0–65536
//     to host ids from the driver's base (Config.IDBase), so no process
//     of a sandbox has a privileged id on the host; host files owned by
//     ids outside the range (the host's root) are seen as nobody's. The
//     init runs as uid and gid initID, which no program can use, keeping
//     only CAP_SETUID, CAP_SETGID and CAP_KILL (to start the program as
//     its user and forward signals) and CAP_SETPCAP (to empty the
//     bounding set before it starts the program). The program runs as
//     Spec.User (else the sandbox's root, uid 0), with no capabilities at
//     all and no new privileges: it can neither ptrace nor signal the
//     init (another uid), nor read its descriptors. It may still listen
//     on ports below 1024: the network namespace's
//     net.ipv4.ip_unprivileged_port_start is 0 (see configure in net.go),
//     as Docker sets it, so nginx on :80 runs as its image's user.
//   - Seccomp: Docker's default profile for a process without
//     capabilities, an allow list with argument filters (see
//     noCapsSeccomp).
//   - Cgroups: memory (no swap), a CPU quota (Spec.CPU cores, else in
//     proportion to memory; Spec.InitCPU cores until EndInit when that is
//     more, see initQuota; with Spec.CPUWeight that share is the cgroup's
//     weight and the quota a core; Spec.CPURequest sets the weight, see
//     cpuShares) and a pids limit.
func bundleSpec(spec sandbox.Spec, exe, cgroupsPath, netns string, idBase uint32) *specs.Spec {
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
			User:     specs.User{UID: initID, GID: initID},
			Args:     append([]string{initPath, userArg(spec.User), startMode(spec)}, spec.Argv...),
			Env:      env,
			Cwd:      cwd,
			// The init's; the program gets none (see init.go).
			Capabilities: &specs.LinuxCapabilities{
				Bounding: initCaps, Effective: initCaps, Permitted: initCaps,
				Inheritable: initCaps, Ambient: initCaps,
			},
			Rlimits: []specs.POSIXRlimit{
				{Type: "RLIMIT_NOFILE", Hard: maxOpenFiles, Soft: maxOpenFiles},
				{Type: "RLIMIT_CORE", Hard: 0, Soft: 0},
			},
			NoNewPrivileges: true,
		},
		Root:     &specs.Root{Path: "rootfs", Readonly: true},
		Hostname: defaultHostname, // see hostnameOf
		Mounts: []specs.Mount{
			{Destination: "/", Type: "bind", Source: rootOf(spec), Options: []string{"rbind", "rro", "rprivate"}},
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
			UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: idBase, Size: idCount}},
			GIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: idBase, Size: idCount}},
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.UserNamespace},
				{Type: specs.PIDNamespace},
				{Type: specs.MountNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.NetworkNamespace, Path: netns},
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
		},
	}
	if spec.Dir != "" && spec.Dir != "/" && spec.RootFS == "" && !inMounts(spec.Dir, spec.Mounts) {
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
		quota := initQuota(spec)
		period := uint64(cpuPeriod)
		s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit, Swap: &limit}
		s.Linux.Resources.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
		if spec.CPUWeight || spec.CPURequest > 0 {
			shares := cpuShares(spec)
			s.Linux.Resources.CPU.Shares = &shares
		}
	}
	// The profile of a process without capabilities: the program's (the
	// init's few do not widen it).
	s.Linux.Seccomp = noCapsSeccomp()
	return s
}

// cpuQuota is the sandbox's own CPU quota, in µs per cpuPeriod: its
// share (cpuShare), or with Spec.CPUWeight one core when the share is
// less.
func cpuQuota(spec sandbox.Spec) int64 {
	if spec.CPUWeight {
		return max(cpuShare(spec), cpuPeriod)
	}
	return cpuShare(spec)
}

// cpuShare is the sandbox's share of CPU, in µs per cpuPeriod: Spec.CPU
// cores, else in proportion to its memory; at least minQuota.
func cpuShare(spec sandbox.Spec) int64 {
	if spec.CPU > 0 {
		return max(int64(float64(cpuPeriod)*spec.CPU), minQuota)
	}
	return max(int64(cpuPeriod)*int64(spec.MemoryMB)/mbPerCPU, minQuota)
}

// cpuShares is the sandbox's cgroup CPU weight in cpu.shares units (1024
// a core; runc maps it to cpu.weight on cgroup v2), at least 2: with
// Spec.CPURequest, as Kubernetes derives it from a container's CPU
// request (milli-cores × 1024 / 1000, the milli-cores rounded up, at most
// maxShares); else with Spec.CPUWeight, its share.
func cpuShares(spec sandbox.Spec) uint64 {
	if spec.CPURequest > 0 {
		milli := int64(math.Ceil(min(spec.CPURequest, maxShares/1024)*1000 - 1e-6))
		return uint64(min(max(milli*1024/1000, 2), maxShares))
	}
	return uint64(max(cpuShare(spec)*1024/cpuPeriod, 2))
}

// initQuota is the sandbox's CPU quota from its start until EndInit:
// Spec.InitCPU cores, or its own quota when that is more.
func initQuota(spec sandbox.Spec) int64 {
	q := cpuQuota(spec)
	if spec.InitCPU > 0 {
		q = max(q, int64(float64(cpuPeriod)*spec.InitCPU))
	}
	return q
}

// The ids of a sandbox's user namespace: 0 to maxUserID for its programs,
// and initID for its init alone.
const (
	maxUserID = sandbox.MaxUserID
	initID    = maxUserID + 1
	idCount   = initID + 1
	// DefaultIDBase is the host uid and gid that a sandbox's uid and gid 0
	// map to: in the range that systemd leaves to containers.
	DefaultIDBase = 1_000_000_000
)

// initCaps are the init's capabilities (see bundleSpec).
var initCaps = []string{"CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_SETPCAP"}

// The init's second argument, its start mode: it waits for the go byte
// before it starts the program, or starts the program at once and hands
// it the go pipe (Spec.StartAhead).
const (
	startOnGo    = "on-go"
	startAheadOf = "ahead"
)

func startMode(spec sandbox.Spec) string {
	if spec.StartAhead {
		return startAheadOf
	}
	return startOnGo
}

// userArg is the init's first argument: the program's "uid:gid[:groups]"
// (groups comma-separated), the sandbox's root when u is nil.
func userArg(u *sandbox.User) string {
	if u == nil {
		return "0:0"
	}
	a := strconv.FormatUint(uint64(u.UID), 10) + ":" + strconv.FormatUint(uint64(u.GID), 10)
	if len(u.Groups) > 0 {
		gs := make([]string, len(u.Groups))
		for i, g := range u.Groups {
			gs[i] = strconv.FormatUint(uint64(g), 10)
		}
		a += ":" + strings.Join(gs, ",")
	}
	return a
}

// noCapsSeccomp is Docker's default seccomp profile
// (github.com/moby/profiles/seccomp) for a process without capabilities:
// an allow list of the usual syscalls, some only with given arguments
// (clone without namespace flags, socket for the usual address families,
// the common personalities); everything else fails with EPERM, and clone3
// with ENOSYS so that libc falls back to clone, whose flags can be
// checked. The syscalls that need a capability (mount, unshare, setns,
// bpf, kernel modules, reboot, clock setting, ...) are refused, as a
// sandbox's bounding set holds none. runc skips names its libseccomp does
// not know. It is built once (some 400 rules, and every sandbox gets it)
// and shared: do not modify it.
var noCapsSeccomp = sync.OnceValue(func() *specs.LinuxSeccomp {
	return defaultSeccomp(&specs.LinuxCapabilities{})
})

func defaultSeccomp(caps *specs.LinuxCapabilities) *specs.LinuxSeccomp {
	p, err := seccomp.GetDefaultProfile(&specs.Spec{Process: &specs.Process{Capabilities: caps}})
	if err != nil {
		// Its only failure is a kernel release (uname -r) that does
		// not start with "major.minor", which Linux's always does.
		panic("runc driver: docker's default seccomp profile: " + err.Error())
	}
	return p
}

func ptr[T any](v T) *T { return &v }
