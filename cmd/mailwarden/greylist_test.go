package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/store"
)

// TestGreylistAllowThroughDaemon: greylist allow asks the daemon, which
// checks the input, lets the triplet through and records who did it.
func TestGreylistAllowThroughDaemon(t *testing.T) {
	data := t.TempDir()
	st := openData(t, data)
	ctx, now := context.Background(), time.Now()
	pending := store.Triplet{Client: "192.0.2.0/24", Sender: "news@example.org", Recipient: "pat@school.test",
		FirstSeen: now.Add(-time.Minute), LastSeen: now.Add(-time.Minute), Attempts: 1, Expires: now.Add(48 * time.Hour)}
	if err := st.PutTriplet(ctx, pending); err != nil {
		t.Fatal(err)
	}
	serveAdmin(t, data, adminapi.Options{Backend: st, Greylist: st})

	code, stdout, stderr := runCmd("greylist", "allow", "192.0.2.77", "News@Example.org", "pat@school.test", "--data", data)
	if code != 0 || stdout != "allowed: 192.0.2.0/24 news@example.org -> pat@school.test (passes from now on)\n" {
		t.Fatalf("allow: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if tr, err := st.GetTriplet(ctx, pending.Client, pending.Sender, pending.Recipient, time.Now()); err != nil || !tr.Passed() {
		t.Errorf("triplet after allow = %+v, %v; want passed", tr, err)
	}
	code, stdout, _ = runCmd("events", "--kind", "admin", "--json", "--data", data)
	var evs []adminapi.Event
	if err := json.Unmarshal([]byte(stdout), &evs); code != 0 || err != nil || len(evs) != 1 ||
		evs[0].Check != "greylist allow" || evs[0].User != currentUser(t) {
		t.Errorf("admin events after allow: exit %d, %v, %+v", code, err, evs)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"not-an-ip", "a@b", "c@d"}, 2, "neither an IP address nor a netblock"},
		{[]string{"192.0.2.1", "a b@c", "c@d"}, 2, "without spaces"},
		{[]string{"192.0.2.1", "a@b", "c@d"}, 1, "no greylisted triplet 192.0.2.0/24 a@b -> c@d"},
	} {
		code, _, stderr := runCmd(append(append([]string{"greylist", "allow"}, tc.args...), "--data", data)...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("allow %q: exit %d, stderr %q; want %d and %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
}
