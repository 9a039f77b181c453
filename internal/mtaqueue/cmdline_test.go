package mtaqueue

import (
	"testing"
	"time"
)

func TestFlagsRoundTrip(t *testing.T) {
	f := Filter{Sender: "*@victim-*.example", SenderRegexp: `^o(f|ff)ice@`, RecipientDomain: "gmail.test",
		OlderThan: 3 * 24 * time.Hour, NewerThan: 90 * time.Minute, Queue: Deferred, MinSize: 100, AuthUser: "it's"}
	got := ShellJoin(append([]string{"mailwarden", "queue", "purge"}, f.Flags()...))
	want := `mailwarden queue purge --sender '*@victim-*.example' --recipient-domain gmail.test --sender-regexp '^o(f|ff)ice@' --auth-user 'it'\''s' --older-than 3d --newer-than 90m --queue deferred --min-size 100`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	for _, s := range []string{"3d", "1h30m0s", "90m", "2h", "45s"} {
		d, err := ParseAge(s)
		if err != nil || parseAgeOK(t, FormatAge(d)) != d {
			t.Errorf("%s: %v, %v", s, d, err)
		}
	}
	if _, err := ParseAge("-1h"); err == nil {
		t.Error("a negative age was accepted")
	}
}

func parseAgeOK(t *testing.T, s string) time.Duration {
	d, err := ParseAge(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
