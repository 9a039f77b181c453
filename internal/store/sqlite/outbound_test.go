package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"mailwarden/internal/store"
)

func testLatch(kind, key string) store.Latch {
	return store.Latch{Kind: kind, Key: key, Rule: "sender_domain", Reason: "test", Evidence: "x@evil.example"}
}

// TestMirrorSeesOtherProcessLatches stands for `mailwarden latch clear`
// and `mailwarden freeze` run while the daemon answers from memory: the
// daemon must follow without a restart.
func TestMirrorSeesOtherProcessLatches(t *testing.T) {
	dir := t.TempDir()
	daemon := openMirror(t, dir)
	ctx := context.Background()
	now := time.UnixMilli(time.Now().UnixMilli())
	l, err := daemon.AddLatch(ctx, testLatch(store.LatchClient, "10.1.2.3"), now)
	if err != nil {
		t.Fatal(err)
	}

	cli := openTest(t, dir)
	if _, err := cli.ClearLatch(ctx, l.ID, "admin", "reinstalled", now); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.AddLatch(ctx, testLatch(store.LatchUser, "alice"), now); err != nil {
		t.Fatal(err)
	}
	if err := cli.SetFreeze(ctx, store.Freeze{Scope: store.FreezeAll, Since: now, By: "admin"}); err != nil {
		t.Fatal(err)
	}
	if err := cli.Close(); err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		_, clientErr := daemon.ActiveLatch(ctx, store.LatchClient, "10.1.2.3", now)
		_, userErr := daemon.ActiveLatch(ctx, store.LatchUser, "alice", now)
		fs, err := daemon.ListFreezes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if errors.Is(clientErr, store.ErrNotFound) && userErr == nil && len(fs) == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("10s after another process changed them, the daemon sees: cleared latch %v, new latch %v, freezes %+v",
				clientErr, userErr, fs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPlainStoreSeesOtherProcessAtOnce: without a mirror (the CLI) latches
// and freezes are read from the database, so there is no delay at all.
func TestPlainStoreSeesOtherProcessAtOnce(t *testing.T) {
	dir := t.TempDir()
	a, b := openTest(t, dir), openTest(t, dir)
	ctx := context.Background()
	now := time.UnixMilli(time.Now().UnixMilli())
	l, err := a.AddLatch(ctx, testLatch(store.LatchClient, "10.1.2.3"), now)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.ActiveLatch(ctx, store.LatchClient, "10.1.2.3", now); err != nil || got.ID != l.ID {
		t.Fatalf("other store ActiveLatch = %+v, %v; want %s", got, err, l.ID)
	}
	if err := a.SetFreeze(ctx, store.Freeze{Scope: store.FreezeUser, Value: "alice", Since: now}); err != nil {
		t.Fatal(err)
	}
	if fs, err := b.ListFreezes(ctx); err != nil || len(fs) != 1 || fs[0].Value != "alice" {
		t.Fatalf("other store ListFreezes = %+v, %v", fs, err)
	}
}

// TestLatchIDClash checks that an id already taken is drawn again, and
// that a source of nothing but taken ids ends in an error, not a loop.
func TestLatchIDClash(t *testing.T) {
	for _, mirror := range []bool{false, true} {
		t.Run(fmt.Sprintf("mirror=%v", mirror), func(t *testing.T) {
			s := openWith(t, t.TempDir(), Options{Mirror: mirror})
			ctx := context.Background()
			now := time.UnixMilli(time.Now().UnixMilli())
			draws := []string{"AAAAAAAA", "AAAAAAAA", "AAAAAAAA", "BBBBBBBB"}
			s.latchID = func() string {
				id := draws[0]
				if len(draws) > 1 {
					draws = draws[1:]
				}
				return id
			}
			first, err := s.AddLatch(ctx, testLatch(store.LatchClient, "10.0.0.1"), now)
			if err != nil || first.ID != "AAAAAAAA" {
				t.Fatalf("first AddLatch = %q, %v", first.ID, err)
			}
			second, err := s.AddLatch(ctx, testLatch(store.LatchClient, "10.0.0.2"), now)
			if err != nil || second.ID != "BBBBBBBB" {
				t.Fatalf("AddLatch after clashing draws = %q, %v; want BBBBBBBB", second.ID, err)
			}
			if got, err := s.ActiveLatch(ctx, store.LatchClient, "10.0.0.1", now); err != nil || got.Key != "10.0.0.1" {
				t.Fatalf("the clash changed the first latch: %+v, %v", got, err)
			}
			// Only BBBBBBBB is drawn from now on, and it is taken.
			if _, err := s.AddLatch(ctx, testLatch(store.LatchClient, "10.0.0.3"), now); err == nil {
				t.Fatal("AddLatch with only taken ids succeeded")
			}
			if _, err := s.ActiveLatch(ctx, store.LatchClient, "10.0.0.3", now); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("failed AddLatch left a latch: %v", err)
			}
		})
	}
}

// TestExpireDropsIdleRates checks the memory bound: rate entries whose
// TAT has passed go from memory and from the table; others stay.
func TestExpireDropsIdleRates(t *testing.T) {
	s := openTest(t, t.TempDir())
	ctx := context.Background()
	now := time.UnixMilli(time.Now().UnixMilli())
	const idle = 500
	for i := range idle {
		if ok, _, err := s.TakeRate(ctx, fmt.Sprintf("idle:%d", i), 1, 10, time.Minute, now); err != nil || !ok {
			t.Fatalf("TakeRate: %v, %v", ok, err)
		}
	}
	// One unit of 1 per hour: its TAT lies an hour ahead.
	if ok, _, err := s.TakeRate(ctx, "busy", 1, 1, time.Hour, now); err != nil || !ok {
		t.Fatalf("TakeRate: %v, %v", ok, err)
	}
	if n, err := s.Expire(ctx, now.Add(time.Minute)); err != nil || n != 0 {
		t.Fatalf("Expire = %d, %v; want 0 (rate entries are not counted)", n, err)
	}
	if n := s.rates.len(); n != 1 {
		t.Errorf("%d rate entries in memory after Expire, want 1", n)
	}
	var rows int
	if err := s.rdb.QueryRowContext(ctx, "SELECT count(*) FROM rate").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 1 {
		t.Errorf("%d rate rows after Expire, want 1", rows)
	}
	if ok, _, err := s.TakeRate(ctx, "busy", 1, 1, time.Hour, now.Add(time.Minute)); err != nil || ok {
		t.Errorf("the busy key lost its state: TakeRate = %v, %v", ok, err)
	}
}

func TestOutboundAfterClose(t *testing.T) {
	s := openTest(t, t.TempDir())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	checks := map[string]error{
		"SetFreeze":    s.SetFreeze(ctx, store.Freeze{Scope: store.FreezeAll}),
		"LiftFreeze":   s.LiftFreeze(ctx, store.FreezeAll, ""),
		"AppendEvents": s.AppendEvents(ctx, store.Event{Time: now}),
	}
	_, checks["AddLatch"] = s.AddLatch(ctx, testLatch(store.LatchClient, "c"), now)
	_, checks["ActiveLatch"] = s.ActiveLatch(ctx, store.LatchClient, "c", now)
	_, checks["GetLatch"] = s.GetLatch(ctx, "AAAAAAAA")
	_, checks["ListLatches"] = s.ListLatches(ctx, store.LatchFilter{}, now)
	_, checks["ClearLatch"] = s.ClearLatch(ctx, "AAAAAAAA", "", "", now)
	_, checks["ListFreezes"] = s.ListFreezes(ctx)
	_, _, checks["TakeRate"] = s.TakeRate(ctx, "k", 1, 1, time.Hour, now)
	_, checks["QueryEvents"] = s.QueryEvents(ctx, store.EventFilter{})
	for name, err := range checks {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: err = %v, want ErrClosed", name, err)
		}
	}
}

// TestMirrorReadsOwnWrites checks that once AddLatch, ClearLatch,
// SetFreeze or LiftFreeze returns, the in-memory copy already shows it.
func TestMirrorReadsOwnWrites(t *testing.T) {
	s := openMirror(t, t.TempDir())
	ctx := context.Background()
	now := time.UnixMilli(time.Now().UnixMilli())
	for i := range 200 {
		key := fmt.Sprintf("10.0.%d.%d", i/256, i%256)
		l, err := s.AddLatch(ctx, testLatch(store.LatchClient, key), now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.ActiveLatch(ctx, store.LatchClient, key, now); err != nil {
			t.Fatalf("ActiveLatch right after AddLatch #%d: %v", i, err)
		}
		if _, err := s.ClearLatch(ctx, l.ID, "admin", "", now); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ActiveLatch(ctx, store.LatchClient, key, now); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("ActiveLatch right after ClearLatch #%d: %v", i, err)
		}
		f := store.Freeze{Scope: store.FreezeNetwork, Value: key + "/32", Since: now}
		if err := s.SetFreeze(ctx, f); err != nil {
			t.Fatal(err)
		}
		if fs, _ := s.ListFreezes(ctx); len(fs) != 1 {
			t.Fatalf("ListFreezes right after SetFreeze #%d = %+v", i, fs)
		}
		if err := s.LiftFreeze(ctx, f.Scope, f.Value); err != nil {
			t.Fatal(err)
		}
		if fs, _ := s.ListFreezes(ctx); len(fs) != 0 {
			t.Fatalf("ListFreezes right after LiftFreeze #%d = %+v", i, fs)
		}
	}
}

// TestMigrateFromFirstSchema opens a database made by a mailwarden that
// knew only the greylist tables: its triplets stay and the outbound
// tables are added.
func TestMigrateFromFirstSchema(t *testing.T) {
	dir := t.TempDir()
	db, err := sql.Open("sqlite", filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	now := time.UnixMilli(time.Now().UnixMilli())
	for _, q := range []string{
		migrations[0],
		fmt.Sprintf(`INSERT INTO triplet VALUES ('192.0.2.0/24', 'a@example.org', 'b@example.net', %d, %d, NULL, 1, %d)`,
			now.UnixMilli(), now.UnixMilli(), now.Add(time.Hour).UnixMilli()),
		"PRAGMA user_version = 1",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	_ = db.Close()

	s := openTest(t, dir)
	ctx := context.Background()
	if _, err := s.GetTriplet(ctx, "192.0.2.0/24", "a@example.org", "b@example.net", now); err != nil {
		t.Fatalf("triplet from the old schema: %v", err)
	}
	if _, err := s.AddLatch(ctx, testLatch(store.LatchClient, "10.1.2.3"), now); err != nil {
		t.Fatalf("AddLatch after migrating: %v", err)
	}
	var v int
	if err := s.rdb.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil || v != len(migrations) {
		t.Fatalf("user_version = %d, %v; want %d", v, err, len(migrations))
	}
}

// TestMigrateLatchRefused opens a database whose latches predate the
// refused count: they keep their count, start with no refusals, and count
// the next refusal apart.
func TestMigrateLatchRefused(t *testing.T) {
	dir := t.TempDir()
	db, err := sql.Open("sqlite", filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	now := time.UnixMilli(time.Now().UnixMilli())
	const before = 4 // the schema version before latch.refused
	qs := append([]string{}, migrations[:before]...)
	qs = append(qs,
		fmt.Sprintf(`INSERT INTO latch (id, kind, key, rule, reason, site, evidence, count, first_seen, last_seen,
			expires, cleared_at, cleared_by, clear_note)
			VALUES ('L2345678', 'client', '10.1.2.3', 'sender_domain', 'forged', 'lincoln', 'x@evil.example', 4, %d, %d,
			NULL, NULL, '', '')`, now.UnixMilli(), now.UnixMilli()),
		fmt.Sprintf("PRAGMA user_version = %d", before))
	for _, q := range qs {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	_ = db.Close()

	s := openTest(t, dir)
	ctx := context.Background()
	l, err := s.GetLatch(ctx, "L2345678")
	if err != nil || l.Count != 4 || l.Refused != 0 {
		t.Fatalf("latch from the old schema = count %d refused %d (%v); want 4 and 0", l.Count, l.Refused, err)
	}
	l, err = s.AddLatchRefusal(ctx, "L2345678", now.Add(time.Minute))
	if err != nil || l.Count != 5 || l.Refused != 1 {
		t.Fatalf("AddLatchRefusal after migrating = count %d refused %d (%v); want 5 and 1", l.Count, l.Refused, err)
	}
}
