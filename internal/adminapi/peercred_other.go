//go:build !linux

package adminapi

import (
	"errors"
	"net"
)

// peerUID is only implemented on Linux (SO_PEERCRED); elsewhere changes
// are recorded as made by "unknown".
func peerUID(net.Conn) (int, error) {
	return -1, errors.New("adminapi: peer credentials are only read on Linux")
}

// socketGroup is only implemented on Linux.
func socketGroup(string) string { return "" }
