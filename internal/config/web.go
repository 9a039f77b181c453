package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"mailwarden/internal/human"
)

// Web configures the dashboard, served on listen.http beside the metrics
// and health endpoints. Users are kept in the store and managed with
// "mailwarden user".
type Web struct {
	// Enabled serves the dashboard; off leaves only the ops endpoints.
	Enabled bool `yaml:"enabled"`
	// TLSCert and TLSKey, both set, serve listen.http over TLS (and mark
	// session cookies Secure). PEM files, read at start.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// SessionTTL is how long a login lasts without being renewed.
	SessionTTL Duration `yaml:"session_ttl"`
	// LoginMaxFailures wrong passwords for one user name, or from one
	// address, within LoginLockout lock further attempts out until
	// LoginLockout has passed since the last failure.
	LoginMaxFailures int      `yaml:"login_max_failures"`
	LoginLockout     Duration `yaml:"login_lockout"`
	// Refresh is how often the hosts page reloads its table.
	Refresh Duration `yaml:"refresh"`
	// ReadHeaderTimeout bounds reading a request's headers, so a client
	// sending a byte a second does not hold a connection; IdleTimeout
	// closes a keep-alive connection with no request. Restart-only.
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	IdleTimeout       Duration `yaml:"idle_timeout"`
	// MaxConns and MaxConnsPerClient cap the HTTP listener's concurrent
	// connections in total and from one IP address; when full, the
	// connection idle longest is closed to admit a new one, so a flood
	// can neither lock out /-/ready nor use up the descriptors the mail
	// listeners need. Restart-only.
	MaxConns          int `yaml:"max_conns"`
	MaxConnsPerClient int `yaml:"max_conns_per_client"`
	// LookupURLs are links shown beside each host, such as the DHCP
	// server's lease page; "{ip}" in the URL is replaced by the address.
	LookupURLs []LookupURL `yaml:"lookup_urls"`
	// TrustedProxies are the reverse proxies in front of the dashboard.
	// Only for a request from one of them is X-Forwarded-For read: its
	// last address outside these networks is the client, for the login
	// throttle and the audit log. Empty: the peer is the client.
	TrustedProxies []Prefix `yaml:"trusted_proxies"`
}

// LookupURL is one external look-up link for a host.
type LookupURL struct {
	Name string `yaml:"name"`
	URL  string `yaml:"url"`
}

func defaultWeb() Web {
	return Web{
		Enabled:          true,
		SessionTTL:       Duration(12 * time.Hour),
		LoginMaxFailures: 5,
		LoginLockout:     Duration(15 * time.Minute),
		Refresh:          Duration(30 * time.Second),
		// Browsers and scrapers send small requests at once.
		ReadHeaderTimeout: Duration(10 * time.Second),
		IdleTimeout:       Duration(120 * time.Second),
		// A browser opens about six connections to a host.
		MaxConns:          256,
		MaxConnsPerClient: 64,
	}
}

func (c *Config) validateWeb(add func(key, format string, args ...any)) {
	w := &c.Web
	if (w.TLSCert == "") != (w.TLSKey == "") {
		add("web.tls_cert", "tls_cert and tls_key must be set together")
	}
	positiveDurations(add, []named[Duration]{
		{"web.session_ttl", w.SessionTTL},
		{"web.login_lockout", w.LoginLockout},
		{"web.refresh", w.Refresh},
		{"web.read_header_timeout", w.ReadHeaderTimeout},
		{"web.idle_timeout", w.IdleTimeout},
	})
	if w.Refresh > 0 && w.Refresh.D() < time.Second {
		add("web.refresh", "must be at least 1s, got %s", human.Setting(w.Refresh.D()))
	}
	if w.LoginMaxFailures <= 0 {
		add("web.login_max_failures", "%d must be more than 0", w.LoginMaxFailures)
	}
	for i, l := range w.LookupURLs {
		key := fmt.Sprintf("web.lookup_urls[%d]", i)
		if strings.TrimSpace(l.Name) == "" || hasControl(l.Name) {
			add(key+".name", "must be a non-empty name without control characters")
		}
		u, err := url.Parse(strings.ReplaceAll(l.URL, "{ip}", "192.0.2.1"))
		switch {
		case err != nil:
			add(key+".url", "%q is not a URL: %v", l.URL, err)
		case u.Scheme != "http" && u.Scheme != "https":
			// Anything else (javascript:, data:) would run in the
			// dashboard's origin or do something other than a look-up.
			add(key+".url", "%q must be an http or https URL", l.URL)
		case !strings.Contains(l.URL, "{ip}"):
			add(key+".url", "%q must contain {ip}, replaced by the host's address", l.URL)
		}
	}
}
