//go:build !linux

package milter

import "net"

// quickAcker is Linux only (TCP_QUICKACK); elsewhere the kernel's own
// delayed-ACK policy applies.
func quickAcker(net.Conn) func() { return nil }
