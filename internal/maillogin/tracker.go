package maillogin

import (
	"container/heap"
	"net/netip"
	"slices"
	"sync"

	"mailwarden/internal/defaults"
)

// DefaultMaxIPs is the number of addresses a Tracker remembers when
// NewTracker is given no positive limit.
const DefaultMaxIPs = 65536

// Tracker remembers the newest login per client IP. It holds at most MaxIPs
// addresses; when a new address arrives at the limit, the address whose last
// login is oldest is forgotten. A Tracker is safe for concurrent use.
type Tracker struct {
	mu     sync.Mutex
	max    int
	byIP   map[netip.Addr]*entry
	oldest entryHeap // min-heap on login time, for eviction
}

// entry is one address's newest login and its place in the heap.
type entry struct {
	login Login
	index int
}

// NewTracker returns an empty tracker that remembers at most maxIPs
// addresses (DefaultMaxIPs when maxIPs <= 0).
func NewTracker(maxIPs int) *Tracker {
	maxIPs = defaults.Positive(maxIPs, DefaultMaxIPs)
	return &Tracker{max: maxIPs, byIP: make(map[netip.Addr]*entry)}
}

// Observe records l if it is at least as new as the login already known for
// its IP. A tie goes to l, because lines in one log arrive in order and the
// later of two same-second lines is the newer. Logins without a valid IP are
// ignored. At the limit, a login older than every remembered one is dropped
// rather than evicting a newer one.
func (t *Tracker) Observe(l Login) {
	if !l.IP.IsValid() {
		return
	}
	l.IP = l.IP.Unmap().WithZone("")
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.byIP[l.IP]; ok {
		if l.Time.Before(e.login.Time) {
			return
		}
		e.login = l
		heap.Fix(&t.oldest, e.index)
		return
	}
	if len(t.byIP) >= t.max {
		victim := t.oldest[0]
		if l.Time.Before(victim.login.Time) {
			return
		}
		heap.Pop(&t.oldest)
		delete(t.byIP, victim.login.IP)
	}
	e := &entry{login: l}
	heap.Push(&t.oldest, e)
	t.byIP[l.IP] = e
}

// Last returns the newest login seen from ip.
func (t *Tracker) Last(ip netip.Addr) (Login, bool) {
	ip = ip.Unmap().WithZone("")
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.byIP[ip]
	if !ok {
		return Login{}, false
	}
	return e.login, true
}

// Len returns how many addresses the tracker remembers.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byIP)
}

// Snapshot returns a copy of every remembered login, newest first; logins
// with the same time are ordered by IP so the result is deterministic.
func (t *Tracker) Snapshot() []Login {
	t.mu.Lock()
	out := make([]Login, 0, len(t.byIP))
	for _, e := range t.byIP {
		out = append(out, e.login)
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b Login) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		return a.IP.Compare(b.IP)
	})
	return out
}

// entryHeap orders entries oldest login first (container/heap.Interface).
type entryHeap []*entry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return h[i].login.Time.Before(h[j].login.Time) }
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h *entryHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}

func (h *entryHeap) Pop() any {
	old := *h
	n := len(old)
	e := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	e.index = -1
	return e
}
