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

	// Outbound protection. Latches are never deleted: they are the audit
	// trail of who was blocked and who cleared them. expires and
	// cleared_at are NULL for "never" and "still active"; the partial
	// index finds a key's active latch. A rate row holds a GCRA
	// theoretical arrival time in unix nanoseconds, the precision the
	// algorithm works in. Event ids come from AUTOINCREMENT so that an id
	// is never reused, even after every event has expired; recipients are
	// a JSON array of strings.
	`CREATE TABLE latch (
		id         TEXT NOT NULL PRIMARY KEY,
		kind       TEXT NOT NULL,
		key        TEXT NOT NULL,
		rule       TEXT NOT NULL,
		reason     TEXT NOT NULL,
		site       TEXT NOT NULL,
		evidence   TEXT NOT NULL,
		count      INTEGER NOT NULL,
		first_seen INTEGER NOT NULL,
		last_seen  INTEGER NOT NULL,
		expires    INTEGER,
		cleared_at INTEGER,
		cleared_by TEXT NOT NULL,
		clear_note TEXT NOT NULL
	) WITHOUT ROWID;
	CREATE INDEX latch_active ON latch (kind, key, last_seen) WHERE cleared_at IS NULL;
	CREATE INDEX latch_last_seen ON latch (last_seen);
	CREATE TABLE freeze (
		scope  TEXT NOT NULL,
		value  TEXT NOT NULL,
		since  INTEGER,
		set_by TEXT NOT NULL,
		note   TEXT NOT NULL,
		PRIMARY KEY (scope, value)
	) WITHOUT ROWID;
	CREATE TABLE rate (
		key    TEXT NOT NULL PRIMARY KEY,
		tat_ns INTEGER NOT NULL
	) WITHOUT ROWID;
	CREATE INDEX rate_tat ON rate (tat_ns);
	CREATE TABLE event (
		id         INTEGER PRIMARY KEY AUTOINCREMENT,
		time       INTEGER NOT NULL,
		kind       TEXT NOT NULL,
		check_name TEXT NOT NULL,
		action     TEXT NOT NULL,
		client     TEXT NOT NULL,
		site       TEXT NOT NULL,
		user_name  TEXT NOT NULL,
		sender     TEXT NOT NULL,
		recipients TEXT NOT NULL,
		queue_id   TEXT NOT NULL,
		reason     TEXT NOT NULL,
		expires    INTEGER
	);
	CREATE INDEX event_time ON event (time);
	CREATE INDEX event_expires ON event (expires);
	CREATE INDEX event_client ON event (client, time);
	CREATE INDEX event_user ON event (user_name, time);`,

	// Host evidence (store.Hosts). One row per client for trap totals
	// and the last mailbox login, one per client and port for the
	// backdoor scanner; notes and disinfections are appended, ordered
	// by their rowid within a client.
	`CREATE TABLE trap_host (
		client         TEXT NOT NULL PRIMARY KEY,
		first_seen     INTEGER NOT NULL,
		last_seen      INTEGER NOT NULL,
		count          INTEGER NOT NULL,
		last_dst       TEXT NOT NULL,
		last_helo      TEXT NOT NULL,
		last_mail_from TEXT NOT NULL
	) WITHOUT ROWID;
	CREATE TABLE host_port (
		client       TEXT NOT NULL,
		port         INTEGER NOT NULL,
		open         INTEGER NOT NULL,
		first_open   INTEGER,
		last_checked INTEGER NOT NULL,
		PRIMARY KEY (client, port)
	) WITHOUT ROWID;
	CREATE INDEX host_port_open ON host_port (client, port) WHERE open = 1;
	CREATE TABLE host_login (
		client    TEXT NOT NULL PRIMARY KEY,
		user_name TEXT NOT NULL,
		service   TEXT NOT NULL,
		time      INTEGER NOT NULL
	) WITHOUT ROWID;
	CREATE TABLE host_note (
		id      INTEGER PRIMARY KEY,
		client  TEXT NOT NULL,
		by_name TEXT NOT NULL,
		text    TEXT NOT NULL,
		time    INTEGER NOT NULL
	);
	CREATE INDEX host_note_client ON host_note (client, time);
	CREATE TABLE host_disinfection (
		id      INTEGER PRIMARY KEY,
		client  TEXT NOT NULL,
		by_name TEXT NOT NULL,
		note    TEXT NOT NULL,
		time    INTEGER NOT NULL
	);
	CREATE INDEX host_disinfection_client ON host_disinfection (client, time);`,

	// Dashboard users (store.Users). hash is a bcrypt hash; the password
	// itself is never stored.
	`CREATE TABLE web_user (
		name    TEXT NOT NULL PRIMARY KEY,
		role    TEXT NOT NULL,
		hash    BLOB NOT NULL,
		created INTEGER NOT NULL,
		changed INTEGER NOT NULL
	) WITHOUT ROWID;`,

	// Messages refused because of a latch are counted apart from the
	// violations that set it (store.Latch.Refused). Earlier databases
	// counted both in count alone; their refusals cannot be told apart
	// and stay counted as violations.
	`ALTER TABLE latch ADD COLUMN refused INTEGER NOT NULL DEFAULT 0;`,

	// The alert outbox (store.Alerts): one row per alert and receiver,
	// and the last event the alert engine has read, in one row. items
	// is a JSON array of strings; next_try and sent_at are NULL for
	// "now" and "not yet".
	`CREATE TABLE alert (
		id        INTEGER PRIMARY KEY AUTOINCREMENT,
		created   INTEGER NOT NULL,
		kind      TEXT NOT NULL,
		severity  TEXT NOT NULL,
		receiver  TEXT NOT NULL,
		digest    INTEGER NOT NULL,
		subject   TEXT NOT NULL,
		text      TEXT NOT NULL,
		items     TEXT NOT NULL,
		state     TEXT NOT NULL,
		attempts  INTEGER NOT NULL,
		next_try  INTEGER,
		sent_at   INTEGER,
		error     TEXT NOT NULL,
		expires   INTEGER NOT NULL
	);
	CREATE INDEX alert_pending ON alert (id) WHERE state = 'pending';
	CREATE INDEX alert_expires ON alert (expires);
	CREATE TABLE alert_cursor (
		one      INTEGER PRIMARY KEY CHECK (one = 1),
		event_id INTEGER NOT NULL
	);`,
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
