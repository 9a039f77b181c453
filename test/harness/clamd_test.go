package harness

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestClamdDetectsEICAR checks the harness's clamd without mailwarden: it
// finds EICAR base64-encoded in a MIME attachment over TCP and the unix
// socket, passes a clean message, and comes back after Stop and Start.
func TestClamdDetectsEICAR(t *testing.T) {
	c := StartClamd(t)
	infected := mimeMessage(EICAR)
	for _, network := range []struct{ net, addr string }{{"tcp", c.Addr}, {"unix", c.Socket}} {
		got := instream(t, network.net, network.addr, infected)
		if !strings.HasPrefix(got, "stream: "+EICARSignature) || !strings.HasSuffix(got, " FOUND") {
			t.Errorf("INSTREAM over %s of a message with EICAR attached = %q, want %q… FOUND", network.net, got, EICARSignature)
		}
	}
	if got := instream(t, "tcp", c.Addr, mimeMessage("just a letter")); got != "stream: OK" {
		t.Errorf("INSTREAM of a clean message = %q, want \"stream: OK\"", got)
	}
	if v, err := ClamdCommand(c.Addr, "VERSION", 5*time.Second); err != nil || !strings.HasPrefix(v, "ClamAV ") {
		t.Errorf("VERSION = %q, %v; want \"ClamAV …\"", v, err)
	}

	pid := c.PID()
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := ClamdCommand(c.Addr, "PING", time.Second); err == nil {
		t.Fatalf("clamd pid %d still answers PING after Stop", pid)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if got := instream(t, "unix", c.Socket, infected); !strings.HasSuffix(got, " FOUND") {
		t.Errorf("after a restart INSTREAM = %q, want a FOUND", got)
	}
}

// TestClamdStreamMaxLength checks that the configured cap is clamd's.
func TestClamdStreamMaxLength(t *testing.T) {
	c := StartClamdConfig(t, ClamdConfig{StreamMaxLength: "1M"})
	got := instream(t, "tcp", c.Addr, strings.Repeat("x", 2<<20))
	if !strings.Contains(got, "size limit exceeded") {
		t.Errorf("INSTREAM of 2 MB with StreamMaxLength 1M = %q, want a size limit error", got)
	}
}

// TestFakeClamd checks the stand-ins for a broken clamd.
func TestFakeClamd(t *testing.T) {
	garbage := StartFakeClamd(t, "HELLO\x00")
	if got, err := ClamdCommand(garbage.Addr, "PING", 2*time.Second); err != nil || got != "HELLO" {
		t.Errorf("garbage clamd answered PING with %q, %v; want HELLO", got, err)
	}
	silent := StartFakeClamd(t, "")
	if got, err := ClamdCommand(silent.Addr, "PING", 500*time.Millisecond); err == nil {
		t.Errorf("silent clamd answered PING with %q", got)
	}
	if silent.Conns() != 1 {
		t.Errorf("silent clamd counted %d connections, want 1", silent.Conns())
	}
}

// TestHoldQueue checks Postfix.Held: a header_checks HOLD puts a message
// on hold, as a milter's quarantine does, and it never reaches the sink.
func TestHoldQueue(t *testing.T) {
	sink := StartSink(t)
	checks := filepath.Join(InstanceDir(t, "hc"), "header_checks")
	if err := os.WriteFile(checks, []byte("/^X-Hold-Me:/ HOLD test hold\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pf := StartPostfix(t, PostfixConfig{SinkPort: sink.Port, Extra: []string{"header_checks = regexp:" + checks}})
	id := UniqueID(t)
	Send(t, Mail{Server: pf.Addr, Client: "127.0.9.7", From: "held@ext.test", To: "u@dest.test", ID: id,
		Headers: []string{"X-Hold-Me: yes"}}).RequireDelivered(t)
	e := pf.WaitHeld(t, func(e QueueEntry) bool { return e.Sender == "held@ext.test" }, 10*time.Second)
	if len(e.Recipients) != 1 || e.Recipients[0].Address != "u@dest.test" {
		t.Errorf("held message recipients = %+v, want u@dest.test", e.Recipients)
	}
	if msg := pf.QueuedMessage(t, e.QueueID); !strings.Contains(msg, "X-Test-ID: "+id) {
		t.Errorf("postcat of held %s lacks X-Test-ID %s:\n%s", e.QueueID, id, msg)
	}
	time.Sleep(time.Second)
	if n := sink.Count(func(m string) bool { return HasHeader(m, "X-Test-ID", id) }); n != 0 {
		t.Errorf("a held message reached the sink %d times", n)
	}
}

func TestDataReply(t *testing.T) {
	out := strings.Join([]string{
		" -> RCPT TO:<u@dest.test>",
		"<-  250 2.1.5 Ok",
		" -> DATA",
		"<-  354 End data with <CR><LF>.<CR><LF>",
		" -> 31 lines sent",
		"<** 554-5.7.1 first",
		"<** 554 5.7.1 Virus found: Eicar-Test-Signature",
		" -> QUIT",
		"<-  221 2.0.0 Bye",
	}, "\n")
	if got := (SwaksResult{Output: out}).DataReply(); got != "554 5.7.1 Virus found: Eicar-Test-Signature" {
		t.Errorf("DataReply = %q", got)
	}
	refused := " -> DATA\n<** 554 5.5.1 Error: no valid recipients\n -> QUIT\n<-  221 Bye\n"
	if got := (SwaksResult{Output: refused}).DataReply(); got != "" {
		t.Errorf("DataReply after a refused DATA = %q, want \"\"", got)
	}
}

// mimeMessage is a multipart message with attachment base64-encoded.
func mimeMessage(attachment string) string {
	b64 := base64.StdEncoding.EncodeToString([]byte(attachment))
	return "From: a@ext.test\r\nTo: u@dest.test\r\nSubject: t\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nhello\r\n" +
		"--B\r\nContent-Type: application/octet-stream; name=\"a.com\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		b64 + "\r\n--B--\r\n"
}

// instream scans data with clamd's INSTREAM command in one chunk.
func instream(t *testing.T, network, addr, data string) string {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dialing clamd at %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	var size [4]byte
	binary.BigEndian.PutUint32(size[:], uint32(len(data)))
	msg := "zINSTREAM\x00" + string(size[:]) + data + "\x00\x00\x00\x00"
	// clamd may answer and close before it has read a stream over its cap.
	c.Write([]byte(msg))
	buf := make([]byte, 1024)
	var got []byte
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if i := strings.IndexByte(string(got), 0); i >= 0 {
			return string(got[:i])
		}
		if err != nil {
			t.Fatalf("reading clamd's INSTREAM reply: %v (got %q)", err, got)
			return fmt.Sprint(got)
		}
	}
}
