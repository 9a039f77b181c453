package ratelimit

import (
	"context"
	"sync"
	"time"
)

// fakeRates is an in-memory GCRA as store.Rates describes it: limit
// units per period with a burst of the whole limit; a refused take
// changes nothing. It also counts the units charged per key.
type fakeRates struct {
	mu      sync.Mutex
	tat     map[string]time.Time
	charged map[string]int
	err     error
}

func newFakeRates() *fakeRates {
	return &fakeRates{tat: map[string]time.Time{}, charged: map[string]int{}}
}

func (f *fakeRates) TakeRate(_ context.Context, key string, n, limit int, period time.Duration, now time.Time) (bool, time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return false, 0, f.err
	}
	interval := period / time.Duration(limit)
	tat := f.tat[key]
	if tat.Before(now) {
		tat = now
	}
	next := tat.Add(time.Duration(n) * interval)
	if allowAt := next.Add(-period); allowAt.After(now) {
		return false, allowAt.Sub(now), nil
	}
	f.tat[key] = next
	f.charged[key] += n
	return true, 0, nil
}
