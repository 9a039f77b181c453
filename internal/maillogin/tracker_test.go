package maillogin

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

func login(user, ip string, minute int) Login {
	return Login{
		User:    user,
		IP:      netip.MustParseAddr(ip),
		Time:    time.Date(2026, 11, 20, 8, minute, 0, 0, time.UTC),
		Service: "imap",
	}
}

func TestTrackerKeepsNewest(t *testing.T) {
	tr := NewTracker(10)
	tr.Observe(login("alice", "10.0.0.1", 10))
	tr.Observe(login("bob", "10.0.0.1", 20))
	tr.Observe(login("carol", "10.0.0.1", 15)) // older: out-of-order line
	got, ok := tr.Last(netip.MustParseAddr("10.0.0.1"))
	if !ok || got.User != "bob" {
		t.Fatalf("Last = %+v, %v; want bob", got, ok)
	}
	tr.Observe(login("dave", "10.0.0.1", 20)) // same second, later line wins
	if got, _ := tr.Last(netip.MustParseAddr("10.0.0.1")); got.User != "dave" {
		t.Errorf("after tie: Last = %q, want dave", got.User)
	}
	if _, ok := tr.Last(netip.MustParseAddr("10.0.0.2")); ok {
		t.Error("Last of unseen IP reported a login")
	}
}

func TestTrackerMappedAddress(t *testing.T) {
	tr := NewTracker(10)
	tr.Observe(login("alice", "::ffff:10.0.0.1", 10))
	if got, ok := tr.Last(netip.MustParseAddr("10.0.0.1")); !ok || got.User != "alice" {
		t.Errorf("Last(10.0.0.1) = %+v, %v; want alice stored under the IPv4 address", got, ok)
	}
	tr.Observe(Login{User: "nobody"}) // no IP: ignored
	if tr.Len() != 1 {
		t.Errorf("Len = %d, want 1", tr.Len())
	}
}

func TestTrackerEvictsOldest(t *testing.T) {
	tr := NewTracker(3)
	tr.Observe(login("a", "10.0.0.1", 10))
	tr.Observe(login("b", "10.0.0.2", 5))
	tr.Observe(login("c", "10.0.0.3", 20))
	tr.Observe(login("a2", "10.0.0.1", 30)) // refresh: no eviction
	tr.Observe(login("d", "10.0.0.4", 25))  // full: evicts b (minute 5)
	if tr.Len() != 3 {
		t.Fatalf("Len = %d, want 3", tr.Len())
	}
	if _, ok := tr.Last(netip.MustParseAddr("10.0.0.2")); ok {
		t.Error("oldest address 10.0.0.2 was not evicted")
	}
	tr.Observe(login("e", "10.0.0.5", 1)) // older than everything: dropped
	if _, ok := tr.Last(netip.MustParseAddr("10.0.0.5")); ok {
		t.Error("a login older than every remembered one evicted a newer one")
	}
	var users []string
	for _, l := range tr.Snapshot() {
		users = append(users, l.User)
	}
	if want := "[a2 d c]"; fmt.Sprint(users) != want {
		t.Errorf("Snapshot users = %v, want %s (newest first)", users, want)
	}
}

func TestTrackerConcurrent(t *testing.T) {
	tr := NewTracker(50)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				ip := fmt.Sprintf("10.0.%d.%d", g, i%60)
				tr.Observe(login(fmt.Sprint("u", g), ip, i%60))
				tr.Last(netip.MustParseAddr(ip))
				if i%50 == 0 {
					tr.Snapshot()
				}
			}
		}()
	}
	wg.Wait()
	if n := tr.Len(); n != 50 {
		t.Errorf("Len = %d, want the limit 50", n)
	}
}
