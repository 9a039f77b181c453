package config

import (
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
)

// maxUnixPath is the longest unix socket path: sockaddr_un's sun_path
// holds 108 bytes on Linux, including the terminating NUL (unix(7)).
const maxUnixPath = 107

// Antivirus action names, as the antivirus check takes them.
var (
	oversizeActions = []string{"accept", "tempfail", "reject"}
	virusActions    = []string{"reject", "discard", "quarantine"}
	errorActions    = []string{"tempfail", "accept"}
)

// validateAntivirus checks the antivirus settings. They are checked when
// scanning is off too, so that turning it on later does not meet old
// mistakes; only the need for a server depends on it being on.
func (c *Config) validateAntivirus(add func(key, format string, args ...any)) {
	a := &c.Antivirus
	if a.Enabled && len(a.Servers) == 0 {
		add("antivirus.servers", "must list at least one clamd when antivirus.enabled is true")
	}
	for i, s := range a.Servers {
		if msg := checkClamdAddr(s); msg != "" {
			add(fmt.Sprintf("antivirus.servers[%d]", i), "%s", msg)
		}
	}
	positiveDurations(add, []named[Duration]{
		{"antivirus.connect_timeout", a.ConnectTimeout},
		{"antivirus.scan_timeout", a.ScanTimeout},
		{"antivirus.health_interval", a.HealthInterval},
		{"antivirus.signature_max_age", a.SignatureMaxAge},
	})
	if a.MaxScanSize <= 0 {
		add("antivirus.max_scan_size", "%d must be more than 0 bytes", a.MaxScanSize)
	}
	if a.SpoolMemory <= 0 {
		add("antivirus.spool_memory", "%d must be more than 0 bytes", a.SpoolMemory)
	}
	if a.SpoolDir != "" && !filepath.IsAbs(a.SpoolDir) {
		add("antivirus.spool_dir", "path %q must be absolute", a.SpoolDir)
	}
	c.validateScanCache(add)
	for _, s := range []struct {
		key, val string
		allowed  []string
	}{
		{"antivirus.oversize_action", a.OversizeAction, oversizeActions},
		{"antivirus.inbound", a.Inbound, virusActions},
		{"antivirus.outbound", a.Outbound, virusActions},
		{"antivirus.on_error", a.OnError, errorActions},
	} {
		if !slices.Contains(s.allowed, s.val) {
			add(s.key, "%q is not one of %s", s.val, strings.Join(s.allowed, ", "))
		}
	}
}

// checkClamdAddr returns what is wrong with a clamd address, or "". clamd
// listens on TCP (TCPSocket, TCPAddr in clamd.conf) or a unix socket
// (LocalSocket).
func checkClamdAddr(addr string) string {
	const form = `"tcp:host:port" or "unix:/absolute/path"`
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		switch {
		case !filepath.IsAbs(path):
			return fmt.Sprintf("unix socket path %q must be absolute", path)
		case len(path) > maxUnixPath:
			return fmt.Sprintf("unix socket path %q is longer than %d bytes", path, maxUnixPath)
		}
		return ""
	}
	hostport, ok := strings.CutPrefix(addr, "tcp:")
	if !ok {
		return fmt.Sprintf("%q is not %s", addr, form)
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil || host == "" {
		return fmt.Sprintf("%q is not %s", addr, form)
	}
	return checkHostPort(addr, host, port)
}
