package milter

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
)

// maxPacket bounds one milter packet. The MTA sends body chunks of at
// most 64 KiB (milter protocol, SMFIC_BODY) unless a larger size was
// negotiated, which this server never offers; the library itself would
// allocate up to 512 MiB for a forged length.
const maxPacket = 1 << 20

// loggingListener wraps accepted connections in frameGuard and logs them.
type loggingListener struct {
	net.Listener
	log *slog.Logger
}

func (l *loggingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.log.Debug("milter: connection", "remote", c.RemoteAddr().String())
	return &frameGuard{Conn: c, log: l.log}, nil
}

// frameGuard checks the milter framing (a 4-byte big-endian length, then
// that many bytes) as bytes pass through Read. A length of zero or over
// maxPacket is refused before the library sees it: go-milter v0.10.2
// indexes the first byte of every packet and would panic on an empty one,
// taking the whole daemon down.
type frameGuard struct {
	net.Conn
	log *slog.Logger

	hdr     [4]byte
	nhdr    int    // header bytes seen of the current packet
	left    uint32 // body bytes still to come of the current packet
	started bool   // the first packet's command byte has been checked
	bad     error
}

func (c *frameGuard) Read(p []byte) (int, error) {
	if c.bad != nil {
		return 0, c.bad
	}
	n, err := c.Conn.Read(p)
	if verr := c.scan(p[:n]); verr != nil {
		c.bad = verr
		c.log.Warn("milter: closing connection on malformed packet", "remote", c.RemoteAddr().String(), "err", verr)
		return 0, verr
	}
	return n, err
}

// scan advances the framing state over b.
func (c *frameGuard) scan(b []byte) error {
	for len(b) > 0 {
		if c.left > 0 {
			// Every session starts with option negotiation (milter
			// protocol, SMFIC_OPTNEG 'O'); anything else is not an MTA.
			if !c.started {
				c.started = true
				if b[0] != 'O' {
					return fmt.Errorf("milter: first command %q is not option negotiation", b[0])
				}
			}
			k := min(uint32(len(b)), c.left)
			c.left -= k
			b = b[k:]
			continue
		}
		k := copy(c.hdr[c.nhdr:], b)
		c.nhdr += k
		b = b[k:]
		if c.nhdr < 4 {
			return nil
		}
		c.nhdr = 0
		c.left = binary.BigEndian.Uint32(c.hdr[:])
		if c.left == 0 || c.left > maxPacket {
			return fmt.Errorf("milter: bad packet length %d (want 1 to %d)", c.left, maxPacket)
		}
	}
	return nil
}
