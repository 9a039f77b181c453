package antivirus

import (
	"container/list"
	"crypto/sha256"
	"sync"
	"time"
)

// Key identifies a decoded MIME part: its SHA-256.
type Key = [sha256.Size]byte

// CacheOptions configure a Cache.
type CacheOptions struct {
	// MaxEntries bounds the cache; the least recently used entry goes
	// first.
	MaxEntries int
	// TTL is how long an entry is trusted after clamd gave it.
	TTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Cache remembers clamd's verdict on decoded MIME parts for the signature
// database version it was given under. A new version drops every entry:
// a new signature can make a part that was clean infected, and a removed
// one (a false positive withdrawn) the other way round. While no version
// is known, clean verdicts are neither stored nor given, since they
// could not be dropped when the version changes; infected ones are. It
// is safe for concurrent use and may outlive the Check that uses it.
type Cache struct {
	o CacheOptions

	mu      sync.Mutex
	version int    // the signature version the entries belong to; 0: unknown
	gen     uint64 // counts the drops, so a Put from before one is refused
	ll      *list.List
	m       map[Key]*list.Element
}

type entry struct {
	key   Key
	virus string // "" means clean
	added time.Time
}

// NewCache returns an empty cache; a MaxEntries or TTL of 0 or less
// makes one that stores nothing.
func NewCache(o CacheOptions) *Cache {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Cache{o: o, ll: list.New(), m: map[Key]*list.Element{}}
}

// Options returns the options the cache was made with.
func (c *Cache) Options() CacheOptions { return c.o }

// Sync tells the cache the signature version clamd reports now (0:
// unknown) and returns the generation to hand to Put for what is learnt
// from a scan started now. A known version that differs from the last
// known one drops every entry.
func (c *Cache) Sync(version int) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case version == 0:
		// Unknown now (servers that disagree, say): clean entries are
		// not given until it is known again, and come back with it if
		// it is the same.
		if c.version > 0 {
			c.version = -c.version
		}
	case c.version == version:
	case c.version == 0:
		// The first version learnt: the entries stored until now are
		// infected ones only, and they stay.
		c.version = version
	case c.version == -version:
		// Clean verdicts from scans made while it was unknown may come
		// from a server at another version: they are refused.
		c.version = version
		c.gen++
	default:
		c.drop()
		c.version = version
	}
	return c.gen
}

// drop empties the cache; c.mu is held.
func (c *Cache) drop() {
	c.ll.Init()
	clear(c.m)
	c.gen++
}

// Get returns the cached verdict for k: found, and the virus name or ""
// for clean. An expired entry is removed and not found.
func (c *Cache) Get(k Key) (virus string, found bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[k]
	if !ok {
		return "", false
	}
	e := el.Value.(*entry)
	if c.o.Now().Sub(e.added) >= c.o.TTL {
		c.ll.Remove(el)
		delete(c.m, k)
		return "", false
	}
	if e.virus == "" && c.version <= 0 {
		return "", false
	}
	c.ll.MoveToFront(el)
	return e.virus, true
}

// Put stores a verdict for k learnt under generation gen; virus "" means
// clean. It is ignored when the generation has changed since, and for a
// clean verdict while the signature version is unknown.
func (c *Cache) Put(gen uint64, k Key, virus string) {
	if c.o.MaxEntries <= 0 || c.o.TTL <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen || (virus == "" && c.version <= 0) {
		return
	}
	now := c.o.Now()
	if el, ok := c.m[k]; ok {
		e := el.Value.(*entry)
		e.virus, e.added = virus, now
		c.ll.MoveToFront(el)
		return
	}
	c.m[k] = c.ll.PushFront(&entry{key: k, virus: virus, added: now})
	for c.ll.Len() > c.o.MaxEntries {
		el := c.ll.Back()
		c.ll.Remove(el)
		delete(c.m, el.Value.(*entry).key)
	}
}

// Len returns the number of entries, expired ones not yet removed
// included.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
