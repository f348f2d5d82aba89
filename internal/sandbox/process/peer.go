package process

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/stratus-run/stratus/internal/sandbox/sockdiag"
)

// Owns implements sandbox.Driver. Instances share the host's network, so
// an address says nothing about who connected: the connection's other end
// is looked up as a socket of this host (an exact sock_diag query by its
// four addresses gives its inode), and it is the sandbox's when a process
// of the sandbox's session holds that socket among its open files. The
// session's leader, the instance's program, is asked first (the common
// case: the runtime itself connects), then its descendants, and only then
// every process of the host, for members of the session that a dead
// parent left to another. No process can join another's session, so a
// process outside the sandbox cannot pass as one of it; but processes of
// the same user can do much else to each other (ptrace, /proc), which
// this driver does not stop.
func (d *Driver) Owns(ctx context.Context, id string, local, remote netip.AddrPort) (bool, error) {
	p, err := d.live(id)
	if err != nil {
		return false, err
	}
	// The sandbox's end of the connection has the listener's end as its
	// peer.
	ino, err := sockdiag.Inode(remote, local)
	if err != nil {
		return false, fmt.Errorf("sandbox %q: find the socket of %s: %w", id, remote, err)
	}
	if ino == 0 {
		return false, nil // not a socket of this host (or already closed)
	}
	return sessionHolds(ctx, p.pid, sockdiag.Link(ino))
}

// sessionHolds reports whether a process of the session that leader leads
// holds an open file whose link reads link.
func sessionHolds(ctx context.Context, leader int, link string) (bool, error) {
	if sockdiag.Holds(leader, link) {
		return true, nil
	}
	seen := map[int]bool{leader: true}
	// Descendants first: a few small files to read.
	for queue := children(leader); len(queue) > 0; {
		pid := queue[0]
		queue = queue[1:]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		if err := ctx.Err(); err != nil {
			return false, err
		}
		if f, ok := stat(pid); !ok || f.session != leader {
			continue // gone, or left the session (then not of the sandbox)
		}
		if sockdiag.Holds(pid, link) {
			return true, nil
		}
		queue = append(queue, children(pid)...)
	}
	// Then the whole host, for members of the session that are no longer
	// the leader's descendants.
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return false, fmt.Errorf("list processes: %w", err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || seen[pid] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return false, err
		}
		if f, ok := stat(pid); ok && f.session == leader && sockdiag.Holds(pid, link) {
			return true, nil
		}
	}
	return false, nil
}

// children lists the child processes of pid, from each of its threads'
// children file.
func children(pid int) []int {
	dir := "/proc/" + strconv.Itoa(pid) + "/task/"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(dir + t.Name() + "/children")
		if err != nil {
			continue
		}
		for _, s := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(s); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}
