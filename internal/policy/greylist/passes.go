package greylist

import (
	"sync"
	"time"
)

// passCacheTTL is how long a client's pass count is trusted without
// asking the store again. Passes counted by another MX sharing the store
// show up after at most this long: a client is whitelisted a minute late,
// never wrongly.
const passCacheTTL = time.Minute

// passCacheMax bounds the cache; past it, entries are dropped at random
// (Go map order), which costs only an extra store read.
const passCacheMax = 100_000

// recountAfter is how often an already whitelisted client's delivery is
// counted again to keep its record alive; postgrey counts at most hourly
// too. Counting every delivery would put a synchronous store write on
// the path of every message from the busiest senders.
const recountAfter = time.Hour

// passCache remembers clients' pass counts so that the auto-whitelist
// check does not read the store for every recipient.
type passCache struct {
	mu sync.Mutex
	m  map[string]passEntry
	// skipNone leaves out clients with no passes that the cache does not
	// hold yet: with a store that reads pass counts from memory, an
	// entry per new client would only hold memory (9 MB at the peak of
	// a burst of 100,000 new clients; BENCHMARKS.md).
	skipNone bool
}

// passEntry keeps its times as Unix nanoseconds rather than time.Time
// (8 bytes instead of 24): the cache holds one per client seen in the
// last minute, most of them new clients with no passes.
type passEntry struct {
	n       int
	until   int64 // trust n until then
	counted int64 // when this process last added a pass; 0 if never
}

// get returns the cached count for client, if fresh.
func (c *passCache) get(client string, now time.Time) (passEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[client]
	if !ok || now.UnixNano() >= e.until {
		return passEntry{}, false
	}
	return e, true
}

// set records n passes for client as read or written now; counted says
// this process has just added a pass.
func (c *passCache) set(client string, n int, now time.Time, counted bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]passEntry)
	}
	e, had := c.m[client]
	if !had && n == 0 && !counted && c.skipNone {
		return
	}
	if len(c.m) >= passCacheMax && e.until == 0 {
		drop := passCacheMax / 8
		for k := range c.m {
			delete(c.m, k)
			if drop--; drop == 0 {
				break
			}
		}
	}
	e.n, e.until = n, now.Add(passCacheTTL).UnixNano()
	if counted {
		e.counted = now.UnixNano()
	}
	c.m[client] = e
}
