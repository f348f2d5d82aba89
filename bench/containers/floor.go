package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

// floors measures the floors of a cold start: the same static gosvc
// started as a plain process and in minimal runc bundles, and a program
// that only exits. Every bundle has a network namespace of its own (a new
// one: lo only), PID, IPC, UTS and mount namespaces, a read-only root that
// is a folder holding the one static binary, /proc, /dev and a read-only
// /sys; no cgroup limits, no seccomp, no capabilities. The bench reaches a
// container's port from inside its namespace: a thread of the bench
// enters it (setns) and connects to 127.0.0.1:8080 there, polling every
// 100 µs, as the process floor polls the host's loopback.
type floors struct {
	runc   string
	root   string // runc --root
	dir    string
	gosvc  string
	seq    int
	series map[string]*series
	order  []string
}

// Names of the floor series.
const (
	floorProcess     = "process: exec gosvc on the host, poll its port until it answers"
	floorRunTrue     = "runc run: a static program that only exits (exit_group), until runc exits"
	floorRunGoExit   = "runc run: gosvc exiting at start (Go runtime init), until runc exits"
	floorRunHTTP     = "runc run: gosvc until it answers HTTP (own netns)"
	floorRunSeccomp  = "runc run: the same with Docker's default seccomp profile (Stratus's)"
	floorCreateStart = "runc create ahead, then runc start: gosvc until it answers HTTP (start part only)"
	floorCreate      = "(runc create itself, untimed above)"
	floorCreateSecc  = "runc create ahead, then runc start, with the seccomp profile (start part only)"
	floorCreateSecc0 = "(runc create with the seccomp profile itself, untimed above)"
)

func newFloors(dir, gosvc string) (*floors, error) {
	bin, err := exec.LookPath("runc")
	if err != nil {
		return nil, fmt.Errorf("runc floors: %w", err)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("runc floors: need root")
	}
	f := &floors{runc: bin, root: filepath.Join(dir, "runc-root"), dir: dir, gosvc: gosvc, series: map[string]*series{}}
	for _, n := range []string{floorProcess, floorRunTrue, floorRunGoExit, floorRunHTTP, floorRunSeccomp, floorCreateStart, floorCreate, floorCreateSecc, floorCreateSecc0} {
		f.series[n] = &series{Name: n}
		f.order = append(f.order, n)
	}
	if err := os.MkdirAll(f.root, 0o700); err != nil {
		return nil, err
	}
	goRoot := filepath.Join(dir, "rootfs-gosvc")
	if err := rootfsWith(goRoot, "gosvc", gosvc); err != nil {
		return nil, err
	}
	env := []string{"PATH=/", "PORT=8080"}
	if err := f.bundle("gosvc", goRoot, []string{"/gosvc"}, env); err != nil {
		return nil, err
	}
	if err := f.bundle("gosvc-seccomp", goRoot, []string{"/gosvc"}, env); err != nil {
		return nil, err
	}
	if err := f.bundle("gosvc-exit", goRoot, []string{"/gosvc"}, append(env, "EXIT_AT_START=0")); err != nil {
		return nil, err
	}
	if elf := exitELF(); elf != nil {
		trueRoot := filepath.Join(dir, "rootfs-true")
		p := filepath.Join(dir, "exit0")
		if err := os.WriteFile(p, elf, 0o755); err != nil {
			return nil, err
		}
		if err := exec.Command(p).Run(); err != nil {
			return nil, fmt.Errorf("the exit-only program does not run on the host: %w", err)
		}
		if err := rootfsWith(trueRoot, "true", p); err != nil {
			return nil, err
		}
		if err := f.bundle("true", trueRoot, []string{"/true"}, []string{"PATH=/"}); err != nil {
			return nil, err
		}
	} else {
		delete(f.series, floorRunTrue)
	}
	return f, nil
}

// rootfsWith makes dir a root filesystem holding only the file src as
// /name (and empty mount points).
func rootfsWith(dir, name, src string) error {
	for _, d := range []string{"proc", "dev", "sys"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name), b, 0o755)
}

// bundle writes the OCI bundle name (its config.json) running args in
// rootfs.
func (f *floors) bundle(name, rootfs string, args, env []string) error {
	dir := filepath.Join(f.dir, "bundle-"+name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	none := []string{}
	s := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			User: specs.User{UID: 0, GID: 0},
			Args: args,
			Env:  env,
			Cwd:  "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: none, Effective: none, Permitted: none, Inheritable: none, Ambient: none,
			},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			NoNewPrivileges: true,
		},
		Root:     &specs.Root{Path: rootfs, Readonly: true},
		Hostname: "floor",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.NetworkNamespace}, // no path: a new one
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.MountNamespace},
			},
			RootfsPropagation: "rprivate",
		},
	}
	if strings.HasSuffix(name, "-seccomp") {
		p, err := seccomp.GetDefaultProfile(s)
		if err != nil {
			return fmt.Errorf("docker's default seccomp profile: %w", err)
		}
		s.Linux.Seccomp = p
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600)
}

// next is a fresh container ID; its cgroup is /stratus-bench-floor-ID
// (runc removes it with the container).
func (f *floors) next() string {
	f.seq++
	return fmt.Sprintf("floor-%d-%d", os.Getpid(), f.seq)
}

// runcCmd is runc with the floors' root. Its stderr (and that of a
// container it runs in the foreground) goes to a file, not a pipe: a
// container keeps what runc gives it, and os/exec would wait for a pipe
// to close. stderr reads that file; done removes it.
func (f *floors) runcCmd(args ...string) *runcCmd {
	cmd := exec.Command(f.runc, append([]string{"--root", f.root}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	errf, err := os.CreateTemp(f.dir, "runc-stderr-")
	if err == nil {
		cmd.Stderr = errf
	}
	return &runcCmd{Cmd: cmd, errf: errf}
}

type runcCmd struct {
	*exec.Cmd
	errf *os.File
}

func (c *runcCmd) stderr() string {
	if c.errf == nil {
		return ""
	}
	b, _ := os.ReadFile(c.errf.Name())
	return strings.TrimSpace(string(b))
}

func (c *runcCmd) done() {
	if c.errf != nil {
		c.errf.Close()
		os.Remove(c.errf.Name())
	}
}

// run runs the command and removes its stderr file; a failure's error
// holds its stderr.
func (c *runcCmd) run() error {
	defer c.done()
	if err := c.Run(); err != nil {
		return fmt.Errorf("runc %s: %w: %s", c.Args[3], err, c.stderr())
	}
	return nil
}

// setCgroup points bundle name's config at a cgroup of its own for id.
// runc reads config.json at create time, so it is rewritten per run.
func (f *floors) setCgroup(name, id string) (string, error) {
	dir := filepath.Join(f.dir, "bundle-"+name)
	p := filepath.Join(dir, "config.json")
	b, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return "", err
	}
	s.Linux.CgroupsPath = "/stratus-bench-" + id
	if b, err = json.Marshal(&s); err != nil {
		return "", err
	}
	return dir, os.WriteFile(p, b, 0o600)
}

// remove kills and deletes container id (untimed teardown).
func (f *floors) remove(id string) {
	_ = f.runcCmd("kill", id, "KILL").run()
	_ = f.runcCmd("delete", "--force", id).run()
}

// runOnce measures every floor once, in turn.
func (f *floors) runOnce(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d, err := f.process()
	if err != nil {
		return fmt.Errorf("process floor: %w", err)
	}
	f.series[floorProcess].add(d)
	pause()
	if _, ok := f.series[floorRunTrue]; ok {
		if d, err = f.runUntilExit("true"); err != nil {
			return fmt.Errorf("runc run floor (exit): %w", err)
		}
		f.series[floorRunTrue].add(d)
		pause()
	}
	if d, err = f.runUntilExit("gosvc-exit"); err != nil {
		return fmt.Errorf("runc run floor (gosvc exit): %w", err)
	}
	f.series[floorRunGoExit].add(d)
	pause()
	if d, err = f.runUntilHTTP("gosvc"); err != nil {
		return fmt.Errorf("runc run floor (HTTP): %w", err)
	}
	f.series[floorRunHTTP].add(d)
	pause()
	if d, err = f.runUntilHTTP("gosvc-seccomp"); err != nil {
		return fmt.Errorf("runc run floor (HTTP, seccomp): %w", err)
	}
	f.series[floorRunSeccomp].add(d)
	pause()
	create, start, err := f.createThenStart("gosvc")
	if err != nil {
		return fmt.Errorf("runc create/start floor: %w", err)
	}
	f.series[floorCreate].add(create)
	f.series[floorCreateStart].add(start)
	pause()
	if create, start, err = f.createThenStart("gosvc-seccomp"); err != nil {
		return fmt.Errorf("runc create/start floor (seccomp): %w", err)
	}
	f.series[floorCreateSecc].add(start)
	f.series[floorCreateSecc0].add(create)
	pause()
	return nil
}

// pause lets the previous run's teardown settle.
func pause() { time.Sleep(20 * time.Millisecond) }

func (f *floors) results() []series {
	var out []series
	for _, n := range f.order {
		if s, ok := f.series[n]; ok {
			s.summarise()
			out = append(out, *s)
		}
	}
	return out
}

// process execs gosvc on the host and polls its port until it answers.
func (f *floors) process() (time.Duration, error) {
	addr, err := benchkit.FreeAddr()
	if err != nil {
		return 0, err
	}
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(f.gosvc)
	cmd.Env = []string{"PORT=" + port}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	conn, err := benchkit.PollDial(addr, start.Add(10*time.Second))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if err := benchkit.FirstAnswer(conn); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// runUntilExit times `runc run` of bundle name until runc exits.
func (f *floors) runUntilExit(name string) (time.Duration, error) {
	id := f.next()
	dir, err := f.setCgroup(name, id)
	if err != nil {
		return 0, err
	}
	defer f.remove(id)
	cmd := f.runcCmd("run", "--bundle", dir, id)
	start := time.Now()
	err = cmd.run()
	d := time.Since(start)
	if err != nil {
		return 0, err
	}
	return d, nil
}

// runUntilHTTP times `runc run` of bundle name (gosvc) until it answers
// GET / inside the container's network namespace.
func (f *floors) runUntilHTTP(name string) (time.Duration, error) {
	id := f.next()
	dir, err := f.setCgroup(name, id)
	if err != nil {
		return 0, err
	}
	pidFile := filepath.Join(f.dir, id+".pid")
	defer os.Remove(pidFile)
	cmd := f.runcCmd("run", "--bundle", dir, "--pid-file", pidFile, id)
	defer cmd.done()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		f.remove(id)
		<-exited
	}()
	deadline := start.Add(10 * time.Second)
	var pid int
	for {
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err = strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				break
			}
		}
		select {
		case err := <-exited:
			exited <- err
			return 0, fmt.Errorf("runc run ended: %v: %s", err, cmd.stderr())
		default:
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no pid file within 10s")
		}
		time.Sleep(100 * time.Microsecond)
	}
	ns, err := os.Open("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if err != nil {
		return 0, err
	}
	defer ns.Close()
	conn, err := dialIn(ns, "127.0.0.1:8080", deadline)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if err := benchkit.FirstAnswer(conn); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// createThenStart runs `runc create` of bundle name (gosvc; timed
// apart), then times `runc start` until gosvc answers.
func (f *floors) createThenStart(name string) (create, start time.Duration, err error) {
	id := f.next()
	dir, err := f.setCgroup(name, id)
	if err != nil {
		return 0, 0, err
	}
	pidFile := filepath.Join(f.dir, id+".pid")
	defer os.Remove(pidFile)
	defer f.remove(id)
	c0 := time.Now()
	if err := f.runcCmd("create", "--bundle", dir, "--pid-file", pidFile, id).run(); err != nil {
		return 0, 0, err
	}
	create = time.Since(c0)
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, 0, err
	}
	ns, err := os.Open("/proc/" + strings.TrimSpace(string(b)) + "/ns/net")
	if err != nil {
		return 0, 0, err
	}
	defer ns.Close()
	time.Sleep(5 * time.Millisecond)
	cmd := f.runcCmd("start", id)
	defer cmd.done()
	s0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	conn, err := dialIn(ns, "127.0.0.1:8080", s0.Add(10*time.Second))
	if err != nil {
		_ = cmd.Wait()
		return 0, 0, fmt.Errorf("%w (runc start: %s)", err, cmd.stderr())
	}
	defer conn.Close()
	if err := benchkit.FirstAnswer(conn); err != nil {
		_ = cmd.Wait()
		return 0, 0, err
	}
	start = time.Since(s0)
	if err := cmd.Wait(); err != nil {
		return 0, 0, fmt.Errorf("runc start: %w: %s", err, cmd.stderr())
	}
	return create, start, nil
}

// cleanup deletes whatever container of the floors' runc root is left.
func (f *floors) cleanup() {
	cmd := f.runcCmd("list", "-q")
	defer cmd.done()
	out, err := cmd.Output()
	if err != nil {
		return
	}
	for _, id := range strings.Fields(string(out)) {
		f.remove(id)
	}
}

// dialIn connects to addr from inside the network namespace ns, polling
// every 100 µs until deadline. The connecting goroutine's thread enters
// the namespace and goes back to its own before it is unlocked; if it
// cannot, the thread stays locked and ends with the goroutine. (A thread
// that ends would also fire the parent-death signal of the children it
// started, the Stratus server among them: the thread must come back.)
// The connection works from any thread.
func dialIn(ns *os.File, addr string, deadline time.Time) (net.Conn, error) {
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- res{err: err}
			return
		}
		defer home.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- res{err: fmt.Errorf("setns: %w", err)}
			return
		}
		c, err := benchkit.PollDial(addr, deadline)
		if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		ch <- res{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// exitELF is a static x86-64 ELF executable that only calls
// exit_group(0): 129 bytes, no libc, no runtime. Nil on other
// architectures.
func exitELF() []byte {
	if runtime.GOARCH != "amd64" {
		return nil
	}
	code := []byte{
		0xb8, 0xe7, 0x00, 0x00, 0x00, // mov eax, 231 (exit_group)
		0x31, 0xff, // xor edi, edi
		0x0f, 0x05, // syscall
	}
	const base, ehdr, phdr = 0x400000, 64, 56
	size := uint64(ehdr + phdr + len(code))
	le := binary.LittleEndian
	b := []byte{0x7f, 'E', 'L', 'F', 2 /* 64-bit */, 1 /* little endian */, 1 /* version */, 0 /* System V */, 0, 0, 0, 0, 0, 0, 0, 0}
	b = le.AppendUint16(b, 2)    // ET_EXEC
	b = le.AppendUint16(b, 0x3e) // EM_X86_64
	b = le.AppendUint32(b, 1)    // EV_CURRENT
	b = le.AppendUint64(b, base+ehdr+phdr)
	b = le.AppendUint64(b, ehdr) // program headers right after this header
	b = le.AppendUint64(b, 0)    // no section headers
	b = le.AppendUint32(b, 0)    // flags
	b = le.AppendUint16(b, ehdr)
	b = le.AppendUint16(b, phdr)
	b = le.AppendUint16(b, 1) // one program header
	b = le.AppendUint16(b, 0)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint32(b, 1) // PT_LOAD
	b = le.AppendUint32(b, 5) // PF_R | PF_X
	b = le.AppendUint64(b, 0) // the whole file
	b = le.AppendUint64(b, base)
	b = le.AppendUint64(b, base)
	b = le.AppendUint64(b, size)
	b = le.AppendUint64(b, size)
	b = le.AppendUint64(b, 0x1000)
	return append(b, code...)
}
