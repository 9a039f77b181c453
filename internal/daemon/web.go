package daemon

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"

	"mailwarden/internal/config"
	"mailwarden/internal/web"
)

// httpHandler is what listen.http serves: the ops endpoints alone, or
// the dashboard with them when web.enabled.
func (d *Daemon) httpHandler(cfg config.Config, version string) (http.Handler, error) {
	ops := web.Ops(web.OpsOptions{Metrics: d.metrics.reg, Ready: d.ready})
	if !cfg.Web.Enabled {
		return ops, nil
	}
	srv, err := web.New(web.Options{
		Log:     d.log,
		Config:  func() config.Config { return *d.cfg.Load() },
		Store:   d.store,
		Users:   d.store,
		Passes:  d.store,
		Hosts:   d.hp.registry,
		Admin:   d.adminSrv,
		Events:  d.events,
		Series:  d.charts,
		Ops:     ops,
		Secure:  cfg.Web.TLSCert != "",
		Version: version,
	})
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	return srv, nil
}

// webTLS wraps ln in TLS when web.tls_cert and web.tls_key are set. The
// files are read once, at start.
func webTLS(cfg config.Config, ln net.Listener) (net.Listener, error) {
	if cfg.Web.TLSCert == "" {
		return ln, nil
	}
	cert, err := loadWebCert(cfg)
	if err != nil {
		return nil, err
	}
	return tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}), nil
}

// loadWebCert reads the dashboard's certificate and key, for serve and
// config check alike.
func loadWebCert(cfg config.Config) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(cfg.Web.TLSCert, cfg.Web.TLSKey)
	if err != nil {
		return cert, fmt.Errorf("web TLS: loading web.tls_cert %s and web.tls_key %s: %w", cfg.Web.TLSCert, cfg.Web.TLSKey, err)
	}
	return cert, nil
}
