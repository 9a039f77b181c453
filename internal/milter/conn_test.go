package milter

import (
	"errors"
	"io"
	"net"
	"testing"

	gomilter "github.com/d--j/go-milter"

	"mailwarden/internal/spool"
)

// countingConn counts the reads that reach the connection.
type countingConn struct {
	net.Conn
	reads int
}

func (c *countingConn) Read(p []byte) (int, error) {
	c.reads++
	return c.Conn.Read(p)
}

// TestFrameGuardReadsAhead checks that packets that arrive together are
// read from the connection once and handed to the library as it asks,
// byte for byte, and that the connection's end comes after them.
func TestFrameGuardReadsAhead(t *testing.T) {
	a, b := net.Pipe()
	cc := &countingConn{Conn: b}
	g := &frameGuard{Conn: cc}
	// Option negotiation, then macros for MAIL and MAIL itself, as
	// Postfix writes them: three packets in one write.
	in := []byte{0, 0, 0, 13, 'O', 0, 0, 0, 6, 0, 0, 1, 0xff, 0, 0x1f, 0xff, 0xff,
		0, 0, 0, 4, 'D', 'M', 'i', 0,
		0, 0, 0, 7, 'M', '<', 'a', '@', 'b', '>', 0}
	go func() {
		a.Write(in)
		a.Close()
	}()
	var got []byte
	var err error
	for err == nil {
		// As go-milter reads: the length, then the body.
		var hdr [4]byte
		if _, err = io.ReadFull(g, hdr[:]); err != nil {
			break
		}
		body := make([]byte, int(hdr[3]))
		if _, err = io.ReadFull(g, body); err != nil {
			t.Fatalf("reading a packet body: %v", err)
		}
		got = append(append(got, hdr[:]...), body...)
	}
	if !errors.Is(err, io.EOF) {
		t.Fatalf("after the packets: %v, want EOF", err)
	}
	if string(got) != string(in) {
		t.Fatalf("the library got %q, want %q", got, in)
	}
	if cc.reads > 3 {
		t.Errorf("%d reads from the connection for one write of three packets (six library reads)", cc.reads)
	}
	if !g.inMessage {
		t.Error("the guard did not follow the session into the message")
	}
}

// TestProtocolAsksOnlyWhatChecksUse checks what the MTA is asked for:
// no body without a spool, and with one the body without waiting for a
// reply to each chunk; never a reply to connect, HELO or a header.
func TestProtocolAsksOnlyWhatChecksUse(t *testing.T) {
	never := gomilter.OptNoConnReply | gomilter.OptNoHeloReply | gomilter.OptNoHeaderReply | gomilter.OptNoEOH | gomilter.OptNoUnknown |
		gomilter.OptNoData
	without := protocol(Options{})
	if without&never != never || without&gomilter.OptNoBody == 0 {
		t.Errorf("without a spool: protocol %#x, want %#x and no body", without, never)
	}
	sp, err := spool.New(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	with := protocol(Options{Spool: sp})
	if with&never != never || with&gomilter.OptNoBody != 0 || with&gomilter.OptNoBodyReply == 0 {
		t.Errorf("with a spool: protocol %#x, want %#x, the body, and no reply to it", with, never)
	}
	// Decisions are answered at MAIL, RCPT and end of message.
	for _, p := range []gomilter.OptProtocol{without, with} {
		if p&(gomilter.OptNoMailFrom|gomilter.OptNoRcptTo|gomilter.OptNoMailReply|gomilter.OptNoRcptReply) != 0 {
			t.Errorf("protocol %#x skips a reply a check decides in", p)
		}
	}
}
