package antivirus

import (
	"crypto/sha256"
	"sync"
	"testing"
	"time"
)

func key(s string) Key { return sha256.Sum256([]byte(s)) }

type manualClock struct{ now time.Time }

func (c *manualClock) Now() time.Time { return c.now }

func newTestCache(max int, ttl time.Duration) (*Cache, *manualClock) {
	clock := &manualClock{now: t0}
	return NewCache(CacheOptions{MaxEntries: max, TTL: ttl, Now: clock.Now}), clock
}

func TestCacheBoundedLeastRecentlyUsedFirst(t *testing.T) {
	c, _ := newTestCache(2, time.Hour)
	gen := c.Sync(100)
	c.Put(gen, key("a"), "")
	c.Put(gen, key("b"), "Worm.B")
	c.Get(key("a")) // a is now used more recently than b
	c.Put(gen, key("c"), "")
	if c.Len() != 2 {
		t.Errorf("Len = %d, want 2", c.Len())
	}
	if _, found := c.Get(key("b")); found {
		t.Error("b, the least recently used, was kept")
	}
	for _, k := range []string{"a", "c"} {
		if _, found := c.Get(key(k)); !found {
			t.Errorf("%s was dropped", k)
		}
	}
}

func TestCacheTTL(t *testing.T) {
	c, clock := newTestCache(10, time.Hour)
	gen := c.Sync(100)
	c.Put(gen, key("a"), "Worm.A")
	clock.now = t0.Add(time.Hour - time.Second)
	if v, found := c.Get(key("a")); !found || v != "Worm.A" {
		t.Errorf("before the TTL: %q, %v", v, found)
	}
	clock.now = t0.Add(time.Hour)
	if _, found := c.Get(key("a")); found {
		t.Error("found at the TTL")
	}
	if c.Len() != 0 {
		t.Errorf("expired entry kept: Len = %d", c.Len())
	}
}

func TestCacheDroppedWhenSignaturesChange(t *testing.T) {
	c, _ := newTestCache(10, time.Hour)
	gen := c.Sync(100)
	c.Put(gen, key("clean"), "")
	c.Put(gen, key("worm"), "Worm.A")
	if gen2 := c.Sync(100); gen2 != gen || c.Len() != 2 {
		t.Fatalf("the same version changed the generation or dropped entries")
	}
	// A scan that started before the change must not store what the
	// old signatures said.
	gen3 := c.Sync(101)
	if c.Len() != 0 {
		t.Errorf("Len = %d after a version change, want 0", c.Len())
	}
	c.Put(gen, key("late"), "Worm.Late")
	if _, found := c.Get(key("late")); found {
		t.Error("a verdict from before the change was stored after it")
	}
	c.Put(gen3, key("worm"), "Worm.A")
	if _, found := c.Get(key("worm")); !found {
		t.Error("a verdict under the new version was not stored")
	}
}

func TestCacheCleanOnlyUnderAKnownVersion(t *testing.T) {
	c, _ := newTestCache(10, time.Hour)
	gen := c.Sync(0)
	c.Put(gen, key("clean"), "")
	c.Put(gen, key("worm"), "Worm.A")
	if _, found := c.Get(key("clean")); found {
		t.Error("clean verdict stored while the version is unknown")
	}
	if _, found := c.Get(key("worm")); !found {
		t.Error("infected verdict not stored while the version is unknown")
	}
	// Learning the first version keeps the infected entries.
	gen = c.Sync(100)
	if _, found := c.Get(key("worm")); !found {
		t.Error("infected entry dropped when the first version was learnt")
	}
	c.Put(gen, key("clean"), "")
	if _, found := c.Get(key("clean")); !found {
		t.Error("clean verdict not stored under a known version")
	}
	// Unknown again (servers disagree): clean entries are not given,
	// and a clean scan from then is not stored when the version returns.
	genUnknown := c.Sync(0)
	if _, found := c.Get(key("clean")); found {
		t.Error("clean entry given while the version is unknown")
	}
	c.Put(genUnknown, key("clean2"), "")
	c.Sync(100)
	if _, found := c.Get(key("clean")); !found {
		t.Error("clean entry lost when the same version came back")
	}
	if _, found := c.Get(key("clean2")); found {
		t.Error("clean verdict from a scan while the version was unknown was kept")
	}
	// Unknown, then another version: everything goes.
	c.Sync(0)
	c.Sync(102)
	if c.Len() != 0 {
		t.Errorf("Len = %d after unknown then a new version, want 0", c.Len())
	}
}

func TestCacheDisabledStoresNothing(t *testing.T) {
	for _, c := range []*Cache{NewCache(CacheOptions{TTL: time.Hour}), NewCache(CacheOptions{MaxEntries: 5})} {
		c.Put(c.Sync(1), key("a"), "Worm.A")
		if c.Len() != 0 {
			t.Errorf("%+v stored an entry", c.Options())
		}
	}
}

// Messages are checked concurrently; run with -race.
func TestCacheConcurrentUse(t *testing.T) {
	c := NewCache(CacheOptions{MaxEntries: 50, TTL: time.Hour})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				gen := c.Sync(100 + i/250)
				k := key(string(rune('a' + (g*i)%80)))
				if _, found := c.Get(k); !found {
					c.Put(gen, k, "")
				}
			}
		})
	}
	wg.Wait()
	if n := c.Len(); n > 50 {
		t.Errorf("Len = %d over MaxEntries 50", n)
	}
}
