package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"mailwarden/internal/store"
)

// outWrites are the writer's statements for latches, freezes, rates and
// events. They run on the writer's connection inside its transaction.
type outWrites struct {
	activeLatch  *sql.Stmt
	latchByID    *sql.Stmt
	insertLatch  *sql.Stmt
	bumpLatch    *sql.Stmt
	refuseLatch  *sql.Stmt
	clearLatch   *sql.Stmt
	loadLatches  *sql.Stmt
	putFreeze    *sql.Stmt
	deleteFreeze *sql.Stmt
	loadFreezes  *sql.Stmt
	putRate      *sql.Stmt
	insertEvent  *sql.Stmt
	expireEvents *sql.Stmt
	expireRates  *sql.Stmt
}

func (o *outWrites) stmts() []**sql.Stmt {
	return []**sql.Stmt{&o.activeLatch, &o.latchByID, &o.insertLatch, &o.bumpLatch, &o.refuseLatch, &o.clearLatch,
		&o.loadLatches, &o.putFreeze, &o.deleteFreeze, &o.loadFreezes, &o.putRate, &o.insertEvent,
		&o.expireEvents, &o.expireRates}
}

func (o *outWrites) prepare(ctx context.Context, conn *sql.Conn) error {
	queries := []string{
		activeLatchSQL,
		`SELECT ` + latchCols + ` FROM latch WHERE id = ?1`,
		// A clash with an existing id inserts nothing; the caller draws
		// another id.
		`INSERT INTO latch (` + latchCols + `)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?8, ?8, ?9, NULL, '', '', 0)
			ON CONFLICT (id) DO NOTHING`,
		`UPDATE latch SET count = count + 1, last_seen = ?2, evidence = ?3, reason = ?4, rule = ?5
			WHERE id = ?1`,
		`UPDATE latch SET count = count + 1, refused = refused + 1, last_seen = ?2 WHERE id = ?1`,
		`UPDATE latch SET cleared_at = ?2, cleared_by = ?3, clear_note = ?4 WHERE id = ?1`,
		// Loaded oldest first, so a newer latch of the same key replaces
		// an older one in the map.
		`SELECT ` + latchCols + ` FROM latch
			WHERE cleared_at IS NULL AND (expires IS NULL OR expires > ?1) ORDER BY last_seen`,
		`INSERT INTO freeze (scope, value, since, set_by, note) VALUES (?1, ?2, ?3, ?4, ?5)
			ON CONFLICT (scope, value) DO UPDATE SET
				since = excluded.since, set_by = excluded.set_by, note = excluded.note`,
		`DELETE FROM freeze WHERE scope = ?1 AND value = ?2`,
		freezeListSQL,
		`INSERT INTO rate (key, tat_ns) VALUES (?1, ?2)
			ON CONFLICT (key) DO UPDATE SET tat_ns = excluded.tat_ns`,
		`INSERT INTO event (time, kind, check_name, action, client, site, user_name, sender,
			recipients, queue_id, reason, expires)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)`,
		`DELETE FROM event WHERE id IN
			(SELECT id FROM event WHERE expires <= ?1 LIMIT ?2)`,
		`DELETE FROM rate WHERE key IN
			(SELECT key FROM rate WHERE tat_ns <= ?1 LIMIT ?2)`,
	}
	return prepareAll(ctx, conn, "write", o.stmts(), queries)
}

func (o *outWrites) close() { closeAll(o.stmts()) }

// outReads are the read pool's statements for latches and freezes, used
// when no in-memory copy is kept (the CLI).
type outReads struct {
	activeLatch *sql.Stmt
	latchByID   *sql.Stmt
	freezes     *sql.Stmt
}

func (r *outReads) stmts() []**sql.Stmt {
	return []**sql.Stmt{&r.activeLatch, &r.latchByID, &r.freezes}
}

func (r *outReads) prepare(ctx context.Context, db *sql.DB) error {
	queries := []string{
		activeLatchSQL,
		`SELECT ` + latchCols + ` FROM latch WHERE id = ?1`,
		freezeListSQL,
	}
	return prepareAll(ctx, db, "read", r.stmts(), queries)
}

func (r *outReads) close() { closeAll(r.stmts()) }

type latchKey struct{ kind, key string }

type freezeKey struct{ scope, value string }

// outMem is the daemon's in-memory copy of the active latches and the
// freezes, which are read for every message. Only the writer goroutine
// changes it, right after the commit that made the change, so it follows
// the database in commit order; changes by another process reach it by
// reloadOutbound.
type outMem struct {
	mu      sync.RWMutex
	latches map[latchKey]store.Latch // uncleared latches, at most one per key
	freezes []store.Freeze           // sorted by scope, then value
}

func (m *outMem) latch(kind, key string) (store.Latch, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	l, ok := m.latches[latchKey{kind, key}]
	return l, ok
}

// putLatch records l as stored: an uncleared latch replaces its key's
// entry, a cleared one removes it if it is still the entry.
func (m *outMem) putLatch(l store.Latch) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := latchKey{l.Kind, l.Key}
	if l.ClearedAt.IsZero() {
		m.latches[k] = l
		return
	}
	if cur, ok := m.latches[k]; ok && cur.ID == l.ID {
		delete(m.latches, k)
	}
}

func (m *outMem) listFreezes() []store.Freeze {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return slices.Clone(m.freezes)
}

func (m *outMem) putFreeze(f store.Freeze) {
	m.mu.Lock()
	defer m.mu.Unlock()
	i, found := slices.BinarySearchFunc(m.freezes, freezeKey{f.Scope, f.Value}, cmpFreeze)
	if found {
		m.freezes[i] = f
	} else {
		m.freezes = slices.Insert(m.freezes, i, f)
	}
}

func (m *outMem) liftFreeze(scope, value string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if i, found := slices.BinarySearchFunc(m.freezes, freezeKey{scope, value}, cmpFreeze); found {
		m.freezes = slices.Delete(m.freezes, i, i+1)
	}
}

func cmpFreeze(f store.Freeze, k freezeKey) int {
	if c := strings.Compare(f.Scope, k.scope); c != 0 {
		return c
	}
	return strings.Compare(f.Value, k.value)
}

func (m *outMem) replace(latches []store.Latch, freezes []store.Freeze) {
	lm := make(map[latchKey]store.Latch, len(latches))
	for _, l := range latches {
		lm[latchKey{l.Kind, l.Key}] = l
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.latches = lm
	m.freezes = freezes
}

func (m *outMem) counts() (latches, freezes int) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.latches), len(m.freezes)
}

// reloadOutbound replaces the in-memory latches and freezes with the
// database's. It reads inside a writer transaction, so no write of this
// process can land between the read and the replacement.
func (s *Store) reloadOutbound(ctx context.Context) error {
	var latches []store.Latch
	var freezes []store.Freeze
	err := s.w.doCommitted(ctx, func(w *writer) error {
		rows, err := w.out.loadLatches.QueryContext(context.Background(), time.Now().UnixMilli())
		if err != nil {
			return err
		}
		if latches, err = scanAll(rows, scanLatch); err != nil {
			return err
		}
		rows, err = w.out.loadFreezes.QueryContext(context.Background())
		if err != nil {
			return err
		}
		freezes, err = scanAll(rows, scanFreeze)
		return err
	}, func() { s.out.replace(latches, freezes) })
	if err != nil {
		return fmt.Errorf("sqlite: load latches and freezes into memory: %w", err)
	}
	return nil
}
