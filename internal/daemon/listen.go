package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"mailwarden/internal/unixsock"
)

// listen opens one listener. addr is host:port or, for the mail front
// ends, "unix:/path". The error names the listener and the address so an
// administrator sees at once which port is taken.
func listen(name, addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		// The MTA runs as another user in the mail group.
		ln, err := unixsock.Listen(path, 0o660, -1, -1)
		if err != nil {
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

// warnOpenDirs warns about each of dirs that others may write to: anyone
// who can write there can replace the database or the admin socket.
func warnOpenDirs(log *slog.Logger, dirs ...string) {
	seen := map[string]bool{}
	for _, dir := range dirs {
		abs, err := filepath.Abs(dir)
		if err != nil || seen[abs] {
			continue
		}
		seen[abs] = true
		fi, err := os.Stat(abs)
		if err != nil {
			continue
		}
		if fi.Mode().Perm()&0o002 != 0 {
			log.Warn("directory is writable by every user: anyone on this host can replace mailwarden's database or sockets; chmod o-w it",
				"dir", abs, "mode", fmt.Sprintf("%04o", fi.Mode().Perm()))
		}
	}
}
