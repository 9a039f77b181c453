package mtaqueue

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sample returns the messages of testdata/postqueue.jsonl and a "now"
// 1000 s after the newest of them.
func sample(t *testing.T) ([]Message, time.Time) {
	t.Helper()
	in, err := os.ReadFile("testdata/postqueue.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := parseAll(t, string(in))
	if err != nil {
		t.Fatal(err)
	}
	return msgs, time.Unix(1796600500, 0)
}

func TestFilter(t *testing.T) {
	msgs, now := sample(t)
	for _, c := range []struct {
		f    Filter
		want string // selected IDs, space-separated
	}{
		{Filter{}, "4F9D21C2A3B 51A0B1C2D3E 6C7D8E9F012 7A1B2C3D4E5 8B2C3D4E5F6 4dV0Zx3Bq9z8Y7"},
		{Filter{Sender: "office@victim-one.example"}, "4F9D21C2A3B 4dV0Zx3Bq9z8Y7"},
		{Filter{Sender: "OFFICE@*"}, "4F9D21C2A3B 4dV0Zx3Bq9z8Y7"},
		{Filter{Sender: "*@victim-one.example"}, "4F9D21C2A3B 6C7D8E9F012 4dV0Zx3Bq9z8Y7"},
		{Filter{Sender: "of?ice@*"}, "4F9D21C2A3B 4dV0Zx3Bq9z8Y7"},
		{Filter{Sender: "office"}, ""}, // whole addresses only
		{Filter{Sender: "<>"}, "8B2C3D4E5F6"},
		{Filter{SenderDomain: "VICTIM-ONE.example"}, "4F9D21C2A3B 6C7D8E9F012 4dV0Zx3Bq9z8Y7"},
		{Filter{SenderRegexp: `^(office|ofice|servises)@`}, "4F9D21C2A3B 51A0B1C2D3E 6C7D8E9F012 4dV0Zx3Bq9z8Y7"},
		{Filter{Recipient: "*@gmail.test"}, "4F9D21C2A3B 51A0B1C2D3E 6C7D8E9F012 4dV0Zx3Bq9z8Y7"},
		{Filter{RecipientDomain: "yahoo.test"}, "4F9D21C2A3B"},
		{Filter{RecipientRegexp: `^gina@`}, "4dV0Zx3Bq9z8Y7"},
		{Filter{Queue: Deferred}, "4F9D21C2A3B 51A0B1C2D3E"},
		{Filter{Queue: Hold}, "7A1B2C3D4E5"},
		{Filter{OlderThan: 24 * time.Hour}, "7A1B2C3D4E5"},
		{Filter{NewerThan: time.Hour}, "6C7D8E9F012 8B2C3D4E5F6 4dV0Zx3Bq9z8Y7"},
		{Filter{MinSize: 1500}, "4F9D21C2A3B 7A1B2C3D4E5"},
		{Filter{MaxSize: 800}, "6C7D8E9F012 8B2C3D4E5F6 4dV0Zx3Bq9z8Y7"},
		{Filter{SenderDomain: "victim-one.example", Queue: Deferred}, "4F9D21C2A3B"},
	} {
		m, err := c.f.Compile(now)
		if err != nil {
			t.Errorf("%+v: %v", c.f, err)
			continue
		}
		var got []string
		for _, msg := range msgs {
			if m.Match(msg) {
				got = append(got, msg.ID)
			}
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("%+v selects %q, want %q", c.f, got, c.want)
		}
	}
}

// TestFilterInvalid: a filter that cannot mean what was typed is an
// error before anything is listed.
func TestFilterInvalid(t *testing.T) {
	for _, c := range []struct {
		f    Filter
		want string
	}{
		{Filter{SenderRegexp: "(office"}, "sender regular expression"},
		{Filter{RecipientRegexp: "a[b"}, "recipient regular expression"},
		{Filter{Queue: "bogus"}, `queue "bogus"`},
		{Filter{AuthUser: "a\nb"}, "line break"},
		{Filter{SenderDomain: "a@b"}, "want a domain"},
		{Filter{MinSize: 10, MaxSize: 5}, "more than maximum"},
		{Filter{OlderThan: -time.Hour}, "negative"},
		{Filter{Sender: "a\nb"}, "line break"},
	} {
		if _, err := c.f.Compile(time.Now()); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one containing %q", c.f, err, c.want)
		}
	}
}

func TestSummary(t *testing.T) {
	msgs, now := sample(t)
	s := NewSummarizer(now)
	for _, m := range msgs {
		s.Add(m)
	}
	sum := s.Summary(2)
	if sum.Messages != 6 || sum.Recipients != 8 || sum.Bytes != 1523+1490+800+20000+400+123 {
		t.Errorf("totals %d messages, %d recipients, %d bytes", sum.Messages, sum.Recipients, sum.Bytes)
	}
	check := func(name string, got []Count, want string) {
		t.Helper()
		var parts []string
		for _, c := range got {
			parts = append(parts, c.Key+"="+itoa(c.Messages))
		}
		if strings.Join(parts, " ") != want {
			t.Errorf("%s: %q, want %q", name, parts, want)
		}
	}
	check("by sender", sum.BySender, "office@victim-one.example=2 <>=1")
	check("by sender domain", sum.BySenderDomain, "victim-one.example=3 <>=1")
	// gmail.test counts a message once however many recipients it has
	// there, and domains are compared in lower case.
	check("by recipient domain", sum.ByRecipientDomain, "gmail.test=4 district.example=1")
	check("by age", sum.ByAge, "<1h=3 1-6h=2 6-24h=0 1-7d=1 >7d=0")
	check("by queue", sum.ByQueue, "deferred=2 active=1 hold=1 incoming=1 maildrop=1")
	if sum.DistinctSenders != 5 || sum.DistinctSenderDomains != 4 || sum.DistinctRecipientDomains != 4 {
		t.Errorf("distinct: %+v", sum)
	}
	if all := s.Summary(0); len(all.BySender) != 5 {
		t.Errorf("top 0 gives %d senders, want all 5", len(all.BySender))
	}
	if !slices.IsSortedFunc(sum.BySender, func(a, b Count) int { return b.Messages - a.Messages }) {
		t.Errorf("not sorted: %v", sum.BySender)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestAuthUser: the authenticated user filters and is counted where the
// MTA records it, and a message without one is never selected by it.
func TestAuthUser(t *testing.T) {
	now := time.Unix(1796600500, 0)
	msgs := []Message{
		{ID: "a", Sender: "x@a.example", AuthUser: "webmaster", Arrival: now},
		{ID: "b", Sender: "y@a.example", AuthUser: "WebMaster", Arrival: now},
		{ID: "c", Sender: "z@a.example", Arrival: now},
	}
	m, err := Filter{AuthUser: "webmaster"}.Compile(now)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	s := NewSummarizer(now)
	for _, msg := range msgs {
		if m.Match(msg) {
			got = append(got, msg.ID)
		}
		s.Add(msg)
	}
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("auth user webmaster selects %q, want a b", got)
	}
	sum := s.Summary(0)
	if sum.DistinctAuthUsers != 2 || len(sum.ByAuthUser) != 2 || sum.ByAuthUser[0].Messages != 1 {
		t.Errorf("summary by auth user = %+v (%d distinct), want 2 users of 1 message each", sum.ByAuthUser, sum.DistinctAuthUsers)
	}
}
