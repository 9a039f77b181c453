package milter

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// frame builds one milter packet: length, command byte, data.
func frame(cmd byte, data string) []byte {
	b := make([]byte, 5, 5+len(data))
	binary.BigEndian.PutUint32(b, uint32(1+len(data)))
	b[4] = cmd
	return append(b, data...)
}

// FuzzMilterConnection feeds arbitrary bytes to a live milter server. A
// panic in any session goroutine crashes the fuzz process, which is the
// failure this target exists to find; each input must also end with the
// connection closed or answered, never a hang.
func FuzzMilterConnection(f *testing.F) {
	optneg := frame('O', "\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xff\xff")
	f.Add([]byte{0, 0, 0, 0})
	f.Add(optneg)
	f.Add(append(append([]byte{}, optneg...), frame('C', "host\x004\x9c\x40192.0.2.1\x00")...))
	f.Add(append(append([]byte{}, optneg...), frame('M', "<a@b>\x00")...))
	f.Add(append(append([]byte{}, optneg...), frame('R', "\x00")...))
	f.Add(append(append([]byte{}, optneg...), frame('D', "C")...))
	f.Add(append(append([]byte{}, optneg...), frame('L', "Subject\x00")...))
	f.Add(append(append([]byte{}, optneg...), frame('E', "")...))
	f.Add([]byte("GET / HTTP/1.0\r\n\r\n"))
	// One server for the whole target: it must outlive every input, so it
	// belongs to f, not to the first input's t.
	addr, _ := startServer(f, &stubCheck{})
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("the milter server is gone (crashed?): %v", err)
		}
		defer c.Close()
		c.Write(in)
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, c)
	})
}
