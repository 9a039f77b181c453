package sqlite

import (
	"encoding/binary"
	"time"

	"mailwarden/internal/store"
)

// The mirror holds every unexpired triplet, so its size per triplet is
// most of the daemon's memory on a busy MX: map[tripletKey]store.Triplet
// took about 260 bytes a triplet (three string headers in the key, three
// more and four time.Time in the value). A compactKey and a
// compactTriplet take about half: one string for the three keys and the
// times as nanoseconds.

// compactKey is a triplet's three keys in one string: the client and
// sender each preceded by their length as a uvarint, then the recipient.
// Lengths rather than a separator, so no address can make two triplets
// share a key. It is only ever looked up, never taken apart: the caller
// has the three keys already.
type compactKey string

// compactTriplet is the rest of a triplet: times as Unix nanoseconds, 0
// for the zero time.
type compactTriplet struct {
	first, last, passed, expires int64
	attempts                     int64
}

// appendCompactKey appends the compact form of the three keys to b; a
// lookup converts the result with string(b) in the map index, which
// does not allocate.
func appendCompactKey(b []byte, client, sender, recipient string) []byte {
	b = binary.AppendUvarint(b, uint64(len(client)))
	b = append(b, client...)
	b = binary.AppendUvarint(b, uint64(len(sender)))
	b = append(b, sender...)
	return append(b, recipient...)
}

func compactKeyOf(t store.Triplet) compactKey {
	b := make([]byte, 0, len(t.Client)+len(t.Sender)+len(t.Recipient)+4)
	return compactKey(appendCompactKey(b, t.Client, t.Sender, t.Recipient))
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
