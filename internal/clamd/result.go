// Package clamd is a client for ClamAV's clamd daemon: INSTREAM scans,
// PING and VERSION over TCP or unix sockets, with several servers,
// health checks and failover.
package clamd

import (
	"errors"
	"time"
)

// Result is the outcome of one scan.
type Result struct {
	Infected bool
	Virus    string // signature name, e.g. "Eicar-Test-Signature"
	Server   string // the clamd that scanned it
}

// Version is what clamd's VERSION command reports, e.g.
// "ClamAV 1.0.7/27463/Wed Nov 18 08:24:02 2026".
type Version struct {
	Engine    string    // "ClamAV 1.0.7"
	DBVersion int       // signature database version, 0 if unknown
	DBTime    time.Time // signature database date, zero if unknown
	Server    string
}

// ServerStatus is one configured clamd as the health checks last saw it.
type ServerStatus struct {
	Addr      string
	Up        bool
	LastError string
	Checked   time.Time
	Version   Version
}

// Errors a scan can end in. All wrap with detail; errors.Is works.
var (
	// ErrUnavailable: no configured clamd could be reached.
	ErrUnavailable = errors.New("clamd: no server available")
	// ErrDown: the server stopped answering and was skipped without
	// being contacted, until it answers a probe (breaker.go). A scan
	// that skipped every server wraps both ErrUnavailable and ErrDown.
	ErrDown = errors.New("clamd: not answering, skipped until it answers a probe")
	// ErrTooLarge: clamd refused the stream as over its StreamMaxLength,
	// or the message is over the client's own cap.
	ErrTooLarge = errors.New("clamd: message too large to scan")
	// ErrProtocol: clamd answered something that is not a scan result.
	ErrProtocol = errors.New("clamd: unexpected answer")
)
