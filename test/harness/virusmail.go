package harness

import (
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// EICARFile writes the EICAR test file as eicar.com in a fresh directory
// and returns its path, for SendAttached.
func EICARFile(t testing.TB) string {
	t.Helper()
	path := filepath.Join(InstanceDir(t, "att"), "eicar.com")
	if err := os.WriteFile(path, []byte(EICAR), 0o644); err != nil {
		t.Fatalf("writing the EICAR file: %v", err)
	}
	return path
}

// RandomFile writes size random bytes (clean to any scanner) to a file
// called name in a fresh directory and returns its path.
func RandomFile(t testing.TB, name string, size int) string {
	t.Helper()
	b := make([]byte, size)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("reading random bytes: %v", err)
	}
	path := filepath.Join(InstanceDir(t, "att"), name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatalf("writing %s: %v", path, err)
	}
	return path
}

// SendAttached sends m as a multipart/mixed message with each file as a
// base64 application/octet-stream attachment named after the file, as a
// mail client would send it. The DATA part is left out of the transcript
// (it may be megabytes); DataReply finds the reply to it.
func SendAttached(t testing.TB, m Mail, files ...string) SwaksResult {
	t.Helper()
	args := m.args()
	for _, f := range files {
		// "@" marks a file name (swaks(1) --body); --attach-name keeps
		// the "@" out of the MIME file name.
		args = append(args, "--attach-type", "application/octet-stream",
			"--attach-name", filepath.Base(f), "--attach", "@"+f)
	}
	return Swaks(t, append(args, "--suppress-data")...)
}

// DataReply returns the server's reply to the end of the message data
// (the reply after the 354 to DATA), whether or not the transcript shows
// the data. It is "" when the message was never sent.
func (r SwaksResult) DataReply() string {
	lines := strings.Split(strings.ReplaceAll(r.Output, "\r\n", "\n"), "\n")
	for i, line := range lines {
		if text, ok := clientLine(line); !ok || !strings.EqualFold(text, "DATA") {
			continue
		}
		replies := 0
		reply := ""
		for _, next := range lines[i+1:] {
			srv, ok := serverLine(next)
			if !ok {
				continue
			}
			if len(srv) >= 4 && srv[3] == '-' {
				continue // not the last line of a multi-line reply
			}
			replies++
			if replies == 1 && !strings.HasPrefix(srv, "354") {
				return "" // DATA itself was refused
			}
			if replies == 2 {
				reply = srv
				break
			}
		}
		return reply
	}
	return ""
}

// RequireDataReply fails the test unless the reply to the end of the
// message data starts with want.
func (r SwaksResult) RequireDataReply(t testing.TB, want string) {
	t.Helper()
	if got := r.DataReply(); !strings.HasPrefix(got, want) {
		t.Fatalf("reply to the end of data = %q, want %q…\nswaks exit %d, transcript:\n%s", got, want, r.ExitCode, tail(r.Output, 6000))
	}
}

// FakeClamd is a TCP listener on loopback that stands in for a broken
// clamd: it answers every connection with a fixed reply, or never.
type FakeClamd struct {
	// Addr is the listener's host:port.
	Addr string

	mu    sync.Mutex
	conns int
}

// StartFakeClamd listens on a free loopback port until the test ends. For
// each connection it reads what the client sends and, when reply is not
// empty, writes reply once the client has sent its first bytes; with an
// empty reply it never answers and holds the connection open.
func StartFakeClamd(t testing.TB, reply string) *FakeClamd {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening for the fake clamd: %v", err)
	}
	f := &FakeClamd{Addr: ln.Addr().String()}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns++
			f.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				f.serve(c, reply, done)
			}()
		}
	}()
	t.Cleanup(func() {
		close(done)
		ln.Close()
		wg.Wait()
	})
	return f
}

// serve answers one connection until the client closes it or the test
// ends.
func (f *FakeClamd) serve(c net.Conn, reply string, done <-chan struct{}) {
	defer c.Close()
	go func() {
		<-done
		c.Close()
	}()
	buf := make([]byte, 64<<10)
	answered := false
	for {
		c.SetReadDeadline(time.Now().Add(time.Minute))
		n, err := c.Read(buf)
		if n > 0 && reply != "" && !answered {
			c.Write([]byte(reply))
			answered = true
		}
		if err != nil {
			return
		}
	}
}

// Server is the listener in mailwarden's antivirus.servers form.
func (f *FakeClamd) Server() string { return "tcp:" + f.Addr }

// Conns returns how many connections the fake clamd has accepted.
func (f *FakeClamd) Conns() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns
}
