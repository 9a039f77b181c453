package antivirus

import (
	"context"
	"errors"
	"io"

	"mailwarden/internal/clamd"
	"mailwarden/internal/mimepart"
	"mailwarden/internal/policy"
)

// What a message found in the scan cache, as Options.CacheCounted is
// told.
const (
	CacheHitInfected = "infected"
	CacheHitClean    = "clean"
	CacheMiss        = "miss"
)

// maxLearnScans bounds the clamd scans of single parts made to learn
// which part of an infected message carries the virus.
const maxLearnScans = 16

// cached is what a scan through the cache found.
type cached struct {
	res clamd.Result
	err error
	// hit is CacheHitInfected or CacheHitClean when the cache decided
	// without clamd, CacheMiss when clamd was asked, "" with no cache.
	hit string
}

// scanCached scans the message through the cache: an infected part
// seen before makes the message infected, and a message whose parts were
// all found clean before is clean, both without asking clamd. Otherwise
// clamd scans the whole message as without the cache, and what it says
// is learnt per part. A message the walk cannot take apart is scanned
// whole and teaches nothing.
func (c *Check) scanCached(ctx context.Context, req *policy.Request, size int64) cached {
	cache := c.o.Cache
	version := 0
	if c.o.SignatureVersion != nil {
		version = c.o.SignatureVersion()
	}
	gen := cache.Sync(version)
	parts := c.parts(req)
	if len(parts) > 0 {
		clean := 0
		for _, p := range parts {
			virus, found := cache.Get(p.Hash)
			switch {
			case found && virus != "":
				return cached{res: clamd.Result{Infected: true, Virus: virus}, hit: CacheHitInfected}
			case found:
				clean++
			}
		}
		if clean == len(parts) {
			return cached{hit: CacheHitClean}
		}
	}
	res, err := c.o.Scanner.ScanOpen(ctx, req.Message.Open, size)
	switch {
	case err != nil:
	case !res.Infected:
		for _, p := range parts {
			if p.Size >= c.o.CleanMinSize {
				cache.Put(gen, p.Hash, "")
			}
		}
	default:
		c.learn(ctx, req, gen, parts)
	}
	return cached{res: res, err: err, hit: CacheMiss}
}

// parts returns the message's leaf parts, or none when it cannot be
// taken apart.
func (c *Check) parts(req *policy.Request) []mimepart.Summary {
	r, err := req.Message.Open()
	if err != nil {
		c.o.Log.Debug("antivirus: opening the message for the scan cache failed", "err", err, "queue_id", req.QueueID)
		return nil
	}
	defer r.Close()
	parts, err := mimepart.Summarise(r, mimepart.Limits{})
	if err != nil {
		c.o.Log.Debug("antivirus: scanning the message whole, uncached", "err", err, "queue_id", req.QueueID)
		return nil
	}
	return parts
}

// learn scans alone each part of an infected message not known yet and
// caches those clamd finds infected under their own virus names. A part
// clean alone is not cached as clean: the message it came in was not.
func (c *Check) learn(ctx context.Context, req *policy.Request, gen uint64, parts []mimepart.Summary) {
	seen := map[Key]bool{}
	scans := 0
	for _, p := range parts {
		if seen[p.Hash] || p.Size == 0 {
			continue
		}
		seen[p.Hash] = true
		if _, found := c.o.Cache.Get(p.Hash); found {
			continue
		}
		if scans == maxLearnScans {
			c.o.Log.Debug("antivirus: infected message has too many parts to learn each", "queue_id", req.QueueID)
			return
		}
		scans++
		open := func() (io.ReadCloser, error) { return mimepart.Open(req.Message.Open, p.Index, mimepart.Limits{}) }
		res, err := c.o.Scanner.ScanOpen(ctx, open, p.Size)
		if err != nil {
			// The verdict stands; only the lesson is lost.
			if !errors.Is(err, context.Canceled) {
				c.o.Log.Debug("antivirus: scanning one part of an infected message failed", "err", err,
					"part", p.Index, "queue_id", req.QueueID)
			}
			return
		}
		if res.Infected {
			c.o.Cache.Put(gen, p.Hash, res.Virus)
		}
	}
}
