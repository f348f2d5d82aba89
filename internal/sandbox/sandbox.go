// Package sandbox declares the contract between Stratus and whatever
// isolates an instance or a replica: a plain process group, a runc
// container, later a Kubernetes pod. The pool owns instances and the
// services manager replicas; a driver only prepares, starts, stops, waits
// for and lists sandboxes, keyed by an ID the caller chooses.
//
// Drivers own the goroutines they start for a sandbox (output copying,
// reaping) and end them when the sandbox has exited and Wait returned.
// Every driver runs the shared suite in sandboxtest.
package sandbox

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"time"

	"github.com/stratus-run/stratus"
)

// StartFDEnv names, in the environment of a program started ahead (see
// Spec.StartAhead), the descriptor it reads its start byte from.
const StartFDEnv = "_STRATUS_START_FD"

// Spec is what a sandbox runs.
type Spec struct {
	// ID names the sandbox; it is unique among live sandboxes of a driver.
	ID string
	// Argv is the program and its arguments; Argv[0] is resolved by the
	// driver (a path, or a name looked up in PATH).
	Argv []string
	// Env is the full environment, "K=V" entries.
	Env []string
	// Dir is the working directory (a path inside the sandbox).
	Dir string
	// RootFS, when set, is a host folder (an image's flattened root
	// filesystem) that becomes the sandbox's read-only root; Argv[0] and
	// Dir are then paths inside it. Needs Capabilities.RootFS.
	RootFS string
	// Image, when set, is an image reference (as a container runtime
	// pulls it, e.g. registry.example/fn:1) that the driver's nodes pull
	// and run as the sandbox's read-only root; Argv[0] and Dir are then
	// paths inside it, and the image's own entrypoint and command are not
	// run. Needs Capabilities.ImageRef; other drivers refuse it with
	// ErrInvalid (see CheckNoImage). At most one of RootFS and Image.
	Image string
	// Regions, when set, are the regions whose nodes may run the sandbox,
	// in place of the driver's default placement. Drivers with
	// Capabilities.Regions honour it; others run every sandbox on the
	// server's own machine and ignore it (their caller checks that the
	// server's region is allowed).
	Regions []string
	// Mounts are host folders or files bound read-only into the sandbox.
	// A driver without Capabilities.Mounts only accepts mounts whose
	// Source and Target are the same path (it checks they exist).
	Mounts []Mount
	// MemoryMB is the instance's memory size; drivers with
	// Capabilities.MemoryLimit enforce it.
	MemoryMB int
	// CPU is the sandbox's CPU quota in cores; zero gives it CPU in
	// proportion to MemoryMB (one core at 1,769 MB, as on Lambda).
	// Drivers with Capabilities.MemoryLimit enforce it.
	CPU float64
	// CPUWeight makes that share (CPU, else in proportion to MemoryMB) a
	// weight that only bites under contention, not a quota: the sandbox
	// may use up to one core (or its share, when more) while CPUs are
	// free, and under contention gets its share relative to the others.
	// Drivers with Capabilities.MemoryLimit enforce it.
	CPUWeight bool
	// CPURequest is the sandbox's share of the CPUs under contention, in
	// cores, as a Kubernetes container's CPU request: 1,024 cpu.shares a
	// core (at least 2) on cgroup v1, that mapped to cpu.weight on v2. It
	// replaces the weight CPUWeight gives and leaves the quota as it is.
	// Zero keeps the driver's default. Drivers with
	// Capabilities.MemoryLimit enforce it.
	CPURequest float64
	// InitCPU is the sandbox's CPU quota in cores from its start until the
	// driver's EndInit is called for it, when its own quota (CPU, else in
	// proportion to MemoryMB) applies; a quota below its own does not
	// lower it. Zero: its own quota from the start. Drivers with
	// Capabilities.MemoryLimit enforce it.
	InitCPU float64
	// StartAhead says the program can start before its sandbox is
	// started and wait: a driver with Capabilities.Prepare then starts it
	// at Prepare, with StartFDEnv in its environment naming an inherited
	// descriptor, and Start writes one byte to it. The program reads that
	// byte before it loads the function's code (end of file: the sandbox
	// was dropped unstarted; it exits). Other drivers start it at Start
	// without StartFDEnv. Stratus's runtime clients (python3, nodejs) do
	// this: a cold start of a prepared sandbox finds the interpreter and
	// the client loaded.
	StartAhead bool
	// Hostname is the sandbox's hostname (what uname and os.Hostname
	// report), which its /etc/hosts resolves to its own address; empty
	// keeps the driver's default. It must pass CheckHostname. Drivers with
	// Capabilities.Hostname honour it; others ignore it (the program sees
	// the host's hostname).
	Hostname string
	// User is who the program runs as, ids inside the sandbox; nil is the
	// sandbox's root. Drivers with Capabilities.Users honour it (and map
	// every id of a sandbox to an unprivileged id of the host); others run
	// the program as the server's own user.
	User *User
	// Stdout and Stderr receive the sandbox's output; nil discards it.
	// Writes come from a goroutine the driver owns and end before Wait
	// returns.
	Stdout, Stderr io.Writer
}

// User is a program's user and groups, ids inside its sandbox.
type User struct {
	UID, GID uint32
	Groups   []uint32 // supplementary groups
}

// MaxUserID is the largest uid or gid a sandbox's program may have.
const MaxUserID = 65535

// MaxHostnameLen is the longest Spec.Hostname: a DNS label's 63 bytes
// (Linux allows 64).
const MaxHostnameLen = 63

// CheckHostname returns an error of kind stratus.ErrInvalid unless name
// is a hostname a sandbox may have: 1 to MaxHostnameLen letters, digits,
// '-', '_' or '.', starting with a letter or digit. Names of services
// and functions allow '_', which DNS labels do not; resolvers reading
// /etc/hosts accept it.
func CheckHostname(name string) error {
	ok := len(name) > 0 && len(name) <= MaxHostnameLen && isAlnum(name[0])
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = isAlnum(c) || c == '-' || c == '_' || c == '.'
	}
	if !ok {
		return fmt.Errorf("hostname %q: must be 1-%d letters, digits, '-', '_' or '.', starting with a letter or digit: %w", name, MaxHostnameLen, stratus.ErrInvalid)
	}
	return nil
}

// CheckNoImage returns an error of kind stratus.ErrInvalid when spec has
// an Image: what drivers without Capabilities.ImageRef call on every spec
// they are given. driver is the driver's name, for the message.
func CheckNoImage(spec Spec, driver string) error {
	if spec.Image != "" {
		return fmt.Errorf("image %s: the %s sandbox driver runs no image by reference (it runs an image's root filesystem, a folder of the host): %w", spec.Image, driver, stratus.ErrInvalid)
	}
	return nil
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// Mount binds Source on the host read-only at Target in the sandbox.
type Mount struct {
	Source, Target string
}

// Capabilities says which optional features a driver provides.
type Capabilities struct {
	// MemoryLimit: Spec.MemoryMB is enforced (exceeding it kills the sandbox).
	MemoryLimit bool
	// Isolated: the sandbox has its own mount, pid, network and user
	// namespaces: it sees nothing of the host but its root and mounts,
	// and no process of it has a privileged id on the host.
	Isolated bool
	// Users: Spec.User is honoured.
	Users bool
	// Hostname: the sandbox has a hostname of its own (Spec.Hostname, else
	// the driver's default) and an /etc/hosts of its own that resolves it
	// and localhost.
	Hostname bool
	// RootFS: Spec.RootFS is supported.
	RootFS bool
	// ImageRef: Spec.Image is supported: the driver's nodes pull images
	// by reference and run a sandbox in one, so an image needs no folder
	// of the server's host.
	ImageRef bool
	// Regions: the driver places sandboxes on nodes by region (a node's
	// topology.kubernetes.io/region), honouring Spec.Regions.
	Regions bool
	// StartTimeout, when set, is how long a Prepare or Start may take
	// when its caller's bound for driver calls is shorter: a driver whose
	// start may pull an image and place a pod on a node needs more than a
	// local sandbox does.
	StartTimeout time.Duration
	// Mounts: Spec.Mounts may bind a source at another target path.
	Mounts bool
	// Prepare: Prepare does the slow part of a start ahead of time, so
	// that Start of a prepared sandbox is fast.
	Prepare bool
	// HostIP is the address at which a sandbox reaches listeners of the
	// host (the server binds the Runtime API there). Invalid when
	// sandboxes share the host's network: they use 127.0.0.1.
	HostIP netip.Addr
}

// Exit describes how a sandbox ended.
type Exit struct {
	Code   int    // exit code, -1 when killed by a signal
	Signal string // signal name when killed by one, e.g. "killed"
	OOM    bool   // killed for exceeding its memory limit
}

// String formats e as Go's exec package does: "exit status 1",
// "signal: killed".
func (e Exit) String() string {
	if e.Signal != "" {
		return "signal: " + e.Signal
	}
	return "exit status " + strconv.Itoa(e.Code)
}

// Stats are resource figures of a running sandbox.
type Stats struct {
	// MaxRSSBytes is the peak resident memory so far.
	MaxRSSBytes int64
	// CPUNanos is the CPU time (user and system) the sandbox's processes
	// have used so far, in nanoseconds.
	CPUNanos int64
}

// Driver starts and stops sandboxes.
type Driver interface {
	// Name is the driver's name, e.g. "process".
	Name() string
	// Capabilities reports the optional features.
	Capabilities() Capabilities
	// Start starts a sandbox running spec and returns once the program has
	// been started (not once it is ready). Starting an ID that is already
	// live returns ErrConflict, except a sandbox prepared with Prepare,
	// whose program Start then starts. A Start that fails leaves nothing
	// to Stop or Wait for.
	Start(ctx context.Context, spec Spec) error
	// Prepare makes a sandbox ready to start spec without starting its
	// program; Start with the same spec then starts it. With
	// Capabilities.Prepare the prepared sandbox is live (Stop, Wait, Addr
	// and List see it) and its output goes to spec's Stdout and Stderr;
	// a driver without it only checks spec, as Start would.
	Prepare(ctx context.Context, spec Spec) error
	// Stop asks the sandbox to end (SIGTERM), waits up to grace, then kills
	// everything in it. It returns once nothing of it is left. Idempotent:
	// stopping an unknown or ended sandbox returns nil.
	Stop(ctx context.Context, id string, grace time.Duration) error
	// Wait blocks until the sandbox has ended and its output is drained,
	// and reports how. Unknown IDs return ErrNotFound.
	Wait(ctx context.Context, id string) (Exit, error)
	// SyncOutput returns once everything the sandbox wrote to its stdout
	// and stderr before the call has been handed to Spec.Stdout and
	// Spec.Stderr. Unknown IDs return ErrNotFound.
	SyncOutput(ctx context.Context, id string) error
	// Addr is the address at which the host reaches ports the sandbox
	// listens on: its own address when it has a network namespace, else
	// 127.0.0.1. Unknown or ended IDs return ErrNotFound.
	Addr(ctx context.Context, id string) (netip.Addr, error)
	// Owns reports whether a TCP connection that a host listener accepted
	// comes from a program of the sandbox: local is the listener's end of
	// it, remote the other end, and the connection must still be open. A
	// connection from the host, from another sandbox or from anywhere else
	// is not owned. The server asks it once per new connection to an
	// instance's Runtime API, so it must be cheap for the sandbox's own
	// connections; it may block briefly (reading /proc, a netlink query)
	// and has no effect, so calling it again is harmless. Unknown or ended
	// IDs return ErrNotFound; false with an error means the driver could
	// not tell, and callers refuse the connection.
	Owns(ctx context.Context, id string, local, remote netip.AddrPort) (bool, error)
	// EndInit ends the sandbox's init: from now on its CPU is its Spec's
	// own quota (Spec.CPU, else in proportion to Spec.MemoryMB), not
	// Spec.InitCPU. It does not block beyond a write to the sandbox's
	// cgroup. Idempotent: calling it again, or for an unknown or ended
	// sandbox, returns nil. Drivers that enforce no CPU quota do nothing.
	EndInit(ctx context.Context, id string) error
	// Stats reports resource figures of a live sandbox.
	Stats(ctx context.Context, id string) (Stats, error)
	// List returns the IDs of sandboxes this driver left behind, including
	// those of an earlier server process (so they can be stopped after a
	// crash). Stop works on every listed ID.
	List(ctx context.Context) ([]string, error)
}
