package config

// ScanCache is antivirus.cache: clamd's verdicts remembered per decoded
// MIME part, so that a worm attachment arriving thousands of times is
// refused without a clamd scan each time (docs/antivirus.md).
type ScanCache struct {
	Enabled bool `yaml:"enabled"`
	// MaxEntries bounds the cache; the least recently used part goes
	// first.
	MaxEntries int `yaml:"max_entries"`
	// TTL is how long a verdict is trusted.
	TTL Duration `yaml:"ttl"`
	// CleanMinSize is the smallest decoded part, in bytes, whose clean
	// verdict is kept; infected verdicts are kept whatever the size.
	CleanMinSize int64 `yaml:"clean_min_size"`
}

// validateScanCache checks antivirus.cache, on or off.
func (c *Config) validateScanCache(add func(key, format string, args ...any)) {
	sc := &c.Antivirus.Cache
	positiveInts(add, []named[int]{{"antivirus.cache.max_entries", sc.MaxEntries}})
	positiveDurations(add, []named[Duration]{{"antivirus.cache.ttl", sc.TTL}})
	if sc.CleanMinSize < 0 {
		add("antivirus.cache.clean_min_size", "%d must not be negative", sc.CleanMinSize)
	}
}
