package harness

import (
	"strings"
	"testing"
	"time"
)

// TestEximStockConfig checks the Exim harness itself, without mailwarden:
// Debian's stock smarthost configuration relays for its relay network and
// for an authenticated user, and refuses to relay for anyone else.
func TestEximStockConfig(t *testing.T) {
	RequireExim(t)
	sink := StartSink(t)
	e := StartExim(t, EximConfig{
		SmarthostPort: sink.Port,
		RelayNets:     "127.11.0.0/16",
		Users:         map[string]string{"carol": "pw"},
	})

	id := UniqueID(t)
	Send(t, Mail{Server: e.Addr, Client: "127.11.0.5", From: "a@school.test", To: "u@dest.test", ID: id}).RequireDelivered(t)
	msg := sink.WaitForID(t, id, 10*time.Second)
	if !strings.Contains(msg, "[127.11.0.5]") || !strings.Contains(msg, "(Exim 4.96)") {
		t.Errorf("relayed message lacks Exim's Received line for the client:\n%s", msg)
	}

	Send(t, Mail{Server: e.Addr, Client: "127.12.0.5", From: "a@ext.test", To: "u@dest.test"}).
		RequireReply(t, "RCPT TO", "550 relay not permitted")

	id = UniqueID(t)
	Swaks(t, "--server", e.Addr, "--local-interface", "127.12.0.6", "--helo", "laptop.ext.test",
		"--from", "carol@school.test", "--to", "u@dest.test", "--header", "X-Test-ID: "+id,
		"--auth", "PLAIN", "--auth-user", "carol", "--auth-password", "pw", "--timeout", "20s").RequireDelivered(t)
	sink.WaitForID(t, id, 10*time.Second)

	if log := e.MainLog(); !strings.Contains(log, "A=plain_server:carol") {
		t.Errorf("Exim's mainlog does not record carol's login:\n%s", log)
	}
}
