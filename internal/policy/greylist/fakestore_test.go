package greylist

import (
	"context"
	"sort"
	"sync"
	"time"

	"mailwarden/internal/store"
)

// fakeStore is an in-memory store.Greylist for tests. Records at or past
// their expiry instant behave as absent, as the contract says. Setting err
// makes every call fail with it.
type fakeStore struct {
	mu       sync.Mutex
	triplets map[[3]string]store.Triplet
	passes   map[string]clientPass
	err      error
}

type clientPass struct {
	n       int
	expires time.Time
}

func newFakeStore() *fakeStore {
	return &fakeStore{triplets: map[[3]string]store.Triplet{}, passes: map[string]clientPass{}}
}

func live(expires, now time.Time) bool { return now.Before(expires) }

func (f *fakeStore) GetTriplet(_ context.Context, client, sender, recipient string, now time.Time) (store.Triplet, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return store.Triplet{}, f.err
	}
	t, ok := f.triplets[[3]string{client, sender, recipient}]
	if !ok || !live(t.Expires, now) {
		return store.Triplet{}, store.ErrNotFound
	}
	return t, nil
}

func (f *fakeStore) PutTriplet(_ context.Context, t store.Triplet) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.triplets[[3]string{t.Client, t.Sender, t.Recipient}] = t
	return nil
}

func (f *fakeStore) DeleteTriplet(_ context.Context, client, sender, recipient string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	delete(f.triplets, [3]string{client, sender, recipient})
	return nil
}

func (f *fakeStore) ListTriplets(_ context.Context, flt store.TripletFilter, now time.Time) ([]store.Triplet, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	var out []store.Triplet
	for _, t := range f.triplets {
		switch {
		case !live(t.Expires, now),
			flt.Pending && t.Passed(),
			flt.Passed && !t.Passed(),
			flt.Client != "" && t.Client != flt.Client:
			continue
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LastSeen.After(out[j].LastSeen) })
	if flt.Limit > 0 && len(out) > flt.Limit {
		out = out[:flt.Limit]
	}
	return out, nil
}

func (f *fakeStore) AddClientPass(_ context.Context, client string, now, expires time.Time) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return 0, f.err
	}
	p := f.passes[client]
	if !live(p.expires, now) {
		p.n = 0
	}
	p.n++
	p.expires = expires
	f.passes[client] = p
	return p.n, nil
}

func (f *fakeStore) ClientPasses(_ context.Context, client string, now time.Time) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return 0, f.err
	}
	p := f.passes[client]
	if !live(p.expires, now) {
		return 0, nil
	}
	return p.n, nil
}

func (f *fakeStore) GreylistStats(_ context.Context, now time.Time, whitelistAfter int) (store.GreylistStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return store.GreylistStats{}, f.err
	}
	var s store.GreylistStats
	for _, t := range f.triplets {
		switch {
		case !live(t.Expires, now):
		case t.Passed():
			s.Passed++
		default:
			s.Pending++
		}
	}
	for _, p := range f.passes {
		if live(p.expires, now) && whitelistAfter > 0 && p.n >= whitelistAfter {
			s.WhitelistedClients++
		}
	}
	return s, nil
}

func (f *fakeStore) ListClientPasses(_ context.Context, now time.Time, minPasses, limit int) ([]store.ClientPass, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	var out []store.ClientPass
	for c, p := range f.passes {
		if live(p.expires, now) && p.n >= minPasses {
			out = append(out, store.ClientPass{Client: c, Passes: p.n, Expires: p.expires})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Passes != out[j].Passes {
			return out[i].Passes > out[j].Passes
		}
		return out[i].Client < out[j].Client
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// triplet returns the stored triplet regardless of expiry, for assertions.
func (f *fakeStore) triplet(client, sender, recipient string) (store.Triplet, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.triplets[[3]string{client, sender, recipient}]
	return t, ok
}

var _ store.Greylist = (*fakeStore)(nil)
