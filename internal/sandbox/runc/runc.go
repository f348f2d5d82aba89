// Package runc is the sandbox driver that runs each instance as an OCI
// container with runc: its own user, PID, mount, IPC, UTS and network
// namespaces, cgroup limits for memory, CPU and PIDs, no capabilities, no
// new privileges, Docker's default seccomp profile (an allow list) and a
// read-only root filesystem (Spec.RootFS: a function runtime's minimal
// root or an image's; the host's when none is given, which only tests do)
// with a bounded tmpfs /tmp and Spec.Mounts bound read-only anywhere
// (rootfs.go). The user namespace maps the sandbox's ids to unprivileged
// host ids (Config.IDBase); the program runs as Spec.User. See
// bundleSpec for the spec, init.go for the container's PID 1 and
// stage.go for how mount sources in private host folders reach runc;
// start.go prepares and runs a container, stop.go stops it (and what an
// earlier server left, which List finds), cgroup.go writes its CPU quota
// and reads its memory peak and CPU time.
//
// Network (net.go): the driver owns a Linux bridge, "strat" and 6 hex
// digits of a hash of its state dir, with the host's address X.X.X.1 of
// the subnet (Config.Subnet; by default a /24 inside 10.88.0.0/16: the
// first one free on the host from an index given by the same hash). Each
// sandbox gets a network namespace of its own with lo, and eth0 at a free
// address of the subnet (Addr), its default route via the bridge's
// address (Capabilities.HostIP). The host side of its veth pair is an
// isolated port of the bridge. The setup is netlink calls from Go, no
// exec of ip(8); it adds about 2 ms to a cold start (a new network
// namespace and a veth pair are most of it).
//
// What a sandbox can reach, and nothing else:
//
//   - the host's listeners on the bridge's address and, because Linux
//     accepts a packet for any of its local addresses on any interface,
//     on every other IPv4 address of the host except the loopback ones
//     (127.0.0.0/8 arriving from outside lo is dropped as martian). So a
//     host listener on 0.0.0.0 is reachable, one on 127.0.0.1 is not.
//     The host's firewall (INPUT chain, input interface the bridge)
//     applies.
//   - not other sandboxes: the bridge ports are isolated (no frame, ARP
//     included, passes from one sandbox's port to another's) and the host
//     does not route between them;
//   - not the internet nor any other network: no forwarding, no NAT. The
//     driver sets net.ipv4.conf.BRIDGE.forwarding to 0, so even a host
//     that forwards (net.ipv4.ip_forward=1, as Docker sets it) does not
//     route what sandboxes send; writing net.ipv4.ip_forward later resets
//     that per-link value.
//   - nothing over IPv6: the bridge has IPv6 disabled, so the link-local
//     address of the sandbox's eth0 reaches no one.
//
// The host reaches each sandbox at its address, on any port. Those two
// sysctls of its own bridge are the only ones of the host the driver
// writes; in each sandbox's namespace it sets
// net.ipv4.ip_unprivileged_port_start to 0, so that a program with no
// capability may listen on ports below 1024 (a rootless sandbox shares
// the host's network, and its ports below 1024 stay privileged).
//
// Hostname: Spec.Hostname, else the sandbox's address (as Lambda's
// hostname is its execution environment's address), "stratus" when
// rootless; every sandbox's /etc/hosts resolves it and localhost.
//
// CPU: a sandbox's own quota (Spec.CPU, else in proportion to memory)
// may be raised for its init (Spec.InitCPU); EndInit then writes its own
// quota into its cgroup, a file write, no exec of runc.
//
// State: stateDir/runc is runc's --root, so only this driver's containers
// are seen; /run/stratus/HASH/bundles/ID holds each sandbox's bundle (see
// stage.go for why it is not under stateDir);
// stateDir/addrs/ID its address. A restarted server lists and stops what
// an earlier one left from all of them. One driver at a time per state
// dir. A sandbox's network namespace has no name or mount: the driver
// holds it open until the container has ended, so it dies, and its veth
// pair with it, when both let go (see network in net.go).
//
// Locks: Driver.mu before network.mu, never the other way.
//
// Start and Prepare: a container runs detached (`runc run --detach`), so
// no runc process stays beside it. Its init (init.go) waits on a pipe
// until the driver says go, so that Prepare can do everything slow ahead
// (namespaces, mounts, cgroups, the seccomp filter) and Start only has
// the program to start. The driver is a child subreaper: a container's
// init becomes its child once runc exits.
//
// Goroutines: per sandbox, one reaper (reads the init's status lines,
// waits for the init, then removes what is left of the container) and
// one copier per output stream; all end before Wait returns for that
// sandbox.
package runc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sandbox"
)

var _ sandbox.Driver = (*Driver)(nil)

// killTimeout bounds how long a sandbox may take to go once killed.
const killTimeout = 10 * time.Second

// Driver runs sandboxes as runc containers.
type Driver struct {
	runc    string // path of the runc binary
	exe     string // this executable, the containers' init
	root    string // runc --root
	bundles string
	etc     string // the /etc/hosts and resolv.conf given to images without them
	idBase  uint32 // host uid and gid of a sandbox's uid and gid 0
	// rootless: the server is not root. Sandboxes get a user namespace
	// that maps their root to the server's user and nothing else, share
	// the host's network and have no cgroup (see rootless.go).
	rootless bool
	cgPrefix string     // cgroupsPath of a sandbox is cgPrefix+ID
	loader   initLoader // runs exe as the init of a sandbox with a RootFS
	log      *slog.Logger
	net      *network

	mu    sync.Mutex
	boxes map[string]*box
}

type box struct {
	cgroup string
	// quota is the sandbox's own CPU quota (µs per cpuPeriod), which
	// EndInit sets; 0 when it has none (rootless, no memory size).
	quota int64
	// inInit: its cgroup has the init's larger quota still, until
	// EndInit; guarded by Driver.mu.
	inInit   bool
	addr     netip.Addr    // set under Driver.mu once the network is up
	pid      int           // the init's, on the host; set under Driver.mu once it runs
	goW      *os.File      // prepared, not started: a write starts the program; guarded by Driver.mu
	started  chan string   // the init's first status line, or "" if it ended first
	done     chan struct{} // closed when the container and its output are gone
	exit     sandbox.Exit
	out, err *sandbox.Output
	// cpu is its cgroup's CPU time file, opened by the first CPUNanos and
	// closed (cpuClosed set) by its reaper; cpuV2 says which format it
	// has. Guarded by Driver.mu; reads of cpu are not.
	cpu       *os.File
	cpuV2     bool
	cpuClosed bool
}

// closeCPU closes b's CPU time file for good; the caller holds Driver.mu.
func (b *box) closeCPU() {
	if b.cpu != nil {
		b.cpu.Close()
		b.cpu = nil
	}
	b.cpuClosed = true
}

// Config configures a Driver; every field but StateDir may be left zero
// for its default.
type Config struct {
	// StateDir is the folder of the driver's state (required): runc's
	// root, the sandboxes' addresses. A restarted server given the same
	// folder finds and stops what an earlier one left.
	StateDir string
	// Log receives the driver's warnings (what it could not clean up);
	// nil discards them.
	Log *slog.Logger
	// Subnet is the IPv4 network (a /16 to a /30) the sandboxes get
	// addresses from; the host has its first address. It must not overlap
	// an address of the host. Zero: a /24 inside 10.88.0.0/16 that is
	// free on the host, tried from one picked by a hash of the state dir.
	Subnet netip.Prefix
	// IDBase is the host uid and gid that uid and gid 0 of every sandbox
	// map to; the sandbox's ids 0 to 65536 map to the 65,537 that start
	// there. Zero: DefaultIDBase. No host user should own ids in that
	// range.
	IDBase uint32
}

// New returns a driver that keeps its state in cfg.StateDir, and sets up
// its bridge, which Close removes. It needs runc on PATH and root (or,
// rootless, user namespaces); without them it returns an error wrapping
// stratus.ErrUnavailable. An empty StateDir or a bad Subnet or IDBase is
// ErrInvalid.
func New(cfg Config) (*Driver, error) {
	if cfg.StateDir == "" {
		return nil, fmt.Errorf("runc driver: no state dir: %w", stratus.ErrInvalid)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	stateDir := cfg.StateDir
	bin, err := exec.LookPath("runc")
	if err != nil {
		return nil, fmt.Errorf("runc driver: %w: %w", err, stratus.ErrUnavailable)
	}
	rootless := os.Geteuid() != 0
	if rootless {
		if err := probeUserns(); err != nil {
			return nil, fmt.Errorf("runc driver: not root, and %w: %w", err, stratus.ErrUnavailable)
		}
	}
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		return nil, fmt.Errorf("runc driver: own executable: %w: %w", err, stratus.ErrUnavailable)
	}
	loader, err := loaderOf(exe)
	if err != nil {
		return nil, fmt.Errorf("runc driver: %w: %w", err, stratus.ErrUnavailable)
	}
	stateDir, err = filepath.Abs(stateDir)
	if err != nil {
		return nil, fmt.Errorf("runc driver: %w", err)
	}
	idBase := cfg.IDBase
	if idBase == 0 {
		idBase = DefaultIDBase
	}
	if uint64(idBase)+idCount > 1<<32-1 {
		return nil, fmt.Errorf("runc driver: id base %d: the %d ids from it pass the largest uid: %w", idBase, idCount, stratus.ErrInvalid)
	}
	bundles := bundlesDir(stateDir)
	if rootless {
		// The sandbox's root is the server's user, who may search the
		// data dir: nothing needs staging (nor could be: no mounts).
		bundles = filepath.Join(stateDir, "bundles")
	}
	d := &Driver{
		runc: bin, exe: exe, loader: loader, log: log, idBase: idBase, rootless: rootless,
		root:    filepath.Join(stateDir, "runc"),
		bundles: bundles,
		etc:     filepath.Join(filepath.Dir(bundles), "etc"),
		boxes:   make(map[string]*box),
	}
	if err := os.MkdirAll(d.root, 0o700); err != nil {
		return nil, fmt.Errorf("create sandbox state dir: %w", err)
	}
	dirs := []string{filepath.Dir(filepath.Dir(bundles)), filepath.Dir(bundles), bundles, d.etc}
	if rootless {
		dirs = []string{bundles, d.etc}
	}
	if err := mkdirReachable(dirs...); err != nil {
		return nil, fmt.Errorf("create sandbox bundles dir: %w", err)
	}
	if err := writeEtc(d.etc); err != nil {
		return nil, fmt.Errorf("runc driver: %w", err)
	}
	sum := sha256.Sum256([]byte(stateDir))
	d.cgPrefix = "/stratus/" + hex.EncodeToString(sum[:4]) + "-"
	if !rootless {
		if d.net, err = newNetwork(stateDir, cfg.Subnet, log); err != nil {
			return nil, fmt.Errorf("runc driver: %w", err)
		}
	}
	// Containers run detached (`runc run --detach`): once runc exits, their
	// init becomes a child of this process, whose reapers wait for it.
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		return nil, fmt.Errorf("runc driver: become a child subreaper: %w", errno)
	}
	return d, nil
}

// Name implements sandbox.Driver.
func (d *Driver) Name() string { return "runc" }

// Capabilities implements sandbox.Driver.
func (d *Driver) Capabilities() sandbox.Capabilities {
	if d.rootless {
		return sandbox.Capabilities{RootFS: true, Mounts: true, Prepare: true, Hostname: true}
	}
	return sandbox.Capabilities{MemoryLimit: true, RootFS: true, Mounts: true, Isolated: true, Users: true, Prepare: true, Hostname: true, HostIP: d.net.hostIP}
}

// IDBase is the host uid and gid of a sandbox's uid and gid 0, 0 when
// sandboxes have no ids of their own (rootless): files meant for a
// sandbox's user N are owned by IDBase+N on the host.
func (d *Driver) IDBase() uint32 {
	if d.rootless {
		return 0
	}
	return d.idBase
}

// CgroupPath is the cgroupsPath of sandbox id, relative to the root of
// each cgroup hierarchy (for tests and diagnostics).
func (d *Driver) CgroupPath(id string) string { return d.cgPrefix + id }

// BundleDir is the directory of sandbox id's OCI bundle.
func (d *Driver) BundleDir(id string) string { return filepath.Join(d.bundles, id) }

// prSetChildSubreaper is prctl's PR_SET_CHILD_SUBREAPER.
const prSetChildSubreaper = 36

var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$`)

// Start implements sandbox.Driver. A sandbox prepared with Prepare only
// has to be told to start its program; any other is prepared first.
func (d *Driver) Start(ctx context.Context, spec sandbox.Spec) error {
	d.mu.Lock()
	b, ok := d.boxes[spec.ID]
	prepared := ok && b.goW != nil
	d.mu.Unlock()
	if !prepared {
		if err := d.Prepare(ctx, spec); err != nil {
			return err
		}
		d.mu.Lock()
		b = d.boxes[spec.ID]
		d.mu.Unlock()
	}
	if err := d.run(ctx, spec.ID, b); err != nil {
		// The sandbox has ended (run waited for it): forget it, as a
		// failed Start leaves nothing to Wait for.
		d.mu.Lock()
		if d.boxes[spec.ID] == b && isDone(b) {
			delete(d.boxes, spec.ID)
		}
		d.mu.Unlock()
		return fmt.Errorf("start sandbox %q: %w", spec.ID, err)
	}
	return nil
}

// SyncOutput implements sandbox.Driver.
func (d *Driver) SyncOutput(ctx context.Context, id string) error {
	d.mu.Lock()
	b, ok := d.boxes[id]
	d.mu.Unlock()
	if !ok {
		return fmt.Errorf("sandbox %q: %w", id, stratus.ErrNotFound)
	}
	b.out.Sync()
	b.err.Sync()
	return nil
}

// Wait implements sandbox.Driver.
func (d *Driver) Wait(ctx context.Context, id string) (sandbox.Exit, error) {
	d.mu.Lock()
	b, ok := d.boxes[id]
	d.mu.Unlock()
	if !ok {
		return sandbox.Exit{}, fmt.Errorf("sandbox %q: %w", id, stratus.ErrNotFound)
	}
	select {
	case <-b.done:
		d.mu.Lock()
		if d.boxes[id] == b {
			delete(d.boxes, id)
		}
		d.mu.Unlock()
		return b.exit, nil
	case <-ctx.Done():
		return sandbox.Exit{}, ctx.Err()
	}
}

// Addr implements sandbox.Driver: the sandbox's address on the bridge.
func (d *Driver) Addr(ctx context.Context, id string) (netip.Addr, error) {
	d.mu.Lock()
	b, ok := d.boxes[id]
	var addr netip.Addr
	if ok {
		addr = b.addr
	}
	d.mu.Unlock()
	if !ok || isDone(b) || !addr.IsValid() {
		return netip.Addr{}, fmt.Errorf("sandbox %q: %w", id, stratus.ErrNotFound)
	}
	return addr, nil
}

func isDone(b *box) bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

func closeAll(fs ...io.Closer) {
	for _, f := range fs {
		_ = f.Close()
	}
}
