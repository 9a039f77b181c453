package store

import (
	"context"
	"log/slog"
	"time"
)

// RunExpiry deletes expired records from s every interval until ctx is
// done. Expired records already behave as absent, so a failed pass only
// costs space: it is logged and the next tick tries again.
func RunExpiry(ctx context.Context, s Store, interval time.Duration, log *slog.Logger) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n, err := s.Expire(ctx, time.Now())
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("store expiry failed", "err", err)
			continue
		}
		log.Debug("store expiry", "deleted", n)
	}
}
