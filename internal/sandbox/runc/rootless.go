package runc

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sandbox"
	"github.com/stratus-run/stratus/internal/sandbox/sockdiag"
)

// A server that is not root runs rootless containers. What it can hold,
// and what it cannot, on a host that delegates nothing to its user:
//
//   - a user namespace in which the sandbox's root is the server's own
//     user and no other id exists (more ids would need newuidmap and
//     /etc/subuid ranges): the program runs as that root with no
//     capability, so it is the server's user on the host, not root;
//   - its own PID, mount, IPC and UTS namespaces, the same minimal root,
//     read-only mounts, seccomp profile, no new privileges and init as with
//     root; the init's ids are the program's, but it is undumpable and the
//     program has no capability, so it cannot ptrace it or open its
//     descriptors; a signal it sends the init only comes back to itself;
//   - no cgroup: no memory, CPU or PIDs limit (the host does not delegate
//     cgroups to the user), no OOM report, and Stats reads the program's
//     peak RSS from /proc and its CPU time from the processes' CPU-time
//     clocks (rootlessCPUNanos);
//   - the host's network: without root there is no bridge or veth (and
//     this host's /dev/net/tun is root's, so no slirp4netns either). A
//     sandbox reaches the host's loopback listeners, and each instance's
//     Runtime API tells its own connections from others' by the socket's
//     holder (Owns).

// probeUserns checks that this user may make a user namespace.
func probeUserns() error {
	cmd := exec.Command("true")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("it may not make user namespaces (%v)", err)
	}
	return nil
}

// rootlessSpec turns a bundle spec into a rootless one: one id mapped
// (the sandbox's root is the server's user), no network namespace, no
// cgroup, the init and the program as that root.
func rootlessSpec(s *specs.Spec) {
	s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(os.Getuid()), Size: 1}}
	s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(os.Getgid()), Size: 1}}
	s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool {
		return n.Type == specs.NetworkNamespace
	})
	s.Linux.CgroupsPath = ""
	s.Linux.Resources = nil
	s.Mounts = slices.DeleteFunc(s.Mounts, func(m specs.Mount) bool { return m.Type == "cgroup" })
	s.Process.User = specs.User{UID: 0, GID: 0}
	s.Process.Args[1] = sameUser
}

// sameUser is the init's user argument that runs the program with the
// init's own ids (rootless: there is no other).
const sameUser = "-"

// rootlessStats reads the peak RSS of the init's children (the program)
// from /proc: there is no cgroup to ask.
func rootlessStats(id string, b *box) (sandbox.Stats, error) {
	var peak int64
	for _, pid := range childPIDs(b.pid) {
		status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(status)) {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				peak = max(peak, kb<<10)
			}
		}
	}
	if peak == 0 {
		return sandbox.Stats{}, fmt.Errorf("sandbox %q stats: no program running: %w", id, stratus.ErrNotFound)
	}
	cpu, _ := rootlessCPUNanos(id, b.pid)
	return sandbox.Stats{MaxRSSBytes: peak, CPUNanos: cpu}, nil
}

// rootlessCPUNanos is CPUNanos of a rootless sandbox, whose init is pid:
// there is no cgroup, so it adds up what /proc and the CPU-time clocks
// reach. Counted: the init and each of its children (the program), every
// thread of them, to the nanosecond (see sandbox.ProcessCPUNanos); the
// children those processes have waited for, and the orphans the init
// (the sandbox's PID 1) reaped, to the clock tick of 10 ms. Not counted:
// processes further down the tree while they run (a grandchild the
// program has not waited for yet). Unlike the cgroup figure it may step
// back a little when a child ends, between its last clock read and its
// reaping by the init.
func rootlessCPUNanos(id string, pid int) (int64, error) {
	if pid <= 0 {
		return 0, nil // prepared: nothing ran yet but runc's init setup
	}
	total, err := sandbox.ProcessCPUNanos(pid)
	if err != nil {
		return 0, fmt.Errorf("sandbox %q: %w", id, stratus.ErrNotFound)
	}
	for _, c := range childPIDs(pid) {
		n, err := sandbox.ProcessCPUNanos(c)
		if err != nil {
			continue // ended meanwhile: in the init's reaped children next time
		}
		m, _ := sandbox.ReapedChildrenCPUNanos(c)
		total += n + m
	}
	reaped, err := sandbox.ReapedChildrenCPUNanos(pid)
	if err != nil {
		return 0, fmt.Errorf("sandbox %q: %w", id, stratus.ErrNotFound)
	}
	return total + reaped, nil
}

// childPIDs lists pid's children.
func childPIDs(pid int) []int {
	if pid <= 0 {
		return nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// ownsRootless implements Owns for a sandbox on the host's network: the
// connection is the sandbox's when a process in its PID namespace (the
// init's) holds the socket at its other end. No process can enter another
// PID namespace without privileges the sandbox's programs lack.
func (d *Driver) ownsRootless(ctx context.Context, id string, local, remote netip.AddrPort) (bool, error) {
	d.mu.Lock()
	b, ok := d.boxes[id]
	d.mu.Unlock()
	if !ok || isDone(b) || b.pid <= 0 {
		return false, fmt.Errorf("sandbox %q: %w", id, stratus.ErrNotFound)
	}
	ino, err := sockdiag.Inode(remote, local)
	if err != nil {
		return false, fmt.Errorf("sandbox %q: find the socket of %s: %w", id, remote, err)
	}
	if ino == 0 {
		return false, nil
	}
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", b.pid))
	if err != nil {
		return false, fmt.Errorf("sandbox %q: its PID namespace: %w", id, err)
	}
	link := sockdiag.Link(ino)
	// The program, the init's child, first: it is the runtime that
	// connects.
	for _, pid := range childPIDs(b.pid) {
		if sockdiag.Holds(pid, link) {
			return true, nil
		}
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return false, fmt.Errorf("list processes: %w", err)
	}
	buf := make([]byte, 64)
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return false, err
		}
		n, err := syscall.Readlink("/proc/"+e.Name()+"/ns/pid", buf)
		if err == nil && bytes.Equal(buf[:n], []byte(ns)) && sockdiag.Holds(pid, link) {
			return true, nil
		}
	}
	return false, nil
}
