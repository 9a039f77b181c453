package trap

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"
	"testing"
)

func TestParseSockaddr(t *testing.T) {
	v4 := make([]byte, syscall.SizeofSockaddrInet6)
	binary.NativeEndian.PutUint16(v4, syscall.AF_INET)
	binary.BigEndian.PutUint16(v4[2:], 25)
	copy(v4[4:], []byte{192, 0, 2, 7})
	v6 := make([]byte, syscall.SizeofSockaddrInet6)
	binary.NativeEndian.PutUint16(v6, syscall.AF_INET6)
	binary.BigEndian.PutUint16(v6[2:], 587)
	a16 := netip.MustParseAddr("2001:db8::1").As16()
	copy(v6[8:], a16[:])
	for _, tc := range []struct {
		b    []byte
		want string
		ok   bool
	}{
		{v4, "192.0.2.7:25", true},
		{v6, "[2001:db8::1]:587", true},
		{v4[:8], "", false},
		{v6[:20], "", false},
		{make([]byte, 28), "", false}, // AF_UNSPEC
	} {
		got, ok := parseSockaddr(tc.b)
		if ok != tc.ok || (ok && got.String() != tc.want) {
			t.Errorf("parseSockaddr(% x) = %v, %v; want %s, %v", tc.b, got, ok, tc.want, tc.ok)
		}
	}
	// The kernel writes the port in network byte order into a field the
	// syscall struct reads in host order; rawSockaddr must undo that.
	sa := &syscall.RawSockaddrInet6{Family: syscall.AF_INET6, Addr: a16,
		Port: binary.NativeEndian.Uint16([]byte{0, 25})}
	if got, ok := parseSockaddr(rawSockaddr(sa)); !ok || got.String() != "[2001:db8::1]:25" {
		t.Errorf("round trip = %v, %v", got, ok)
	}
}

// Without a redirect the kernel either has no conntrack answer or
// reports the listener's own address; either way the trap records no
// original destination.
func TestOriginalDstNotRedirected(t *testing.T) {
	for _, network := range []string{"127.0.0.1:0", "[::1]:0"} {
		ln, err := net.Listen("tcp", network)
		if err != nil {
			t.Logf("skipping %s: %v", network, err)
			continue
		}
		defer ln.Close()
		go func() {
			if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
				defer c.Close()
				c.Read(make([]byte, 1))
			}
		}()
		nc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		tc := nc.(*net.TCPConn)
		if dst, ok := OriginalDst(tc); ok && dst.String() != ln.Addr().String() {
			t.Errorf("%s: OriginalDst = %v, want the listener's %v or nothing", network, dst, ln.Addr())
		}
		if dst := redirectedDst(nc); dst.IsValid() {
			t.Errorf("%s: not redirected, but recorded destination %v", network, dst)
		}
		nc.Close()
	}
}
