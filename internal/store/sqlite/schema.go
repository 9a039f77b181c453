package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
)

// migrations are applied in order; PRAGMA user_version records how many a
// database has had. Append new steps, never edit a released one.
//
// Times are unix milliseconds. Text keys compare with the BINARY
// collation, so look-ups are exact byte matches. The secondary indexes
// serve Expire (expires) and the newest-first listing (last_seen).
var migrations = []string{
	`CREATE TABLE triplet (
		client     TEXT NOT NULL,
		sender     TEXT NOT NULL,
		recipient  TEXT NOT NULL,
		first_seen INTEGER,
		last_seen  INTEGER,
		passed_at  INTEGER,
		attempts   INTEGER NOT NULL,
		expires    INTEGER NOT NULL,
		PRIMARY KEY (client, sender, recipient)
	) WITHOUT ROWID;
	CREATE INDEX triplet_expires ON triplet (expires);
	CREATE INDEX triplet_last_seen ON triplet (last_seen);
	CREATE TABLE client_pass (
		client  TEXT NOT NULL PRIMARY KEY,
		passes  INTEGER NOT NULL,
		expires INTEGER NOT NULL
	) WITHOUT ROWID;
	CREATE INDEX client_pass_expires ON client_pass (expires);`,
}

// migrate brings the schema up to date inside one immediate transaction,
// so two processes opening a new database at once do not both create it.
func migrate(ctx context.Context, conn *sql.Conn, log *slog.Logger) (err error) {
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("begin schema transaction: %w", err)
	}
	defer func() {
		if err != nil {
			_, _ = conn.ExecContext(ctx, "ROLLBACK")
		}
	}()
	var version int
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this mailwarden understands (%d); "+
			"run the newer mailwarden or restore a backup", version, len(migrations))
	}
	for v := version; v < len(migrations); v++ {
		if _, err := conn.ExecContext(ctx, migrations[v]); err != nil {
			return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
		}
		log.Info("store schema migrated", "version", v+1)
	}
	if version < len(migrations) {
		// PRAGMA takes no bound parameters; the value is our own constant.
		q := fmt.Sprintf("PRAGMA user_version = %d", len(migrations))
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("record schema version: %w", err)
		}
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("commit schema: %w", err)
	}
	return nil
}
