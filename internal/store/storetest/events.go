package storetest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/store"
)

func appendEvents(t *testing.T, s store.Store, evs ...store.Event) {
	t.Helper()
	if err := s.AppendEvents(context.Background(), evs...); err != nil {
		t.Fatalf("AppendEvents: %v", err)
	}
}

func queryEvents(t *testing.T, s store.Store, f store.EventFilter) []store.Event {
	t.Helper()
	return ret(s.QueryEvents(context.Background(), f)).must(t, "QueryEvents(%+v)", f)
}

// assertEvent compares every field but the ID, which the store assigns.
func assertEvent(t *testing.T, got, want store.Event) {
	t.Helper()
	type text struct{ Kind, Check, Action, Client, Site, User, Sender, QueueID, Reason string }
	g := text{got.Kind, got.Check, got.Action, got.Client, got.Site, got.User, got.Sender, got.QueueID, got.Reason}
	w := text{want.Kind, want.Check, want.Action, want.Client, want.Site, want.User, want.Sender, want.QueueID, want.Reason}
	if g != w {
		t.Errorf("event %d = %+v, want %+v", got.ID, g, w)
	}
	if !slices.Equal(got.Recipients, want.Recipients) {
		t.Errorf("event %d Recipients = %q, want %q", got.ID, got.Recipients, want.Recipients)
	}
	if !got.Time.Equal(want.Time) || !got.Expires.Equal(want.Expires) {
		t.Errorf("event %d Time, Expires = %v, %v; want %v, %v", got.ID, got.Time, got.Expires, want.Time, want.Expires)
	}
}

// reasons names events by their Reason, which the tests make unique.
func reasons(evs []store.Event) string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.Reason
	}
	return strings.Join(out, " ")
}

func testEventsRoundTrip(t *testing.T, s store.Store) {
	base := baseTime()
	keep := base.Add(30 * 24 * time.Hour)
	reject := store.Event{
		ID: 1 << 40, Time: base.Add(time.Second), Kind: store.EventReject, Check: "sender", Action: "reject",
		Client: "10.1.2.3", Site: "lincoln", User: "alice", Sender: "ceo@evil.example",
		Recipients: []string{"a@example.net", `"quoted, comma"@example.net`, "ü@bücher.example"},
		QueueID:    "4XyZ12abc", Reason: "envelope sender domain evil.example not allowed", Expires: keep,
	}
	admin := store.Event{
		Time: base.Add(2 * time.Second), Kind: store.EventAdmin, Check: "latch clear", User: "root",
		Reason: "cleared latch L7K2Q9XW", Expires: keep,
	}
	trip := store.Event{
		ID: 5, Time: base.Add(3 * time.Second), Kind: store.EventRateTrip, Check: "ratelimit", Action: "tempfail",
		Client: "2001:db8::1", Recipients: []string{"x@example.net"}, Reason: "120 messages in 10m", Expires: keep,
	}
	appendEvents(t, s, reject, admin)
	appendEvents(t, s, trip)
	appendEvents(t, s) // nothing to append is no error

	got := queryEvents(t, s, store.EventFilter{})
	if len(got) != 3 {
		t.Fatalf("QueryEvents returned %d events (%s), want 3", len(got), reasons(got))
	}
	for i, want := range []store.Event{trip, admin, reject} {
		assertEvent(t, got[i], want)
	}
	// IDs increase in the order events were appended; the ID passed in
	// is ignored.
	if !(got[2].ID < got[1].ID && got[1].ID < got[0].ID) {
		t.Errorf("event IDs oldest to newest = %d, %d, %d; want increasing", got[2].ID, got[1].ID, got[0].ID)
	}
}

func testQueryEvents(t *testing.T, s store.Store) {
	base := baseTime()
	at := func(m int) time.Time { return base.Add(time.Duration(m) * time.Minute) }
	ev := func(reason string, m int, kind, client, user string) store.Event {
		return store.Event{Time: at(m), Kind: kind, Check: "test", Client: client, User: user,
			Reason: reason, Expires: base.Add(24 * time.Hour)}
	}
	appendEvents(t, s,
		ev("a", 1, store.EventReject, "10.0.0.1", "alice"),
		ev("b", 2, store.EventTempfail, "10.0.0.2", "bob"),
		ev("c", 3, store.EventReject, "10.0.0.1", ""),
		ev("d", 4, store.EventLatch, "10.0.0.1", "alice"),
		ev("e", 5, store.EventAdmin, "", "admin"),
	)
	cases := []struct {
		name string
		f    store.EventFilter
		want string
	}{
		{"all", store.EventFilter{}, "e d c b a"},
		{"since is inclusive", store.EventFilter{Since: at(3)}, "e d c"},
		{"until is exclusive", store.EventFilter{Until: at(3)}, "b a"},
		{"window", store.EventFilter{Since: at(2), Until: at(4)}, "c b"},
		{"kind", store.EventFilter{Kind: store.EventReject}, "c a"},
		{"client", store.EventFilter{Client: "10.0.0.1"}, "d c a"},
		{"user", store.EventFilter{User: "alice"}, "d a"},
		{"client and kind", store.EventFilter{Client: "10.0.0.1", Kind: store.EventReject}, "c a"},
		{"limit", store.EventFilter{Limit: 2}, "e d"},
		{"client limit", store.EventFilter{Client: "10.0.0.1", Limit: 1}, "d"},
		{"client prefix is not a match", store.EventFilter{Client: "10.0.0."}, ""},
		{"after the last", store.EventFilter{Since: at(6)}, ""},
	}
	for _, tc := range cases {
		if got := reasons(queryEvents(t, s, tc.f)); got != tc.want {
			t.Errorf("%s: QueryEvents = [%s], want [%s] (newest first)", tc.name, got, tc.want)
		}
	}
}

// testEventsPastRetention stores the one event in the suite whose expiry
// lies before the real clock: QueryEvents takes no now, so that is the
// only way to see it leave out expired events.
func testEventsPastRetention(t *testing.T, s store.Store) {
	base := baseTime()
	gone := store.Event{Time: base.Add(-2 * time.Hour), Kind: store.EventReject, Reason: "gone", Expires: base.Add(-time.Hour)}
	live := store.Event{Time: base.Add(-2 * time.Hour), Kind: store.EventReject, Reason: "live", Expires: base.Add(time.Hour)}
	appendEvents(t, s, gone, live)
	if got := reasons(queryEvents(t, s, store.EventFilter{})); got != "live" {
		t.Errorf("QueryEvents = [%s], want only the event still within retention", got)
	}
}

// testExpireOutbound checks that Expire deletes and counts events past
// retention, and keeps latches (the audit trail) and freezes.
func testExpireOutbound(t *testing.T, s store.Store) {
	ctx := context.Background()
	base := baseTime()
	for i, life := range []time.Duration{time.Hour, 2 * time.Hour, 3 * time.Hour} {
		appendEvents(t, s, store.Event{Time: base, Kind: store.EventReject, Reason: string(rune('a' + i)), Expires: base.Add(life)})
	}
	cleared := addLatch(t, s, sampleLatch(store.LatchClient, "10.0.0.1"), base)
	if _, err := s.ClearLatch(ctx, cleared.ID, "admin", "", base); err != nil {
		t.Fatalf("ClearLatch: %v", err)
	}
	short := sampleLatch(store.LatchClient, "10.0.0.2")
	short.Expires = base.Add(time.Hour)
	expired := addLatch(t, s, short, base)
	active := addLatch(t, s, sampleLatch(store.LatchUser, "alice"), base)
	freeze := store.Freeze{Scope: store.FreezeAll, Since: base, By: "admin"}
	if err := s.SetFreeze(ctx, freeze); err != nil {
		t.Fatalf("SetFreeze: %v", err)
	}

	assertExpire(t, s, base.Add(30*time.Minute), 0, "Expire before any expiry")
	assertExpire(t, s, base.Add(2*time.Hour), 2, "Expire")
	assertExpire(t, s, base.Add(2*time.Hour), 0, "second Expire")
	if got := reasons(queryEvents(t, s, store.EventFilter{})); got != "c" {
		t.Errorf("events after Expire = [%s], want [c]", got)
	}
	for _, l := range []store.Latch{cleared, expired, active} {
		getLatch(t, s, l.ID)
	}
	activeLatch(t, s, store.LatchUser, "alice", base)
	assertFreezes(t, listFreezes(t, s), []store.Freeze{freeze})
}

// testEventsAfterID: a reader tailing the log gets what came after the
// last ID it saw, oldest first, whatever the events' own times.
func testEventsAfterID(t *testing.T, s store.Store) {
	base := baseTime()
	keep := time.Now().Add(time.Hour)
	// Appended out of time order: IDs follow the order of appending.
	for i, at := range []time.Duration{3, 1, 2, 5, 4} {
		appendEvents(t, s, store.Event{Time: base.Add(at * time.Second), Kind: store.EventAdmin,
			Reason: fmt.Sprintf("e%d", i), Expires: keep})
	}
	first := queryEvents(t, s, store.EventFilter{})
	if got := reasons(first); got != "e3 e4 e0 e2 e1" {
		t.Errorf("without AfterID: %q, want newest first", got)
	}
	var minID int64 = -1
	for _, ev := range first {
		if minID < 0 || ev.ID < minID {
			minID = ev.ID
		}
	}
	after := queryEvents(t, s, store.EventFilter{Tail: true, AfterID: minID})
	if got := reasons(after); got != "e1 e2 e3 e4" {
		t.Errorf("after the first ID: %q, want \"e1 e2 e3 e4\" (in the order stored)", got)
	}
	if got := reasons(queryEvents(t, s, store.EventFilter{Tail: true, AfterID: minID, Limit: 2})); got != "e1 e2" {
		t.Errorf("after the first ID, limit 2: %q, want the oldest two", got)
	}
	last := after[len(after)-1].ID
	if got := reasons(queryEvents(t, s, store.EventFilter{Tail: true})); got != "e0 e1 e2 e3 e4" {
		t.Errorf("the whole tail: %q, want every event in the order stored", got)
	}
	if got := queryEvents(t, s, store.EventFilter{Tail: true, AfterID: last}); len(got) != 0 {
		t.Errorf("after the last ID: %s, want none", reasons(got))
	}
}
