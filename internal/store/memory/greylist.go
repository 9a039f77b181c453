package memory

import (
	"cmp"
	"context"
	"slices"
	"time"

	"mailwarden/internal/store"
)

// GetTriplet returns the triplet unless it is missing or expired at now.
func (s *Store) GetTriplet(ctx context.Context, client, sender, recipient string, now time.Time) (store.Triplet, error) {
	if err := s.lock(ctx, "get triplet"); err != nil {
		return store.Triplet{}, err
	}
	defer s.mu.Unlock()
	t, ok := s.triplets[tripletKey{client, sender, recipient}]
	if !ok || !now.Before(t.Expires) {
		return store.Triplet{}, store.ErrNotFound
	}
	return t, nil
}

// PutTriplet stores t, replacing the triplet with its keys. Letting a
// triplet through by hand is an admin change, so it takes the audit ctx
// carries.
func (s *Store) PutTriplet(ctx context.Context, t store.Triplet) error {
	if err := s.lock(ctx, "put triplet"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	s.triplets[tripletKey{t.Client, t.Sender, t.Recipient}] = t
	s.auditLocked(ctx)
	return nil
}

// DeleteTriplet removes a triplet; a missing one is no error.
func (s *Store) DeleteTriplet(ctx context.Context, client, sender, recipient string) error {
	if err := s.lock(ctx, "delete triplet"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	delete(s.triplets, tripletKey{client, sender, recipient})
	return nil
}

// ListTriplets returns the unexpired triplets matching f, newest
// LastSeen first, the keys breaking ties in descending order as SQLite
// does. With both Pending and Passed set nothing matches.
func (s *Store) ListTriplets(ctx context.Context, f store.TripletFilter, now time.Time) ([]store.Triplet, error) {
	if err := s.lock(ctx, "list triplets"); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var out []store.Triplet
	for _, t := range s.triplets {
		if !now.Before(t.Expires) || f.Pending && t.Passed() || f.Passed && !t.Passed() ||
			f.Client != "" && t.Client != f.Client {
			continue
		}
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b store.Triplet) int {
		return -cmp.Or(a.LastSeen.Compare(b.LastSeen), cmp.Compare(a.Client, b.Client),
			cmp.Compare(a.Sender, b.Sender), cmp.Compare(a.Recipient, b.Recipient))
	})
	return limit(out, f.Limit), nil
}

// AddClientPass counts one more pass from client and moves its expiry;
// an expired record starts again at 1.
func (s *Store) AddClientPass(ctx context.Context, client string, now, expires time.Time) (int, error) {
	if err := s.lock(ctx, "add client pass"); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	p, ok := s.passes[client]
	if !ok || !now.Before(p.Expires) {
		p = store.ClientPass{Client: client}
	}
	p.Passes++
	p.Expires = expires
	s.passes[client] = p
	return p.Passes, nil
}

// ClientPasses returns client's unexpired pass count, 0 if none.
func (s *Store) ClientPasses(ctx context.Context, client string, now time.Time) (int, error) {
	if err := s.lock(ctx, "client passes"); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	p, ok := s.passes[client]
	if !ok || !now.Before(p.Expires) {
		return 0, nil
	}
	return p.Passes, nil
}

// ListClientPasses returns the unexpired pass records with at least
// minPasses passes, most passes first, then by client.
func (s *Store) ListClientPasses(ctx context.Context, now time.Time, minPasses, max int) ([]store.ClientPass, error) {
	if err := s.lock(ctx, "list client passes"); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var out []store.ClientPass
	for _, p := range s.passes {
		if now.Before(p.Expires) && p.Passes >= minPasses {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b store.ClientPass) int {
		return cmp.Or(cmp.Compare(b.Passes, a.Passes), cmp.Compare(a.Client, b.Client))
	})
	return limit(out, max), nil
}

// GreylistStats counts the unexpired triplets and the clients with at
// least whitelistAfter passes.
func (s *Store) GreylistStats(ctx context.Context, now time.Time, whitelistAfter int) (store.GreylistStats, error) {
	if err := s.lock(ctx, "greylist stats"); err != nil {
		return store.GreylistStats{}, err
	}
	defer s.mu.Unlock()
	var st store.GreylistStats
	for _, t := range s.triplets {
		switch {
		case !now.Before(t.Expires):
		case t.Passed():
			st.Passed++
		default:
			st.Pending++
		}
	}
	for _, p := range s.passes {
		if now.Before(p.Expires) && p.Passes >= whitelistAfter {
			st.WhitelistedClients++
		}
	}
	return st, nil
}
