package config

import "path/filepath"

// Queue configures the queue tools, "mailwarden queue summary|list|
// purge|hold|release", which work on the MTA's queue through its own
// programs, without the daemon.
type Queue struct {
	// MTA is the mail server whose queue the tools act on: "postfix"
	// or "exim".
	MTA string `yaml:"mta"`
	// Postqueue and Postsuper are the Postfix programs' paths.
	Postqueue string `yaml:"postqueue"`
	Postsuper string `yaml:"postsuper"`
	// ConfigDirectory is the Postfix instance's config directory
	// (postqueue -c, postsuper -c); "" means Postfix's default.
	ConfigDirectory string `yaml:"config_directory"`
	// Exim is the exim program's path (Debian: /usr/sbin/exim4).
	Exim string `yaml:"exim"`
	// EximConfig is the Exim config file, passed as -C; "" means
	// Exim's default.
	EximConfig string `yaml:"exim_config"`
	// SpoolDirectory is Exim's spool directory; "" asks exim -bP
	// spool_directory.
	SpoolDirectory string `yaml:"spool_directory"`
}

// Queue MTAs.
const (
	QueuePostfix = "postfix"
	QueueExim    = "exim"
)

func defaultQueue() Queue {
	return Queue{MTA: QueuePostfix, Postqueue: "/usr/sbin/postqueue", Postsuper: "/usr/sbin/postsuper",
		Exim: "/usr/sbin/exim4"}
}

func (c *Config) validateQueue(add func(key, format string, args ...any)) {
	q := &c.Queue
	switch q.MTA {
	case QueuePostfix, QueueExim:
	default:
		add("queue.mta", "%q is not one of postfix, exim", q.MTA)
	}
	for _, p := range []struct{ key, val string }{
		{"queue.postqueue", q.Postqueue},
		{"queue.postsuper", q.Postsuper},
		{"queue.config_directory", q.ConfigDirectory},
		{"queue.exim", q.Exim},
		{"queue.exim_config", q.EximConfig},
		{"queue.spool_directory", q.SpoolDirectory},
	} {
		if p.val != "" && !filepath.IsAbs(p.val) {
			add(p.key, "path %q must be absolute", p.val)
		}
		if p.val != "" && hasControl(p.val) {
			add(p.key, "path %q has a control character", p.val)
		}
	}
	if q.MTA == QueuePostfix && q.Postqueue == "" {
		add("queue.postqueue", "must be set")
	}
	if q.MTA == QueuePostfix && q.Postsuper == "" {
		add("queue.postsuper", "must be set")
	}
	if q.MTA == QueueExim && q.Exim == "" {
		add("queue.exim", "must be set")
	}
}
