package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"runtime/debug"
)

// maxBatch bounds how many queued writes share one transaction, so one
// commit never holds the write lock for long.
const maxBatch = 256

// writeOp is one queued write. fn runs inside the writer's transaction
// and must be a unit: if it fails, the transaction is rolled back and the
// other operations of the batch are run again without it.
type writeOp struct {
	ctx  context.Context
	fn   func(w *writer) error
	done chan error
}

// writer owns the only read-write connection. SQLite allows one writer at
// a time; funnelling every write through one goroutine lets it commit all
// writes that are waiting in one transaction (group commit), so the
// per-commit cost (WAL append, lock handover) is paid once per batch
// instead of once per recipient.
type writer struct {
	log  *slog.Logger
	conn *sql.Conn
	ops  chan *writeOp // unbuffered: a queued write is a blocked sender
	quit chan struct{}
	done chan struct{}

	begin, commit, rollback *sql.Stmt
	putTriplet              *sql.Stmt
	deleteTriplet           *sql.Stmt
	addClientPass           *sql.Stmt
	expireTriplets          *sql.Stmt
	expireClients           *sql.Stmt
}

func newWriter(ctx context.Context, conn *sql.Conn, log *slog.Logger) (*writer, error) {
	w := &writer{
		log:  log,
		conn: conn,
		ops:  make(chan *writeOp),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	stmts := []struct {
		dst **sql.Stmt
		sql string
	}{
		{&w.begin, "BEGIN IMMEDIATE"},
		{&w.commit, "COMMIT"},
		{&w.rollback, "ROLLBACK"},
		{&w.putTriplet, `INSERT INTO triplet
			(client, sender, recipient, first_seen, last_seen, passed_at, attempts, expires)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
			ON CONFLICT (client, sender, recipient) DO UPDATE SET
				first_seen = excluded.first_seen, last_seen = excluded.last_seen,
				passed_at = excluded.passed_at, attempts = excluded.attempts,
				expires = excluded.expires`},
		{&w.deleteTriplet, `DELETE FROM triplet WHERE client = ?1 AND sender = ?2 AND recipient = ?3`},
		// An expired record counts as absent, so its count restarts at 1.
		{&w.addClientPass, `INSERT INTO client_pass (client, passes, expires) VALUES (?1, 1, ?3)
			ON CONFLICT (client) DO UPDATE SET
				passes = CASE WHEN client_pass.expires > ?2 THEN client_pass.passes + 1 ELSE 1 END,
				expires = excluded.expires
			RETURNING passes`},
		{&w.expireTriplets, `DELETE FROM triplet WHERE (client, sender, recipient) IN
			(SELECT client, sender, recipient FROM triplet WHERE expires <= ?1 LIMIT ?2)`},
		{&w.expireClients, `DELETE FROM client_pass WHERE client IN
			(SELECT client FROM client_pass WHERE expires <= ?1 LIMIT ?2)`},
	}
	for _, s := range stmts {
		st, err := conn.PrepareContext(ctx, s.sql)
		if err != nil {
			w.closeStmts()
			return nil, fmt.Errorf("prepare write statement: %w", err)
		}
		*s.dst = st
	}
	go w.run()
	return w, nil
}

// do queues fn and waits for its transaction to commit. A canceled ctx
// returns at once; the write may or may not still be committed then, as
// with any store reached over a network.
func (w *writer) do(ctx context.Context, fn func(w *writer) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	op := &writeOp{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case w.ops <- op:
	case <-w.quit:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-op.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *writer) run() {
	defer close(w.done)
	batch := make([]*writeOp, 0, maxBatch)
	for {
		select {
		case op := <-w.ops:
			batch = append(batch[:0], op)
		case <-w.quit:
			return
		}
		// Take every write that is already waiting, up to the bound.
	gather:
		for len(batch) < maxBatch {
			select {
			case op := <-w.ops:
				batch = append(batch, op)
			default:
				break gather
			}
		}
		w.runBatch(batch)
		clear(batch)
	}
}

// runBatch commits batch in one transaction and tells every caller the
// outcome. An operation that fails is answered with its error and the
// transaction is retried without it, so one bad write cannot fail or
// half-apply the others.
func (w *writer) runBatch(batch []*writeOp) {
	ctx := context.Background()
	pending := batch[:0:0]
	for _, op := range batch {
		if err := op.ctx.Err(); err != nil {
			op.done <- err
			continue
		}
		pending = append(pending, op)
	}
	for len(pending) > 0 {
		if _, err := w.begin.ExecContext(ctx); err != nil {
			// Clear a transaction a failed COMMIT may have left open, so
			// the next batch starts clean.
			_, _ = w.rollback.ExecContext(ctx)
			reply(pending, fmt.Errorf("sqlite: begin write transaction: %w", err))
			return
		}
		failed := -1
		var opErr error
		for i, op := range pending {
			if opErr = w.call(op); opErr != nil {
				failed = i
				break
			}
		}
		if failed >= 0 {
			if _, err := w.rollback.ExecContext(ctx); err != nil {
				w.log.Warn("store rollback failed", "err", err)
			}
			pending[failed].done <- opErr
			pending = append(pending[:failed], pending[failed+1:]...)
			continue
		}
		if _, err := w.commit.ExecContext(ctx); err != nil {
			_, _ = w.rollback.ExecContext(ctx)
			reply(pending, fmt.Errorf("sqlite: commit: %w", err))
			return
		}
		reply(pending, nil)
		return
	}
}

// call runs one operation, turning a panic into its error so that a bug
// in one write cannot take the daemon down with every write queued.
func (w *writer) call(op *writeOp) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("sqlite: write panicked: %v", r)
			w.log.Error("store write panicked", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	return op.fn(w)
}

func reply(ops []*writeOp, err error) {
	for _, op := range ops {
		op.done <- err
	}
}

// stop ends the writer goroutine after the batch in progress; writes still
// waiting to be queued get ErrClosed.
func (w *writer) stop() {
	close(w.quit)
	<-w.done
}

func (w *writer) closeStmts() {
	for _, st := range []*sql.Stmt{w.begin, w.commit, w.rollback, w.putTriplet,
		w.deleteTriplet, w.addClientPass, w.expireTriplets, w.expireClients} {
		if st != nil {
			_ = st.Close()
		}
	}
}
