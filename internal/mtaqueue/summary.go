package mtaqueue

import (
	"cmp"
	"slices"
	"time"
)

// AgeBuckets are the age ranges a summary counts, youngest first.
var AgeBuckets = []struct {
	Name  string
	Below time.Duration // 0: no upper bound
}{
	{"<1h", time.Hour},
	{"1-6h", 6 * time.Hour},
	{"6-24h", 24 * time.Hour},
	{"1-7d", 7 * 24 * time.Hour},
	{">7d", 0},
}

// Count is how many messages share one key.
type Count struct {
	Key      string `json:"key"`
	Messages int    `json:"messages"`
}

// Summary is the queue at a glance: what a spam run looks like.
type Summary struct {
	Messages   int   `json:"messages"`
	Recipients int   `json:"recipients"`
	Bytes      int64 `json:"bytes"`
	// BySender, BySenderDomain and ByRecipientDomain are the top N,
	// most messages first; a message counts once for each recipient
	// domain it has.
	BySender          []Count `json:"by_sender"`
	BySenderDomain    []Count `json:"by_sender_domain"`
	ByRecipientDomain []Count `json:"by_recipient_domain"`
	// ByAuthUser counts the messages that record an authenticated user.
	ByAuthUser []Count `json:"by_auth_user,omitempty"`
	// ByAge has every bucket of AgeBuckets in order; ByQueue every
	// queue that has messages, most first.
	ByAge   []Count `json:"by_age"`
	ByQueue []Count `json:"by_queue"`
	// Distinct counts the keys before the top N was taken.
	DistinctSenders          int `json:"distinct_senders"`
	DistinctSenderDomains    int `json:"distinct_sender_domains"`
	DistinctRecipientDomains int `json:"distinct_recipient_domains"`
	DistinctAuthUsers        int `json:"distinct_auth_users,omitempty"`
}

// Summarizer adds messages up one at a time, so that a summary of a large
// queue needs memory only for its distinct keys.
type Summarizer struct {
	now                        time.Time
	messages, recipients       int
	bytes                      int64
	sender, senderDomain, rcpt map[string]int
	authUser                   map[string]int
	age                        []int
	queue                      map[string]int
}

// NewSummarizer returns an empty summary, with ages counted from now.
func NewSummarizer(now time.Time) *Summarizer {
	return &Summarizer{now: now, sender: map[string]int{}, senderDomain: map[string]int{},
		rcpt: map[string]int{}, authUser: map[string]int{}, age: make([]int, len(AgeBuckets)), queue: map[string]int{}}
}

// Add counts one message.
func (s *Summarizer) Add(m Message) {
	s.messages++
	s.recipients += len(m.Recipients)
	s.bytes += m.Size
	s.sender[senderAddr(m.Sender)]++
	s.senderDomain[senderDomainKey(m.Sender)]++
	if m.AuthUser != "" {
		s.authUser[m.AuthUser]++
	}
	var seen []string // a message has few recipient domains
	for _, r := range m.Recipients {
		d := Domain(r.Address)
		if !slices.Contains(seen, d) {
			seen = append(seen, d)
			s.rcpt[d]++
		}
	}
	age := s.now.Sub(m.Arrival)
	for i, b := range AgeBuckets {
		if b.Below == 0 || age < b.Below {
			s.age[i]++
			break
		}
	}
	s.queue[m.Queue]++
}

func senderDomainKey(sender string) string {
	if sender == "" {
		return "<>"
	}
	return Domain(sender)
}

// Summary returns the counts so far, with the top n of each key (n <= 0:
// all of them).
func (s *Summarizer) Summary(n int) Summary {
	out := Summary{
		Messages: s.messages, Recipients: s.recipients, Bytes: s.bytes,
		BySender:                 top(s.sender, n),
		BySenderDomain:           top(s.senderDomain, n),
		ByRecipientDomain:        top(s.rcpt, n),
		ByAuthUser:               top(s.authUser, n),
		ByQueue:                  top(s.queue, 0),
		DistinctSenders:          len(s.sender),
		DistinctSenderDomains:    len(s.senderDomain),
		DistinctRecipientDomains: len(s.rcpt),
		DistinctAuthUsers:        len(s.authUser),
	}
	for i, b := range AgeBuckets {
		out.ByAge = append(out.ByAge, Count{Key: b.Name, Messages: s.age[i]})
	}
	return out
}

// top returns the n largest counts, ties in key order.
func top(m map[string]int, n int) []Count {
	out := make([]Count, 0, len(m))
	for k, v := range m {
		out = append(out, Count{Key: k, Messages: v})
	}
	slices.SortFunc(out, func(a, b Count) int {
		return cmp.Or(cmp.Compare(b.Messages, a.Messages), cmp.Compare(a.Key, b.Key))
	})
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}
