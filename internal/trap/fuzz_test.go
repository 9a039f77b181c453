package trap

import (
	"bytes"
	"net"
	"regexp"
	"testing"
	"time"
)

// scriptConn is the server's side of a session whose client sends a
// fixed script and reads everything. Reads end in EOF when the script
// is used up, so every session ends without waiting for timeouts.
type scriptConn struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func (c *scriptConn) Read(p []byte) (int, error)       { return c.in.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *scriptConn) Close() error                     { return nil }
func (c *scriptConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *scriptConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

var _ net.Conn = (*scriptConn)(nil)

// replyLine is a well-formed reply line (RFC 5321 §4.2): a code 2yz-5yz,
// a space and printable text, ended by CRLF.
var replyLine = regexp.MustCompile(`^[2-5][0-9][0-9] [\x20-\x7e]*\r\n$`)

// closing matches the replies after which the server stops reading.
var closing = regexp.MustCompile(`^(221|421|451|500) `)

func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"EHLO pc.example\r\nMAIL FROM:<worm@evil.example>\r\n",
		"HELO x\nNOOP\nRSET\nQUIT\n",
		"DATA\r\n\r\nhello\r\n.\r\n",
		"HELO " + string(bytes.Repeat([]byte("a"), 600)) + "\r\n",
		"\x00\xff\xfe\r\n\r\n",
		"NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n",
		"HELO partial",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, script []byte) {
		var hits []Hit
		s := NewServer(Options{Hostname: "trap.test", OnHit: func(h Hit) { hits = append(hits, h) }})
		c := &scriptConn{in: bytes.NewReader(script)}
		tc, err := s.conns.Admit(c)
		if err != nil {
			t.Fatal(err)
		}
		s.serveConn(tc)

		out := c.out.Bytes()
		if len(hits) != 1 {
			t.Fatalf("%d hits recorded, want 1", len(hits))
		}
		for n := 0; len(out) > 0; n++ {
			i := bytes.Index(out, []byte("\r\n"))
			if i < 0 {
				t.Fatalf("reply without CRLF: %q", out)
			}
			if !replyLine.Match(out[:i+2]) {
				t.Fatalf("malformed reply line %q", out[:i+2])
			}
			out = out[i+2:]
			// The banner, at most maxCommands replies and one closing
			// reply.
			if n > maxCommands+2 {
				t.Fatalf("%d replies in one session", n)
			}
		}
		h := hits[0]
		if len(h.Helo) > MaxFieldLen || len(h.MailFrom) > MaxFieldLen {
			t.Fatalf("hit fields too long: %d, %d", len(h.Helo), len(h.MailFrom))
		}
		if c.in.Len() > 0 {
			// The server stopped reading early: it must have said why
			// with a reply that ends the session.
			all := c.out.Bytes()
			last := all[bytes.LastIndex(all[:len(all)-2], []byte("\r\n"))+2:]
			if !closing.Match(last) {
				t.Fatalf("left %d bytes unread after %q", c.in.Len(), last)
			}
		}
	})
}
