package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"mailwarden/internal/store"
)

// mirror is the daemon's in-memory copy of the triplet table. Greylisting
// reads a triplet for every recipient; from SQLite that costs a read
// transaction (locks, and pages reread because the WAL keeps changing),
// from memory it costs a map lookup. SQLite stays the durable copy: puts
// are written behind, and the mirror is reloaded when another process
// (the greylist CLI) commits to the database.
type mirror struct {
	mu sync.RWMutex
	h  hasher
	m  map[tripletHash]compactTriplet
	// clients holds the pass counts. Only the daemon writes them (the CLI
	// never does), so they are loaded once and never reloaded.
	clients map[string]clientPass
	// While a reload scans the table, changes are also journaled and
	// replayed onto the fresh copy, so none made during the scan is lost.
	reloading bool
	journal   []mirrorOp
}

type clientPass struct {
	passes  int
	expires time.Time
}

type mirrorOp struct {
	t   store.Triplet
	del bool
}

func (m *mirror) get(k tripletKey) (store.Triplet, bool) {
	h := m.h.of(k.client, k.sender, k.recipient)
	m.mu.RLock()
	c, ok := m.m[h]
	m.mu.RUnlock()
	if !ok {
		return store.Triplet{}, false
	}
	return c.triplet(k.client, k.sender, k.recipient), true
}

func (m *mirror) apply(op mirrorOp) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.applyLocked(m.m, op)
	if m.reloading {
		m.journal = append(m.journal, op)
	}
}

func (m *mirror) applyLocked(dst map[tripletHash]compactTriplet, op mirrorOp) {
	if op.del {
		delete(dst, m.h.ofTriplet(op.t))
		return
	}
	dst[m.h.ofTriplet(op.t)] = compactOf(op.t)
}

// expireYield is how many entries expire looks at between letting
// look-ups in: at ten million triplets a sweep under one lock held every
// greylist decision for almost two seconds.
const expireYield = 4096

// expire drops triplets and pass counts whose expiry is at or before now.
// It lets readers and writers in every expireYield entries. Go allows a
// map to change between the steps of a range over it, as long as each
// access holds the lock: entries added meanwhile may or may not be seen
// (the next sweep gets them), deleted ones are not. A reload that swaps
// in a fresh map meanwhile leaves this sweep finishing the old one.
func (m *mirror) expire(now time.Time) {
	cutoff := now.UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	yield := func() {
		if n++; n%expireYield == 0 {
			m.mu.Unlock()
			runtime.Gosched()
			m.mu.Lock()
		}
	}
	triplets := m.m
	for k, t := range triplets {
		if t.expires <= cutoff {
			delete(triplets, k)
		}
		yield()
	}
	clients := m.clients
	for k, c := range clients {
		if !c.expires.After(now) {
			delete(clients, k)
		}
		yield()
	}
}

// passes returns client's unexpired pass count.
func (m *mirror) passes(client string, now time.Time) int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	c, ok := m.clients[client]
	if !ok || !c.expires.After(now) {
		return 0
	}
	return c.passes
}

// addPass counts one more pass for client, restarting an expired count,
// and returns the new record.
func (m *mirror) addPass(client string, now, expires time.Time) clientPass {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.clients[client]
	if !c.expires.After(now) {
		c.passes = 0
	}
	c.passes++
	c.expires = expires
	m.clients[client] = c
	return c
}

// listPasses returns the unexpired pass counts of at least minPasses,
// most first and then by client, at most limit (0: all).
func (m *mirror) listPasses(now time.Time, minPasses, limit int) []store.ClientPass {
	m.mu.RLock()
	var out []store.ClientPass
	for client, c := range m.clients {
		if c.passes >= minPasses && c.expires.After(now) {
			out = append(out, store.ClientPass{Client: client, Passes: c.passes, Expires: c.expires})
		}
	}
	m.mu.RUnlock()
	slices.SortFunc(out, func(a, b store.ClientPass) int {
		if a.Passes != b.Passes {
			return cmp.Compare(b.Passes, a.Passes)
		}
		return strings.Compare(a.Client, b.Client)
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

func (m *mirror) len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.m)
}

// reload replaces the mirror with the table's current content. Puts still
// queued for the writer are journaled first: the scan may not see them,
// and their commit may land after it.
func (s *Store) reload(ctx context.Context) error {
	m := s.mirror
	m.mu.Lock()
	m.reloading = true
	m.journal = m.journal[:0]
	for _, p := range s.pending.snapshot() {
		m.journal = append(m.journal, mirrorOp{t: p})
	}
	m.mu.Unlock()

	fresh, err := s.scanTriplets(ctx)

	m.mu.Lock()
	defer m.mu.Unlock()
	m.reloading = false
	if err != nil {
		m.journal = m.journal[:0]
		return err
	}
	for _, op := range m.journal {
		m.applyLocked(fresh, op)
	}
	m.journal = m.journal[:0]
	m.m = fresh
	return nil
}

func (s *Store) scanClients(ctx context.Context) (map[string]clientPass, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT client, passes, expires FROM client_pass WHERE expires > ?1`,
		time.Now().UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("sqlite: load client passes into memory: %w", err)
	}
	out := make(map[string]clientPass)
	err = eachRow(rows, func(r rowScanner) error {
		var client string
		var c clientPass
		var expires int64
		if err := r.Scan(&client, &c.passes, &expires); err != nil {
			return err
		}
		c.expires = time.UnixMilli(expires)
		out[client] = c
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: load client passes into memory: %w", err)
	}
	return out, nil
}

func (s *Store) scanTriplets(ctx context.Context) (map[tripletHash]compactTriplet, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT client, sender, recipient, first_seen, last_seen,
		passed_at, attempts, expires FROM triplet WHERE expires > ?1`, time.Now().UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("sqlite: load triplets into memory: %w", err)
	}
	out := make(map[tripletHash]compactTriplet)
	err = eachRow(rows, func(r rowScanner) error {
		var t store.Triplet
		var first, last, passed sql.NullInt64
		var expires int64
		if err := r.Scan(&t.Client, &t.Sender, &t.Recipient, &first, &last, &passed, &t.Attempts, &expires); err != nil {
			return err
		}
		t.FirstSeen, t.LastSeen, t.PassedAt = fromMS(first), fromMS(last), fromMS(passed)
		t.Expires = time.UnixMilli(expires)
		out[s.mirror.h.ofTriplet(t)] = compactOf(t)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: load triplets into memory: %w", err)
	}
	return out, nil
}

// externalChange is called by the writer when another connection has
// committed to the database. Reloads are coalesced: one runs at a time,
// and a change seen during a reload causes one more.
func (s *Store) externalChange() {
	select {
	case s.reloadReq <- struct{}{}:
	default:
	}
}

func (s *Store) reloader() {
	defer close(s.reloaderDone)
	for {
		select {
		case <-s.reloadReq:
		case <-s.w.quit:
			return
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		// Latches and freezes first: they are few, and an administrator
		// who just cleared a latch is waiting for it to take effect.
		if err := s.reloadOutbound(ctx); err != nil {
			s.log.Error("reloading latches and freezes after an outside change failed; keeping the old copy", "err", err)
		}
		err := s.reload(ctx)
		cancel()
		if err != nil {
			s.log.Error("reloading greylist triplets after an outside change failed; keeping the old copy", "err", err)
			continue
		}
		s.log.Info("greylist triplets reloaded after a change by another process",
			"triplets", s.mirror.len(), "took", time.Since(start).Round(time.Millisecond))
	}
}
