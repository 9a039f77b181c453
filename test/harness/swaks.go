package harness

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// swaksTimeout bounds one swaks run; its own --timeout bounds each reply.
const swaksTimeout = 60 * time.Second

// SwaksResult is what one swaks run printed and how it exited.
type SwaksResult struct {
	// Output is swaks's transcript: client lines start " -> ", server
	// replies "<- ", and error replies "<** " (swaks(1) "OUTPUT").
	Output string
	// ExitCode is 0 on success; swaks uses 23 when MAIL FROM failed, 24
	// when every RCPT TO failed, 25 when DATA failed and 26 when the
	// message itself was refused at the end of data.
	ExitCode int
}

// Swaks runs swaks with args and returns its transcript and exit code.
func Swaks(t testing.TB, args ...string) SwaksResult {
	t.Helper()
	bin, err := Program("swaks")
	if err != nil {
		SkipOrFail(t, "%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), swaksTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	out, err := cmd.CombinedOutput()
	res := SwaksResult{Output: string(out)}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("swaks %s: no result within %v\n%s", strings.Join(args, " "), swaksTimeout, out)
	case errors.As(err, &exit):
		res.ExitCode = exit.ExitCode()
	case err != nil:
		t.Fatalf("running swaks: %v", err)
	}
	return res
}

// Mail is one message to send with swaks.
type Mail struct {
	// Server is the SMTP server's host:port.
	Server string
	// Client is the local 127.x.y.z address to send from; it stands for
	// a distinct host on the Internet or the internal network.
	Client string
	Helo   string // default "client.ext.test"
	From   string
	To     string
	// ID goes into an X-Test-ID header so Sink.WaitForID finds the
	// message; empty means no such header.
	ID      string
	Headers []string // extra "Name: value" header lines
	Body    string
}

// Send sends m with swaks and returns the transcript.
func Send(t testing.TB, m Mail) SwaksResult {
	t.Helper()
	return Swaks(t, m.args()...)
}

// args returns the swaks arguments that send m.
func (m Mail) args() []string {
	helo := m.Helo
	if helo == "" {
		helo = "client.ext.test"
	}
	// --helo, --from and --to are always explicit: swaks would otherwise
	// look up names in DNS, which these tests must never touch.
	args := []string{
		"--server", m.Server,
		"--helo", helo,
		"--from", m.From,
		"--to", m.To,
		"--timeout", "20s",
	}
	if m.Client != "" {
		args = append(args, "--local-interface", m.Client)
	}
	if m.ID != "" {
		args = append(args, "--header", "X-Test-ID: "+m.ID)
	}
	for _, h := range m.Headers {
		args = append(args, "--add-header", h)
	}
	if m.Body != "" {
		args = append(args, "--body", m.Body)
	}
	return args
}

// Reply returns the server's last reply line to the first client command
// that starts with cmd (case-insensitive), e.g. "RCPT TO" or "." for the
// end of data, without swaks's prefix: "451 4.7.1 Greylisted…". It is ""
// when swaks never sent the command.
func (r SwaksResult) Reply(cmd string) string {
	lines := strings.Split(strings.ReplaceAll(r.Output, "\r\n", "\n"), "\n")
	for i, line := range lines {
		text, ok := clientLine(line)
		if !ok || !strings.HasPrefix(strings.ToUpper(text), strings.ToUpper(cmd)) {
			continue
		}
		if cmd == "." && text != "." {
			continue
		}
		reply := ""
		for _, next := range lines[i+1:] {
			srv, ok := serverLine(next)
			if !ok {
				if reply != "" {
					break
				}
				continue
			}
			reply = srv
			if len(srv) < 4 || srv[3] != '-' {
				break // the last line of a multi-line reply has "NNN "
			}
		}
		return reply
	}
	return ""
}

// RequireReply fails the test unless the reply to cmd starts with want.
func (r SwaksResult) RequireReply(t testing.TB, cmd, want string) {
	t.Helper()
	if got := r.Reply(cmd); !strings.HasPrefix(got, want) {
		t.Fatalf("reply to %s = %q, want %q…\nswaks exit %d, transcript:\n%s", cmd, got, want, r.ExitCode, r.Output)
	}
}

// RequireDelivered fails the test unless the whole transaction succeeded:
// RCPT TO and the end of data got 250 and swaks exited 0.
func (r SwaksResult) RequireDelivered(t testing.TB) {
	t.Helper()
	r.RequireReply(t, "RCPT TO", "250 ")
	r.RequireReply(t, ".", "250 ")
	if r.ExitCode != 0 {
		t.Fatalf("swaks exit %d, want 0; transcript:\n%s", r.ExitCode, r.Output)
	}
}

// clientLine returns the text of a line swaks sent (" -> " or " ~> ").
func clientLine(line string) (string, bool) {
	for _, p := range []string{" -> ", " ~> "} {
		if strings.HasPrefix(line, p) {
			return line[len(p):], true
		}
	}
	return "", false
}

// serverLine returns the text of a server reply line ("<-  ", "<** ",
// and their TLS forms "<~  ", "<~* ").
func serverLine(line string) (string, bool) {
	for _, p := range []string{"<-  ", "<** ", "<~  ", "<~* "} {
		if strings.HasPrefix(line, p) {
			return line[len(p):], true
		}
	}
	return "", false
}
