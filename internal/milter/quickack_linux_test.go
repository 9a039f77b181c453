package milter

import (
	"net"
	"syscall"
	"testing"
)

// TestQuickAcker checks that a TCP connection gets the quick-ACK hook
// and that it sets TCP_QUICKACK, and that other connections get none.
func TestQuickAcker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			defer c.Close()
			c.Write([]byte("x"))
			var b [1]byte
			c.Read(b[:])
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ack := quickAcker(c)
	if ack == nil {
		t.Fatal("quickAcker returned nil for a TCP connection")
	}
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	quick := func() int {
		var v int
		var gerr error
		rc.Control(func(fd uintptr) { v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK) })
		if gerr != nil {
			t.Fatal(gerr)
		}
		return v
	}
	// A new connection starts in quick-ACK mode; leave it, as Linux
	// does once the connection looks interactive.
	rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 0) })
	if v := quick(); v != 0 {
		t.Fatalf("TCP_QUICKACK = %d after turning it off", v)
	}
	ack()
	if v := quick(); v != 1 {
		t.Errorf("TCP_QUICKACK right after the hook = %d, want 1", v)
	}
	c.Write([]byte("y"))

	a, p := net.Pipe()
	defer a.Close()
	defer p.Close()
	if quickAcker(a) != nil {
		t.Error("quickAcker returned a hook for a pipe")
	}
}

// TestFrameGuardQuickAcks checks that every read that brings bytes is
// acknowledged at once, and a read that brings none is not.
func TestFrameGuardQuickAcks(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	acks := 0
	g := &frameGuard{Conn: b, quickAck: func() { acks++ }}
	go func() {
		a.Write([]byte{0, 0, 0, 13, 'O', 0, 0, 0, 6, 0, 0, 1, 0xff, 0, 0x1f, 0xff, 0xff})
		a.Close()
	}()
	buf := make([]byte, 64)
	n := 0
	for {
		k, err := g.Read(buf)
		n += k
		if err != nil {
			break
		}
	}
	if n != 17 {
		t.Fatalf("read %d bytes, want 17", n)
	}
	if acks < 1 || acks > 17 {
		t.Errorf("%d quick ACKs for the reads that brought 17 bytes", acks)
	}
	reads := acks
	if _, err := g.Read(buf); err == nil {
		t.Fatal("read after close succeeded")
	}
	if acks != reads {
		t.Error("a read that brought nothing was acknowledged")
	}
}
