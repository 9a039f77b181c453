package scan

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

func TestEveryRunsRepeatedlyWithoutOverlap(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var inFlight, peak, runs atomic.Int32
	rec := &recorder{t: t, fake: func(ctx context.Context, _ string) (net.Conn, error) {
		storeMax(&peak, inFlight.Add(1))
		defer inFlight.Add(-1)
		// Each scan is slower than the interval, so overlapping runs
		// would show as two dials in flight at once.
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
		}
		return refused(ctx, "")
	}}
	s := newScanner(t, Options{Dial: rec.dial})
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Every(ctx, time.Millisecond, prefixes(t, "127.0.70.1/32"), func(Finding) {
			if runs.Add(1) == 3 {
				cancel()
			}
		})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Every did not return after its context was cancelled")
	}
	if r := runs.Load(); r < 3 {
		t.Errorf("%d runs reported, want at least 3", r)
	}
	if p := peak.Load(); p != 1 {
		t.Errorf("peak dials in flight = %d, want 1 (runs must not overlap)", p)
	}
}

func TestEveryRefusedTargetNeverDials(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	rec := &recorder{t: t, fake: refused}
	s := newScanner(t, Options{Dial: rec.dial})
	s.Every(ctx, 5*time.Millisecond, prefixes(t, "127.0.71.0/29"), nil)
	if d := rec.recorded(); len(d) != 0 {
		t.Errorf("schedule with a refused target dialled %v", d)
	}
}
