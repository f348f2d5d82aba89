package runc

import (
	"context"
	"net/netip"
)

// Owns implements sandbox.Driver. Each sandbox has an address of its own
// on the driver's bridge (Addr), which its program cannot change or
// borrow: the driver makes its network namespace from the host, so no
// capability the program may hold inside its sandbox covers it, and the
// bridge's ports are isolated from each other. A connection is the
// sandbox's when it comes from that address. The host's own connections
// come from the bridge's address or the host's others, never from a
// sandbox's.
//
// Rootless sandboxes share the host's network: there the connection's
// other end is looked up as a socket of the host (see sockdiag), and it is
// the sandbox's when a process in the sandbox's PID namespace holds it.
func (d *Driver) Owns(ctx context.Context, id string, local, remote netip.AddrPort) (bool, error) {
	if d.rootless {
		return d.ownsRootless(ctx, id, local, remote)
	}
	addr, err := d.Addr(ctx, id)
	if err != nil {
		return false, err
	}
	return remote.Addr().Unmap() == addr, nil
}
