package runc_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/sandbox"
	"github.com/stratus-run/stratus/internal/sandbox/runc"
	"github.com/stratus-run/stratus/internal/sandbox/sandboxtest"
)

// leftovers is what is left on the host of sandbox id: cgroups, runc
// state, bundle, mounts and network.
func leftovers(d *runc.Driver, id string) []string {
	var left []string
	if dirs := runc.CgroupDirs(d.CgroupPath(id)); len(dirs) > 0 {
		left = append(left, fmt.Sprintf("cgroups %v", dirs))
	}
	if _, err := os.Lstat(d.BundleDir(id)); err == nil {
		left = append(left, "bundle "+d.BundleDir(id))
	}
	return append(left, netLeftovers(d, id)...)
}

// netLeftovers is what is left of sandbox id's network: its veth, its
// address file. (Its namespace has no name; see netnsHolders.)
func netLeftovers(d *runc.Driver, id string) []string {
	var left []string
	if _, err := os.Lstat("/sys/class/net/" + d.VethName(id)); err == nil {
		left = append(left, "veth "+d.VethName(id))
	}
	if _, err := os.Lstat(d.AddrFile(id)); err == nil {
		left = append(left, "address file "+d.AddrFile(id))
	}
	return left
}

// netnsHolders returns what keeps network namespace ns ("net:[INODE]")
// alive: processes in it, open descriptors of it, mounts of it. With
// none, the kernel has destroyed it.
func netnsHolders(ns string) []string {
	var holders []string
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		if l, _ := os.Readlink(p + "/ns/net"); l == ns {
			holders = append(holders, p+"/ns/net")
		}
		fds, _ := filepath.Glob(p + "/fd/*")
		for _, fd := range fds {
			if l, _ := os.Readlink(fd); l == ns {
				holders = append(holders, fd)
			}
		}
		if b, err := os.ReadFile(p + "/mountinfo"); err == nil && strings.Contains(string(b), ns) {
			holders = append(holders, p+"/mountinfo")
		}
	}
	return holders
}

func bridgeExists(name string) bool {
	_, err := os.Lstat("/sys/class/net/" + name)
	return err == nil
}

// start starts script in sandbox id and stops it when the test ends.
func start(t *testing.T, d *runc.Driver, id, script string, stdout *sandboxtest.Buffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	spec := sandbox.Spec{
		ID: id, Argv: []string{"/bin/sh", "-c", script},
		Env: []string{"PATH=/usr/bin:/bin"}, Dir: t.TempDir(), MemoryMB: 128,
	}
	if stdout != nil {
		spec.Stdout = stdout
	}
	if err := d.Start(ctx, spec); err != nil {
		t.Fatalf("Start(%s): %v", id, err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background(), id, 0) })
}

// TestNetwork: a sandbox has lo and eth0 only, its own address and a
// default route via the host. Once it is stopped, its network namespace
// is gone (nothing holds it).
func TestNetwork(t *testing.T) {
	d := newDriver(t, t.TempDir())
	caps := d.Capabilities()
	if !caps.Isolated || !caps.HostIP.IsValid() {
		t.Fatalf("Capabilities = %+v, want Isolated and a HostIP", caps)
	}
	start(t, d, "other", "exec sleep 1000", nil)
	ctx := context.Background()
	var out sandboxtest.Buffer
	start(t, d, "net", `awk -F: 'NR > 2 { printf "%s ", $1 }' /proc/net/dev | tr -d ' ' ; echo
awk 'NR > 1 && $2 == "00000000" { print $1, $3 }' /proc/net/route
readlink /proc/self/ns/net
echo done; exec sleep 1000`, &out)
	out.WaitFor(t, "done\n")
	addr, err := d.Addr(ctx, "net")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("output %q", out.String())
	}
	if lines[0] != "loeth0" && lines[0] != "eth0lo" {
		t.Errorf("links in the sandbox: %q, want lo and eth0", lines[0])
	}
	// /proc/net/route has the gateway as a little-endian hex word.
	h := caps.HostIP.As4()
	if want := fmt.Sprintf("eth0 %02X%02X%02X%02X", h[3], h[2], h[1], h[0]); lines[1] != want {
		t.Errorf("default route %q, want %q (via %s)", lines[1], want, caps.HostIP)
	}
	other, _ := d.Addr(ctx, "other")
	prefix := netip.PrefixFrom(caps.HostIP, 24)
	if !prefix.Contains(addr) || !prefix.Contains(other) || addr == other || addr == caps.HostIP {
		t.Errorf("addresses: host %s, net %s, other %s", caps.HostIP, addr, other)
	}
	if !bridgeExists(d.Bridge()) || len(d.Bridge()) > 15 || !strings.HasPrefix(d.Bridge(), "strat") {
		t.Errorf("bridge %q", d.Bridge())
	}
	ns := lines[2]
	if self, _ := os.Readlink("/proc/self/ns/net"); !strings.HasPrefix(ns, "net:[") || ns == self {
		t.Fatalf("the sandbox's network namespace is %q, the host's %q", ns, self)
	}
	if err := d.Stop(ctx, "net", 0); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(d, "net"); len(left) > 0 {
		t.Errorf("left after Stop: %v", left)
	}
	if holders := netnsHolders(ns); len(holders) > 0 {
		t.Errorf("the sandbox's network namespace %s is still held by %v", ns, holders)
	}
}

// TestSubnetOption: a configured subnet is used; a bad one is refused,
// and so is one that overlaps a subnet in use on the host.
func TestSubnetOption(t *testing.T) {
	newDriver(t, t.TempDir()) // skips without runc or root
	subnet := netip.MustParsePrefix("10.89.250.16/28")
	d, err := runc.New(runc.Config{StateDir: t.TempDir(), Subnet: subnet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	if got := d.Capabilities().HostIP; got != netip.MustParseAddr("10.89.250.17") {
		t.Errorf("HostIP = %s, want 10.89.250.17", got)
	}
	start(t, d, "in-subnet", "exec sleep 1000", nil)
	if a, err := d.Addr(context.Background(), "in-subnet"); err != nil || !subnet.Contains(a) {
		t.Errorf("Addr = %s, %v; want an address in %s", a, err, subnet)
	}
	_, err = runc.New(runc.Config{StateDir: t.TempDir(), Subnet: netip.MustParsePrefix("10.89.250.0/24")})
	if !errors.Is(err, stratus.ErrUnavailable) {
		t.Errorf("New with a subnet overlapping another driver's: err = %v, want ErrUnavailable", err)
	}
	for _, bad := range []string{"fd00:88::/64", "10.89.251.0/31", "10.0.0.0/8"} {
		_, err := runc.New(runc.Config{StateDir: t.TempDir(), Subnet: netip.MustParsePrefix(bad)})
		if !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("New with subnet %s: err = %v, want ErrInvalid", bad, err)
		}
	}
}

// TestClose: Close keeps the bridge while a sandbox is left, and removes
// it, and the netns dir's mount, once none is.
func TestClose(t *testing.T) {
	stateDir := t.TempDir()
	d := newDriver(t, stateDir)
	br := d.Bridge()
	if !bridgeExists(br) {
		t.Fatalf("bridge %s missing", br)
	}
	start(t, d, "left", "exec sleep 1000", nil)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if !bridgeExists(br) {
		t.Fatal("Close removed the bridge while a sandbox runs")
	}
	if err := d.Stop(context.Background(), "left", 0); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(d, "left"); len(left) > 0 {
		t.Errorf("left after Stop: %v", left)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if bridgeExists(br) {
		t.Errorf("bridge %s left after Close", br)
	}
	err := d.Start(context.Background(), sandbox.Spec{ID: "late", Argv: []string{"/bin/true"}})
	if err == nil {
		_ = d.Stop(context.Background(), "late", 0)
		t.Error("Start after Close succeeded")
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// Environment of crashHelper, the server that crashes: its state dir
// and the folder whose file "go" ends its sandbox "ends".
const (
	crashHelperEnv = "STRATUS_RUNC_CRASH_HELPER"
	crashGateEnv   = "STRATUS_RUNC_CRASH_GATE"
)

// TestCrashLeftovers: a server (crashHelper in a child process)
// starts two sandboxes and is killed. One sandbox ends while no server
// runs, leaving its address file and bundle behind; the other runs on. A new driver's List cleans up the first and lists the second,
// Stop removes everything of it, Close the bridge.
func TestCrashLeftovers(t *testing.T) {
	stateDir := t.TempDir()
	newDriver(t, stateDir)          // skips without runc or root; its Close runs last
	gate := t.TempDir()             // "ends" runs until a file appears in it
	cmd := exec.Command(os.Args[0]) // TestMain runs crashHelper
	cmd.Env = append(os.Environ(), crashHelperEnv+"="+stateDir, crashGateEnv+"="+gate)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan error, 1)
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			if s.Text() == "crash helper: ready" {
				ready <- nil
				return
			}
		}
		ready <- errors.New("crash helper ended before it was ready")
	}()
	select {
	case err := <-ready:
		if err != nil {
			_ = cmd.Wait()
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("crash helper not ready after 60s")
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()

	// "ends" exits after the crash; runc's state says so, but nothing
	// tears down the rest.
	if err := os.WriteFile(filepath.Join(gate, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 30*time.Second, "runc to report container ends stopped", func() bool {
		out, _ := exec.Command("runc", "--root", filepath.Join(stateDir, "runc"), "state", "ends").Output()
		return strings.Contains(string(out), `"status": "stopped"`)
	})
	d := newDriver(t, stateDir)
	// The namespace of "ends" died with its container and took the veth
	// with it; the address file is left. "alive" has both.
	if left := netLeftovers(d, "alive"); len(left) != 2 {
		t.Fatalf("alive after the crash: %v, want its veth and address file", left)
	}
	if _, err := os.Lstat(d.AddrFile("ends")); err != nil {
		t.Fatalf("ends after the crash: %v, want its address file", err)
	}
	ids, err := d.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, []string{"alive"}) {
		t.Errorf("List = %v, want [alive]", ids)
	}
	if left := leftovers(d, "ends"); len(left) > 0 {
		t.Errorf("ends: left after List: %v", left)
	}
	if err := d.Stop(context.Background(), "alive", time.Second); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(d, "alive"); len(left) > 0 {
		t.Errorf("alive: left after Stop: %v", left)
	}
	br := d.Bridge()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if bridgeExists(br) {
		t.Errorf("bridge %s left after Close", br)
	}
}

// TestMain runs the tests, or, in the child process TestCrashLeftovers
// starts (crashHelperEnv set), the server it kills.
func TestMain(m *testing.M) {
	if stateDir := os.Getenv(crashHelperEnv); stateDir != "" {
		if err := crashHelper(stateDir); err != nil {
			fmt.Fprintln(os.Stderr, "crash helper:", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

// crashHelper is the server TestCrashLeftovers kills: it starts two
// sandboxes, says so, and waits to be killed.
func crashHelper(stateDir string) error {
	d, err := runc.New(runc.Config{StateDir: stateDir})
	if err != nil {
		return err
	}
	ctx := context.Background()
	for id, script := range map[string]string{"alive": "exec sleep 1000", "ends": "while [ ! -e go ]; do sleep 0.02; done"} {
		err := d.Start(ctx, sandbox.Spec{
			ID: id, Argv: []string{"/bin/sh", "-c", script},
			Env: []string{"PATH=/usr/bin:/bin"}, Dir: os.Getenv(crashGateEnv), MemoryMB: 64,
		})
		if err != nil {
			return err
		}
	}
	fmt.Println("crash helper: ready")
	time.Sleep(time.Minute) // killed before
	return errors.New("not killed within a minute")
}
