package policyd

import (
	"testing"
	"time"

	"mailwarden/internal/accept/accepttest"
)

// TestIdleFloodDoesNotLockOutPostfix holds 2,000 idle connections, twice
// the default max_conns, from many addresses and from Postfix's own
// 127.0.0.1, and checks that a new connection from 127.0.0.1 is still
// answered: the server closes the connections idle longest to admit it.
// test/integration's TestPolicyIdleFlood checks the answer time on the
// built daemon.
func TestIdleFloodDoesNotLockOutPostfix(t *testing.T) {
	const flood = 2000
	for _, tc := range []struct {
		name     string
		src      func(int) string
		wantHeld int // after the new connection took its place
	}{
		{"from many addresses", accepttest.FromMany(2), DefaultMaxConns - 1},
		{"from 127.0.0.1", accepttest.FromOne("127.0.0.1"), DefaultMaxConnsPerClient - 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startServer(t, Options{})
			f := accepttest.Open(t, h.addr, flood, tc.src, nil)
			// The flood is held once the server has taken every
			// connection off its listen queue.
			settle := time.Now()
			for st := h.srv.ConnStats(); st.Open+int(st.Evicted+st.Refused) < flood; st = h.srv.ConnStats() {
				time.Sleep(time.Millisecond)
			}
			t.Logf("server took %v to catch up with the flood", time.Since(settle))

			start := time.Now()
			c := dial(t, h.addr)
			got := c.ask(rcptRequest("reject@example.org"))
			took := time.Since(start)
			if got != "550 5.7.1 No such user" {
				t.Fatalf("new connection during the flood: action=%q", got)
			}
			held, closed := f.Count()
			st := h.srv.ConnStats()
			t.Logf("%d idle connections opened: %d held, %d closed to make room; new connection answered in %v; server: %+v",
				flood, held, closed, took, st)
			if held != tc.wantHeld || closed != flood-tc.wantHeld {
				t.Errorf("flood: %d held, %d closed; want %d held", held, closed, tc.wantHeld)
			}
			if st.Evicted != uint64(closed) || st.Refused != 0 {
				t.Errorf("server counts %+v, want %d evicted, none refused", st, closed)
			}
		})
	}
}
