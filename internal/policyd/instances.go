package policyd

import (
	"hash/maphash"
	"sync"
	"time"
)

// instanceTTL is how long a message's recipients are remembered after
// its last RCPT request: far longer than any SMTP transaction's RCPT
// phase (Postfix's smtpd_timeout is 300s).
const instanceTTL = 10 * time.Minute

// maxInstances bounds one generation of the table; a flood of made-up
// instances rotates it early rather than growing memory.
const maxInstances = 200_000

// instances numbers the RCPT requests of each message across
// connections. Postfix sends one message's requests over one connection,
// but Exim's ${readsocket} opens a connection per recipient; both send
// the same "instance" for every recipient of a message (Postfix
// SMTPD_POLICY_README; the Exim ACL in docs/exim.md makes one). Keyed by
// client address and instance, the index tells a check which recipient
// of the message this is, so a message counts once against a limit
// however it arrives.
//
// Two generations make expiry O(1): entries are looked up in both and
// written to the current one; every instanceTTL, or when the current one
// is full, the old one is dropped.
//
// Entries are keyed by a seeded 64-bit hash of client and instance, not
// the text: 16 bytes an entry instead of about 60, for a table that
// holds every message of the last ten minutes. Two messages sharing a
// hash would number one's first recipient as a second; with the seed
// new in every process, nobody can aim for that.
type instances struct {
	mu      sync.Mutex
	seed    maphash.Seed
	cur     map[uint64]int32 // recipients seen per client and instance
	old     map[uint64]int32
	rotated time.Time
}

// rcptIndex returns how many RCPT requests of this client's message came
// before this one, and counts this one. An empty instance gives 0: each
// request is then a message of its own.
func (in *instances) rcptIndex(client, instance string, now time.Time) int {
	if instance == "" {
		return 0
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cur == nil {
		in.seed = maphash.MakeSeed()
	}
	if in.cur == nil || now.Sub(in.rotated) >= instanceTTL || len(in.cur) >= maxInstances {
		in.old, in.cur, in.rotated = in.cur, make(map[uint64]int32), now
	}
	var h maphash.Hash
	h.SetSeed(in.seed)
	h.WriteString(client)
	h.WriteByte(0)
	h.WriteString(instance)
	k := h.Sum64()
	n, ok := in.cur[k]
	if !ok {
		n = in.old[k]
	}
	in.cur[k] = n + 1
	return int(n)
}
