package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/alert"
	"mailwarden/internal/clamd"
	"mailwarden/internal/config"
	"mailwarden/internal/scan"
	"mailwarden/internal/sites"
	"mailwarden/internal/store/memory"
)

// Validate makes every check of cfg that serve makes before it opens
// anything: it builds every check on an empty memory store (whitelist
// files are read and parsed), the sites, the scanner and the clamd client, looks up
// the admin socket's owner and group, and loads the dashboard's TLS
// certificate. `config check` and Start both call it, so the systemd
// unit's ExecStartPre catches whatever would stop the start. It is
// stricter than serve in one thing: a whitelist file line that does not
// parse is an error here, and serve skips it with a warning, as postgrey
// does. Unlike serve, it also connects to each alert email relay, so a
// relay that does not answer is found now rather than at the first
// alert; serve starts anyway, since mail must flow when the relay is
// down, and retries its alerts.
func Validate(cfg config.Config) error {
	if err := validate(cfg, false); err != nil {
		return err
	}
	return checkRelays(cfg.Alerts, relayCheckTimeout)
}

// relayCheckTimeout bounds `config check`'s connection to an alert relay.
const relayCheckTimeout = 3 * time.Second

// checkRelays connects to every alert email relay and reads its
// greeting.
func checkRelays(a config.Alerts, timeout time.Duration) error {
	var errs []error
	for _, r := range a.Receivers {
		if r.Email.Relay == "" {
			continue
		}
		if err := alert.Reach(r.Email.Relay, timeout); err != nil {
			errs = append(errs, fmt.Errorf("alerts: receiver %s: relay %s: %w", r.Name, r.Email.Relay, err))
		}
	}
	return errors.Join(errs...)
}

func validate(cfg config.Config, skipBadWhitelistLines bool) error {
	// The checks are built, never run: an empty memory store stands in
	// for the real one, which `config check` must not open.
	st := memory.New()
	defer st.Close()
	if _, err := Checks(cfg, Deps{Store: st, Scanner: offlineScanner{}, Log: slog.New(slog.DiscardHandler), Now: time.Now,
		SkipBadWhitelistLines: skipBadWhitelistLines}); err != nil {
		return err
	}
	if _, err := sites.New(prefixes(cfg.InternalNetworks), siteList(cfg)); err != nil {
		return fmt.Errorf("sites: %w", err)
	}
	if len(cfg.Scan.Ranges) > 0 {
		if _, err := scan.New(scanOptions(cfg, slog.New(slog.DiscardHandler))); err != nil {
			return fmt.Errorf("scan: %w", err)
		}
	}
	if cfg.Antivirus.Enabled {
		if _, err := clamd.New(clamdOptions(cfg.Antivirus)); err != nil {
			return fmt.Errorf("antivirus: %w", err)
		}
	}
	if _, _, err := adminapi.LookupOwner(cfg.Admin.Owner, cfg.Admin.Group); err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	if cfg.Web.TLSCert != "" {
		if _, err := loadWebCert(cfg); err != nil {
			return err
		}
	}
	return nil
}

var errOffline = errors.New("daemon: no antivirus scanner in config check")

// offlineScanner is a scanner for building the antivirus check, which
// is never run.
type offlineScanner struct{}

func (offlineScanner) ScanOpen(context.Context, func() (io.ReadCloser, error), int64) (clamd.Result, error) {
	return clamd.Result{}, errOffline
}
