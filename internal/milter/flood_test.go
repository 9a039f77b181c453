package milter

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"mailwarden/internal/accept/accepttest"
	"mailwarden/internal/policy"
)

// TestIdleFloodDoesNotLockOutTheMTA holds 2,000 negotiated, idle milter
// connections, twice the default max_conns, from many addresses and
// from the MTA's own 127.0.0.1, and checks that a new milter session from
// 127.0.0.1 still runs a whole message: the server closes the
// connections idle longest to admit it. test/integration's
// TestMilterIdleFlood checks the answer time on the built daemon.
func TestIdleFloodDoesNotLockOutTheMTA(t *testing.T) {
	const flood = 2000
	for _, tc := range []struct {
		name     string
		src      func(int) string
		wantHeld int
	}{
		{"from many addresses", accepttest.FromMany(2), DefaultMaxConns - 1},
		{"from 127.0.0.1", accepttest.FromOne("127.0.0.1"), DefaultMaxConnsPerClient - 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pl := policy.NewPipeline([]policy.Check{&stubCheck{}}, policy.PipelineOptions{})
			// Idle sessions outlive the test: the library's read timeout
			// must not be what closes them.
			srv := NewServer(Options{Pipeline: func() *policy.Pipeline { return pl },
				Log: slog.New(slog.DiscardHandler), ReadTimeout: time.Minute, WriteTimeout: 5 * time.Second})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			go srv.Serve(ln)
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				srv.Shutdown(ctx) // idle sessions are closed when ctx ends
			})

			f := accepttest.Open(t, addr, flood, tc.src, accepttest.MilterHello)
			start := time.Now()
			r := transaction(t, addr, "192.0.2.7", "", "ok@dest.test")
			took := time.Since(start)
			if r.eom == nil || r.eom.Type != gomilter.ActionAccept {
				t.Fatalf("session during the flood: end of message = %v, want accept", r.eom)
			}
			held, closed := f.Count()
			st := srv.ConnStats()
			t.Logf("%d idle milter connections opened: %d held, %d closed to make room; new session's message done in %v; server: %+v",
				flood, held, closed, took, st)
			// The finished session closed its own connection.
			if held != tc.wantHeld || closed != flood-tc.wantHeld {
				t.Errorf("flood: %d held, %d closed; want %d held", held, closed, tc.wantHeld)
			}
			if st.Evicted != uint64(closed) || st.Refused != 0 {
				t.Errorf("server counts %+v, want %d evicted, none refused", st, closed)
			}
		})
	}
}
