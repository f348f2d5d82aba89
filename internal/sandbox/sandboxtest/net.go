package sandboxtest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// nothingLeft fails the test if the driver's Leftovers check finds
// something of sandbox id.
func (h *harness) nothingLeft(d sandbox.Driver, id string) {
	h.t.Helper()
	if h.opts.leftovers == nil {
		return
	}
	if left := h.opts.leftovers(d, id); len(left) > 0 {
		h.t.Errorf("%s: left after Stop: %s", id, strings.Join(left, "; "))
	}
}

// netHelperName is the program name under which the test binary, copied
// into a sandbox's working directory, runs as the network helper instead
// of as tests:
//
//	sandboxtest-net listen         listen on TCP 0.0.0.0:0, print "listening PORT",
//	                               answer each connection with "pong $STRATUS_SANDBOXTEST"
//	sandboxtest-net dial ADDR...   connect to each ADDR (host:port) with a
//	                               timeout; print "ADDR: pong ..." or "ADDR: error ..."
//	sandboxtest-net hold ADDR      connect to ADDR, print "connected", hold the
//	                               connection until the other end closes it
//	sandboxtest-net burn MS        use MS milliseconds of CPU time (its own,
//	                               getrusage), print "burnt", then sleep
const netHelperName = "sandboxtest-net"

// dialTimeout bounds each of the helper's connection attempts. Between
// isolated sandboxes the attempt finds no neighbour and times out.
const dialTimeout = 1500 * time.Millisecond

func init() {
	if len(os.Args) > 1 && filepath.Base(os.Args[0]) == netHelperName {
		os.Exit(netHelper(os.Args[1], os.Args[2:]))
	}
}

func netHelper(mode string, args []string) int {
	switch mode {
	case "listen":
		l, err := net.Listen("tcp4", "0.0.0.0:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("listening %d\n", l.Addr().(*net.TCPAddr).Port)
		marker := os.Getenv(markerKey)
		for {
			c, err := l.Accept()
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			fmt.Fprintf(c, "pong %s\n", marker)
			c.Close()
		}
	case "dial":
		for _, a := range args {
			fmt.Printf("%s: %s\n", a, dial(a))
		}
		return 0
	case "hold":
		c, err := net.DialTimeout("tcp", args[0], dialTimeout)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("connected")
		_, _ = io.Copy(io.Discard, c)
		return 0
	case "burn":
		ms, err := strconv.Atoi(args[0])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		// The loop's result goes out, so that no compiler drops the loop.
		fmt.Fprintln(os.Stderr, "burn result", burn(time.Duration(ms)*time.Millisecond))
		fmt.Println("burnt")
		time.Sleep(time.Hour)
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown mode %q\n", mode)
	return 2
}

// burn spins until the process has used d of CPU time.
func burn(d time.Duration) uint64 {
	x := uint64(1)
	for {
		for range 1 << 16 {
			x = x*6364136223846793005 + 1442695040888963407
		}
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return x
		}
		if time.Duration(ru.Utime.Nano()+ru.Stime.Nano()) >= d {
			return x
		}
	}
}

// dial connects to addr and returns the first line it sends, or "error"
// and why not.
func dial(addr string) string {
	c, err := net.DialTimeout("tcp4", addr, dialTimeout)
	if err != nil {
		return "error " + err.Error()
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "error " + err.Error()
	}
	return strings.TrimSpace(line)
}

// netSpec is a sandbox running the network helper, a copy of the test
// binary in its working directory (a host folder every driver makes
// visible at its own path).
func (h *harness) netSpec(id string, args ...string) sandbox.Spec {
	h.t.Helper()
	spec := h.spec(id, "")
	exe, err := os.Executable()
	if err != nil {
		h.t.Fatal(err)
	}
	helper := filepath.Join(spec.Dir, netHelperName)
	CopyFile(h.t, exe, helper, 0o755)
	spec.Argv = append([]string{helper}, args...)
	return spec
}

// listen starts a sandbox running the helper's listener and returns the
// address at which the host reaches it.
func (h *harness) listen(id string) netip.AddrPort {
	h.t.Helper()
	spec := h.netSpec(id, "listen")
	var stdout, stderr Buffer
	spec.Stdout, spec.Stderr = &stdout, &stderr
	h.start(h.d, spec)
	stdout.WaitFor(h.t, "\n")
	var port uint16
	if _, err := fmt.Sscanf(stdout.String(), "listening %d\n", &port); err != nil {
		h.t.Fatalf("%s: output %q, stderr %q", id, stdout.String(), stderr.String())
	}
	addr, err := h.d.Addr(h.ctx, id)
	if err != nil {
		h.t.Fatalf("Addr(%s): %v", id, err)
	}
	return netip.AddrPortFrom(addr, port)
}

// testNetListen: a port the sandbox listens on is reachable from the host
// at Addr; a sandbox with a network of its own has an address that is
// not the host's loopback. After Stop, Addr is ErrNotFound and nothing of
// the sandbox is left.
func testNetListen(t *testing.T, h *harness) {
	ap := h.listen("listener")
	if h.d.Capabilities().Isolated && ap.Addr().IsLoopback() {
		t.Errorf("Addr = %s: an isolated sandbox has an address of its own", ap.Addr())
	}
	want := "pong " + strings.TrimPrefix(h.marker, markerKey+"=")
	for range 3 {
		if got := dial(ap.String()); got != want {
			t.Fatalf("from the host, %s answered %q, want %q", ap, got, want)
		}
	}
	h.stop(h.d, "listener", time.Second)
	h.noneLeft("after Stop")
	h.nothingLeft(h.d, "listener")
	if _, err := h.d.Addr(h.ctx, "listener"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("Addr after Stop: err = %v, want ErrNotFound", err)
	}
	if _, err := h.d.Addr(h.ctx, "nobody"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("Addr of an unknown sandbox: err = %v, want ErrNotFound", err)
	}
}

// testNetIsolation: for drivers with Capabilities.Isolated, a sandbox
// reaches a listener of the host at HostIP, but not a port another
// sandbox listens on (which the host does reach).
func testNetIsolation(t *testing.T, h *harness) {
	caps := h.d.Capabilities()
	if !caps.Isolated {
		t.Skipf("the %s driver does not isolate sandboxes", h.d.Name())
	}
	if !caps.HostIP.IsValid() {
		t.Fatal("Capabilities.HostIP is not set for an isolated driver")
	}
	l, err := net.Listen("tcp4", netip.AddrPortFrom(caps.HostIP, 0).String())
	if err != nil {
		t.Fatalf("listen on the host at HostIP: %v", err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, "pong host")
			c.Close()
		}
	}()
	hostAP := l.Addr().String()

	a := h.listen("a")
	if got, want := dial(a.String()), "pong "+strings.TrimPrefix(h.marker, markerKey+"="); got != want {
		t.Fatalf("from the host, a answered %q, want %q", got, want)
	}
	spec := h.netSpec("b", "dial", hostAP, a.String())
	var stdout, stderr Buffer
	spec.Stdout, spec.Stderr = &stdout, &stderr
	h.start(h.d, spec)
	if e := h.wait(h.d, "b"); e.Code != 0 {
		t.Fatalf("b: Exit = %+v, stderr %q", e, stderr.String())
	}
	got := probeResults(stdout.String())
	if got[hostAP] != "pong host" {
		t.Errorf("from b, the host's listener at HostIP (%s) answered %q, want %q", hostAP, got[hostAP], "pong host")
	}
	if r := got[a.String()]; !strings.HasPrefix(r, "error ") {
		t.Errorf("from b, sandbox a (%s) answered %q, want an error", a, r)
	}
	h.stop(h.d, "a", 0)
	h.nothingLeft(h.d, "a")
	h.stop(h.d, "b", 0)
	h.nothingLeft(h.d, "b")
}

// testNetAddrs: concurrently live sandboxes have distinct addresses.
func testNetAddrs(t *testing.T, h *harness) {
	if !h.d.Capabilities().Isolated {
		t.Skipf("the %s driver does not isolate sandboxes", h.d.Name())
	}
	seen := make(map[netip.Addr]string)
	for i := range 4 {
		id := "addr-" + strconv.Itoa(i)
		h.run(id, "exec sleep 1000")
		a, err := h.d.Addr(h.ctx, id)
		if err != nil {
			t.Fatalf("Addr(%s): %v", id, err)
		}
		if other, ok := seen[a]; ok {
			t.Errorf("%s and %s both have address %s", id, other, a)
		}
		seen[a] = id
	}
	for i := range 4 {
		id := "addr-" + strconv.Itoa(i)
		h.stop(h.d, id, 0)
		h.nothingLeft(h.d, id)
	}
}

// testOwns: a connection that a program of sandbox a opens to a listener
// of the host is a's (Owns), not b's, whether that program is the
// sandbox's main process (b's) or one it forked (a's); a connection the
// host opens is neither's. Owns of an unknown or stopped sandbox is
// ErrNotFound.
func testOwns(t *testing.T, h *harness) {
	ip := h.d.Capabilities().HostIP
	if !ip.IsValid() {
		ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	l, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		t.Fatalf("listen on the host: %v", err)
	}
	defer l.Close()
	addr := l.Addr().String()
	// hold starts sandbox id, whose program (forked by a shell when child
	// is set) connects to the host's listener, and returns the host's end
	// of that connection.
	hold := func(id string, child bool) net.Conn {
		t.Helper()
		spec := h.netSpec(id, "hold", addr)
		if child {
			spec.Argv = []string{"/bin/sh", "-c", `"$0" hold "$1"; exit $?`, spec.Argv[0], addr}
		}
		var stdout, stderr Buffer
		spec.Stdout, spec.Stderr = &stdout, &stderr
		h.start(h.d, spec)
		_ = l.(*net.TCPListener).SetDeadline(time.Now().Add(h.timeout / 2))
		c, err := l.Accept()
		if err != nil {
			t.Fatalf("%s did not connect to the host: %v; output %q, stderr %q", id, err, stdout.String(), stderr.String())
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	ends := func(c net.Conn) (local, remote netip.AddrPort) {
		return c.LocalAddr().(*net.TCPAddr).AddrPort(), c.RemoteAddr().(*net.TCPAddr).AddrPort()
	}
	owns := func(id string, c net.Conn) bool {
		t.Helper()
		local, remote := ends(c)
		ok, err := h.d.Owns(h.ctx, id, local, remote)
		if err != nil {
			t.Fatalf("Owns(%s, %s → %s): %v", id, remote, local, err)
		}
		return ok
	}

	a := hold("a", true)
	b := hold("b", false)
	client, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from the host: %v", err)
	}
	defer client.Close()
	_ = l.(*net.TCPListener).SetDeadline(time.Now().Add(h.timeout / 2))
	host, err := l.Accept()
	if err != nil {
		t.Fatalf("accept the host's own connection: %v", err)
	}
	defer host.Close()

	for _, tc := range []struct {
		id   string
		conn net.Conn
		name string
		want bool
	}{
		{"a", a, "a's (from a process a forked)", true},
		{"b", a, "a's", false},
		{"b", b, "b's (from b's main process)", true},
		{"a", b, "b's", false},
		{"a", host, "the host's", false},
		{"b", host, "the host's", false},
	} {
		if got := owns(tc.id, tc.conn); got != tc.want {
			t.Errorf("Owns(%s, %s connection) = %v, want %v", tc.id, tc.name, got, tc.want)
		}
	}

	local, remote := ends(a)
	if _, err := h.d.Owns(h.ctx, "nobody", local, remote); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("Owns of an unknown sandbox: err = %v, want ErrNotFound", err)
	}
	h.stop(h.d, "a", 0)
	if ok, err := h.d.Owns(h.ctx, "a", local, remote); ok || !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("Owns after Stop = %v, %v; want false, ErrNotFound", ok, err)
	}
	h.stop(h.d, "b", 0)
}
