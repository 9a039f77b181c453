// Package storetest is the conformance suite every store.Store backend must
// pass. It checks only the behaviour documented in package store, so the
// embedded SQLite backend, the in-memory backend and the Redis backend run
// the same tests. It also holds Faulty, a store decorator that makes
// chosen methods fail, for tests of what breaks when the store does.
//
// Conventions a backend can rely on:
//
//   - Every time the suite stores lies in the future of the real clock, so a
//     backend may hand record lifetimes to a server (Redis EXPIREAT) without
//     losing data the suite still expects. Expiry is exercised by passing a
//     later now to the query methods and to Expire. The exception is one
//     event whose Expires has passed: QueryEvents takes no now, so it must
//     leave out events past retention by the real clock.
//   - Times round-trip with at least millisecond precision: the suite stores
//     whole milliseconds and compares with time.Time.Equal; a time with a
//     finer part may come back truncated to the millisecond.
//   - A triplet whose Expires is at or before now is absent (Expire deletes
//     those, so the query methods agree with it).
package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"mailwarden/internal/store"
)

// Run runs the conformance suite against stores made by open, which must
// return a fresh, empty store for each subtest. Run closes that store when
// the subtest ends, so an opener that also registers a Close needs a
// backend whose Close tolerates a second call. The suite includes the
// audit contract (store.WithAudit): an admin change and its audit event
// are stored together or not at all.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	type test struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}
	tests := []test{
		{"GetMissing", testGetMissing},
		{"PutGetRoundTrip", testPutGetRoundTrip},
		{"SubMillisecondTimes", testSubMillisecond},
		{"PutReplaces", testPutReplaces},
		{"ExpiredTripletAbsent", testExpiredTripletAbsent},
		{"Expire", testExpire},
		{"DeleteTriplet", testDeleteTriplet},
		{"ListTriplets", testListTriplets},
		{"AddClientPass", testAddClientPass},
		{"AddClientPassParallel", testAddClientPassParallel},
		{"AddClientPassAfterExpiry", testAddClientPassAfterExpiry},
		{"GreylistStats", testGreylistStats},
		{"NullSender", testNullSender},
		{"UnusualKeys", testUnusualKeys},
		{"KeysDoNotCollide", testKeysDoNotCollide},
		{"Ping", testPing},
		{"Probe", testProbe},
		{"CanceledContext", testCanceledContext},
		{"AddLatchCreates", testAddLatchCreates},
		{"AddLatchRepeats", testAddLatchRepeats},
		{"AddLatchParallel", testAddLatchParallel},
		{"AddLatchRefusal", testAddLatchRefusal},
		{"ClearLatch", testClearLatch},
		{"LatchExpires", testLatchExpires},
		{"ListLatches", testListLatches},
		{"LatchIDsUnique", testLatchIDsUnique},
		{"Freezes", testFreezes},
		{"TakeRateBurst", testTakeRateBurst},
		{"TakeRateMany", testTakeRateMany},
		{"TakeRateKeysIndependent", testTakeRateKeysIndependent},
		{"TakeRateOverLimit", testTakeRateOverLimit},
		{"EventsRoundTrip", testEventsRoundTrip},
		{"QueryEvents", testQueryEvents},
		{"EventsPastRetention", testEventsPastRetention},
		{"EventsAfterID", testEventsAfterID},
		{"ExpireOutbound", testExpireOutbound},
		{"OutboundCanceledContext", testOutboundCanceledContext},
		{"TrapMerge", testTrapMerge},
		{"Ports", testPorts},
		{"Logins", testLogins},
		{"NotesAndDisinfections", testNotesAndDisinfections},
		{"ListClientPasses", testListClientPasses},
		{"Users", testUsers},
		{"ListUsers", testListUsers},
		{"AlertsOutbox", testAlertsOutbox},
		{"AlertCursor", testAlertCursor},
		{"AlertsExpire", testAlertsExpire},
		{"AlertsCanceledContext", testAlertsCanceledContext},
	}
	for _, a := range auditTests() {
		tests = append(tests, test{"Audit" + a.name, a.fn})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

// RunReopen checks that data (triplets, pass counts, latches, freezes,
// events, rate limiter state, host evidence, users and alerts) survives Close
// and a new open of the same directory. Only backends that persist to a directory use it.
func RunReopen(t *testing.T, open func(t *testing.T, dir string) store.Store) {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	base := baseTime()
	tr := triplet("192.0.2.0/24", "a@example.org", "b@example.net", base)
	tr.PassedAt = base.Add(6 * time.Minute)
	tr.Attempts = 3

	s := open(t, dir)
	if err := s.PutTriplet(ctx, tr); err != nil {
		t.Fatalf("PutTriplet: %v", err)
	}
	for range 3 {
		if _, err := s.AddClientPass(ctx, tr.Client, base, base.Add(time.Hour)); err != nil {
			t.Fatalf("AddClientPass: %v", err)
		}
	}
	checkOutbound := outboundBeforeClose(t, s, base)
	checkHosts := hostsBeforeClose(t, s, base)
	checkUsers := usersBeforeClose(t, s, base)
	checkAlerts := alertsBeforeClose(t, s, base)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t, dir)
	defer func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close after reopen: %v", err)
		}
	}()
	got, err := s.GetTriplet(ctx, tr.Client, tr.Sender, tr.Recipient, base)
	if err != nil {
		t.Fatalf("GetTriplet after reopen: %v", err)
	}
	assertTriplet(t, got, tr)
	n, err := s.ClientPasses(ctx, tr.Client, base)
	if err != nil || n != 3 {
		t.Fatalf("ClientPasses after reopen = %d, %v; want 3", n, err)
	}
	checkOutbound(t, s)
	checkHosts(t, s)
	checkUsers(t, s)
	checkAlerts(t, s)
}

// baseTime is a whole-millisecond instant near the real clock, so that
// lifetimes computed from it lie in the future (see the package comment).
func baseTime() time.Time {
	return time.UnixMilli(time.Now().UnixMilli())
}

// triplet returns a pending triplet first seen at base that lives a day.
func triplet(client, sender, recipient string, base time.Time) store.Triplet {
	return store.Triplet{
		Client:    client,
		Sender:    sender,
		Recipient: recipient,
		FirstSeen: base,
		LastSeen:  base,
		Attempts:  1,
		Expires:   base.Add(24 * time.Hour),
	}
}

func put(t *testing.T, s store.Store, trs ...store.Triplet) {
	t.Helper()
	for _, tr := range trs {
		if err := s.PutTriplet(context.Background(), tr); err != nil {
			t.Fatalf("PutTriplet(%q, %q, %q): %v", tr.Client, tr.Sender, tr.Recipient, err)
		}
	}
}

func get(t *testing.T, s store.Store, tr store.Triplet, now time.Time) (store.Triplet, error) {
	t.Helper()
	return s.GetTriplet(context.Background(), tr.Client, tr.Sender, tr.Recipient, now)
}

func mustGet(t *testing.T, s store.Store, tr store.Triplet, now time.Time) store.Triplet {
	t.Helper()
	return ret(get(t, s, tr, now)).must(t, "GetTriplet(%q, %q, %q)", tr.Client, tr.Sender, tr.Recipient)
}

// result holds what a store method returned, for must.
type result[T any] struct {
	v   T
	err error
}

func ret[T any](v T, err error) result[T] { return result[T]{v, err} }

// must returns the value, or stops the test with what failed.
func (r result[T]) must(t *testing.T, format string, args ...any) T {
	t.Helper()
	if r.err != nil {
		t.Fatalf(format+": %v", append(args, r.err)...)
	}
	return r.v
}

func assertNotFound(t *testing.T, err error, what string) {
	t.Helper()
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("%s: err = %v, want store.ErrNotFound", what, err)
	}
}

// assertTriplet compares every field; times with Equal so that the
// location a backend hands back does not matter.
func assertTriplet(t *testing.T, got, want store.Triplet) {
	t.Helper()
	if got.Client != want.Client || got.Sender != want.Sender || got.Recipient != want.Recipient {
		t.Errorf("keys = (%q, %q, %q), want (%q, %q, %q)",
			got.Client, got.Sender, got.Recipient, want.Client, want.Sender, want.Recipient)
	}
	if got.Attempts != want.Attempts {
		t.Errorf("Attempts = %d, want %d", got.Attempts, want.Attempts)
	}
	assertTimes(t, "triplet", []timePair{
		{"FirstSeen", got.FirstSeen, want.FirstSeen},
		{"LastSeen", got.LastSeen, want.LastSeen},
		{"PassedAt", got.PassedAt, want.PassedAt},
		{"Expires", got.Expires, want.Expires},
	})
	if got.Passed() != want.Passed() {
		t.Errorf("Passed() = %v, want %v", got.Passed(), want.Passed())
	}
}

// timePair is one time field of a record, as got and as wanted.
type timePair struct {
	name      string
	got, want time.Time
}

// assertTimes compares times with Equal, so that the location a backend
// hands back does not matter.
func assertTimes(t *testing.T, what string, times []timePair) {
	t.Helper()
	for _, tm := range times {
		if !tm.got.Equal(tm.want) {
			t.Errorf("%s %s = %v, want %v", what, tm.name, tm.got, tm.want)
		}
	}
}

// assertExpire runs Expire at now and checks how many records it removed.
func assertExpire(t *testing.T, s store.Store, now time.Time, want int, what string) {
	t.Helper()
	if n, err := s.Expire(context.Background(), now); err != nil || n != want {
		t.Fatalf("%s = %d, %v; want %d, nil", what, n, err, want)
	}
}
