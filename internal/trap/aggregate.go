package trap

import (
	"net/netip"
	"slices"
	"sync"

	"mailwarden/internal/defaults"
)

// DefaultMaxHosts bounds an Aggregator made with a non-positive limit.
const DefaultMaxHosts = 10000

// Aggregator folds hits into one Host per client address in bounded
// memory. It holds what arrived since the last Drain: the daemon drains
// it periodically and merges the result into the store, which frees the
// room for new hosts. It is safe for concurrent use.
type Aggregator struct {
	max int

	mu      sync.Mutex
	hosts   map[netip.Addr]*Host
	dropped uint64
}

// NewAggregator returns an aggregator holding at most maxHosts hosts
// between drains; maxHosts <= 0 means DefaultMaxHosts.
func NewAggregator(maxHosts int) *Aggregator {
	maxHosts = defaults.Positive(maxHosts, DefaultMaxHosts)
	return &Aggregator{max: maxHosts, hosts: map[netip.Addr]*Host{}}
}

// Add records a hit. A hit from a host already held always counts; a hit
// from a new host when the aggregator is full is counted in Dropped
// instead, so a flood from many addresses cannot grow memory. Hits
// without a valid client address are ignored.
func (a *Aggregator) Add(h Hit) {
	if !h.Client.IsValid() {
		return
	}
	client := h.Client.Unmap()
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.hosts[client]
	if !ok {
		if len(a.hosts) >= a.max {
			a.dropped++
			return
		}
		e = &Host{Client: client, FirstSeen: h.Time, LastSeen: h.Time}
		a.hosts[client] = e
	}
	e.Count++
	if h.Time.Before(e.FirstSeen) {
		e.FirstSeen = h.Time
	}
	// Hits may be added slightly out of order (they are recorded when
	// a connection ends); the latest one decides the Last fields.
	if h.Time.Before(e.LastSeen) {
		return
	}
	e.LastSeen = h.Time
	if h.OrigDst.IsValid() {
		e.LastDst = h.OrigDst
	}
	if h.Helo != "" {
		e.LastHelo = h.Helo
	}
	if h.MailFrom != "" {
		e.LastMailFrom = h.MailFrom
	}
}

// Snapshot returns the hosts held since the last drain, sorted by
// address, without changing them.
func (a *Aggregator) Snapshot() []Host {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.list()
}

// Drain returns the hosts held since the last drain, sorted by address,
// and forgets them. Counts are those since the last drain, so whoever
// persists them adds Count, keeps the earliest FirstSeen and takes the
// Last fields when LastSeen is newer.
func (a *Aggregator) Drain() []Host {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := a.list()
	a.hosts = map[netip.Addr]*Host{}
	return out
}

// Len returns the number of hosts held.
func (a *Aggregator) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.hosts)
}

// Dropped returns how many hits were refused because the aggregator was
// full, since it was made.
func (a *Aggregator) Dropped() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.dropped
}

func (a *Aggregator) list() []Host {
	out := make([]Host, 0, len(a.hosts))
	for _, e := range a.hosts {
		out = append(out, *e)
	}
	slices.SortFunc(out, func(x, y Host) int { return x.Client.Compare(y.Client) })
	return out
}
