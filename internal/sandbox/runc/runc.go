// Package runc is the sandbox driver that runs each instance as an OCI
// container with runc: its own user, PID, mount, IPC, UTS and network
// namespaces, cgroup limits for memory, CPU and PIDs, no capabilities, no
// new privileges, Docker's default seccomp profile (an allow list) and a
// read-only root filesystem (Spec.RootFS: a function runtime's minimal
// root or an image's; the host's when none is given, which only tests do)
// with a bounded tmpfs /tmp and Spec.Mounts bound read-only anywhere
// (rootfs.go). The user namespace maps the sandbox's ids to unprivileged
// host ids (Options.IDBase); the program runs as Spec.User. See
// bundleSpec for the spec, init.go for the container's PID 1 and
// stage.go for how mount sources in private host folders reach runc.
//
// Network (net.go): the driver owns a Linux bridge, "strat" and 6 hex
// digits of a hash of its state dir, with the host's address X.X.X.1 of
// the subnet (Options.Subnet; by default a /24 inside 10.88.0.0/16: the
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
// sysctls of its own bridge are the only ones the driver writes.
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
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
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
}

// Options are a Driver's optional settings; the zero value is the
// default.
type Options struct {
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

// New returns a driver that keeps its state in stateDir, with default
// Options. It needs runc on PATH and root; without them it returns an
// error wrapping stratus.ErrUnavailable.
func New(stateDir string, log *slog.Logger) (*Driver, error) {
	return NewWithOptions(stateDir, log, Options{})
}

// NewWithOptions is New with opts. It sets up the driver's bridge, which
// Close removes.
func NewWithOptions(stateDir string, log *slog.Logger, opts Options) (*Driver, error) {
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
	idBase := opts.IDBase
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
		if d.net, err = newNetwork(stateDir, opts.Subnet, log); err != nil {
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
		return sandbox.Capabilities{RootFS: true, Mounts: true, Prepare: true}
	}
	return sandbox.Capabilities{MemoryLimit: true, RootFS: true, Mounts: true, Isolated: true, Users: true, Prepare: true, HostIP: d.net.hostIP}
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

// Prepare implements sandbox.Driver: the container is created with its
// network, mounts, cgroup and seccomp filter, and its init runs, waiting
// for Start before it starts the program. That leaves Start a write to a
// pipe and the program's own start.
func (d *Driver) Prepare(ctx context.Context, spec sandbox.Spec) error {
	if len(spec.Argv) == 0 {
		return fmt.Errorf("prepare sandbox %q: empty argv: %w", spec.ID, stratus.ErrInvalid)
	}
	if !validID.MatchString(spec.ID) {
		return fmt.Errorf("prepare sandbox %q: bad id: %w", spec.ID, stratus.ErrInvalid)
	}
	if spec.Dir != "" && !filepath.IsAbs(spec.Dir) {
		return fmt.Errorf("prepare sandbox %q: dir %q is not absolute: %w", spec.ID, spec.Dir, stratus.ErrInvalid)
	}
	if err := checkFS(spec); err != nil {
		return fmt.Errorf("prepare sandbox %q: %w", spec.ID, err)
	}
	if u := spec.User; u != nil && (u.UID > maxUserID || u.GID > maxUserID || slices.ContainsFunc(u.Groups, func(g uint32) bool { return g > maxUserID })) {
		return fmt.Errorf("prepare sandbox %q: user %d:%d: ids must be at most %d: %w", spec.ID, u.UID, u.GID, maxUserID, stratus.ErrInvalid)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("prepare sandbox %q: %w", spec.ID, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return fmt.Errorf("prepare sandbox %q: %w", spec.ID, err)
	}
	b := &box{
		cgroup:  d.CgroupPath(spec.ID),
		done:    make(chan struct{}),
		started: make(chan string, 1),
		out:     sandbox.NewOutput(outR, spec.Stdout),
		err:     sandbox.NewOutput(errR, spec.Stderr),
	}
	if spec.MemoryMB > 0 && !d.rootless {
		b.quota = cpuQuota(spec)
		b.inInit = initQuota(spec) != b.quota
	}
	d.mu.Lock()
	if old, ok := d.boxes[spec.ID]; ok && !isDone(old) {
		d.mu.Unlock()
		closeAll(outR, outW, errR, errW)
		return fmt.Errorf("prepare sandbox %q: already running: %w", spec.ID, stratus.ErrConflict)
	}
	if _, err := os.Stat(filepath.Join(d.root, spec.ID)); err == nil {
		d.mu.Unlock()
		closeAll(outR, outW, errR, errW)
		return fmt.Errorf("prepare sandbox %q: a container of an earlier server runs: %w", spec.ID, stratus.ErrConflict)
	}
	d.boxes[spec.ID] = b
	d.mu.Unlock()

	if err := d.prepare(spec, b, outW, errW); err != nil {
		d.mu.Lock()
		if d.boxes[spec.ID] == b {
			delete(d.boxes, spec.ID)
		}
		d.mu.Unlock()
		return fmt.Errorf("prepare sandbox %q: %w", spec.ID, err)
	}
	return nil
}

// prepare writes the bundle and runs `runc run --detach` with the output
// pipes as its stdio and as fds 4 and 5, which the init hands to the
// program as its stdout and stderr, the status pipe as fd 3 and the go
// pipe as fd 6. runc exits once the init runs; the init is then a child
// of this process (a child subreaper, see New), which its reaper waits
// for.
func (d *Driver) prepare(spec sandbox.Spec, b *box, outW, errW *os.File) error {
	bundle := d.BundleDir(spec.ID)
	closeW := func() { closeAll(outW, errW) }
	netns, addr, err := d.net.setup(spec.ID)
	if err != nil {
		closeW()
		closeAll(b.out, b.err)
		return err
	}
	d.mu.Lock()
	b.addr = addr
	d.mu.Unlock()
	if err := d.writeBundle(bundle, spec, netns); err != nil {
		closeW()
		closeAll(b.out, b.err)
		d.teardownNet(spec.ID)
		return err
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		closeW()
		closeAll(b.out, b.err)
		d.remove(spec.ID)
		return err
	}
	goR, goW, err := os.Pipe()
	if err != nil {
		closeW()
		closeAll(b.out, b.err, statusR, statusW)
		d.remove(spec.ID)
		return err
	}
	pidFile := filepath.Join(bundle, "init.pid")
	cmd := exec.Command(d.runc, "--root", d.root, "--log", filepath.Join(bundle, "runc.log"), "--log-format", "json",
		"run", "--detach", "--pid-file", pidFile, "--bundle", bundle, "--preserve-fds", "4", spec.ID)
	cmd.Stdout, cmd.Stderr = outW, errW
	// The program gets the output pipes themselves (fds 4 and 5, see
	// init.go), so that SyncOutput can wait for what it wrote.
	cmd.ExtraFiles = []*os.File{statusW, outW, errW, goR}
	// A session of its own: a ^C at the server's terminal does not reach
	// runc.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Run()
	closeW()
	closeAll(statusW, goR)
	// The container has its mounts now (or never will): the staged ones
	// can go from the host.
	if uerr := unstage(bundle); uerr != nil {
		d.log.Warn("detach staged mounts", "instance", spec.ID, "err", uerr)
	}
	if err != nil {
		closeAll(b.out, b.err, statusR, goW)
		msg := d.runcError(bundle)
		d.remove(spec.ID)
		return fmt.Errorf("runc run: %s", msg)
	}
	pid := 0
	if raw, err := os.ReadFile(pidFile); err == nil {
		pid, _ = strconv.Atoi(strings.TrimSpace(string(raw)))
	}
	d.mu.Lock()
	b.pid = pid
	d.mu.Unlock()

	var copiers sync.WaitGroup
	copiers.Add(2)
	go b.out.Copy(&copiers)
	go b.err.Copy(&copiers)
	d.mu.Lock()
	b.goW = goW
	d.mu.Unlock()
	go func() {
		status := bufio.NewReader(statusR)
		first, _ := status.ReadString('\n')
		b.started <- first
		rest, _ := io.ReadAll(status)
		statusR.Close()
		ws := reap(pid)
		copiers.Wait()
		d.mu.Lock()
		if b.goW != nil {
			b.goW.Close() // prepared, never started
			b.goW = nil
		}
		d.mu.Unlock()
		b.exit = exitOf(lastLine(first+string(rest)), ws)
		d.remove(spec.ID)
		close(b.done)
	}()
	return nil
}

// reapStrays reaps the exited children of this process that belong to
// this driver's sandboxes (by their cgroup) and that no reaper waits for:
// orphans of runc's own processes, given to this process as their child
// subreaper. Left unreaped they would pass to the host's init when the
// server exits, which on some hosts never reaps them. Close calls it.
func (d *Driver) reapStrays() {
	self := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ...": comm may hold spaces and parens.
		i := bytes.LastIndexByte(stat, ')')
		f := strings.Fields(string(stat[i+1:]))
		if i < 0 || len(f) < 2 || f[0] != "Z" || f[1] != strconv.Itoa(self) {
			continue
		}
		cg, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		if d.cgPrefix == "" || !strings.Contains(string(cg), d.cgPrefix) {
			continue
		}
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); err == nil {
			d.log.Debug("reaped a stray child", "pid", pid)
		}
	}
}

// reap waits for the container's init, a child of this process once runc
// has exited, and returns how it ended (nil when it cannot tell).
func reap(pid int) *syscall.WaitStatus {
	if pid <= 0 {
		return nil
	}
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil
		}
		return &ws
	}
}

// run tells a prepared sandbox's init to start the program and waits for
// its answer.
func (d *Driver) run(ctx context.Context, id string, b *box) error {
	d.mu.Lock()
	goW := b.goW
	b.goW = nil
	d.mu.Unlock()
	if goW == nil {
		return fmt.Errorf("already started: %w", stratus.ErrConflict)
	}
	_, _ = goW.Write([]byte{'g'})
	goW.Close()
	var first string
	select {
	case first = <-b.started:
	case <-ctx.Done():
		d.kill(id, "KILL", true)
		<-b.done
		return ctx.Err()
	}
	switch {
	case first == "ok\n":
		return nil
	case strings.HasPrefix(first, "err "):
		<-b.done
		return errors.New(strings.TrimSpace(strings.TrimPrefix(first, "err ")))
	default:
		<-b.done
		return fmt.Errorf("the container ended before the program started (%s)", b.exit)
	}
}

func (d *Driver) writeBundle(bundle string, spec sandbox.Spec, netns string) error {
	if err := removeBundle(bundle); err != nil {
		return err
	}
	if err := mkdirReachable(bundle, filepath.Join(bundle, "rootfs")); err != nil {
		return fmt.Errorf("create bundle: %w", err)
	}
	s := bundleSpec(spec, d.exe, d.CgroupPath(spec.ID), netns, d.idBase)
	if d.rootless {
		rootlessSpec(s)
	}
	s.Mounts = append(s.Mounts, specMounts(spec, d.etc)...)
	if spec.RootFS != "" {
		d.loader.apply(s)
	}
	if err := layoutRoot(bundle, s); err != nil {
		_ = removeBundle(bundle)
		return err
	}
	if !d.rootless {
		if err := stage(bundle, s); err != nil {
			_ = removeBundle(bundle)
			return err
		}
	}
	cfg, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode bundle config: %w", err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), cfg, 0o600); err != nil {
		_ = removeBundle(bundle)
		return fmt.Errorf("write bundle config: %w", err)
	}
	return nil
}

// runcError is the last error runc logged for the bundle.
func (d *Driver) runcError(bundle string) string {
	b, _ := os.ReadFile(filepath.Join(bundle, "runc.log"))
	msg := "exited before the program started"
	for line := range strings.Lines(string(b)) {
		var e struct{ Level, Msg string }
		if json.Unmarshal([]byte(line), &e) == nil && (e.Level == "error" || e.Level == "fatal") {
			msg = e.Msg
		}
	}
	return msg
}

// remove deletes what runc and the driver keep of a container that has
// ended: runc's state and cgroups (`runc run` normally removes them
// itself), the bundle and the network.
func (d *Driver) remove(id string) {
	if _, err := os.Stat(filepath.Join(d.root, id)); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
		if out, err := d.runcCmd(ctx, "delete", "--force", id); err != nil && !notExist(out) {
			d.log.Warn("delete container", "instance", id, "err", err, "output", strings.TrimSpace(string(out)))
		}
		cancel()
	}
	if err := removeBundle(d.BundleDir(id)); err != nil {
		d.log.Warn("remove bundle", "instance", id, "err", err)
	}
	d.teardownNet(id)
}

// teardownNet removes sandbox id's network. A failure is logged: the
// address file it leaves makes List try again.
func (d *Driver) teardownNet(id string) {
	if err := d.net.teardown(id); err != nil {
		d.log.Warn("tear down sandbox network", "instance", id, "err", err)
	}
}

// exitOf reads the init's last status line; without one (the init was
// killed), the init's wait status.
func exitOf(line string, ws *syscall.WaitStatus) sandbox.Exit {
	var kind string
	var n int
	var oom bool
	if c, _ := fmt.Sscanf(line, "%s %d oom %t", &kind, &n, &oom); c == 3 {
		switch kind {
		case "exit":
			return sandbox.Exit{Code: n}
		case "signal":
			s := syscall.Signal(n)
			return sandbox.Exit{Code: -1, Signal: s.String(), OOM: oom && s == syscall.SIGKILL}
		}
	}
	switch {
	case ws == nil:
		return sandbox.Exit{Code: -1, Signal: "unknown"}
	case ws.Signaled():
		return sandbox.Exit{Code: -1, Signal: ws.Signal().String()}
	}
	code := ws.ExitStatus()
	if code > 128 && code <= 128+64 {
		return sandbox.Exit{Code: -1, Signal: syscall.Signal(code - 128).String()}
	}
	return sandbox.Exit{Code: code}
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
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

// Stop implements sandbox.Driver: `runc kill ID TERM` (the init forwards
// it to the program's process group), then after grace `runc kill --all
// ID KILL`; the reaper then removes the container and its bundle.
// Containers of an earlier server are stopped the same way and then
// deleted with `runc delete --force`.
func (d *Driver) Stop(ctx context.Context, id string, grace time.Duration) error {
	d.mu.Lock()
	b, ok := d.boxes[id]
	d.mu.Unlock()
	if !ok {
		return d.stopRecovered(ctx, id, grace)
	}
	if isDone(b) {
		return nil
	}
	if grace > 0 {
		d.kill(id, "TERM", false)
		t := time.NewTimer(grace)
		select {
		case <-b.done:
			t.Stop()
			return nil
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	d.kill(id, "KILL", true)
	select {
	case <-b.done:
		return nil
	case <-time.After(killTimeout):
		return fmt.Errorf("stop sandbox %q: still runs after SIGKILL: %w", id, stratus.ErrTimeout)
	}
}

// stopRecovered stops a container this driver did not start: no `runc
// run` of ours waits for it, so its end is seen in its cgroups (rootless:
// in runc's state of it).
func (d *Driver) stopRecovered(ctx context.Context, id string, grace time.Duration) error {
	if !validID.MatchString(id) {
		return nil
	}
	if _, err := os.Stat(filepath.Join(d.root, id)); err == nil {
		cg := d.CgroupPath(id)
		runs := func() bool { return cgroupRuns(cg) }
		if d.rootless {
			// No cgroup to watch: runc's state says whether the init runs.
			runs = func() bool { return d.running(ctx, id) }
		}
		if grace > 0 && runs() {
			d.kill(id, "TERM", false)
			deadline := time.Now().Add(grace)
			for runs() && time.Now().Before(deadline) && ctx.Err() == nil {
				time.Sleep(5 * time.Millisecond)
			}
		}
		d.kill(id, "KILL", true)
		dctx, cancel := context.WithTimeout(context.Background(), killTimeout)
		out, err := d.runcCmd(dctx, "delete", "--force", id)
		cancel()
		if err != nil && !notExist(out) {
			return fmt.Errorf("stop sandbox %q: runc delete: %w: %s", id, err, strings.TrimSpace(string(out)))
		}
		deadline := time.Now().Add(killTimeout)
		for len(CgroupDirs(cg)) > 0 {
			if time.Now().After(deadline) {
				return fmt.Errorf("stop sandbox %q: cgroup still there after delete: %w", id, stratus.ErrTimeout)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if err := removeBundle(d.BundleDir(id)); err != nil {
		return fmt.Errorf("stop sandbox %q: %w", id, err)
	}
	if err := d.net.teardown(id); err != nil {
		return fmt.Errorf("stop sandbox %q: %w", id, err)
	}
	return nil
}

// running reports whether runc says container id runs.
func (d *Driver) running(ctx context.Context, id string) bool {
	out, err := d.runcStdout(ctx, "state", id)
	if err != nil {
		return false
	}
	var st struct{ Status string }
	return json.Unmarshal(out, &st) == nil && st.Status == "running"
}

// kill runs `runc kill`; errors (the container is gone or going) are
// only logged.
func (d *Driver) kill(id, sig string, all bool) {
	ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
	defer cancel()
	args := []string{"kill"}
	// Without cgroups (rootless) runc cannot list the processes: killing
	// the init ends its PID namespace, and everything in it, all the same.
	if all && !d.rootless {
		args = append(args, "--all")
	}
	if out, err := d.runcCmd(ctx, append(args, id, sig)...); err != nil && !notExist(out) && !notRunning(out) {
		d.log.Debug("runc kill", "instance", id, "signal", sig, "err", err, "output", strings.TrimSpace(string(out)))
	}
}

func (d *Driver) runcCmd(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, d.runc, append([]string{"--root", d.root}, args...)...)
	return cmd.CombinedOutput()
}

// runcStdout runs runc and returns what it wrote to stdout (where a
// warning on stderr cannot spoil it); a failure's error holds its stderr.
func (d *Driver) runcStdout(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, d.runc, append([]string{"--root", d.root}, args...)...)
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return out, fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
	}
	return out, err
}

func notExist(out []byte) bool   { return strings.Contains(string(out), "does not exist") }
func notRunning(out []byte) bool { return strings.Contains(string(out), "not running") }

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

// EndInit implements sandbox.Driver: it writes the sandbox's own CPU
// quota into its cgroup (cpu.cfs_quota_us of the cpu controller on cgroup
// v1, cpu.max on v2), in place of the larger one its init had. Rootless
// sandboxes have no cgroup: it does nothing.
func (d *Driver) EndInit(ctx context.Context, id string) error {
	d.mu.Lock()
	b, ok := d.boxes[id]
	if !ok || !b.inInit || isDone(b) {
		d.mu.Unlock()
		return nil
	}
	b.inInit = false
	d.mu.Unlock()
	if err := setCPUQuota(b.cgroup, b.quota); err != nil {
		if isDone(b) || len(CgroupDirs(b.cgroup)) == 0 {
			return nil // it ended meanwhile
		}
		d.mu.Lock()
		b.inInit = true // so that a retry writes it
		d.mu.Unlock()
		return fmt.Errorf("sandbox %q end init: %w", id, err)
	}
	return nil
}

// setCPUQuota sets the CPU quota of cgroup path cg to quota µs per
// cpuPeriod: cpu.cfs_quota_us in the cgroup v1 cpu hierarchy, else
// cpu.max in the v2 one.
func setCPUQuota(cg string, quota int64) error {
	q := strconv.FormatInt(quota, 10)
	err := writeCgroupFile(filepath.Join("/sys/fs/cgroup/cpu", cg, "cpu.cfs_quota_us"), q)
	if errors.Is(err, fs.ErrNotExist) {
		err = writeCgroupFile(filepath.Join("/sys/fs/cgroup", cg, "cpu.max"), q+" "+strconv.Itoa(cpuPeriod))
	}
	return err
}

// writeCgroupFile writes v to an existing cgroup file (never creating
// one).
func writeCgroupFile(path, v string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(v); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// Stats implements sandbox.Driver. MaxRSSBytes is the peak memory use of
// the container's cgroup (memory.max_usage_in_bytes on cgroup v1,
// memory.peak on v2), which counts page cache as well as resident memory.
func (d *Driver) Stats(ctx context.Context, id string) (sandbox.Stats, error) {
	d.mu.Lock()
	b, ok := d.boxes[id]
	d.mu.Unlock()
	if !ok || isDone(b) {
		return sandbox.Stats{}, fmt.Errorf("sandbox %q: %w", id, stratus.ErrNotFound)
	}
	if d.rootless {
		return rootlessStats(id, b)
	}
	for _, f := range []string{
		filepath.Join("/sys/fs/cgroup/memory", b.cgroup, "memory.max_usage_in_bytes"),
		filepath.Join("/sys/fs/cgroup", b.cgroup, "memory.peak"),
	} {
		if v, err := os.ReadFile(f); err == nil {
			n, err := strconv.ParseInt(strings.TrimSpace(string(v)), 10, 64)
			if err == nil {
				return sandbox.Stats{MaxRSSBytes: n}, nil
			}
		}
	}
	return sandbox.Stats{}, fmt.Errorf("sandbox %q stats: no memory figures in its cgroup", id)
}

// List implements sandbox.Driver: the sandboxes this driver runs, and the
// containers in its runc root that an earlier server left running.
// Leftovers that no longer run (a stopped container, a bundle with no
// container) are removed.
func (d *Driver) List(ctx context.Context) ([]string, error) {
	// runc list reads every container's state dir; one that ends and is
	// deleted meanwhile makes it fail with "no such file or directory".
	// That race is harmless: ask again.
	var out []byte
	var err error
	for try := 0; ; try++ {
		out, err = d.runcStdout(ctx, "list", "--format", "json")
		if err == nil || try == 4 || !strings.Contains(err.Error(), "no such file or directory") {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: runc list: %w", err)
	}
	var containers []struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(out, &containers); err != nil {
		return nil, fmt.Errorf("list sandboxes: runc list: %w", err)
	}
	ents, err := os.ReadDir(d.bundles)
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	d.mu.Lock()
	mine := make(map[string]bool, len(d.boxes))
	var ids []string
	for id, b := range d.boxes {
		mine[id] = true
		if !isDone(b) {
			ids = append(ids, id)
		}
	}
	d.mu.Unlock()
	known := make(map[string]bool)
	for _, c := range containers {
		known[c.ID] = true
		if mine[c.ID] {
			continue
		}
		if c.Status == "stopped" {
			_ = d.stopRecovered(ctx, c.ID, 0)
			continue
		}
		ids = append(ids, c.ID)
	}
	for _, e := range ents {
		if id := e.Name(); !mine[id] && !known[id] {
			_ = removeBundle(filepath.Join(d.bundles, id))
		}
	}
	// Network state of no container (it ended while no server ran). Under
	// d.mu, so that a Start of the ID cannot set up meanwhile.
	for _, id := range d.net.ids() {
		if known[id] {
			continue
		}
		d.mu.Lock()
		if _, ok := d.boxes[id]; !ok {
			d.teardownNet(id)
		}
		d.mu.Unlock()
	}
	return ids, nil
}

// CgroupDirs returns the directories of cgroup path cg that exist, in
// every v1 hierarchy and the v2 one.
func CgroupDirs(cg string) []string {
	var dirs []string
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	for _, r := range roots {
		if fi, err := os.Stat(filepath.Join(r, cg)); err == nil && fi.IsDir() {
			dirs = append(dirs, filepath.Join(r, cg))
		}
	}
	return dirs
}

// cgroupRuns reports whether a process is left in cgroup path cg.
func cgroupRuns(cg string) bool {
	for _, dir := range CgroupDirs(cg) {
		if b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			return true
		}
	}
	return false
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
