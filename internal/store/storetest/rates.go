package storetest

import (
	"context"
	"testing"
	"time"

	"mailwarden/internal/store"
)

// take calls TakeRate and fails the test on an error.
func take(t *testing.T, s store.Store, key string, n, limit int, period time.Duration, now time.Time) (bool, time.Duration) {
	t.Helper()
	ok, wait, err := s.TakeRate(context.Background(), key, n, limit, period, now)
	if err != nil {
		t.Fatalf("TakeRate(%q, n=%d, %d per %v): %v", key, n, limit, period, err)
	}
	return ok, wait
}

func mustAllow(t *testing.T, s store.Store, key string, n, limit int, period time.Duration, now time.Time) {
	t.Helper()
	if ok, wait := take(t, s, key, n, limit, period, now); !ok {
		t.Fatalf("TakeRate(%q, n=%d) at %s refused (retry after %v), want allowed", key, n, now.Format(time.TimeOnly), wait)
	}
}

// mustRefuse checks a refusal and its wait, give or take a millisecond
// for a backend that keeps times in milliseconds.
func mustRefuse(t *testing.T, s store.Store, key string, n, limit int, period time.Duration, now time.Time, wait time.Duration) {
	t.Helper()
	ok, got := take(t, s, key, n, limit, period, now)
	if ok {
		t.Fatalf("TakeRate(%q, n=%d) at %s allowed, want refused", key, n, now.Format(time.TimeOnly))
	}
	if d := got - wait; d < -time.Millisecond || d > time.Millisecond {
		t.Fatalf("TakeRate(%q, n=%d) at %s: retry after %v, want %v", key, n, now.Format(time.TimeOnly), got, wait)
	}
}

func testTakeRateBurst(t *testing.T, s store.Store) {
	base := baseTime()
	const key, limit, period = "user:alice", 5, time.Hour
	interval := period / limit // 12 minutes
	for range limit {
		mustAllow(t, s, key, 1, limit, period, base)
	}
	mustRefuse(t, s, key, 1, limit, period, base, interval)
	// A refused take changes nothing: asking again costs nothing.
	mustRefuse(t, s, key, 1, limit, period, base, interval)
	mustRefuse(t, s, key, 1, limit, period, base.Add(11*time.Minute), time.Minute)
	mustAllow(t, s, key, 1, limit, period, base.Add(interval))
	mustRefuse(t, s, key, 1, limit, period, base.Add(interval), interval)

	// After a long quiet spell the burst is the whole limit, not more.
	later := base.Add(10 * time.Hour)
	for range limit {
		mustAllow(t, s, key, 1, limit, period, later)
	}
	mustRefuse(t, s, key, 1, limit, period, later, interval)
}

func testTakeRateMany(t *testing.T, s store.Store) {
	base := baseTime()
	const key, limit, period = "domain:example.org", 10, time.Minute
	interval := period / limit // 6 seconds
	mustAllow(t, s, key, 4, limit, period, base)
	mustAllow(t, s, key, 4, limit, period, base)
	mustRefuse(t, s, key, 4, limit, period, base, 2*interval)
	mustAllow(t, s, key, 2, limit, period, base)
	mustRefuse(t, s, key, 1, limit, period, base, interval)
	mustAllow(t, s, key, 3, limit, period, base.Add(3*interval))
}

func testTakeRateKeysIndependent(t *testing.T, s store.Store) {
	base := baseTime()
	const limit, period = 2, time.Hour
	for range limit {
		mustAllow(t, s, "client:10.0.0.1", 1, limit, period, base)
	}
	mustRefuse(t, s, "client:10.0.0.1", 1, limit, period, base, period/limit)
	for _, other := range []string{"client:10.0.0.10", "client:10.0.0.", "user:10.0.0.1", "client:10.0.0.%"} {
		for range limit {
			mustAllow(t, s, other, 1, limit, period, base)
		}
	}
}

func testTakeRateOverLimit(t *testing.T, s store.Store) {
	base := baseTime()
	const key, limit, period = "user:bob", 5, time.Hour
	for _, now := range []time.Time{base, base.Add(24 * time.Hour)} {
		if ok, _ := take(t, s, key, limit+1, limit, period, now); ok {
			t.Fatalf("TakeRate of %d units with a limit of %d allowed", limit+1, limit)
		}
	}
	// The refusals took nothing: the whole burst is still there.
	now := base.Add(24 * time.Hour)
	mustAllow(t, s, key, limit, limit, period, now)
	mustRefuse(t, s, key, 1, limit, period, now, period/limit)
}
