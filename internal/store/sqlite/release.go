package sqlite

import (
	"context"
	"errors"
	"fmt"
)

// ReleaseMemory asks SQLite to free the page-cache memory it holds but
// does not need now (PRAGMA shrink_memory), on the writer's connection
// and on every reading connection that is idle. The daemon calls it when
// mail has gone quiet: after a burst the caches hold up to 8 MiB for the
// writer and 2 MiB for each reader, outside the Go heap, pages the next
// burst reads again from the file at little cost (the system's page
// cache has them). It waits for the writes queued before it.
func (s *Store) ReleaseMemory(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	err := s.w.do(ctx, func(w *writer) error {
		_, err := w.conn.ExecContext(ctx, "PRAGMA shrink_memory")
		return err
	})
	// Holding each connection taken makes the next Conn another one;
	// only those idle now are taken, so no reader waits on this.
	idle := s.rdb.Stats().Idle
	for i := 0; i < idle; i++ {
		c, cerr := s.rdb.Conn(ctx)
		if cerr != nil {
			err = errors.Join(err, cerr)
			break
		}
		defer c.Close()
		if _, cerr := c.ExecContext(ctx, "PRAGMA shrink_memory"); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}
	if err != nil {
		return fmt.Errorf("sqlite: release memory: %w", err)
	}
	return nil
}
