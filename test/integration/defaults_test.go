package integration_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailwarden/test/harness"
)

// TestDefaultsWithoutConfig runs the README's first command as a newcomer
// would: `mailwarden serve --data DIR` with no config file. It must come
// up on the default loopback ports, greylist a new triplet, and stop
// cleanly on SIGTERM.
func TestDefaultsWithoutConfig(t *testing.T) {
	if built.err != nil || built.bin == "" {
		harness.RequirePostfix(t) // skips or fails (under CI) for the same reasons
		t.Fatalf("building mailwarden: %v", built.err)
	}
	for _, addr := range []string{"127.0.0.1:10023", "127.0.0.1:10029", "127.0.0.1:8025"} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			msg := fmt.Sprintf("default port %s is taken by another program; cannot run the no-config start", addr)
			if harness.UnderCI() {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	data := filepath.Join(t.TempDir(), "data")
	cmd := exec.Command(built.bin, "serve", "--data", data)
	var stderr, stdout strings.Builder
	cmd.Stderr, cmd.Stdout = &stderr, &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	done := make(chan struct{})
	go func() { exited <- cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
			return
		default:
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
	})

	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://127.0.0.1:8025/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready on 127.0.0.1:8025 within 15s; daemon log:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	c, err := net.DialTimeout("tcp", "127.0.0.1:10023", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(c, "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=203.0.113.7\nclient_name=unknown\nhelo_name=mx.example.org\nsender=news@example.org\nrecipient=user@dest.test\n\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if err != nil {
		t.Fatalf("reading the policy answer: %v", err)
	}
	if !strings.HasPrefix(line, "action=451 4.7.1 Greylisted") {
		t.Errorf("policy answer with defaults = %q, want a 451 4.7.1 greylisting reply", line)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("mailwarden exited with %v after SIGTERM; log:\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("mailwarden did not stop within 10s of SIGTERM")
	}
	if !strings.Contains(stdout.String(), "action=tempfail") {
		t.Errorf("the mail log on standard output has no decision line:\n%s", stdout.String())
	}
	if !strings.Contains(stderr.String(), `config="(built-in defaults)"`) {
		t.Errorf("the daemon log does not say it runs on built-in defaults:\n%s", stderr.String())
	}
}
