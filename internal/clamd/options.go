package clamd

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"mailwarden/internal/logx"
)

// Defaults used when an Options field is zero. They match the daemon's
// config defaults, so a Client built by hand behaves like a configured one.
const (
	DefaultConnectTimeout = 2 * time.Second
	DefaultScanTimeout    = 30 * time.Second
	DefaultHealthInterval = 10 * time.Second
	DefaultProbeInterval  = time.Second
	DefaultMaxSize        = 20 << 20
)

// maxUnixPath is the room in sockaddr_un.sun_path on Linux, less the
// terminating NUL; a longer path cannot be dialled at all.
const maxUnixPath = 107

// Options configures a Client.
type Options struct {
	// Servers are the clamd addresses, "tcp:host:port" or "unix:/path",
	// tried in this order.
	Servers []string
	// ConnectTimeout bounds dialling one clamd.
	ConnectTimeout time.Duration
	// ScanTimeout bounds one attempt at one clamd: writing the message
	// and waiting for the answer. The caller's context bounds the whole
	// call, failover included.
	ScanTimeout time.Duration
	// MaxSize caps the bytes streamed for one message. Keep it below
	// clamd's StreamMaxLength (clamd.conf) so that the client, not
	// clamd, refuses a large message.
	MaxSize int64
	// HealthInterval is how often Start pings each clamd.
	HealthInterval time.Duration
	// ProbeInterval is how often a started client probes a clamd that
	// stopped answering (breaker.go), and how long each probe waits for
	// the answer. A scan that times out on a server that is up waits as
	// long again for a probe before the server is marked down.
	ProbeInterval time.Duration
	// Log receives one line per failure; nil discards.
	Log *slog.Logger
}

// endpoint is one parsed server address.
type endpoint struct {
	name    string // as configured, used in logs and results
	network string // "tcp" or "unix"
	address string // what net.Dial takes
}

// normalize fills in defaults and checks every field, reporting all
// problems at once so an operator fixes the config in one pass.
func (o Options) normalize() (Options, []endpoint, error) {
	var errs []error
	if len(o.Servers) == 0 {
		errs = append(errs, errors.New("clamd: no servers configured"))
	}
	var eps []endpoint
	seen := map[string]bool{}
	for i, s := range o.Servers {
		ep, err := parseServer(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("clamd: server %d %q: %w", i+1, s, err))
			continue
		}
		if seen[ep.network+" "+ep.address] {
			errs = append(errs, fmt.Errorf("clamd: server %d %q: listed twice", i+1, s))
			continue
		}
		seen[ep.network+" "+ep.address] = true
		eps = append(eps, ep)
	}
	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"connect timeout", &o.ConnectTimeout, DefaultConnectTimeout},
		{"scan timeout", &o.ScanTimeout, DefaultScanTimeout},
		{"health interval", &o.HealthInterval, DefaultHealthInterval},
		{"probe interval", &o.ProbeInterval, DefaultProbeInterval},
	}
	for _, d := range durations {
		switch {
		case *d.v < 0:
			errs = append(errs, fmt.Errorf("clamd: %s %v is negative", d.name, *d.v))
		case *d.v == 0:
			*d.v = d.def
		}
	}
	switch {
	case o.MaxSize < 0:
		errs = append(errs, fmt.Errorf("clamd: max size %d is negative", o.MaxSize))
	case o.MaxSize == 0:
		o.MaxSize = DefaultMaxSize
	case o.MaxSize > 1<<32-1:
		// clamd's StreamMaxLength is at most 4 GB (clamd.conf(5)).
		errs = append(errs, fmt.Errorf("clamd: max size %d is over clamd's 4 GB stream limit", o.MaxSize))
	}
	o.Log = logx.Or(o.Log)
	if len(errs) > 0 {
		return o, nil, errors.Join(errs...)
	}
	return o, eps, nil
}

// parseServer reads "tcp:host:port" or "unix:/path".
func parseServer(s string) (endpoint, error) {
	network, rest, ok := strings.Cut(s, ":")
	if !ok || (network != "tcp" && network != "unix") {
		return endpoint{}, errors.New(`want "tcp:host:port" or "unix:/path"`)
	}
	ep := endpoint{name: s, network: network, address: rest}
	if network == "unix" {
		switch {
		case !filepath.IsAbs(rest):
			return endpoint{}, errors.New("unix socket path must be absolute")
		case len(rest) > maxUnixPath:
			return endpoint{}, fmt.Errorf("unix socket path is longer than %d bytes", maxUnixPath)
		}
		return ep, nil
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil {
		return endpoint{}, fmt.Errorf(`want "tcp:host:port": %w`, err)
	}
	if host == "" {
		return endpoint{}, errors.New("missing host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return endpoint{}, fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	return ep, nil
}
