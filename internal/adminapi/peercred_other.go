//go:build !linux

package adminapi

import (
	"errors"
	"net"
)

// peerCred is only implemented on Linux (SO_PEERCRED); elsewhere the
// socket's file mode is the only guard and changes are recorded as made
// by "unknown".
func peerCred(net.Conn) (uid, gid int, err error) {
	return -1, -1, errors.New("adminapi: peer credentials are only read on Linux")
}

// fileOwner is only implemented on Linux.
func fileOwner(string) (uid, gid int, err error) {
	return -1, -1, errors.New("adminapi: file owners are only read on Linux")
}

// socketGroup is only implemented on Linux.
func socketGroup(string) string { return "" }
