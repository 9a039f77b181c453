package adminapi

import (
	"context"
	"strings"
	"testing"

	"mailwarden/internal/adminapi/adminapitest"
	"mailwarden/internal/store"
)

// TestShellWord: a command shown with an attacker's address in it stays
// one shell word and runs nothing else when pasted.
func TestShellWord(t *testing.T) {
	for in, want := range map[string]string{
		"office@victim.example":   "office@victim.example",
		"10.1.2.0/24":             "10.1.2.0/24",
		"a'b;rm -rf@evil.example": `'a'\''b;rm -rf@evil.example'`,
		"$(reboot)@x.example":     "'$(reboot)@x.example'",
		"":                        "''",
	} {
		if got := shellWord(in); got != want {
			t.Errorf("shellWord(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestIncidentWithoutSources: a daemon without hosts, queue, mailbox
// files or alerts still answers, each section saying what is missing.
func TestIncidentWithoutSources(t *testing.T) {
	mem := adminapitest.New()
	mem.SetFreeze(context.Background(), store.Freeze{Scope: store.FreezeDomain, Value: "victim.example", Since: t0, By: "root"})
	c, _ := start(t, Options{Backend: mem})
	in, err := c.Incident(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if in.Hosts.Available || !strings.HasPrefix(in.Queue.Error, "not available") || in.Mailboxes.Available ||
		!strings.HasPrefix(in.Mailboxes.Error, "not available") || in.Alerts.Configured ||
		!strings.HasPrefix(in.Alerts.Note, "alerts are not configured") {
		t.Errorf("incident without sources: %+v", in)
	}
	if want := `mailwarden freeze off --domain victim.example --note "…"`; len(in.Freezes.Actions) != 1 || in.Freezes.Actions[0] != want {
		t.Errorf("freeze actions %q, want %q", in.Freezes.Actions, want)
	}
}
