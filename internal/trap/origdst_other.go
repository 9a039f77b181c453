//go:build !linux

package trap

import (
	"net"
	"net/netip"
)

// OriginalDst returns the destination a redirected TCP connection was
// originally addressed to. Only Linux connection tracking can tell, so
// elsewhere it always returns false.
func OriginalDst(c *net.TCPConn) (netip.AddrPort, bool) {
	return netip.AddrPort{}, false
}
