package sqlite

import (
	"sync"

	"mailwarden/internal/store"
)

// pendingTriplets holds triplets whose write is queued but not yet
// committed, so reads in this process see every PutTriplet at once.
type pendingTriplets struct {
	mu  sync.Mutex
	seq uint64
	m   map[tripletKey]pendingTriplet
	// peak is the most entries m has held since it was made: a Go map
	// never shrinks, so one that a burst grew is dropped once empty.
	peak int
}

// pendingShrinkAt is the peak past which an emptied map is dropped
// rather than kept for the next write.
const pendingShrinkAt = 1024

type tripletKey struct{ client, sender, recipient string }

type pendingTriplet struct {
	t   store.Triplet
	seq uint64
}

func keyOf(t store.Triplet) tripletKey { return tripletKey{t.Client, t.Sender, t.Recipient} }

// add records t and returns the sequence number that identifies this
// write, so that only its own commit removes it.
func (p *pendingTriplets) add(t store.Triplet) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = make(map[tripletKey]pendingTriplet)
	}
	p.seq++
	p.m[keyOf(t)] = pendingTriplet{t, p.seq}
	p.peak = max(p.peak, len(p.m))
	return p.seq
}

// done forgets the write seq once it is committed (or failed); a later
// write to the same key stays.
func (p *pendingTriplets) done(k tripletKey, seq uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cur, ok := p.m[k]; ok && cur.seq == seq {
		delete(p.m, k)
		if len(p.m) == 0 && p.peak >= pendingShrinkAt {
			p.m, p.peak = nil, 0
		}
	}
}

func (p *pendingTriplets) get(k tripletKey) (store.Triplet, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur, ok := p.m[k]
	return cur.t, ok
}

// current returns the sequence number of the pending write to k, 0 if
// none.
func (p *pendingTriplets) current(k tripletKey) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[k].seq
}

// snapshot returns the triplets still waiting for their commit.
func (p *pendingTriplets) snapshot() []store.Triplet {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]store.Triplet, 0, len(p.m))
	for _, e := range p.m {
		out = append(out, e.t)
	}
	return out
}
