package clamd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
)

func TestSessionPoolReuse(t *testing.T) {
	for _, session := range []bool{true, false} {
		t.Run(fmt.Sprint("session=", session), func(t *testing.T) {
			f := newFake(t, "unix")
			c, _ := newTestClient(t, Options{Servers: []string{f.addr}})
			c.session = session
			for i := range 10 {
				msg := fmt.Sprintf("message %d", i)
				if i%3 == 0 {
					msg += eicar
				}
				res, err := c.Scan(t.Context(), strings.NewReader(msg), int64(len(msg)))
				if err != nil || res.Infected != (i%3 == 0) {
					t.Fatalf("scan %d: %+v, %v", i, res, err)
				}
			}
			want := int64(1)
			if !session {
				want = 10
			}
			if got := f.conns.Load(); got != want {
				t.Errorf("10 scans took %d connections, want %d", got, want)
			}
			c.Close()
			waitFor(t, "Close ends pooled sessions", func() bool {
				f.mu.Lock()
				defer f.mu.Unlock()
				return len(f.open) == 0
			})
		})
	}
}

func TestPoolDropsClosedSession(t *testing.T) {
	// clamd ended the session (its IdleTimeout): the liveness check must
	// notice before the message is read, so even a reader that cannot be
	// rewound is scanned.
	f := newFake(t, "tcp")
	f.setMode(modeDropIdle)
	c, lb := newTestClient(t, Options{Servers: []string{f.addr}})
	for i := range 3 {
		if _, err := c.Scan(t.Context(), plainReader{strings.NewReader("hi")}, 2); err != nil {
			t.Fatalf("scan %d: %v", i, err)
		}
		waitFor(t, "clamd closes the session", func() bool {
			f.mu.Lock()
			defer f.mu.Unlock()
			return len(f.open) == 0
		})
	}
	if got := f.conns.Load(); got != 3 {
		t.Errorf("%d connections, want 3", got)
	}
	if strings.Contains(lb.String(), "failed") {
		t.Errorf("a closed idle session caused a failure:\n%s", lb)
	}
}

func TestDeadSessionRetriedFresh(t *testing.T) {
	f := newFake(t, "tcp")
	f.setMode(modeDropReused)
	c, lb := newTestClient(t, Options{Servers: []string{f.addr}})
	ctx := t.Context()
	if _, err := c.Scan(ctx, strings.NewReader("one"), 3); err != nil {
		t.Fatal(err)
	}

	// The pooled session looks alive but dies under the scan; the message
	// is reopened and sent on a new connection.
	opens := 0
	res, err := c.ScanOpen(ctx, func() (io.ReadCloser, error) {
		opens++
		return io.NopCloser(strings.NewReader(eicar)), nil
	}, int64(len(eicar)))
	if err != nil || !res.Infected {
		t.Fatalf("got %+v, %v", res, err)
	}
	if opens != 2 || f.conns.Load() != 2 {
		t.Errorf("opens %d, connections %d; want 2 and 2", opens, f.conns.Load())
	}
	if !strings.Contains(lb.String(), "retrying on a new connection") {
		t.Errorf("no log line for the retry:\n%s", lb)
	}

	// A seekable reader is rewound the same way.
	if _, err := c.Scan(ctx, bytes.NewReader([]byte("three")), 5); err != nil {
		t.Errorf("seekable reader: %v", err)
	}

	// A plain reader already sent cannot be: the error says so.
	_, err = c.Scan(ctx, plainReader{strings.NewReader("four")}, 4)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "cannot be read again") {
		t.Errorf("plain reader: err %v", err)
	}
}

func TestConcurrentScans(t *testing.T) {
	f1, f2 := newFake(t, "tcp"), newFake(t, "unix")
	c, _ := newTestClient(t, Options{Servers: []string{f1.addr, f2.addr}})
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for g := range 20 {
		wg.Go(func() {
			for i := range 10 {
				msg := strings.Repeat(fmt.Sprintf("goroutine %d line %d\r\n", g, i), 50*(g+1))
				infected := (g+i)%4 == 0
				if infected {
					msg = msg[:len(msg)/2] + eicar + msg[len(msg)/2:]
				}
				res, err := c.Scan(t.Context(), strings.NewReader(msg), int64(len(msg)))
				if err != nil || res.Infected != infected {
					errs <- fmt.Errorf("goroutine %d scan %d: %+v, %v; want infected=%v", g, i, res, err, infected)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := c.servers[0].idleCount(); n > maxIdlePerServer {
		t.Errorf("pool holds %d connections, over %d", n, maxIdlePerServer)
	}
}
