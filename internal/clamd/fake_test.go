package clamd

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// eicar is the EICAR test file (eicar.org), which every scanner reports.
const eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// fakeMode is how a fake clamd behaves.
type fakeMode int32

const (
	modeNormal     fakeMode = iota // answers like clamd
	modeGarbage                    // answers INSTREAM with nonsense
	modeHalf                       // sends half an answer, then closes
	modeSilent                     // reads every command, never answers
	modeDead                       // closes every connection at once
	modeDropIdle                   // ends a session after each scan, like clamd's IdleTimeout
	modeDropReused                 // ends a session at its second command, unanswered
	modeSlowScan                   // answers PING and VERSION, never INSTREAM
)

// fake is a clamd speaking the protocol of clamd(8) on a loopback TCP
// port or a unix socket, counting what it sees.
type fake struct {
	addr      string // as Options.Servers takes it
	maxStream int64  // like StreamMaxLength; 0 for none
	version   string
	mode      atomic.Int32
	conns     atomic.Int64 // connections accepted
	scans     atomic.Int64 // INSTREAM commands seen
	received  atomic.Int64 // message bytes received, complete or not

	ln   net.Listener
	mu   sync.Mutex
	open map[net.Conn]bool
	last []byte // the last complete stream
	wg   sync.WaitGroup
}

// newFake starts a fake clamd on network "tcp" or "unix", stopped when
// the test ends.
func newFake(t testing.TB, network string) *fake {
	t.Helper()
	f := &fake{version: "ClamAV 1.0.7/27463/Wed Nov 18 08:24:02 2026", open: map[net.Conn]bool{}}
	var err error
	if network == "unix" {
		path := filepath.Join(t.TempDir(), "clamd.sock")
		f.ln, err = net.Listen("unix", path)
		f.addr = "unix:" + path
	} else {
		f.ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			f.addr = "tcp:" + f.ln.Addr().String()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(f.stop)
	return f
}

func (f *fake) setMode(m fakeMode) { f.mode.Store(int32(m)) }

func (f *fake) lastStream() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

func (f *fake) stop() {
	f.ln.Close()
	f.mu.Lock()
	for c := range f.open {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

func (f *fake) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.conns.Add(1)
		f.mu.Lock()
		f.open[c] = true
		f.mu.Unlock()
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.serve(c)
			c.Close()
			f.mu.Lock()
			delete(f.open, c)
			f.mu.Unlock()
		}()
	}
}

// serve answers commands on c until a reply ends the connection.
func (f *fake) serve(c net.Conn) {
	br := bufio.NewReader(c)
	session, id := false, 0
	for {
		cmd, err := br.ReadString(0)
		if err != nil {
			return
		}
		mode := fakeMode(f.mode.Load())
		if mode == modeDead {
			return
		}
		switch cmd = strings.TrimSuffix(cmd, "\x00"); cmd {
		case "zIDSESSION":
			session = true
			continue
		case "zEND":
			return
		}
		id++
		if mode == modeDropReused && id > 1 {
			return
		}
		reply := func(s string) {
			if session {
				s = fmt.Sprintf("%d: %s", id, s)
			}
			c.Write([]byte(s + "\x00"))
		}
		var data []byte
		if cmd == "zINSTREAM" {
			f.scans.Add(1)
			var tooBig bool
			data, tooBig, err = f.readStream(br)
			if err != nil {
				return
			}
			if tooBig {
				reply(sizeLimitReply)
				return
			}
		}
		switch {
		case mode == modeSilent, mode == modeSlowScan && cmd == "zINSTREAM":
			io.Copy(io.Discard, br) // until the client gives up
			return
		case mode == modeHalf:
			c.Write([]byte("stream: O"))
			return
		}
		switch {
		case cmd == "zPING":
			reply("PONG")
		case cmd == "zVERSION":
			reply(f.version)
		case cmd == "zINSTREAM" && mode == modeGarbage:
			reply("HELLO WORLD")
		case cmd == "zINSTREAM" && bytes.Contains(data, []byte(eicar)):
			reply("stream: Eicar-Test-Signature FOUND")
		case cmd == "zINSTREAM":
			reply("stream: OK")
		default:
			reply("UNKNOWN COMMAND")
			return
		}
		if !session || (mode == modeDropIdle && cmd == "zINSTREAM") {
			return
		}
	}
}

// readStream reads INSTREAM chunks up to the zero-length one, or until
// more than maxStream bytes came, as clamd does.
func (f *fake) readStream(br *bufio.Reader) (data []byte, tooBig bool, err error) {
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return nil, false, err
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 {
			f.mu.Lock()
			f.last = data
			f.mu.Unlock()
			return data, false, nil
		}
		chunk := make([]byte, n)
		got, err := io.ReadFull(br, chunk)
		f.received.Add(int64(got))
		if err != nil {
			return nil, false, err
		}
		data = append(data, chunk...)
		if f.maxStream > 0 && int64(len(data)) > f.maxStream {
			return nil, true, nil
		}
	}
}

// refusedAddr returns a TCP address where nothing listens.
func refusedAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "tcp:" + addr
}

// logBuf collects log lines from concurrent goroutines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuf) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
