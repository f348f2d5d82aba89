package runc

import (
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"
)

func TestLastAddr(t *testing.T) {
	for _, tc := range []struct{ prefix, want string }{
		{"10.88.3.0/24", "10.88.3.255"},
		{"10.89.250.16/28", "10.89.250.31"},
		{"10.88.0.0/16", "10.88.255.255"},
		{"192.168.1.4/30", "192.168.1.7"},
	} {
		if got := lastAddr(netip.MustParsePrefix(tc.prefix)); got != netip.MustParseAddr(tc.want) {
			t.Errorf("lastAddr(%s) = %s, want %s", tc.prefix, got, tc.want)
		}
	}
}

// TestAllocate: addresses go round robin over the subnet without the
// host's and the broadcast address, and run out with ErrCapacity.
func TestAllocate(t *testing.T) {
	n := &network{
		subnet: netip.MustParsePrefix("10.89.250.0/29"), hostIP: netip.MustParseAddr("10.89.250.1"),
		addrDir: t.TempDir(), owner: make(map[netip.Addr]string), addrOf: make(map[string]netip.Addr),
	}
	n.next = n.hostIP.Next()
	var got []string
	for i := range 5 {
		a, err := n.allocate("s" + strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, a.String())
	}
	if want := "[10.89.250.2 10.89.250.3 10.89.250.4 10.89.250.5 10.89.250.6]"; strconv.Quote(want) != strconv.Quote(fmtList(got)) {
		t.Errorf("allocated %v, want %s", got, want)
	}
	if _, err := n.allocate("full"); err == nil {
		t.Error("allocate in a full subnet succeeded")
	}
	// Freed: s1's address is the next one given, s3's after it.
	for _, id := range []string{"s3", "s1"} {
		_ = os.Remove(n.addrFile(id))
		a := n.addrOf[id]
		delete(n.addrOf, id)
		delete(n.owner, a)
	}
	for _, want := range []string{"10.89.250.3", "10.89.250.5"} {
		if a, err := n.allocate("again-" + want); err != nil || a.String() != want {
			t.Errorf("allocate = %s, %v; want %s", a, err, want)
		}
	}
}

func fmtList(s []string) string {
	out := "["
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out + "]"
}

// BenchmarkNetworkSetup is what a sandbox's network costs: setup (a
// namespace, a veth pair on the bridge, addresses and routes) on the cold
// start path, teardown after the sandbox ended.
func BenchmarkNetworkSetup(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	n, err := newNetwork(b.TempDir(), netip.Prefix{}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = n.close() })
	var setup, teardown time.Duration
	for i := 0; b.Loop(); i++ {
		id := "b" + strconv.Itoa(i)
		t0 := time.Now()
		if _, _, err := n.setup(id); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := n.teardown(id); err != nil {
			b.Fatal(err)
		}
		setup += t1.Sub(t0)
		teardown += time.Since(t1)
	}
	b.ReportMetric(float64(setup.Microseconds())/float64(b.N), "µs-setup/op")
	b.ReportMetric(float64(teardown.Microseconds())/float64(b.N), "µs-teardown/op")
}
