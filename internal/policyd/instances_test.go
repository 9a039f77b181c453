package policyd

import (
	"fmt"
	"testing"
	"time"
)

func TestInstancesCountAcrossConnections(t *testing.T) {
	var in instances
	now := time.Unix(1_700_000_000, 0)
	for i := range 4 {
		if got := in.rcptIndex("192.0.2.1", "a1b2.1", now); got != i {
			t.Errorf("recipient %d of one message: index %d", i, got)
		}
	}
	// Another message, another client with the same instance, no instance.
	if got := in.rcptIndex("192.0.2.1", "a1b2.2", now); got != 0 {
		t.Errorf("a new instance: index %d, want 0", got)
	}
	if got := in.rcptIndex("192.0.2.9", "a1b2.1", now); got != 0 {
		t.Errorf("same instance from another client: index %d, want 0", got)
	}
	for range 2 {
		if got := in.rcptIndex("192.0.2.1", "", now); got != 0 {
			t.Errorf("no instance: index %d, want 0", got)
		}
	}
	// Remembered across one rotation, forgotten after two.
	if got := in.rcptIndex("192.0.2.1", "a1b2.1", now.Add(instanceTTL)); got != 4 {
		t.Errorf("after one rotation: index %d, want 4", got)
	}
	if got := in.rcptIndex("192.0.2.1", "a1b2.2", now.Add(3*instanceTTL)); got != 0 {
		t.Errorf("long after: index %d, want 0", got)
	}
}

func TestInstancesBounded(t *testing.T) {
	var in instances
	now := time.Unix(1_700_000_000, 0)
	for i := range 3 * maxInstances {
		in.rcptIndex("192.0.2.1", fmt.Sprint(i), now)
	}
	if n := len(in.cur) + len(in.old); n > 2*maxInstances {
		t.Errorf("%d instances held, want at most %d", n, 2*maxInstances)
	}
}
