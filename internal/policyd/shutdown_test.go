package policyd

import (
	"context"
	"testing"
	"time"
)

// TestShutdownClosesIdleConnectionsAtOnce: connections between requests,
// one Postfix has used and one it has not, do not hold Shutdown: it
// returns nil without waiting for its deadline and both are closed.
// TestShutdownAnswersInFlight checks the request being answered.
func TestShutdownClosesIdleConnectionsAtOnce(t *testing.T) {
	h := startServer(t, Options{})
	used := dial(t, h.addr)
	if got := used.ask(rcptRequest("bob@example.org")); got != "DUNNO" {
		t.Fatalf("action=%q", got)
	}
	unused := dial(t, h.addr)
	// The unused connection is tracked once the server has accepted it.
	for deadline := time.Now().Add(5 * time.Second); h.srv.ConnStats().Open != 2; {
		if time.Now().After(deadline) {
			t.Fatalf("connections open: %+v, want 2", h.srv.ConnStats())
		}
		time.Sleep(time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	if err := h.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with only idle connections = %v, want nil", err)
	}
	t.Logf("Shutdown with 2 idle connections returned in %v", time.Since(start))
	used.expectClosed()
	unused.expectClosed()
}
