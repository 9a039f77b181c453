package accept

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"
)

// startServer serves a loopback listener with serve and refuse and
// returns its address and Serve's result.
func startServer(t *testing.T, tr *Tracker, serve func(*Conn), refuse func(net.Conn)) (*Server, string, chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(tr)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln, serve, refuse) }()
	return s, ln.Addr().String(), done
}

func newTestTracker(maxConns int) *Tracker {
	return NewTracker(TrackerOptions{Name: "test server", Log: slog.New(slog.DiscardHandler), MaxConns: maxConns})
}

func dialServer(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// wantClosed fails unless the server closes c.
func wantClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read from the client = %v, want the server to close the connection", err)
	}
}

func TestServerShutdownWaitsForBusyConnection(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	s, addr, served := startServer(t, newTestTracker(10), func(c *Conn) {
		defer c.Close()
		close(started)
		<-release
	}, nil)
	c := dialServer(t, addr)
	<-started

	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background(), nil) }()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v while a connection was busy", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown = %v, want nil", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve after Shutdown = %v, want nil", err)
	}
	wantClosed(t, c)
}

func TestServerShutdownClosesIdleAtOnce(t *testing.T) {
	tr := newTestTracker(10)
	idle := make(chan struct{})
	s, addr, _ := startServer(t, tr, func(c *Conn) {
		defer c.Close()
		c.Idle()
		close(idle)
		io.Copy(io.Discard, c)
	}, nil)
	c := dialServer(t, addr)
	<-idle

	// A deadline far beyond the test's: Shutdown must not need it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if err := s.Shutdown(ctx, func() { tr.CloseIdle() }); err != nil {
		t.Fatalf("Shutdown = %v, want nil", err)
	}
	wantClosed(t, c)
	if open := tr.Stats().Open; open != 0 {
		t.Errorf("%d connections open after Shutdown, want 0", open)
	}
}

func TestServerShutdownDeadlineClosesEverything(t *testing.T) {
	tr := newTestTracker(10)
	reading, ended := make(chan struct{}), make(chan struct{})
	s, addr, _ := startServer(t, tr, func(c *Conn) {
		defer close(ended)
		defer c.Close()
		close(reading)
		io.Copy(io.Discard, c)
	}, nil)
	c := dialServer(t, addr)
	<-reading

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want %v", err, context.DeadlineExceeded)
	}
	wantClosed(t, c)
	<-ended
}

func TestServerRefusesWhenFull(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	refused := make(chan net.Conn, 1)
	s, addr, _ := startServer(t, newTestTracker(1), func(c *Conn) {
		defer c.Close()
		close(started)
		<-release
	}, func(nc net.Conn) {
		nc.Close()
		refused <- nc
	})
	dialServer(t, addr)
	<-started
	second := dialServer(t, addr)
	select {
	case <-refused:
	case <-time.After(5 * time.Second):
		t.Fatal("refuse was not called for a connection over the cap")
	}
	wantClosed(t, second)
	close(release)
	if err := s.Shutdown(context.Background(), nil); err != nil {
		t.Fatalf("Shutdown = %v, want nil", err)
	}
}

func TestServerServeAfterShutdown(t *testing.T) {
	s := NewServer(newTestTracker(1))
	if err := s.Shutdown(context.Background(), nil); err != nil {
		t.Fatalf("Shutdown = %v, want nil", err)
	}
	if !s.ShuttingDown() {
		t.Error("ShuttingDown = false after Shutdown")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(ln, func(c *Conn) { t.Error("a connection was served after Shutdown"); c.Close() }, nil); err != nil {
		t.Fatalf("Serve after Shutdown = %v, want nil", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("the listener still accepts after Serve returned")
	}
}
