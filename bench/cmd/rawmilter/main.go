// Command rawmilter is a no-op milter written against the raw milter
// protocol (v6), with no milter library: it answers "continue" to every
// command that wants an answer and "accept" at end of message, and does
// nothing else. It is the ceiling for any milter on this machine: what
// Postfix costs with a milter in the path, and nothing of the milter's own.
//
//	rawmilter -addr 127.0.0.1:17401 -like 127.0.0.1:10029
//
// With -like it first negotiates with another milter (mailwarden) and then
// offers every MTA that milter's exact answer: the same protocol steps, the
// same skipped replies, the same macros. So the MTA does exactly the work
// for it that it does for that milter. With -eom-only it asks only for
// the end of each message, the least any milter can ask. Otherwise it
// asks for every event and every reply, like a milter before protocol v6.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Commands and replies of the milter protocol (libmilter/mfdef.h).
const (
	cmdOptNeg = 'O'
	cmdMacro  = 'D'
	cmdAbort  = 'A'
	cmdQuit   = 'Q'
	cmdQuitNC = 'K'
	cmdEOM    = 'E'

	replyContinue = 'c'
	replyAccept   = 'a'
)

// protocol flags (SMFIP_*): which events the MTA skips and which replies
// it does not wait for.
const (
	noConnect  = 0x000001
	noHelo     = 0x000002
	noMail     = 0x000004
	noRcpt     = 0x000008
	noBody     = 0x000010
	noHeaders  = 0x000020
	noEOH      = 0x000040
	nrHeader   = 0x000080
	noUnknown  = 0x000100
	noData     = 0x000200
	nrConnect  = 0x001000
	nrHelo     = 0x002000
	nrMail     = 0x004000
	nrRcpt     = 0x008000
	nrData     = 0x010000
	nrUnknown  = 0x020000
	nrEOH      = 0x040000
	nrBody     = 0x080000
	allOffered = 0x1fffff // every v6 flag, what a current Postfix offers
	allActions = 0x1ff
)

// noReply maps an event to the flag that says the MTA does not wait for
// its reply.
var noReply = map[byte]uint32{
	'C': nrConnect, 'H': nrHelo, 'M': nrMail, 'R': nrRcpt, 'T': nrData,
	'U': nrUnknown, 'N': nrEOH, 'B': nrBody, 'L': nrHeader,
}

// maxPacket bounds one command; the MTA's body chunks are 64 KB.
const maxPacket = 1 << 20

func main() {
	addr := flag.String("addr", "127.0.0.1:17401", "listen address, host:port or unix:/path")
	like := flag.String("like", "", "negotiate with this milter first and offer the MTA its answer")
	eomOnly := flag.Bool("eom-only", false, "ask the MTA for end of message only")
	quickAck := flag.Bool("quickack", false, "acknowledge every read at once (TCP_QUICKACK)")
	flag.Parse()
	optneg := optnegAll()
	if *eomOnly {
		binary.BigEndian.PutUint32(optneg[8:], noConnect|noHelo|noMail|noRcpt|noData|noHeaders|noEOH|noBody|noUnknown)
	}
	if *like != "" {
		var err error
		if optneg, err = probe(*like); err != nil {
			log.Fatalf("rawmilter: asking %s what it negotiates: %v", *like, err)
		}
	}
	network, address := "tcp", *addr
	if path, ok := strings.CutPrefix(*addr, "unix:"); ok {
		network, address = "unix", path
		os.Remove(path)
	}
	ln, err := net.Listen(network, address)
	if err != nil {
		log.Fatal(err)
	}
	flags := binary.BigEndian.Uint32(optneg[8:12])
	log.Printf("rawmilter: listening on %s, protocol flags %#06x", ln.Addr(), flags)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Printf("rawmilter: accept: %v", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if *quickAck {
			c = &quickAckConn{Conn: c}
		}
		go serve(c, optneg, flags)
	}
}

// optnegAll is the answer of a milter that wants every event and every
// reply: version 6, all actions, no protocol flags.
func optnegAll() []byte {
	b := make([]byte, 12)
	binary.BigEndian.PutUint32(b[0:], 6)
	binary.BigEndian.PutUint32(b[4:], allActions)
	return b
}

// probe offers the milter at addr everything a current MTA offers and
// returns its answer (the payload of its SMFIC_OPTNEG reply, macro
// requests included).
func probe(addr string) ([]byte, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	offer := make([]byte, 12)
	binary.BigEndian.PutUint32(offer[0:], 6)
	binary.BigEndian.PutUint32(offer[4:], allActions)
	binary.BigEndian.PutUint32(offer[8:], allOffered)
	if err := write(c, cmdOptNeg, offer); err != nil {
		return nil, err
	}
	cmd, data, err := read(bufio.NewReader(c))
	if err != nil {
		return nil, err
	}
	if cmd != cmdOptNeg || len(data) < 12 {
		return nil, fmt.Errorf("answer %q of %d bytes is no option negotiation", cmd, len(data))
	}
	write(c, cmdQuit, nil)
	return data, nil
}

// serve answers one MTA connection until it quits.
func serve(c net.Conn, optneg []byte, flags uint32) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 64<<10)
	for {
		c.SetReadDeadline(time.Now().Add(10 * time.Minute))
		cmd, _, err := read(r)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				log.Printf("rawmilter: %v", err)
			}
			return
		}
		switch cmd {
		case cmdOptNeg:
			err = write(c, cmdOptNeg, optneg)
		case cmdMacro, cmdAbort, cmdQuitNC:
			// no reply
		case cmdQuit:
			return
		case cmdEOM:
			err = write(c, replyAccept, nil)
		default:
			if bit, ok := noReply[cmd]; ok && flags&bit != 0 {
				continue
			}
			err = write(c, replyContinue, nil)
		}
		if err != nil {
			log.Printf("rawmilter: %v", err)
			return
		}
	}
}

// read returns one packet: a 4-byte length, the command byte, its data.
func read(r *bufio.Reader) (byte, []byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < 1 || n > maxPacket {
		return 0, nil, fmt.Errorf("packet length %d out of range", n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, err
	}
	return buf[0], buf[1:], nil
}

// write sends one packet.
func write(w io.Writer, cmd byte, data []byte) error {
	buf := make([]byte, 5+len(data))
	binary.BigEndian.PutUint32(buf, uint32(1+len(data)))
	buf[4] = cmd
	copy(buf[5:], data)
	_, err := w.Write(buf)
	return err
}

// quickAckConn acknowledges what it reads at once instead of after the
// delayed-ACK timer.
type quickAckConn struct{ net.Conn }

func (c *quickAckConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if raw, ok := c.Conn.(syscall.Conn); ok {
		if rc, err := raw.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1) })
		}
	}
	return n, err
}
