//go:build unix

package clamd

import (
	"errors"
	"net"
	"syscall"
)

// alive reports whether an idle connection is still open and silent. It
// peeks without blocking: EOF means clamd closed the session (its
// IdleTimeout), and unexpected bytes mean the session is out of step.
// Checking before the message is streamed lets a dead connection be
// dropped while the message can still go to a fresh one.
func alive(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok = false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = (errors.Is(rerr, syscall.EAGAIN) || errors.Is(rerr, syscall.EWOULDBLOCK))
		return true
	})
	return err == nil && ok
}
