package sqlite

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// rateShards spreads rate keys over separately locked maps, so parallel
// SMTP sessions taking different keys rarely wait for one another.
const rateShards = 64

// rates is the generic cell rate algorithm's state (ITU-T I.371 annex A,
// the virtual scheduling form): one theoretical arrival time (TAT) per
// key, in unix nanoseconds. It lives in memory, since a limit is checked
// up to three times per recipient, and is written behind to the rate
// table so that a restart does not hand every sender a fresh burst. A
// TAT at or before now is the same as no entry, which is what lets
// Expire drop those and bound memory by the keys seen recently.
type rates struct {
	seed   maphash.Seed
	shards [rateShards]rateShard
	// queued is set while a save is queued for the writer, so a burst of
	// takes queues one save, not one write each.
	queued atomic.Bool
}

type rateShard struct {
	mu    sync.Mutex
	tat   map[string]int64
	dirty map[string]struct{}
	_     [40]byte // a cache line per shard, so locks do not share one
}

type rateEntry struct {
	key string
	tat int64
}

func (r *rates) init() {
	r.seed = maphash.MakeSeed()
	for i := range r.shards {
		r.shards[i].tat = make(map[string]int64)
		r.shards[i].dirty = make(map[string]struct{})
	}
}

func (r *rates) shard(key string) *rateShard {
	return &r.shards[maphash.String(r.seed, key)%rateShards]
}

// take applies GCRA: with emission interval T = period/limit, n units fit
// if the TAT after them lies no more than period ahead of now, which
// allows a burst of the whole limit. It returns whether they fit, the
// wait if not, and whether the state changed.
func (r *rates) take(key string, n, limit int, period time.Duration, now time.Time) (bool, time.Duration) {
	if n > limit {
		// Never fits. The period is the longest wait that means anything
		// to a client; retrying later is refused the same way.
		return false, period
	}
	interval := max(int64(period)/int64(limit), 1)
	nowNS := now.UnixNano()
	sh := r.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	tat := max(sh.tat[key], nowNS)
	next := tat + int64(n)*interval
	if wait := next - int64(period) - nowNS; wait > 0 {
		return false, time.Duration(wait)
	}
	sh.tat[key] = next
	sh.dirty[key] = struct{}{}
	return true, 0
}

// takeDirty returns the entries changed since the last call and forgets
// that they changed.
func (r *rates) takeDirty() []rateEntry {
	// Cleared before the shards are read: a take that marks a key dirty
	// after its shard was read then sees false and queues another save.
	r.queued.Store(false)
	var out []rateEntry
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for k := range sh.dirty {
			if tat, ok := sh.tat[k]; ok {
				out = append(out, rateEntry{k, tat})
			}
		}
		clear(sh.dirty)
		sh.mu.Unlock()
	}
	return out
}

// markDirty marks entries whose save failed, so that the next save
// writes their current state.
func (r *rates) markDirty(es []rateEntry) {
	for _, e := range es {
		sh := r.shard(e.key)
		sh.mu.Lock()
		sh.dirty[e.key] = struct{}{}
		sh.mu.Unlock()
	}
}

// expire drops entries whose TAT is at or before now.
func (r *rates) expire(now time.Time) {
	nowNS := now.UnixNano()
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for k, tat := range sh.tat {
			if tat <= nowNS {
				delete(sh.tat, k)
				delete(sh.dirty, k)
			}
		}
		sh.mu.Unlock()
	}
}

func (r *rates) len() int {
	n := 0
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		n += len(sh.tat)
		sh.mu.Unlock()
	}
	return n
}

// loadRates reads the saved rate state that still matters at the real
// clock's now.
func (s *Store) loadRates(ctx context.Context) error {
	rows, err := s.rdb.QueryContext(ctx, `SELECT key, tat_ns FROM rate WHERE tat_ns > ?1`, time.Now().UnixNano())
	if err != nil {
		return fmt.Errorf("sqlite: load rate limiter state: %w", err)
	}
	err = eachRow(rows, func(r rowScanner) error {
		var e rateEntry
		if err := r.Scan(&e.key, &e.tat); err != nil {
			return err
		}
		s.rates.shard(e.key).tat[e.key] = e.tat
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: load rate limiter state: %w", err)
	}
	return nil
}

// TakeRate applies GCRA to key: limit units per period with a burst of
// the whole limit, taking n units at now. The decision is made in memory;
// the new state is written behind, so a crash may forget the last moments
// of takes, which only lets those senders send a little more.
func (s *Store) TakeRate(ctx context.Context, key string, n, limit int, period time.Duration, now time.Time) (bool, time.Duration, error) {
	if s.closed.Load() {
		return false, 0, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return false, 0, fmt.Errorf("sqlite: take rate: %w", err)
	}
	if n < 0 || limit < 1 || period <= 0 {
		return false, 0, fmt.Errorf("sqlite: take rate %s: invalid n %d, limit %d or period %v", key, n, limit, period)
	}
	if n == 0 {
		return true, 0, nil
	}
	ok, wait := s.rates.take(key, n, limit, period, now)
	if ok {
		s.saveRates()
	}
	return ok, wait, nil
}

// saveRates queues a write of the changed rate entries unless one is
// queued already.
func (s *Store) saveRates() {
	if !s.rates.queued.CompareAndSwap(false, true) {
		return
	}
	// The batch may run fn again after a rollback; it writes the same
	// snapshot each time.
	var snap []rateEntry
	taken := false
	// An error means the store is closing, and it refuses every later
	// call anyway.
	_ = s.w.as(writeRate).async(func(w *writer) error {
		if !taken {
			snap, taken = s.rates.takeDirty(), true
		}
		for _, e := range snap {
			if _, err := w.out.putRate.ExecContext(context.Background(), e.key, e.tat); err != nil {
				return err
			}
		}
		return nil
	}, func(err error) {
		if err != nil {
			s.rates.markDirty(snap)
			s.log.Debug("rate limiter state not saved; it is kept in memory and saved with the next change",
				"keys", len(snap), "err", err)
		}
	})
}
