package trap

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"
)

// soOriginalDst is SO_ORIGINAL_DST (linux/netfilter_ipv4.h) at SOL_IP and
// IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h) at SOL_IPV6;
// both are 80. Conntrack answers them for a connection that a REDIRECT or
// DNAT rule rewrote, with the destination before the rewrite.
const soOriginalDst = 80

// OriginalDst returns the destination a redirected TCP connection was
// originally addressed to, from the kernel's connection tracking. It
// returns false when the kernel has no answer (no conntrack entry, not
// Linux). Without a NAT rewrite the answer, if any, is the socket's own
// local address.
func OriginalDst(c *net.TCPConn) (netip.AddrPort, bool) {
	ra, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, false
	}
	level := syscall.SOL_IPV6
	if ra.AddrPort().Addr().Unmap().Is4() {
		// An IPv4 client on a dual-stack socket is tracked as IPv4.
		level = syscall.SOL_IP
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, false
	}
	var info *syscall.IPv6MTUInfo
	var gerr error
	err = rc.Control(func(fd uintptr) {
		// IPv6MTUInfo is the syscall package's only getsockopt result
		// at least as large as a sockaddr_in6 (28 bytes), which is what
		// the kernel requires of the buffer; both sockaddr_in and
		// sockaddr_in6 are written at its start.
		info, gerr = syscall.GetsockoptIPv6MTUInfo(int(fd), level, soOriginalDst)
	})
	if err != nil || gerr != nil {
		return netip.AddrPort{}, false
	}
	return parseSockaddr(rawSockaddr(&info.Addr))
}

// rawSockaddr returns the bytes of a sockaddr as the kernel wrote them.
func rawSockaddr(sa *syscall.RawSockaddrInet6) []byte {
	b := make([]byte, syscall.SizeofSockaddrInet6)
	binary.NativeEndian.PutUint16(b[0:], sa.Family)
	binary.NativeEndian.PutUint16(b[2:], sa.Port)
	binary.NativeEndian.PutUint32(b[4:], sa.Flowinfo)
	copy(b[8:24], sa.Addr[:])
	binary.NativeEndian.PutUint32(b[24:], sa.Scope_id)
	return b
}

// parseSockaddr decodes a sockaddr_in or sockaddr_in6 (family in host
// byte order, port and address in network byte order).
func parseSockaddr(b []byte) (netip.AddrPort, bool) {
	if len(b) < 2 {
		return netip.AddrPort{}, false
	}
	port := func() uint16 { return binary.BigEndian.Uint16(b[2:4]) }
	switch binary.NativeEndian.Uint16(b) {
	case syscall.AF_INET:
		if len(b) < syscall.SizeofSockaddrInet4 {
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port()), true
	case syscall.AF_INET6:
		if len(b) < syscall.SizeofSockaddrInet6 {
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])), port()), true
	}
	return netip.AddrPort{}, false
}
