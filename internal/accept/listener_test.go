package accept

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

// TestListenerEvictsTheOldestIdleConnection: behind a full tracker, a
// new connection is still accepted, and the one waiting longest is
// closed to make room, as net/http sees it through Listener.
func TestListenerEvictsTheOldestIdleConnection(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := NewTracker(TrackerOptions{Name: "http", Log: slog.New(slog.DiscardHandler), MaxConns: 2, MaxPerClient: 2, Evict: true})
	ln := tr.Listener(raw)
	defer ln.Close()
	accepted := make(chan net.Conn, 3)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
			// As an idle keep-alive connection does, wait for the peer.
			go io.Copy(io.Discard, c)
		}
	}()
	var clients []net.Conn
	for i := range 3 {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
		select {
		case <-accepted:
		case <-time.After(5 * time.Second):
			t.Fatalf("connection %d not accepted", i+1)
		}
	}
	clients[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := clients[0].Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("the oldest connection over the cap: read %v, want it closed", err)
	}
	if s := tr.Stats(); s.Open != 2 || s.Evicted != 1 {
		t.Errorf("stats %+v, want 2 open and 1 evicted", s)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
