package trap

import (
	"net/netip"
	"testing"
	"time"
)

func TestAggregatorFold(t *testing.T) {
	a := NewAggregator(10)
	ip := netip.MustParseAddr("10.1.2.3")
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	dst := netip.MustParseAddrPort("192.0.2.25:25")
	a.Add(Hit{Client: ip, Time: t0.Add(time.Minute), OrigDst: dst, Helo: "late", MailFrom: "x@late"})
	// An older hit arriving afterwards moves FirstSeen but not the Last
	// fields; a newer silent hit keeps the evidence already held.
	a.Add(Hit{Client: ip, Time: t0, Helo: "early"})
	a.Add(Hit{Client: netip.MustParseAddr("::ffff:10.1.2.3"), Time: t0.Add(2 * time.Minute)})
	a.Add(Hit{Time: t0}) // no client: ignored
	got := a.Snapshot()
	want := []Host{{Client: ip, FirstSeen: t0, LastSeen: t0.Add(2 * time.Minute), Count: 3,
		LastDst: dst, LastHelo: "late", LastMailFrom: "x@late"}}
	if len(got) != 1 || got[0] != want[0] {
		t.Fatalf("Snapshot = %+v\nwant %+v", got, want)
	}
	if d := a.Drain(); len(d) != 1 || d[0] != want[0] {
		t.Fatalf("Drain = %+v", d)
	}
	if n := a.Len(); n != 0 {
		t.Fatalf("after Drain, %d hosts held", n)
	}
	a.Add(Hit{Client: ip, Time: t0.Add(time.Hour)})
	if d := a.Drain(); len(d) != 1 || d[0].Count != 1 || d[0].FirstSeen != t0.Add(time.Hour) {
		t.Fatalf("second Drain = %+v, want one new hit", d)
	}
}

func TestAggregatorBounded(t *testing.T) {
	const max, fed = 1000, 100_000
	a := NewAggregator(max)
	now := time.Now()
	for i := range fed {
		a.Add(Hit{Client: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), Time: now})
	}
	if n := a.Len(); n != max {
		t.Fatalf("holds %d hosts, want %d", n, max)
	}
	if d := a.Dropped(); d != fed-max {
		t.Fatalf("Dropped = %d, want %d", d, fed-max)
	}
	// A host already held still counts when full.
	first := netip.AddrFrom4([4]byte{10, 0, 0, 0})
	a.Add(Hit{Client: first, Time: now})
	if h := a.Snapshot()[0]; h.Client != first || h.Count != 2 {
		t.Fatalf("held host = %+v, want count 2", h)
	}
	if got := len(a.Drain()); got != max {
		t.Fatalf("Drain returned %d hosts", got)
	}
	a.Add(Hit{Client: netip.MustParseAddr("10.255.255.255"), Time: now})
	if a.Len() != 1 {
		t.Fatal("Drain did not make room for new hosts")
	}
}

func TestClean(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"mail.example.org", "mail.example.org"},
		{"a\x00b\rc\nd\te\x7ff\u0085g", "abcdefg"},
		{"bad\xffutf8", "bad\uFFFDutf8"},
		{"<script>", "<script>"},
	} {
		if got := Clean(tc.in); got != tc.want {
			t.Errorf("Clean(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	long := Clean("é" + string(bytesOf('x', 300)))
	if len(long) > MaxFieldLen {
		t.Errorf("Clean kept %d bytes", len(long))
	}
	// "é" is two bytes; 254 is the most that fits without splitting.
	if odd := Clean(string(bytesOf('x', 254)) + "é"); len(odd) != 254 {
		t.Errorf("Clean split a rune: %d bytes", len(odd))
	}
}

func bytesOf(c byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = c
	}
	return b
}

func TestHostSummary(t *testing.T) {
	h := Host{Count: 3, LastDst: netip.MustParseAddrPort("203.0.113.5:25"), LastHelo: "pc17", LastMailFrom: "worm@evil.example"}
	want := "3 direct port-25 connections to the trap, last for 203.0.113.5:25, HELO pc17, MAIL FROM worm@evil.example"
	if got := h.Summary(); got != want {
		t.Errorf("Summary() = %q, want %q", got, want)
	}
	if got := (Host{Count: 1}).Summary(); got != "1 direct port-25 connection to the trap" {
		t.Errorf("Summary() of a silent hit = %q", got)
	}
}
