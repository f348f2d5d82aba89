package runc

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/stratus-run/stratus"
)

// defaultNet is where the default subnet of a driver is picked: a /24
// inside it, the first free one from an index given by a hash of the
// state dir.
var defaultNet = netip.MustParsePrefix("10.88.0.0/16")

// vethGoneTimeout bounds the wait for the kernel to delete a sandbox's
// veth with its namespace; after it, teardown deletes the veth itself.
const vethGoneTimeout = 5 * time.Second

// network is the host side of the sandboxes' networking: one bridge per
// driver, one network namespace, veth pair and address per sandbox. See
// the package doc for what a sandbox can reach.
//
// A sandbox's namespace has no name and no mount: the driver holds it
// open (an fd, which runc joins as /proc/PID/fd/N) from setup until
// teardown, and the container's processes hold it while they run. When
// both are gone the kernel destroys it, and with it the veth pair, in a
// batch with other dying namespaces. Deleting a veth over netlink instead
// costs ~25 ms of RCU grace periods under the RTNL lock, during which
// every other sandbox's setup waits; teardown does that only when the
// namespace outlives its container (vethGoneTimeout). A namespace bind
// mount would be copied, with the host's root, into every container
// started meanwhile and keep the namespace alive as long as they run.
//
// State on disk: stateDir/addrs/ID holds the sandbox's address; it is
// written before the namespace and veth are made and removed once they
// are gone, so it lists every sandbox that may have left something, and
// the veth's name follows from the ID (vethName). That is how a restarted
// server finds and cleans up what an earlier one left.
type network struct {
	bridge  string       // name of the bridge, "strat" + 6 hex digits
	subnet  netip.Prefix // masked
	hostIP  netip.Addr   // the bridge's address: the subnet's first
	addrDir string
	salt    string          // makes veth names differ between drivers
	host    *netlink.Handle // netlink sockets in the host's namespace
	log     *slog.Logger

	mu      sync.Mutex
	brIndex int
	owner   map[netip.Addr]string     // allocated address → sandbox ID
	addrOf  map[string]netip.Addr     // sandbox ID → its address
	ns      map[string]netns.NsHandle // sandbox ID → its namespace, held open
	next    netip.Addr                // where the search for a free address starts
	closed  bool
}

// newNetwork sets up the bridge and the state dirs. subnet may be zero
// for the default.
func newNetwork(stateDir string, subnet netip.Prefix, log *slog.Logger) (*network, error) {
	if subnet.IsValid() {
		subnet = subnet.Masked()
		if !subnet.Addr().Is4() || subnet.Bits() < 16 || subnet.Bits() > 30 {
			return nil, fmt.Errorf("sandbox subnet %s: want IPv4, /16 to /30: %w", subnet, stratus.ErrInvalid)
		}
	}
	sum := sha256.Sum256([]byte(stateDir))
	n := &network{
		bridge:  "strat" + hex.EncodeToString(sum[:3]),
		addrDir: filepath.Join(stateDir, "addrs"),
		salt:    stateDir,
		log:     log,
		owner:   make(map[netip.Addr]string),
		addrOf:  make(map[string]netip.Addr),
		ns:      make(map[string]netns.NsHandle),
	}
	if err := os.MkdirAll(n.addrDir, 0o700); err != nil {
		return nil, fmt.Errorf("create sandbox state dir: %w", err)
	}
	host, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w: %w", err, stratus.ErrUnavailable)
	}
	n.host = host
	if !subnet.IsValid() {
		if subnet, err = n.pickSubnet(sum[3]); err != nil {
			host.Close()
			return nil, err
		}
	}
	n.subnet, n.hostIP = subnet, subnet.Addr().Next()
	n.next = n.hostIP.Next()
	if err := n.ensureBridge(); err != nil {
		host.Close()
		return nil, err
	}
	// What an earlier server allocated stays taken until it is torn down.
	ents, _ := os.ReadDir(n.addrDir)
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(n.addrDir, e.Name()))
		if a, err := netip.ParseAddr(strings.TrimSpace(string(b))); err == nil {
			n.owner[a] = e.Name()
			n.addrOf[e.Name()] = a
		}
	}
	return n, nil
}

// dumpAttempts bounds the retries of a netlink dump that another
// change of the host's links interrupted.
const dumpAttempts = 10

// addrList lists the IPv4 addresses of link (nil: of every link) through
// h. A dump during which links or addresses changed (other sandboxes'
// veths come and go) is reported interrupted and may be incomplete: it
// is taken again, up to dumpAttempts times.
func addrList(h *netlink.Handle, link netlink.Link) ([]netlink.Addr, error) {
	for i := 1; ; i++ {
		addrs, err := h.AddrList(link, netlink.FAMILY_V4)
		if !errors.Is(err, netlink.ErrDumpInterrupted) || i == dumpAttempts {
			return addrs, err
		}
	}
}

// pickSubnet picks the default subnet: the one the bridge has if an
// earlier server on the state dir made it, else the first /24 of
// defaultNet from the one at index start on that overlaps no address of
// the host.
func (n *network) pickSubnet(start byte) (netip.Prefix, error) {
	addrs, err := addrList(n.host, nil)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("list host addresses: %w", err)
	}
	own := -1
	if br, err := n.host.LinkByName(n.bridge); err == nil {
		own = br.Attrs().Index
	}
	var inUse []netip.Prefix
	for _, a := range addrs {
		p, ok := prefixOf(a.IPNet)
		if !ok {
			continue
		}
		if a.LinkIndex == own && p.Bits() == 24 && defaultNet.Contains(p.Addr()) {
			return p, nil
		}
		inUse = append(inUse, p)
	}
	for i := range 256 {
		b := defaultNet.Addr().As4()
		b[2] = start + byte(i)
		p := netip.PrefixFrom(netip.AddrFrom4(b), 24)
		if !slices.ContainsFunc(inUse, p.Overlaps) {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("sandbox subnet: every /24 of %s is in use on the host; configure one: %w", defaultNet, stratus.ErrUnavailable)
}

// ensureBridge creates the bridge unless it exists (an earlier server on
// the same state dir made it), gives it the host address and brings it up.
func (n *network) ensureBridge() error {
	br, err := n.host.LinkByName(n.bridge)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		br = nil
	case err != nil:
		return fmt.Errorf("bridge %s: %w", n.bridge, err)
	case br.Type() != "bridge":
		return fmt.Errorf("bridge %s: a %s link has that name: %w", n.bridge, br.Type(), stratus.ErrUnavailable)
	}
	// The subnet must not be in use on the host already (another server's
	// bridge with the same hash byte, a VPN, podman's 10.88.0.0/16).
	addrs, err := addrList(n.host, nil)
	if err != nil {
		return fmt.Errorf("list host addresses: %w", err)
	}
	for _, a := range addrs {
		if br != nil && a.LinkIndex == br.Attrs().Index {
			continue
		}
		p, ok := prefixOf(a.IPNet)
		if ok && p.Overlaps(n.subnet) {
			return fmt.Errorf("sandbox subnet %s overlaps %s of link %d; configure another: %w",
				n.subnet, p, a.LinkIndex, stratus.ErrUnavailable)
		}
	}
	if br == nil {
		// A fixed MAC: a bridge without one takes the lowest of its
		// ports', which changes as sandboxes come and go and would leave
		// the sandboxes' ARP entries for the host stale.
		h := n.hostIP.As4()
		attrs := netlink.NewLinkAttrs()
		attrs.Name = n.bridge
		attrs.HardwareAddr = net.HardwareAddr{0x0a, 0x58, h[0], h[1], h[2], h[3]}
		if err := n.host.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create bridge %s: %w", n.bridge, err)
		}
		if br, err = n.host.LinkByName(n.bridge); err != nil {
			return fmt.Errorf("bridge %s: %w", n.bridge, err)
		}
	}
	// No IPv6 on the bridge (so no link-local path to the host's IPv6
	// listeners) and no forwarding of what sandboxes send, even if the
	// host forwards on its other links.
	for _, sc := range []struct{ path, value string }{
		{"/proc/sys/net/ipv6/conf/" + n.bridge + "/disable_ipv6", "1"},
		{"/proc/sys/net/ipv4/conf/" + n.bridge + "/forwarding", "0"},
	} {
		if err := os.WriteFile(sc.path, []byte(sc.value), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("bridge %s: %w", n.bridge, err)
		}
	}
	mine := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(n.hostIP, n.subnet.Bits()))}
	if err := n.host.AddrReplace(br, mine); err != nil {
		return fmt.Errorf("bridge %s: address %s: %w", n.bridge, mine.IPNet, err)
	}
	if own, err := addrList(n.host, br); err == nil {
		for _, a := range own {
			if !a.IPNet.IP.Equal(mine.IPNet.IP) { // an earlier server's other subnet
				_ = n.host.AddrDel(br, &a)
			}
		}
	}
	if err := n.host.LinkSetUp(br); err != nil {
		return fmt.Errorf("bridge %s: up: %w", n.bridge, err)
	}
	n.brIndex = br.Attrs().Index
	return nil
}

// setup gives sandbox id a network namespace with eth0 at a free address
// of the subnet and a default route via the host. It returns the path at
// which runc joins the namespace, valid until teardown, and the address.
// On error nothing of it is left.
func (n *network) setup(id string) (string, netip.Addr, error) {
	if n == nil { // rootless: the host's network
		return "", netip.AddrFrom4([4]byte{127, 0, 0, 1}), nil
	}

	if _, err := os.Lstat(n.addrFile(id)); err == nil {
		// A leftover of an earlier server (no container of that ID runs).
		if err := n.teardown(id); err != nil {
			return "", netip.Addr{}, err
		}
	}
	addr, err := n.allocate(id)
	if err != nil {
		return "", netip.Addr{}, err
	}
	ns, err := n.newNetns(func(ns netns.NsHandle) error { return n.configure(id, addr, ns) })
	if ns.IsOpen() {
		n.mu.Lock()
		n.ns[id] = ns
		n.mu.Unlock()
	}
	if err != nil {
		_ = n.teardown(id)
		return "", netip.Addr{}, fmt.Errorf("network: %w", err)
	}
	return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(ns)), addr, nil
}

// allocate reserves a free address for id and records it in id's
// address file.
func (n *network) allocate(id string) (netip.Addr, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return netip.Addr{}, fmt.Errorf("network: driver closed: %w", stratus.ErrUnavailable)
	}
	first, last := n.hostIP.Next(), lastAddr(n.subnet).Prev()
	a := n.next
	for range 1 << (32 - n.subnet.Bits()) {
		if a.Compare(first) < 0 || a.Compare(last) > 0 {
			a = first
		}
		if _, taken := n.owner[a]; !taken {
			if err := os.WriteFile(n.addrFile(id), []byte(a.String()+"\n"), 0o600); err != nil {
				return netip.Addr{}, fmt.Errorf("network: record address: %w", err)
			}
			n.owner[a], n.addrOf[id] = id, a
			// Round robin: an address freed a moment ago is taken last,
			// so stale neighbour and connection entries have time to go.
			n.next = a.Next()
			return a, nil
		}
		a = a.Next()
	}
	return netip.Addr{}, fmt.Errorf("network: no free address in %s: %w", n.subnet, stratus.ErrCapacity)
}

// newNetns creates a network namespace and runs configure in it, on a
// thread locked to a goroutine of its own, which returns to the host's
// namespace afterwards. It returns the namespace, open, also when
// configure fails.
func (n *network) newNetns(configure func(netns.NsHandle) error) (netns.NsHandle, error) {
	type result struct {
		ns  netns.NsHandle
		err error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// The thread's own namespace: /proc/self/ns/net is the main
		// thread's, which need not be this one.
		host, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			res <- result{netns.None(), fmt.Errorf("host netns: %w", err)}
			return
		}
		r := result{netns.None(), nil}
		if r.ns, err = netns.New(); err != nil {
			r.err = fmt.Errorf("create netns: %w", err)
		} else {
			r.err = configure(r.ns)
		}
		// Back in the host's namespace the thread may serve other
		// goroutines. If it cannot go back it stays locked, and the
		// runtime ends it with this goroutine (or, the main thread,
		// parks it for good).
		if netns.Set(host) == nil {
			runtime.UnlockOSThread()
		}
		host.Close()
		res <- r
	}()
	r := <-res
	return r.ns, r.err
}

// configure runs in sandbox id's new namespace ns: it creates the veth
// pair (host side up on the bridge, isolated; eth0 in ns) and sets up
// lo, eth0's address and the default route.
func (n *network) configure(id string, addr netip.Addr, ns netns.NsHandle) error {
	n.mu.Lock()
	brIndex := n.brIndex
	n.mu.Unlock()
	a := addr.As4()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = n.vethName(id)
	attrs.MasterIndex = brIndex
	attrs.Flags = net.FlagUp
	veth := &netlink.Veth{
		LinkAttrs: attrs,
		PeerName:  "eth0",
		// The MAC follows from the address, so the host's neighbour
		// entry stays right when the address is given out again.
		PeerHardwareAddr: net.HardwareAddr{0x0a, 0x58, a[0], a[1], a[2], a[3]},
		PeerNamespace:    netlink.NsFd(int(ns)),
	}
	if err := n.host.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s: %w", attrs.Name, err)
	}
	if err := n.host.LinkSetIsolated(veth, true); err != nil {
		return fmt.Errorf("isolate veth %s: %w", attrs.Name, err)
	}
	in, err := netlink.NewHandle(unix.NETLINK_ROUTE) // in ns: this thread's
	if err != nil {
		return err
	}
	defer in.Close()
	eth0, err := in.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("eth0: %w", err)
	}
	if err := in.AddrAdd(eth0, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(addr, n.subnet.Bits()))}); err != nil {
		return fmt.Errorf("eth0 address: %w", err)
	}
	if err := in.LinkSetUp(eth0); err != nil {
		return fmt.Errorf("eth0 up: %w", err)
	}
	if err := in.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1}}); err != nil { // lo is always 1
		return fmt.Errorf("lo up: %w", err)
	}
	h := n.hostIP.As4()
	if err := in.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: net.IP(h[:])}); err != nil {
		return fmt.Errorf("default route: %w", err)
	}
	// Any port to any user, as Docker sets it: a program without
	// CAP_NET_BIND_SERVICE (every sandbox's) may listen on :80. It is a
	// sysctl of this namespace alone; /proc/sys/net is that of the
	// namespace of the thread that opens it, this one. (runc's
	// linux.sysctl cannot set it: the namespace belongs to the host's
	// user namespace, not the container's.)
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_unprivileged_port_start", []byte("0"), 0o644); err != nil {
		return fmt.Errorf("unprivileged ports: %w", err)
	}
	return nil
}

// teardown removes what setup made for id, as far as it exists: it lets
// go of the namespace, waits for the kernel to delete the veth with it
// (deleting it after vethGoneTimeout), and frees the address. Idempotent;
// called once no process of the sandbox is left.
func (n *network) teardown(id string) error {
	if n == nil {
		return nil
	}

	n.mu.Lock()
	ns, ok := n.ns[id]
	delete(n.ns, id)
	n.mu.Unlock()
	if ok {
		ns.Close()
	}
	veth := n.vethName(id)
	deadline := time.Now().Add(vethGoneTimeout)
	for wait := time.Millisecond; n.linkExists(veth); wait = min(2*wait, 20*time.Millisecond) {
		if time.Now().After(deadline) {
			n.log.Warn("sandbox network outlives its container; deleting its veth", "instance", id, "veth", veth)
			link, err := n.host.LinkByName(veth)
			var notFound netlink.LinkNotFoundError
			if err == nil {
				err = n.host.LinkDel(link)
			}
			if err != nil && !errors.As(err, &notFound) && !errors.Is(err, unix.ENODEV) {
				// The address file stays, so a later List or Stop tries again.
				return fmt.Errorf("tear down network of sandbox %q: delete veth %s: %w", id, veth, err)
			}
			break
		}
		time.Sleep(wait)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := os.Remove(n.addrFile(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("tear down network of sandbox %q: %w", id, err)
	}
	if a, ok := n.addrOf[id]; ok {
		delete(n.addrOf, id)
		if n.owner[a] == id {
			delete(n.owner, a)
		}
	}
	return nil
}

// linkExists reports whether the host has a link of that name. It looks
// in sysfs, which takes no RTNL lock, unless sysfs is not there.
func (n *network) linkExists(name string) bool {
	if _, err := os.Lstat("/sys/class/net/" + name); err == nil {
		return true
	} else if _, err := os.Lstat("/sys/class/net"); err == nil {
		return false
	}
	_, err := n.host.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	return !errors.As(err, &notFound)
}

// ids returns the IDs that have an address file: the sandboxes with
// network state, live or left over.
func (n *network) ids() []string {
	if n == nil {
		return nil
	}

	ents, _ := os.ReadDir(n.addrDir)
	ids := make([]string, 0, len(ents))
	for _, e := range ents {
		ids = append(ids, e.Name())
	}
	return ids
}

// close removes the bridge unless a sandbox still has network state.
func (n *network) close() error {
	if n == nil {
		return nil
	}

	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	if ids := n.ids(); len(ids) > 0 {
		n.log.Info("sandbox network kept: sandboxes left", "bridge", n.bridge, "count", len(ids))
		return nil
	}
	link, err := n.host.LinkByName(n.bridge)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
	case err != nil:
		return fmt.Errorf("close sandbox network: bridge %s: %w", n.bridge, err)
	default:
		if err := n.host.LinkDel(link); err != nil {
			return fmt.Errorf("close sandbox network: delete bridge %s: %w", n.bridge, err)
		}
	}
	_ = os.Remove(n.addrDir)
	n.host.Close()
	n.closed = true
	return nil
}

func (n *network) addrFile(id string) string { return filepath.Join(n.addrDir, id) }

// vethName is the name of the host side of id's veth pair: "sv" and 10
// hex digits of a hash of the state dir and id, so it needs no state to
// find and differs between drivers on one host.
func (n *network) vethName(id string) string {
	sum := sha256.Sum256([]byte(n.salt + "\x00" + id))
	return "sv" + hex.EncodeToString(sum[:5])
}

// Close removes the bridge if no sandbox (of this or an earlier server)
// is left; otherwise it leaves the bridge and returns nil. The server
// calls it when it stops; starting sandboxes afterwards fails.
func (d *Driver) Close() error {
	d.reapStrays()
	err := d.net.close()
	// The bundles folder goes once no bundle is left in it (a sandbox
	// still running keeps it for the next server).
	if ents, rerr := os.ReadDir(d.bundles); rerr == nil && len(ents) == 0 && !d.rootless {
		_ = os.RemoveAll(filepath.Dir(d.bundles)) // its etc files with it
	}
	return err
}

// Bridge is the name of the bridge the sandboxes' veths are ports of.
func (d *Driver) Bridge() string { return d.net.bridge }

// VethName is the host side of sandbox id's veth pair.
func (d *Driver) VethName(id string) string { return d.net.vethName(id) }

// AddrFile is the file that records sandbox id's address.
func (d *Driver) AddrFile(id string) string { return d.net.addrFile(id) }

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits).Masked(), true
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// lastAddr is p's broadcast address.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
