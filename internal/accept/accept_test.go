package accept

import (
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func newSet() *Listeners { return &Listeners{Name: "test server", Log: slog.New(slog.DiscardHandler)} }

func TestServeHandsOverConnectionsUntilClose(t *testing.T) {
	l := newSet()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	done := make(chan error, 1)
	go func() { done <- l.Serve(ln, func(c net.Conn) { n.Add(1); c.Close() }) }()
	for range 3 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	for n.Load() < 3 {
		time.Sleep(5 * time.Millisecond)
	}
	l.Close()
	if err := <-done; err != nil {
		t.Errorf("Serve after Close = %v, want nil", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("the listener still accepts after Close")
	}
}

func TestServeAfterCloseClosesTheListener(t *testing.T) {
	l := newSet()
	l.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Serve(ln, func(net.Conn) { t.Error("handled a connection after Close") }); err != nil {
		t.Errorf("Serve after Close = %v, want nil", err)
	}
	if _, err := ln.Accept(); err == nil {
		t.Error("the listener was left open")
	}
}

type brokenListener struct{ net.Listener }

func (brokenListener) Accept() (net.Conn, error) { return nil, errors.New("listener gone") }

func TestServeReturnsAFatalAcceptError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	err = newSet().Serve(brokenListener{ln}, func(net.Conn) {})
	if err == nil || !strings.Contains(err.Error(), "test server: accepting connections: listener gone") {
		t.Errorf("Serve = %v, want the accept error named", err)
	}
}
