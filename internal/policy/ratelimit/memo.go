package ratelimit

import (
	"strings"
	"sync"
	"time"

	"mailwarden/internal/policy"
)

// memoTTL bounds how long a refused message is remembered. Its recipients
// arrive within one SMTP transaction, which Postfix's smtpd_timeout
// (300s per command) keeps well under this.
const memoTTL = 10 * time.Minute

// maxMemo bounds the memo's size under a flood of refused messages.
const maxMemo = 10000

// trip is a message refused at its first recipient.
type trip struct {
	at     time.Time
	what   string
	reason string
}

// memo remembers refused messages by messageKey, so their later
// recipients are refused too.
type memo struct {
	mu sync.Mutex
	m  map[string]trip
}

func newMemo() *memo { return &memo{m: map[string]trip{}} }

// messageKey identifies the message req belongs to as well as a request
// can: two messages from one client, user and sender at the same time
// share it, which at worst tempfails one a little early.
func messageKey(req *policy.Request) string {
	return req.ClientIP.String() + "\x00" + strings.ToLower(req.SASLUser) + "\x00" + strings.ToLower(req.Sender)
}

func (m *memo) get(key string, now time.Time) (trip, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.m[key]
	if !ok || now.Sub(t.at) >= memoTTL {
		return trip{}, false
	}
	return t, true
}

// forget drops key: its next message starts afresh.
func (m *memo) forget(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.m, key)
}

func (m *memo) put(key string, t trip) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.m) >= maxMemo {
		for k, old := range m.m {
			if t.at.Sub(old.at) >= memoTTL {
				delete(m.m, k)
			}
		}
		if len(m.m) >= maxMemo {
			// Every entry is recent: a flood. Forgetting them costs at
			// most a few recipients charged only as recipients.
			clear(m.m)
		}
	}
	m.m[key] = t
}
