package milter

import (
	"net"
	"syscall"
)

// quickAcker returns a function that makes the kernel acknowledge at once
// what has been read from c, or nil when c is no TCP connection.
//
// Postfix and Sendmail write each milter packet with its own write and
// leave Nagle's algorithm on: the macros for a command go out, and the
// command itself waits until they are acknowledged. mailwarden does not
// answer macros, so without a quick ACK the kernel holds the ACK back
// for its delayed-ACK timer (40 ms on Linux) and every such pair costs
// the SMTP session that long: measured through Postfix, one session sent
// 20 messages a second through a no-op milter that asks for end of
// message only, and 140 with quick ACKs (BENCHMARKS.md, "End to end").
// Linux leaves quick-ACK mode on its own, so it is set again after every
// read.
func quickAcker(c net.Conn) func() {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	if _, isTCP := c.(*net.TCPConn); !isTCP {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	set := func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1) }
	return func() { rc.Control(set) }
}
