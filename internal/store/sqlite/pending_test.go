package sqlite

import (
	"fmt"
	"testing"

	"mailwarden/internal/store"
)

// TestPendingMapDroppedAfterBurst: a burst of new triplets grows the map
// of writes waiting for their commit, and a Go map keeps its size once
// grown; the emptied map is dropped so that the memory goes back with
// the burst, while a map still holding a write keeps it.
func TestPendingMapDroppedAfterBurst(t *testing.T) {
	var p pendingTriplets
	type w struct {
		k   tripletKey
		seq uint64
	}
	var ws []w
	for i := range 2 * pendingShrinkAt {
		tr := store.Triplet{Client: "192.0.2.0", Sender: fmt.Sprintf("s%d@example.org", i), Recipient: "r@example.net"}
		ws = append(ws, w{keyOf(tr), p.add(tr)})
	}
	for _, w := range ws[1:] {
		p.done(w.k, w.seq)
	}
	if p.m == nil {
		t.Fatal("map dropped while a write was still waiting")
	}
	if _, ok := p.get(ws[0].k); !ok {
		t.Fatal("the waiting write is gone")
	}
	p.done(ws[0].k, ws[0].seq)
	if p.m != nil {
		t.Fatalf("emptied map of %d writes kept", 2*pendingShrinkAt)
	}
	tr := store.Triplet{Client: "192.0.2.0", Sender: "a@example.org", Recipient: "r@example.net"}
	seq := p.add(tr)
	if got, ok := p.get(keyOf(tr)); !ok || got != tr {
		t.Fatalf("write after the drop: got %+v, %v", got, ok)
	}
	p.done(keyOf(tr), seq)
	if p.m == nil {
		t.Fatal("a map that never grew past one entry was dropped: it would be made again for every write")
	}
}

// TestPassesInMemory: the greylist's pass cache leaves new clients out
// only when the store answers pass counts from its in-memory copy (the
// daemon's store); a store opened without it reads the database.
func TestPassesInMemory(t *testing.T) {
	if !openWith(t, t.TempDir(), Options{Mirror: true}).PassesInMemory() {
		t.Error("store with its in-memory copy: PassesInMemory false")
	}
	if openTest(t, t.TempDir()).PassesInMemory() {
		t.Error("store without its in-memory copy: PassesInMemory true")
	}
}
