// Package unixsock prepares unix socket paths for listening: the milter,
// the policy server and the admin API may all live on one.
package unixsock

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// RemoveStale removes a socket file left by a daemon that died. It never
// removes a file that is not a socket, nor a socket that something still
// answers on (another daemon using the same path).
func RemoveStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket; refusing to remove it", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s is in use by a running process (is another mailwarden serve running?)", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("checking whether %s is stale: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("removing stale socket: %w", err)
	}
	return nil
}
