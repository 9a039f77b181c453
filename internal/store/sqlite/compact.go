package sqlite

import (
	"encoding/binary"
	"hash/maphash"
	"time"

	"mailwarden/internal/store"
)

// The mirror holds every unexpired triplet, so its size per triplet is
// most of the daemon's memory on a busy MX. map[tripletKey]store.Triplet
// took about 260 bytes a triplet (three string headers in the key, three
// more and four time.Time in the value); a string of the three keys and
// the times as integers about 190, of which the string was 110. The
// mirror is only ever looked up by keys the caller already has, never
// listed, so it keeps a 128-bit hash of the keys instead of the keys:
// about 75 bytes a triplet (BENCHMARKS.md, issue 16).

// tripletHash identifies a triplet in the mirror: two 64-bit hashes of
// its keys under two random seeds. Two triplets sharing both would make
// one read as the other; at ten million triplets the odds are about one
// in 10^25, and the seeds are new in every process, so nobody outside
// can aim for it.
type tripletHash struct{ a, b uint64 }

// hasher makes tripletHashes for one mirror: the seeds must stay the
// same for as long as the mirror's map lives.
type hasher struct{ a, b maphash.Seed }

func newHasher() hasher { return hasher{maphash.MakeSeed(), maphash.MakeSeed()} }

// of hashes the three keys, each but the last preceded by its length so
// that no choice of addresses makes two triplets hash the same text. It
// does not allocate: a look-up is on every recipient's path.
func (h hasher) of(client, sender, recipient string) tripletHash {
	var buf [128]byte
	b := appendCompactKey(buf[:0], client, sender, recipient)
	return tripletHash{maphash.Bytes(h.a, b), maphash.Bytes(h.b, b)}
}

func (h hasher) ofTriplet(t store.Triplet) tripletHash { return h.of(t.Client, t.Sender, t.Recipient) }

// compactTriplet is the rest of a triplet: times as Unix nanoseconds, 0
// for the zero time.
type compactTriplet struct {
	first, last, passed, expires int64
	attempts                     int64
}

// appendCompactKey appends the three keys to b: the client and sender
// each preceded by their length as a uvarint, then the recipient.
func appendCompactKey(b []byte, client, sender, recipient string) []byte {
	b = binary.AppendUvarint(b, uint64(len(client)))
	b = append(b, client...)
	b = binary.AppendUvarint(b, uint64(len(sender)))
	b = append(b, sender...)
	return append(b, recipient...)
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func compactOf(t store.Triplet) compactTriplet {
	return compactTriplet{
		first: nanos(t.FirstSeen), last: nanos(t.LastSeen), passed: nanos(t.PassedAt),
		expires: nanos(t.Expires), attempts: int64(t.Attempts),
	}
}

// triplet returns the whole triplet with the given keys.
func (c compactTriplet) triplet(client, sender, recipient string) store.Triplet {
	return store.Triplet{
		Client: client, Sender: sender, Recipient: recipient,
		FirstSeen: fromNanos(c.first), LastSeen: fromNanos(c.last), PassedAt: fromNanos(c.passed),
		Expires: fromNanos(c.expires), Attempts: int(c.attempts),
	}
}
