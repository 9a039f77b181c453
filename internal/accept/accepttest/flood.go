// Package accepttest holds floods of idle connections open against a
// server, for tests that a server behind an accept.Tracker keeps serving
// its real clients.
package accepttest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// Flood is a set of client connections held open and silent.
type Flood struct {
	conns []net.Conn
}

// FromOne returns a source-address function that always picks src: a
// flood from one address, such as a local user's 127.0.0.1.
func FromOne(src string) func(int) string {
	return func(int) string { return src }
}

// FromMany returns a source-address function that spreads connections
// over 127.0.x.y, n to an address, so that per-address caps alone do not
// stop the flood. Linux answers on all of 127.0.0.0/8 without setup.
func FromMany(n int) func(int) string {
	return func(i int) string {
		a := i / n
		return fmt.Sprintf("127.0.%d.%d", 100+a/250, 1+a%250)
	}
}

// Open dials n connections to addr, the i-th from the address src(i),
// runs hello on each (nil sends nothing) and keeps them open until the
// test ends. A connection the server refuses or closes at once is kept
// too: Count tells them apart.
func Open(t testing.TB, addr string, n int, src func(int) string, hello func(net.Conn) error) *Flood {
	t.Helper()
	f := &Flood{}
	t.Cleanup(func() {
		for _, c := range f.conns {
			c.Close()
		}
	})
	for i := range n {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src(i))}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("flood connection %d of %d from %s: %v", i+1, n, src(i), err)
		}
		f.conns = append(f.conns, c)
		if hello != nil {
			if err := hello(c); err != nil {
				t.Fatalf("flood connection %d of %d from %s: %v", i+1, n, src(i), err)
			}
		}
	}
	return f
}

// Count reports how many connections the server still holds open and
// how many it has closed. It peeks at each socket without blocking: a
// closed connection reads end of file or a reset.
func (f *Flood) Count() (held, closed int) {
	for _, c := range f.conns {
		if open(c) {
			held++
		} else {
			closed++
		}
	}
	return held, closed
}

// open reports whether c's peer has neither closed nor reset it.
func open(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// Nothing to read yet means open; data waiting means open too.
		alive = n > 0 || errors.Is(err, syscall.EAGAIN)
		return true
	})
	return alive
}

// MilterHello negotiates a milter session (milter protocol v6,
// SMFIC_OPTNEG) on c and reads the answer, leaving the session idle as
// an MTA's is while its SMTP client is slow. A connection that never
// negotiates is closed by go-milter after a second, so an idle milter
// flood has to say this much.
func MilterHello(c net.Conn) error {
	// Version 6, every action, every protocol option.
	const optneg = "\x00\x00\x00\x0dO\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xff\xff"
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, optneg); err != nil {
		return fmt.Errorf("milter negotiation: %w", err)
	}
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return fmt.Errorf("milter negotiation answer: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > 1<<16 {
		return fmt.Errorf("milter negotiation answer of %d bytes", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c, body); err != nil {
		return fmt.Errorf("milter negotiation answer: %w", err)
	}
	if body[0] != 'O' {
		return fmt.Errorf("milter negotiation answered with command %q", body[0])
	}
	return nil
}
