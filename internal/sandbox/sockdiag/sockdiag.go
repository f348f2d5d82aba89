// Package sockdiag finds which process of this host holds the other end of
// a TCP connection on the loopback: the kernel's sock_diag gives the
// socket's inode for its four addresses, and /proc/PID/fd shows who holds
// it. Sandbox drivers whose sandboxes share the host's network use it to
// tell whose a connection is.
package sockdiag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Link is how /proc/PID/fd/N reads for the socket with inode ino.
func Link(ino uint32) string { return "socket:[" + strconv.FormatUint(uint64(ino), 10) + "]" }

// Holds reports whether process pid has an open file whose link reads
// link (see Link); false if it is gone.
func Holds(pid int, link string) bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd/"
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	names, _ := f.Readdirnames(-1)
	buf := make([]byte, 64)
	for _, n := range names {
		k, err := unix.Readlink(dir+n, buf)
		if err == nil && string(buf[:k]) == link {
			return true
		}
	}
	return false
}

// Sizes and fields of the sock_diag messages (linux/inet_diag.h).
const (
	sizeofNlmsghdr    = 16
	sizeofInetDiagReq = 56 // struct inet_diag_req_v2
	// offset of idiag_inode in struct inet_diag_msg: family, state,
	// timer, retrans, the 48-byte socket id, then expires, rqueue,
	// wqueue and uid.
	inodeOffset = 4 + 48 + 4*4
)

// Inode returns the inode of the TCP socket of this network
// namespace whose own address is src and whose peer is dst, or 0 when
// there is none. One exact sock_diag query: the kernel looks the socket up
// in its hash table, whatever the number of sockets on the host.
func Inode(src, dst netip.AddrPort) (uint32, error) {
	sa, da := src.Addr().Unmap(), dst.Addr().Unmap()
	family := uint8(unix.AF_INET)
	if !sa.Is4() || !da.Is4() {
		family = unix.AF_INET6
		sa, da = netip.AddrFrom16(sa.As16()), netip.AddrFrom16(da.As16())
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_INET_DIAG)
	if err != nil {
		return 0, fmt.Errorf("open sock_diag: %w", err)
	}
	defer unix.Close(fd)
	// The kernel answers within the send; the timeout only guards a
	// kernel that does not.
	tv := unix.Timeval{Sec: 2}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)

	const seq = 1
	req := make([]byte, sizeofNlmsghdr+sizeofInetDiagReq)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST) // no dump: an exact lookup
	ne.PutUint32(req[8:], seq)
	r := req[sizeofNlmsghdr:]
	r[0] = family
	r[1] = unix.IPPROTO_TCP
	ne.PutUint32(r[4:], 0xffffffff) // any state
	id := r[8:]
	binary.BigEndian.PutUint16(id[0:], src.Port())
	binary.BigEndian.PutUint16(id[2:], dst.Port())
	copy(id[4:20], sa.AsSlice())
	copy(id[20:36], da.AsSlice())
	ne.PutUint32(id[40:], 0xffffffff) // INET_DIAG_NOCOOKIE
	ne.PutUint32(id[44:], 0xffffffff)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("sock_diag query: %w", err)
	}
	buf := make([]byte, 4096)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("sock_diag answer: %w", err)
		}
		for b := buf[:n]; len(b) >= sizeofNlmsghdr; {
			l := int(ne.Uint32(b[0:]))
			if l < sizeofNlmsghdr || l > len(b) {
				return 0, errors.New("sock_diag answer: malformed message")
			}
			typ, mseq, m := ne.Uint16(b[4:]), ne.Uint32(b[8:]), b[sizeofNlmsghdr:l]
			b = b[min((l+3)&^3, len(b)):]
			if mseq != seq {
				continue
			}
			switch typ {
			case unix.NLMSG_ERROR:
				if len(m) < 4 {
					return 0, errors.New("sock_diag answer: short error")
				}
				errno := -int32(ne.Uint32(m))
				if errno == 0 {
					continue // an acknowledgement
				}
				if unix.Errno(errno) == unix.ENOENT {
					return 0, nil
				}
				return 0, fmt.Errorf("sock_diag answer: %w", unix.Errno(errno))
			case unix.SOCK_DIAG_BY_FAMILY:
				if len(m) < inodeOffset+4 {
					return 0, errors.New("sock_diag answer: short message")
				}
				return ne.Uint32(m[inodeOffset:]), nil
			}
		}
	}
}
