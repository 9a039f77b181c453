package daemon

import (
	"reflect"

	"mailwarden/internal/config"
)

// setting is one restart-only setting: its key and a pointer to it in a
// configuration.
type setting struct {
	key string
	ptr any
}

// restartOnly is the one list of the settings fixed when the daemon
// starts: listeners and sockets are bound, the store opened, the
// servers, watchers and clamd client built with them. A reload that
// changes one keeps the running value and says so.
func restartOnly(c *config.Config) []setting {
	a := &c.Antivirus
	return []setting{
		{"listen", &c.Listen},
		{"data_dir", &c.DataDir},
		{"store", &c.Store},
		{"log.mail_log", &c.Log.MailLog},
		{"admin", &c.Admin},
		{"policy_server", &c.PolicyServer},
		{"milter", &c.Milter},
		{"trap", &c.Trap},
		{"scan", &c.Scan},
		{"mail_login", &c.MailLogin},
		{"mailbox", &c.Mailbox},
		{"web.enabled", &c.Web.Enabled},
		{"web.tls_cert", &c.Web.TLSCert},
		{"web.tls_key", &c.Web.TLSKey},
		{"web.read_header_timeout", &c.Web.ReadHeaderTimeout},
		{"web.idle_timeout", &c.Web.IdleTimeout},
		{"web.max_conns", &c.Web.MaxConns},
		{"web.max_conns_per_client", &c.Web.MaxConnsPerClient},
		{"antivirus.enabled", &a.Enabled},
		{"antivirus.servers", &a.Servers},
		{"antivirus.connect_timeout", &a.ConnectTimeout},
		{"antivirus.scan_timeout", &a.ScanTimeout},
		{"antivirus.health_interval", &a.HealthInterval},
		{"antivirus.spool_memory", &a.SpoolMemory},
		{"antivirus.spool_dir", &a.SpoolDir},
	}
}

// keepRestartOnly puts the running values of the restart-only settings
// into cfg and returns the keys whose new value was set aside.
func keepRestartOnly(cfg *config.Config, running config.Config) []string {
	var changed []string
	now, old := restartOnly(cfg), restartOnly(&running)
	for i, s := range now {
		nv, ov := reflect.ValueOf(s.ptr).Elem(), reflect.ValueOf(old[i].ptr).Elem()
		if !reflect.DeepEqual(nv.Interface(), ov.Interface()) {
			changed = append(changed, s.key)
			nv.Set(ov)
		}
	}
	return changed
}
