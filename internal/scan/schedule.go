package scan

import (
	"context"
	"net/netip"
	"time"
)

// Every scans targets at once and then every interval until ctx ends,
// passing each finding to report. Runs never overlap: a run that takes
// longer than interval is followed by the next as soon as it finishes.
// A failed run (a target refused, say) is logged and the schedule goes on,
// so one bad run does not end scanning for good. Every returns when ctx
// ends.
func (s *Scanner) Every(ctx context.Context, interval time.Duration, targets []netip.Prefix, report func(Finding)) {
	if interval <= 0 {
		s.log.Error("scan: schedule not started: interval must be positive", "interval", interval)
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := s.Scan(ctx, targets, report); err != nil && ctx.Err() == nil {
			s.log.Error("scheduled scan failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
