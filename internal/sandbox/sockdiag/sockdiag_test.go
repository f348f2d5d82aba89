package sockdiag_test

import (
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/stratus-run/stratus/internal/sandbox/sockdiag"
)

// TestInodeAndHolds: the client end of a loopback connection is found by
// its four addresses, and this process holds it; no other process does,
// and an address pair with no socket gives 0.
func TestInodeAndHolds(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		ln, err := net.Listen(network, map[string]string{"tcp4": "127.0.0.1:0", "tcp6": "[::1]:0"}[network])
		if err != nil {
			// A host without IPv6 on its loopback has no tcp6 to test;
			// CI's machines have it.
			if network == "tcp4" || os.Getenv("CI") == "true" {
				t.Fatalf("%s loopback: %v", network, err)
			}
			t.Skipf("%s loopback: %v", network, err)
		}
		defer ln.Close()
		c, err := net.Dial(network, ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		local := c.LocalAddr().(*net.TCPAddr).AddrPort()
		remote := c.RemoteAddr().(*net.TCPAddr).AddrPort()
		ino, err := sockdiag.Inode(local, remote)
		if err != nil || ino == 0 {
			t.Fatalf("%s: Inode = %d, %v", network, ino, err)
		}
		if !sockdiag.Holds(os.Getpid(), sockdiag.Link(ino)) {
			t.Errorf("%s: this process does not hold %s", network, sockdiag.Link(ino))
		}
		if sockdiag.Holds(os.Getppid(), sockdiag.Link(ino)) {
			t.Errorf("%s: the parent holds the test's socket", network)
		}
		none, err := sockdiag.Inode(netip.AddrPortFrom(local.Addr(), 1), remote)
		if err != nil || none != 0 {
			t.Errorf("%s: Inode of no socket = %d, %v; want 0", network, none, err)
		}
	}
}
