package daemon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"

	"mailwarden/internal/unixsock"
)

// listen opens one listener. addr is host:port or, for the mail front
// ends, "unix:/path". The error names the listener and the address so an
// administrator sees at once which port is taken.
func listen(name, addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if err := unixsock.RemoveStale(path); err != nil {
			return nil, fmt.Errorf("%s listener on %s: %w", name, addr, err)
		}
		ln, err := net.Listen("unix", path)
		if err != nil {
			return nil, fmt.Errorf("%s listener on %s: %w", name, addr, err)
		}
		// The MTA runs as another user in the mail group.
		if err := os.Chmod(path, 0o660); err != nil {
			ln.Close()
			return nil, fmt.Errorf("%s listener on %s: %w", name, addr, err)
		}
		return ln, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			_, port, _ := net.SplitHostPort(addr)
			return nil, fmt.Errorf("%s listener: port %s on %s is already in use (is another mailwarden or postgrey running?): %w", name, port, addr, err)
		}
		return nil, fmt.Errorf("%s listener on %s: %w", name, addr, err)
	}
	return ln, nil
}
