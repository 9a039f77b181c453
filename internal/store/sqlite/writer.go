package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"

	"mailwarden/internal/store/writefail"
)

// maxBatch bounds how many queued writes share one transaction, so one
// commit never holds the write lock for long.
const maxBatch = 8192

// queueLen bounds the writes waiting for the writer. Past it, writers
// block: back-pressure instead of unbounded memory.
const queueLen = 16384

// writeOp is one queued write. fn runs inside the writer's transaction
// and must be a unit: if it fails, the transaction is rolled back and the
// other operations of the batch are run again without it. A synchronous
// op's caller waits on done; finished, if set, is called with the outcome
// from the writer goroutine, in commit order, before done is answered.
type writeOp struct {
	ctx context.Context
	// kind names what the write stores ("triplet", "latch" ...) for the
	// write-failure counts (failures.go); "" is not counted (flush, probe).
	kind     string
	fn       func(w *writer) error
	done     chan error
	finished func(error)
}

func (op *writeOp) reply(err error) {
	// finished runs first, so that a caller woken by done already sees
	// what finished updated (the in-memory latches and freezes).
	if op.finished != nil {
		op.finished(err)
	}
	if op.done != nil {
		op.done <- err
	}
}

// writer owns the only read-write connection. SQLite allows one writer at
// a time; funnelling every write through one goroutine lets it commit all
// writes that are waiting in one transaction (group commit), so the
// per-commit cost (WAL append, lock handover) is paid once per batch
// instead of once per recipient.
type writer struct {
	log   *slog.Logger
	fails *writefail.Counter
	conn  *sql.Conn
	ops   chan *writeOp
	quit  chan struct{}
	done  chan struct{}
	// unanswered counts the writes queued and not yet answered (their
	// transaction committed or failed): while it is 0, everything
	// written before has been committed and flush has nothing to wait
	// for.
	unanswered atomic.Int64

	// onExternal, if set, is called when another connection (another
	// process) has committed since the last check: PRAGMA data_version
	// on this connection changes only then.
	onExternal  func()
	dataVersion int64

	begin, commit, rollback *sql.Stmt
	dataVersionStmt         *sql.Stmt
	putTriplet              *sql.Stmt
	deleteTriplet           *sql.Stmt
	addClientPass           *sql.Stmt
	setClientPass           *sql.Stmt
	expireTriplets          *sql.Stmt
	expireClients           *sql.Stmt
	expireAlerts            *sql.Stmt
	out                     outWrites
}

func newWriter(ctx context.Context, conn *sql.Conn, log *slog.Logger, onExternal func()) (*writer, error) {
	w := &writer{
		log:        log,
		fails:      writefail.New(log, writefail.SummaryEvery),
		onExternal: onExternal,
		conn:       conn,
		ops:        make(chan *writeOp, queueLen),
		quit:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	stmts := []struct {
		dst **sql.Stmt
		sql string
	}{
		{&w.begin, "BEGIN IMMEDIATE"},
		{&w.commit, "COMMIT"},
		{&w.rollback, "ROLLBACK"},
		{&w.dataVersionStmt, "PRAGMA data_version"},
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
		{&w.setClientPass, `INSERT INTO client_pass (client, passes, expires) VALUES (?1, ?2, ?3)
			ON CONFLICT (client) DO UPDATE SET passes = excluded.passes, expires = excluded.expires`},
		{&w.expireTriplets, `DELETE FROM triplet WHERE (client, sender, recipient) IN
			(SELECT client, sender, recipient FROM triplet WHERE expires <= ?1 LIMIT ?2)`},
		{&w.expireClients, `DELETE FROM client_pass WHERE client IN
			(SELECT client FROM client_pass WHERE expires <= ?1 LIMIT ?2)`},
		{&w.expireAlerts, `DELETE FROM alert WHERE id IN
			(SELECT id FROM alert WHERE expires <= ?1 LIMIT ?2)`},
	}
	for _, s := range stmts {
		st, err := conn.PrepareContext(ctx, s.sql)
		if err != nil {
			w.closeStmts()
			return nil, fmt.Errorf("prepare write statement: %w", err)
		}
		*s.dst = st
	}
	if err := w.out.prepare(ctx, conn); err != nil {
		w.closeStmts()
		return nil, err
	}
	go w.run()
	return w, nil
}

// do queues fn and waits for its transaction to commit. A canceled ctx
// returns at once; the write may or may not still be committed then, as
// with any store reached over a network. Its failure is not counted by
// kind; writes of records go through as(kind).
func (w *writer) do(ctx context.Context, fn func(w *writer) error) error {
	return w.as("").do(ctx, fn)
}

// doCommitted is do with a function the writer goroutine calls once fn's
// transaction has committed, before do returns. Such functions run one at
// a time in commit order, so in-memory copies they update follow the
// database exactly; they run even if the caller has stopped waiting.
func (w *writer) doCommitted(ctx context.Context, fn func(w *writer) error, committed func()) error {
	return w.as("").doCommitted(ctx, fn, committed)
}

// kindWriter is the writer writing one kind of record, so that a failed
// write is counted by its kind (failures.go).
type kindWriter struct {
	w    *writer
	kind string
}

// as returns the writer for writes of kind.
func (w *writer) as(kind string) kindWriter { return kindWriter{w: w, kind: kind} }

// do is writer.do for a write of k's kind.
func (k kindWriter) do(ctx context.Context, fn func(w *writer) error) error {
	return k.w.wait(ctx, &writeOp{ctx: ctx, kind: k.kind, fn: fn, done: make(chan error, 1)})
}

// doCommitted is writer.doCommitted for a write of k's kind.
func (k kindWriter) doCommitted(ctx context.Context, fn func(w *writer) error, committed func()) error {
	return k.w.wait(ctx, &writeOp{ctx: ctx, kind: k.kind, fn: fn, done: make(chan error, 1), finished: func(err error) {
		if err == nil {
			committed()
		}
	}})
}

// async queues fn, a write of k's kind, without waiting for its commit;
// finished is called with the outcome from the writer goroutine.
func (k kindWriter) async(fn func(w *writer) error, finished func(error)) error {
	op := &writeOp{ctx: context.Background(), kind: k.kind, fn: fn, finished: finished}
	k.w.unanswered.Add(1)
	select {
	case k.w.ops <- op:
		return nil
	case <-k.w.quit:
		k.w.unanswered.Add(-1)
		return ErrClosed
	}
}

func (w *writer) wait(ctx context.Context, op *writeOp) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w.unanswered.Add(1)
	select {
	case w.ops <- op:
	case <-w.quit:
		w.unanswered.Add(-1)
		return ErrClosed
	case <-ctx.Done():
		w.unanswered.Add(-1)
		return ctx.Err()
	}
	select {
	case err := <-op.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// flush returns once every write queued before it is committed. With
// none waiting or in flight it returns at once: an idle daemon's reads
// (the alert engine polls the event log every second, the dashboard
// and metrics read the store) then cost no empty write transaction.
func (w *writer) flush(ctx context.Context) error {
	if w.unanswered.Load() == 0 {
		return ctx.Err()
	}
	return w.do(ctx, func(*writer) error { return nil })
}

// externalCheck is how often an idle writer looks for commits by other
// processes.
const externalCheck = 250 * time.Millisecond

func (w *writer) run() {
	defer close(w.done)
	batch := make([]*writeOp, 0, maxBatch)
	tick := time.NewTicker(externalCheck)
	defer tick.Stop()
	w.checkExternal()
	for {
		select {
		case op := <-w.ops:
			batch = append(batch[:0], op)
		case <-tick.C:
			w.checkExternal()
			continue
		case <-w.quit:
			w.drain(batch)
			return
		}
		batch = w.gather(batch)
		w.runBatch(batch)
		clear(batch)
		w.checkExternal()
	}
}

func (w *writer) checkExternal() {
	if w.onExternal == nil {
		return
	}
	var v int64
	if err := w.dataVersionStmt.QueryRowContext(context.Background()).Scan(&v); err != nil {
		w.log.Warn("store: reading data_version failed", "err", err)
		return
	}
	if w.dataVersion != 0 && v != w.dataVersion {
		w.onExternal()
	}
	w.dataVersion = v
}

// linger is how long the writer waits for more writes when nobody is
// waiting on the batch (only write-behind puts in it). Under load, a
// commit then carries many puts and writes each changed page to the WAL
// once instead of once per small commit.
const linger = 100 * time.Millisecond

// gather adds the writes already waiting to batch, up to maxBatch. While
// the batch holds only asynchronous writes it waits up to linger for
// more; a synchronous write ends the wait, so callers that block never
// pay for it.
func (w *writer) gather(batch []*writeOp) []*writeOp {
	waited := !allAsync(batch)
	var timeout <-chan time.Time
	for len(batch) < maxBatch {
		select {
		case op := <-w.ops:
			batch = append(batch, op)
			waited = waited || op.done != nil
			continue
		default:
		}
		if waited {
			return batch
		}
		if timeout == nil {
			timeout = time.After(linger)
		}
		select {
		case op := <-w.ops:
			batch = append(batch, op)
			waited = op.done != nil
		case <-timeout:
			return batch
		case <-w.quit:
			return batch
		}
	}
	return batch
}

func allAsync(batch []*writeOp) bool {
	for _, op := range batch {
		if op.done != nil {
			return false
		}
	}
	return true
}

// drain commits what is still queued at stop, so asynchronous writes
// accepted before Close are not lost.
func (w *writer) drain(batch []*writeOp) {
	for {
		batch = batch[:0]
	gather:
		for len(batch) < maxBatch {
			select {
			case op := <-w.ops:
				batch = append(batch, op)
			default:
				break gather
			}
		}
		if len(batch) == 0 {
			return
		}
		w.runBatch(batch)
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
			w.answer(op, err)
			continue
		}
		pending = append(pending, op)
	}
	for len(pending) > 0 {
		if _, err := w.begin.ExecContext(ctx); err != nil {
			// Clear a transaction a failed COMMIT may have left open, so
			// the next batch starts clean.
			_, _ = w.rollback.ExecContext(ctx)
			w.answerAll(pending, fmt.Errorf("sqlite: begin write transaction: %w", err))
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
			w.answer(pending[failed], opErr)
			pending = append(pending[:failed], pending[failed+1:]...)
			continue
		}
		if _, err := w.commit.ExecContext(ctx); err != nil {
			_, _ = w.rollback.ExecContext(ctx)
			w.answerAll(pending, fmt.Errorf("sqlite: commit: %w", err))
			return
		}
		w.answerAll(pending, nil)
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

// answer tells op's caller the outcome, counting a failed write by its
// kind first.
func (w *writer) answer(op *writeOp, err error) {
	w.fails.Add(op.kind, err)
	op.reply(err)
	w.unanswered.Add(-1)
}

func (w *writer) answerAll(ops []*writeOp, err error) {
	for _, op := range ops {
		w.answer(op, err)
	}
}

// stop ends the writer goroutine after committing what is queued; writes
// not yet queued get ErrClosed. Failures not yet summarised are logged.
func (w *writer) stop() {
	close(w.quit)
	<-w.done
	w.fails.Stop()
}

func (w *writer) closeStmts() {
	for _, st := range []*sql.Stmt{w.begin, w.commit, w.rollback, w.dataVersionStmt, w.putTriplet,
		w.deleteTriplet, w.addClientPass, w.setClientPass, w.expireTriplets, w.expireClients, w.expireAlerts} {
		if st != nil {
			_ = st.Close()
		}
	}
	w.out.close()
}
